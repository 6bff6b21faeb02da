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

from strom.protocol.messages import offset_commit as schema
from strom.server.partition_requests import answer_known_partitions

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (2, 9)

Response = schema.OffsetCommitResponse
TopicResponse = schema.OffsetCommitResponse.OffsetCommitResponseTopic
PartitionResponse = schema.OffsetCommitResponse.OffsetCommitResponsePartition
RequestTopic = schema.OffsetCommitRequest.OffsetCommitRequestTopic


async def handle(ctx: RequestContext, request: schema.OffsetCommitRequest) -> Response:
    broker = ctx.broker
    return Response(
        topics=answer_known_partitions(
            broker,
            request.topics,
            lambda topic, partitions: RequestTopic(topic.name, partitions),
            lambda known: broker.groups.commit_offsets(
                dataclasses.replace(request, topics=known), ctx.api_version
            ),
            TopicResponse,
            PartitionResponse,
        )
    )
