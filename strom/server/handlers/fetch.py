"""Fetch (API key 1): read record batches, long-polling until `min_bytes` arrive or `max_wait_ms` passes.

Versions served: 4-17.
- v4: isolation level and last stable offset, aborted transactions.
- v5: log start offset in the response.
- v6: same as v5.
- v7: fetch sessions (KIP-227); Strom answers session id 0, which tells clients to send full fetches.
- v8: same as v7.
- v9: current leader epoch per partition (KIP-320).
- v10: same as v9 (zstd).
- v11: rack id, preferred read replica (KIP-392).
- v12: flexible versions; diverging epoch, current leader, snapshot id tagged fields.
- v13: topic ids instead of names (KIP-516).
- v14: same as v13.
- v15: replica state replaces replica id (KIP-903).
- v16: node endpoints tagged field (KIP-951).
- v17: replica directory id (KIP-853).

Records leave as file ranges sent with sendfile; nothing here touches record bytes. A read_committed fetch
(isolation level 1) stops at the last stable offset and lists the aborted transactions with data in the
returned range, whose records the client drops (Kafka's protocol: the broker never filters them out).

Limits follow Kafka (KIP-74): each partition gets at most min(partition_max_bytes, what is left of
max_bytes), and the first batch of the first partition that has data is returned whole even when it is
larger than those limits, so a consumer can always make progress.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import fetch as schema

if TYPE_CHECKING:
    from strom.server.broker import Broker
    from strom.server.dispatch import RequestContext

VERSIONS = (4, 17)

Response = schema.FetchResponse
TopicResponse = schema.FetchResponse.FetchableTopicResponse
PartitionData = schema.FetchResponse.PartitionData
AbortedTransaction = schema.FetchResponse.AbortedTransaction

READ_COMMITTED = 1


async def handle(ctx: RequestContext, request: schema.FetchRequest) -> Response:
    broker = ctx.broker
    if request.session_id != 0 or request.session_epoch not in (-1, 0):
        # Strom never hands out fetch sessions, so a client can't hold one.
        return Response(error_code=ErrorCode.FETCH_SESSION_ID_NOT_FOUND, session_id=0)
    use_ids = ctx.api_version >= 13
    deadline = time.monotonic() + max(request.max_wait_ms, 0) / 1000
    while True:
        response, total_bytes, has_error = _read(broker, request, use_ids)
        remaining = deadline - time.monotonic()
        if total_bytes >= request.min_bytes or has_error or remaining <= 0:
            return response
        partitions = [
            (broker.topic_name(topic.topic_id) if use_ids else topic.topic, p.partition)
            for topic in request.topics
            for p in topic.partitions
        ]
        await broker.wait_for_append(partitions, remaining)


def _read(broker: Broker, request: schema.FetchRequest, use_ids: bool) -> tuple[Response, int, bool]:
    limit = request.max_bytes
    min_one_batch = True
    committed_only = request.isolation_level == READ_COMMITTED
    total = 0
    has_error = False
    topics: list[TopicResponse] = []
    for topic in request.topics:
        name = broker.topic_name(topic.topic_id) if use_ids else topic.topic
        partitions: list[PartitionData] = []
        for p in topic.partitions:
            out = PartitionData(partition_index=p.partition, records=b"")
            try:
                if name is None:
                    raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID)
                log = broker.leader_log(name, p.partition, p.current_leader_epoch)
                stable = log.last_stable_offset
                out.high_watermark = log.high_watermark
                out.last_stable_offset = stable
                out.log_start_offset = log.log_start_offset
                max_bytes = min(p.partition_max_bytes, limit - total)
                if max_bytes > 0 or min_one_batch:
                    read = log.read(
                        p.fetch_offset,
                        max(max_bytes, 0),
                        max_offset=stable if committed_only else log.high_watermark,
                        min_one_batch=min_one_batch,
                    )
                    if read.records is not None and read.size:
                        out.records = read.records
                        total += read.size
                        min_one_batch = False
                    if committed_only:
                        out.aborted_transactions = [
                            AbortedTransaction(txn.producer_id, txn.first_offset)
                            for txn in log.aborted_transactions(p.fetch_offset, read)
                        ]
            except KafkaError as exc:
                out.error_code = exc.code
                has_error = True
            partitions.append(out)
        topics.append(TopicResponse(topic=topic.topic, topic_id=topic.topic_id, partitions=partitions))
    return Response(error_code=ErrorCode.NONE, session_id=0, responses=topics), total, has_error
