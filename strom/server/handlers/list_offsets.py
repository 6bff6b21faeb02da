"""ListOffsets (API key 2): offsets by timestamp, and the special earliest / latest / max-timestamp ones.

Versions served: 1-10.
- v1: one offset per partition (the v0 list form is gone).
- v2: isolation level (latest = last stable offset under read_committed).
- v3: same as v2.
- v4: current leader epoch in the request, leader epoch in the response (KIP-320).
- v5: same as v4.
- v6: flexible versions.
- v7: MAX_TIMESTAMP (-3): the offset of the record with the highest timestamp (KIP-734).
- v8: EARLIEST_LOCAL_TIMESTAMP (-4) (KIP-405).
- v9: EARLIEST_PENDING_UPLOAD (-5) (KIP-1005).
- v10: timeout_ms (KIP-1075).

Without tiered storage the earliest local offset, and the earliest offset not yet uploaded, are the log
start offset, as Kafka answers when remote storage is off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import list_offsets as schema

if TYPE_CHECKING:
    from strom.log import PartitionLog
    from strom.server.dispatch import RequestContext

VERSIONS = (1, 10)

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
EARLIEST_LOCAL = -4
EARLIEST_PENDING_UPLOAD = -5
READ_COMMITTED = 1

Response = schema.ListOffsetsResponse
TopicResponse = schema.ListOffsetsResponse.ListOffsetsTopicResponse
PartitionResponse = schema.ListOffsetsResponse.ListOffsetsPartitionResponse


async def handle(ctx: RequestContext, request: schema.ListOffsetsRequest) -> Response:
    broker = ctx.broker
    committed_only = request.isolation_level == READ_COMMITTED
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            out = PartitionResponse(partition_index=p.partition_index)
            try:
                log = broker.leader_log(topic.name, p.partition_index, p.current_leader_epoch)
                if ctx.api_version >= 4:
                    out.leader_epoch = broker.leader_epoch(topic.name, p.partition_index)
                visible_end = log.last_stable_offset if committed_only else log.high_watermark
                out.offset, out.timestamp = _lookup(log, p.timestamp, visible_end)
            except KafkaError as exc:
                out.error_code = exc.code
            partitions.append(out)
        topics.append(TopicResponse(name=topic.name, partitions=partitions))
    return Response(topics=topics)


def _lookup(log: PartitionLog, timestamp: int, visible_end: int) -> tuple[int, int]:
    """(offset, timestamp) for one partition; (-1, -1) when no record qualifies."""
    if timestamp == LATEST:
        return visible_end, -1
    if timestamp in (EARLIEST, EARLIEST_LOCAL, EARLIEST_PENDING_UPLOAD):
        return log.log_start_offset, -1
    if timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp()
    elif timestamp < 0:
        raise KafkaError(ErrorCode.INVALID_REQUEST, f"unknown special timestamp {timestamp}")
    else:
        found = log.offset_for_timestamp(timestamp)
    if found is None or found[0] >= visible_end:
        return -1, -1
    return found
