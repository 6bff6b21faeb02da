"""DescribeProducers (API key 61): the active producers of partitions (KIP-664), for finding hanging
transactions.

Versions served: 0 (the only one).

Per partition this broker leads: each producer with state in the log, its epoch, last sequence and timestamp,
the coordinator epoch of its last marker, and the first offset of its open transaction (-1 when none).
Unknown partitions answer UNKNOWN_TOPIC_OR_PARTITION; partitions led elsewhere NOT_LEADER_OR_FOLLOWER.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import KafkaError
from strom.protocol.messages import describe_producers as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 0)

Response = schema.DescribeProducersResponse
TopicResponse = schema.DescribeProducersResponse.TopicResponse
PartitionResponse = schema.DescribeProducersResponse.PartitionResponse
ProducerState = schema.DescribeProducersResponse.ProducerState


async def handle(ctx: RequestContext, request: schema.DescribeProducersRequest) -> Response:
    topics = []
    for topic in request.topics:
        partitions = []
        for index in topic.partition_indexes:
            out = PartitionResponse(partition_index=index)
            try:
                log = ctx.broker.leader_log(topic.name, index)
            except KafkaError as exc:
                out.error_code, out.error_message = exc.code, exc.message
            else:
                out.active_producers = [
                    ProducerState(
                        producer_id=entry.producer_id,
                        producer_epoch=entry.epoch,
                        last_sequence=entry.last_sequence,
                        last_timestamp=entry.last_timestamp,
                        coordinator_epoch=entry.coordinator_epoch,
                        current_txn_start_offset=entry.txn_first_offset,
                    )
                    for entry in log.producers
                ]
            partitions.append(out)
        topics.append(TopicResponse(name=topic.name, partitions=partitions))
    return Response(topics=topics)
