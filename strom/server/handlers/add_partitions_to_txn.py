"""AddPartitionsToTxn (API key 24): make partitions part of a producer's transaction before it writes there.

Versions served: 0-5.
- v0: transactional id, producer id and epoch, topics and partitions.
- v1: same as v0.
- v2: PRODUCER_FENCED may be answered (KIP-588); older versions get INVALID_PRODUCER_EPOCH instead.
- v3: flexible versions.
- v4: batched: several transactions per request, each with ``verify_only`` (KIP-890 part 1). Brokers send
  these to check that a transactional write belongs to an open transaction: a verify-only transaction
  changes nothing and answers, per partition, NONE or INVALID_TXN_STATE.
- v5: TRANSACTION_ABORTABLE may be answered (KIP-890).

As in Kafka, partitions of unknown topics fail with UNKNOWN_TOPIC_OR_PARTITION and the others of the same
transaction with OPERATION_NOT_ATTEMPTED; otherwise the coordinator's answer applies to every partition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import add_partitions_to_txn as schema
from strom.server.txn_errors import for_version

if TYPE_CHECKING:
    from strom.server.broker import Broker
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)
PRODUCER_FENCED_SINCE = 2

Response = schema.AddPartitionsToTxnResponse
TopicResult = schema.AddPartitionsToTxnTopicResult
PartitionResult = schema.AddPartitionsToTxnPartitionResult
TransactionResult = schema.AddPartitionsToTxnResponse.AddPartitionsToTxnResult


async def handle(ctx: RequestContext, request: schema.AddPartitionsToTxnRequest) -> Response:
    if ctx.api_version < 4:
        results = _add(
            ctx.broker,
            request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
            request.v3_and_below_topics,
            verify_only=False,
        )
        return Response(results_by_topic_v3_and_below=_results(results, ctx.api_version))
    return Response(
        results_by_transaction=[
            TransactionResult(
                transactional_id=txn.transactional_id,
                topic_results=_results(
                    _add(
                        ctx.broker,
                        txn.transactional_id,
                        txn.producer_id,
                        txn.producer_epoch,
                        txn.topics,
                        verify_only=txn.verify_only,
                    ),
                    ctx.api_version,
                ),
            )
            for txn in request.transactions
        ]
    )


def _add(
    broker: Broker,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    topics: list[schema.AddPartitionsToTxnTopic],
    *,
    verify_only: bool,
) -> dict[tuple[str, int], ErrorCode]:
    """The error of each requested partition."""
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    unknown = {tp for tp in wanted if broker.leader_epoch(*tp) < 0}
    if unknown:
        return {
            tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if tp in unknown else ErrorCode.OPERATION_NOT_ATTEMPTED
            for tp in wanted
        }
    transactions = broker.transactions
    try:
        if verify_only:
            return transactions.verify_partitions(transactional_id, producer_id, producer_epoch, wanted)
        transactions.add_partitions(transactional_id, producer_id, producer_epoch, wanted)
    except KafkaError as exc:
        return dict.fromkeys(wanted, exc.code)
    return dict.fromkeys(wanted, ErrorCode.NONE)


def _results(errors: dict[tuple[str, int], ErrorCode], api_version: int) -> list[TopicResult]:
    by_topic: dict[str, list[PartitionResult]] = {}
    for (topic, partition), error in errors.items():
        code = for_version(error, api_version, PRODUCER_FENCED_SINCE)
        by_topic.setdefault(topic, []).append(PartitionResult(partition, code))
    return [TopicResult(name, partitions) for name, partitions in by_topic.items()]
