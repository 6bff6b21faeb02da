"""CreatePartitions (API key 37): add partitions to existing topics.

Versions served: 0-3.
- v1: same as v0.
- v2: flexible versions.
- v3: same as v2 (quota violations).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import create_partitions as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 3)

Response = schema.CreatePartitionsResponse
TopicResult = schema.CreatePartitionsResponse.CreatePartitionsTopicResult


async def handle(ctx: RequestContext, request: schema.CreatePartitionsRequest) -> Response:
    controller = ctx.broker.controller
    counts = Counter(t.name for t in request.topics)
    results = []
    for topic in request.topics:
        if counts[topic.name] > 1:
            results.append(
                TopicResult(
                    name=topic.name,
                    error_code=ErrorCode.INVALID_REQUEST,
                    error_message="Duplicate topic in request.",
                )
            )
            continue
        assignments = None if topic.assignments is None else [list(a.broker_ids) for a in topic.assignments]
        r = controller.create_partitions(
            topic.name, topic.count, assignments, validate_only=request.validate_only
        )
        results.append(TopicResult(name=r.name, error_code=r.error_code, error_message=r.error_message))
    return Response(results=results)
