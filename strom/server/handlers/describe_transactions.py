"""DescribeTransactions (API key 65): the state of transactional ids (KIP-664).

Versions served: 0 (the only one).

Per id: its state by Kafka's names (Empty, Ongoing, PrepareCommit, ...), timeout, when the open transaction
started (-1 when none), producer id and epoch, and the partitions in the transaction. An unknown id answers
TRANSACTIONAL_ID_NOT_FOUND; one this broker does not coordinate NOT_COORDINATOR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import KafkaError
from strom.protocol.messages import describe_transactions as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 0)

Response = schema.DescribeTransactionsResponse
TransactionState = schema.DescribeTransactionsResponse.TransactionState
TopicData = schema.DescribeTransactionsResponse.TopicData


async def handle(ctx: RequestContext, request: schema.DescribeTransactionsRequest) -> Response:
    described = []
    for transactional_id in request.transactional_ids:
        try:
            txn = ctx.broker.transactions.describe(transactional_id)
        except KafkaError as exc:
            described.append(TransactionState(error_code=exc.code, transactional_id=transactional_id))
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(txn.partitions):
            by_topic.setdefault(topic, []).append(partition)
        described.append(
            TransactionState(
                transactional_id=transactional_id,
                transaction_state=txn.state.display_name,
                transaction_timeout_ms=txn.timeout_ms,
                transaction_start_time_ms=txn.start_timestamp,
                producer_id=txn.producer_id,
                producer_epoch=txn.producer_epoch,
                topics=[TopicData(topic, partitions) for topic, partitions in by_topic.items()],
            )
        )
    return Response(transaction_states=described)
