"""OffsetDelete (API key 47): delete a group's committed offsets of some partitions (KIP-496).

Versions served: 0.
- v0: a group and its topic partitions.

Allowed for an empty group, and for an active consumer group only for topics none of its members subscribe
to (GROUP_SUBSCRIBED_TO_TOPIC otherwise); any other active group is NON_EMPTY_GROUP. Partitions of unknown
topics get UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import offset_delete as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 0)

Response = schema.OffsetDeleteResponse
TopicResponse = schema.OffsetDeleteResponse.OffsetDeleteResponseTopic
PartitionResponse = schema.OffsetDeleteResponse.OffsetDeleteResponsePartition
RequestTopic = schema.OffsetDeleteRequest.OffsetDeleteRequestTopic


async def handle(ctx: RequestContext, request: schema.OffsetDeleteRequest) -> Response:
    image = ctx.broker.image
    known: list[RequestTopic] = []
    unknown: list[TopicResponse] = []
    for topic in request.topics:
        described = image.topic(topic.name)
        present = [
            p for p in topic.partitions if described is not None and p.partition_index in described.partitions
        ]
        missing = [p for p in topic.partitions if p not in present]
        if present:
            known.append(RequestTopic(topic.name, present))
        if missing:
            unknown.append(
                TopicResponse(
                    topic.name,
                    [
                        PartitionResponse(p.partition_index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
                        for p in missing
                    ],
                )
            )
    response = ctx.broker.groups.delete_offsets(schema.OffsetDeleteRequest(request.group_id, known))
    if response.error_code == ErrorCode.NONE:
        response.topics.extend(unknown)
    return response
