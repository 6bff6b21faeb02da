"""AddOffsetsToTxn (API key 25): make a group's offsets part of a producer's transaction.

Versions served: 0-4.
- v0: transactional id, producer id and epoch, group id.
- v1: same as v0.
- v2: PRODUCER_FENCED may be answered (KIP-588); older versions get INVALID_PRODUCER_EPOCH instead.
- v3: flexible versions.
- v4: TRANSACTION_ABORTABLE may be answered (KIP-890).

As in Kafka, the group's partition of ``__consumer_offsets`` joins the transaction, so its marker is written
there and the producer's TxnOffsetCommit offsets (sent to the group coordinator next) count only on commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import add_offsets_to_txn as schema
from strom.server.txn_errors import for_version

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)
PRODUCER_FENCED_SINCE = 2

Response = schema.AddOffsetsToTxnResponse


async def handle(ctx: RequestContext, request: schema.AddOffsetsToTxnRequest) -> Response:
    broker = ctx.broker
    try:
        if not broker.offsets_topic.ensure_exists():
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        partition = (broker.offsets_topic.name, broker.groups.partition_for(request.group_id))
        broker.transactions.add_partitions(
            request.transactional_id, request.producer_id, request.producer_epoch, [partition]
        )
    except KafkaError as exc:
        return Response(error_code=for_version(exc.code, ctx.api_version, PRODUCER_FENCED_SINCE))
    return Response()
