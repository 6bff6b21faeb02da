"""ListTransactions (API key 66): the transactional ids this broker coordinates (KIP-664).

Versions served: 0-1.
- v0: filters by state and by producer id (an empty filter matches everything).
- v1: a duration filter: only transactions open for at least that many milliseconds (KIP-994).

State names the broker does not know come back in ``unknown_state_filters``, as from Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.coordinator.transaction import TxnState
from strom.protocol.errors import KafkaError
from strom.protocol.messages import list_transactions as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 1)

Response = schema.ListTransactionsResponse
TransactionState = schema.ListTransactionsResponse.TransactionState


async def handle(ctx: RequestContext, request: schema.ListTransactionsRequest) -> Response:
    states: list[TxnState] = []
    unknown: list[str] = []
    for name in request.state_filters:
        state = TxnState.from_display_name(name)
        if state is None:
            unknown.append(name)
        else:
            states.append(state)
    if unknown and not states:
        return Response(unknown_state_filters=unknown)  # only unknown states: nothing can match
    try:
        listed = ctx.broker.transactions.list_transactions(
            states, request.producer_id_filters, request.duration_filter
        )
    except KafkaError as exc:
        return Response(error_code=exc.code)
    return Response(
        unknown_state_filters=unknown,
        transaction_states=[
            TransactionState(txn.transactional_id, txn.producer_id, txn.state.display_name) for txn in listed
        ],
    )
