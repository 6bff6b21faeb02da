"""EndTxn (API key 26): commit or abort a producer's transaction.

Versions served: 0-4.
- v0: transactional id, producer id and epoch, commit or abort.
- v1: same as v0.
- v2: PRODUCER_FENCED may be answered (KIP-588); older versions get INVALID_PRODUCER_EPOCH instead.
- v3: flexible versions.
- v4: TRANSACTION_ABORTABLE may be answered (KIP-890).
v5 (a new epoch for every transaction, KIP-890 part 2) belongs to transaction version 2, which this broker
does not offer, so clients keep to v4 as with a Kafka broker where it is not enabled.

The answer comes once the markers are written (see `strom.coordinator.transaction.coordinator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import KafkaError
from strom.protocol.messages import end_txn as schema
from strom.server.txn_errors import for_version

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)
PRODUCER_FENCED_SINCE = 2

Response = schema.EndTxnResponse


async def handle(ctx: RequestContext, request: schema.EndTxnRequest) -> Response:
    try:
        ctx.broker.transactions.end_transaction(
            request.transactional_id, request.producer_id, request.producer_epoch, request.committed
        )
    except KafkaError as exc:
        return Response(error_code=for_version(exc.code, ctx.api_version, PRODUCER_FENCED_SINCE))
    return Response()
