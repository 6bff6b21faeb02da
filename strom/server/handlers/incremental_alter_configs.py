"""IncrementalAlterConfigs (API key 44): SET, DELETE, APPEND or SUBTRACT single configs (KIP-339).

Versions served: 0-1.
- v1: flexible versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.metadata.controller import ConfigOp, IncrementalAlterConfigsResource
from strom.protocol.messages import incremental_alter_configs as schema
from strom.server.handlers.alter_configs import resource_responses

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 1)

Response = schema.IncrementalAlterConfigsResponse
Result = schema.IncrementalAlterConfigsResponse.AlterConfigsResourceResponse


async def handle(ctx: RequestContext, request: schema.IncrementalAlterConfigsRequest) -> Response:
    resources = [
        IncrementalAlterConfigsResource(
            r.resource_type,
            r.resource_name,
            [ConfigOp(c.name, c.config_operation, c.value) for c in r.configs],
        )
        for r in request.resources
    ]
    results = ctx.broker.controller.incremental_alter_configs(resources, validate_only=request.validate_only)
    return Response(responses=resource_responses(results, Result))
