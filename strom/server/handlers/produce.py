"""Produce (API key 0): append record batches to partition logs.

Versions served: 3-11 (message format v2 only, as Kafka 4 does).
- v3: transactional id; record batches (magic 2).
- v4: the client may get KAFKA_STORAGE_ERROR.
- v5: log start offset in the response.
- v6-v7: same as v5 (v7 allows zstd).
- v8: per-record errors and an error message (KIP-467).
- v9: flexible versions.
- v10-v11: current leader and node endpoints tagged fields (KIP-951).

Batches stay opaque: the log checks each batch header and CRC and writes offsets in place; records are
never decoded here. A transactional batch is first checked against its transaction (KIP-890 part 1, with
``transaction.partition.verification.enable``): the partition must be in the producer's open transaction, so
a late write from a transaction already ended cannot open a transaction nobody will close.

With acks=0 nothing is sent back; if such a produce fails, the connection is closed, as Kafka does, so the
client notices.

When the topic's flush.messages asks for an fsync, the response waits for the flusher to make the batch
durable (without blocking the event loop: other requests proceed, and their batches join the next fsync
pass); a failed fsync answers KAFKA_STORAGE_ERROR. Every partition of the request waits for the same pass.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import produce as schema
from strom.server.connection import ConnectionClosed

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (3, 11)

Response = schema.ProduceResponse
PartitionResponse = schema.ProduceResponse.PartitionProduceResponse
TopicResponse = schema.ProduceResponse.TopicProduceResponse


async def handle(ctx: RequestContext, request: schema.ProduceRequest) -> Response | None:
    broker = ctx.broker
    acks = request.acks
    topics: list[TopicResponse] = []
    failed = False
    durable: list[tuple[PartitionResponse, asyncio.Future[None]]] = []
    for topic in request.topic_data:
        partitions: list[PartitionResponse] = []
        for data in topic.partition_data:
            result = PartitionResponse(index=data.index)
            try:
                if acks not in (0, 1, -1):
                    raise KafkaError(ErrorCode.INVALID_REQUIRED_ACKS)
                if not isinstance(data.records, memoryview) or not len(data.records):
                    raise KafkaError(ErrorCode.CORRUPT_MESSAGE, "the partition's record set is empty")
                if request.transactional_id is not None:
                    broker.verify_transactional_write(
                        request.transactional_id, topic.name, data.index, data.records
                    )
                appended = broker.append(topic.name, data.index, data.records, acks=acks)
                flushed = broker.wait_durable(topic.name, data.index, appended.last_offset)
                if flushed is not None:
                    durable.append((result, flushed))
            except KafkaError as exc:
                failed = True
                result.error_code = exc.code
                result.error_message = exc.message
            else:
                result.base_offset = appended.base_offset
                result.log_append_time_ms = appended.log_append_time
                result.log_start_offset = appended.log_start_offset
            partitions.append(result)
        topics.append(TopicResponse(name=topic.name, partition_responses=partitions))
    if durable:
        outcomes = await asyncio.gather(*(future for _, future in durable), return_exceptions=True)
        for (result, _), outcome in zip(durable, outcomes, strict=True):
            if isinstance(outcome, KafkaError):
                failed = True
                result.error_code = outcome.code
                result.error_message = outcome.message
                result.base_offset = -1
    if acks == 0:
        if failed:
            raise ConnectionClosed("a produce with acks=0 failed")
        return None
    return Response(responses=topics)
