"""OffsetCommit (API key 8): store a group's consumed positions in ``__consumer_offsets``.

Versions served: 2-9 (v0-v1 are gone in Kafka 4).
- v2: a retention time for the commit (v1 brought generation and member id).
- v3: throttle time.
- v4: same as v3.
- v5: the retention time is gone: offsets.retention.minutes applies.
- v6: the leader epoch of the committed offset (KIP-320).
- v7: group.instance.id (KIP-345).
- v8: flexible versions.
- v9: the generation may be a member epoch of the new protocol (KIP-848); an unknown group with a
  generation is GROUP_ID_NOT_FOUND instead of ILLEGAL_GENERATION.

Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; the rest go to the coordinator in one append.
A commit with generation -1 and no member id comes from outside group management (``assign()`` + commit)
and is accepted while the group has no members. The metadata string is kept, up to
``offset.metadata.max.bytes`` (OFFSET_METADATA_TOO_LARGE beyond).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import offset_commit as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (2, 9)

Response = schema.OffsetCommitResponse
TopicResponse = schema.OffsetCommitResponse.OffsetCommitResponseTopic
PartitionResponse = schema.OffsetCommitResponse.OffsetCommitResponsePartition
RequestTopic = schema.OffsetCommitRequest.OffsetCommitRequestTopic


async def handle(ctx: RequestContext, request: schema.OffsetCommitRequest) -> Response:
    image = ctx.broker.image
    known: list[RequestTopic] = []
    errors: dict[tuple[str, int], int] = {}
    for topic in request.topics:
        described = image.topic(topic.name)
        partitions = []
        for p in topic.partitions:
            if described is not None and p.partition_index in described.partitions:
                partitions.append(p)
            else:
                errors[topic.name, p.partition_index] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if partitions:
            known.append(RequestTopic(topic.name, partitions))
    if known:
        committed = ctx.broker.groups.commit_offsets(
            dataclasses.replace(request, topics=known), ctx.api_version
        )
        for result in committed:
            for answered in result.partitions:
                errors[result.name, answered.partition_index] = answered.error_code
    return Response(
        topics=[
            TopicResponse(
                t.name,
                [
                    PartitionResponse(p.partition_index, errors[t.name, p.partition_index])
                    for p in t.partitions
                ],
            )
            for t in request.topics
        ]
    )
