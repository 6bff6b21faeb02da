"""AlterConfigs (API key 33): replace the whole set of dynamic configs of topics or brokers (legacy form).

Versions served: 0-2.
- v1: same as v0.
- v2: flexible versions.

Configs not named in the request return to their defaults, which is why clients prefer
IncrementalAlterConfigs; both go through the same controller validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from strom.metadata.controller import AlterConfigsResource, AlterConfigsResult
from strom.protocol.messages import alter_configs as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 2)

Response = schema.AlterConfigsResponse
Result = schema.AlterConfigsResponse.AlterConfigsResourceResponse
T = TypeVar("T", bound=Any)


async def handle(ctx: RequestContext, request: schema.AlterConfigsRequest) -> Response:
    resources = [
        AlterConfigsResource(r.resource_type, r.resource_name, {c.name: c.value for c in r.configs})
        for r in request.resources
    ]
    results = ctx.broker.controller.alter_configs(resources, validate_only=request.validate_only)
    return Response(responses=resource_responses(results, Result))


def resource_responses(results: Sequence[AlterConfigsResult], result_class: type[T]) -> list[T]:
    """Per-resource outcomes in the shape both AlterConfigs and IncrementalAlterConfigs answer with."""
    return [
        result_class(
            error_code=r.error_code,
            error_message=r.error_message,
            resource_type=r.resource_type,
            resource_name=r.resource_name,
        )
        for r in results
    ]
