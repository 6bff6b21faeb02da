"""DeleteTopics (API key 20): delete topics, by name or (v6+) by id, through the metadata controller.

Versions served: 1-6.
- v1: throttle time.
- v2-v3: same as v1 (v3+ may answer TOPIC_DELETION_DISABLED).
- v4: flexible versions.
- v5: error messages.
- v6: topics by name or id (KIP-516).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import delete_topics as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (1, 6)

Response = schema.DeleteTopicsResponse
TopicResult = schema.DeleteTopicsResponse.DeletableTopicResult
NO_TOPIC_ID = uuid.UUID(int=0)


async def handle(ctx: RequestContext, request: schema.DeleteTopicsRequest) -> Response:
    version = ctx.api_version
    refs: list[str | uuid.UUID] = (
        [t.name if t.name is not None else t.topic_id for t in request.topics]
        if version >= 6
        else list(request.topic_names)
    )
    results = ctx.broker.controller.delete_topics(refs)
    responses = []
    for r in results:
        code = r.error_code
        if code == ErrorCode.TOPIC_DELETION_DISABLED and version < 3:
            code = ErrorCode.INVALID_REQUEST  # older clients don't know the dedicated code
        responses.append(
            TopicResult(
                name=r.name if r.name is not None else "" if version < 6 else None,
                topic_id=r.topic_id,
                error_code=code,
                error_message=r.error_message,
            )
        )
    return Response(responses=responses)
