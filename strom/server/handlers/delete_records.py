"""DeleteRecords (API key 21): move a partition's log start offset forward.

Versions served: 0-2.
- v1: same as v0.
- v2: flexible versions.

Offset -1 means "up to the high watermark". An offset past the high watermark is OFFSET_OUT_OF_RANGE. Whole
segments below the new start offset are removed by the next retention pass; reads below it fail at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import delete_records as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 2)

Response = schema.DeleteRecordsResponse
TopicResult = schema.DeleteRecordsResponse.DeleteRecordsTopicResult
PartitionResult = schema.DeleteRecordsResponse.DeleteRecordsPartitionResult


async def handle(ctx: RequestContext, request: schema.DeleteRecordsRequest) -> Response:
    broker = ctx.broker
    topics = []
    for topic in request.topics:
        partitions = []
        for p in topic.partitions:
            out = PartitionResult(partition_index=p.partition_index, low_watermark=-1)
            try:
                log = broker.leader_log(topic.name, p.partition_index)
                offset = log.high_watermark if p.offset == -1 else p.offset
                if not 0 <= offset <= log.high_watermark:
                    raise KafkaError(ErrorCode.OFFSET_OUT_OF_RANGE)
                out.low_watermark = log.delete_records_before(offset)
            except KafkaError as exc:
                out.error_code = exc.code
            partitions.append(out)
        topics.append(TopicResult(name=topic.name, partitions=partitions))
    return Response(topics=topics)
