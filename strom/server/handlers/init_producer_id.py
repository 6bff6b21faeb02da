"""InitProducerId (API key 22): a producer id and epoch for an idempotent or transactional producer.

Versions served: 0-5 (all that Kafka 4 serves).
- v0: transactional id and transaction timeout in; producer id and epoch out.
- v1: same as v0.
- v2: flexible versions.
- v3: the producer's current id and epoch, so a producer can recover by bumping its epoch (KIP-360).
- v4: PRODUCER_FENCED may be answered (KIP-588); older versions get INVALID_PRODUCER_EPOCH instead.
- v5: TRANSACTION_ABORTABLE may be answered (KIP-890).

Without a transactional id Kafka ignores any id and epoch in the request and always hands out a fresh producer
id with epoch 0 (an idempotent producer bumps its epoch itself, KIP-360); so does this broker, from blocks the
metadata controller allocates durably (`strom.coordinator.producer_ids`). With one, the transaction
coordinator answers: the id's producer id with a bumped epoch, fencing the previous producer and aborting its
open transaction. An empty transactional id is INVALID_REQUEST, as in Kafka.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.coordinator.transaction import ProducerIdAndEpoch
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import init_producer_id as schema
from strom.server.txn_errors import for_version

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)
PRODUCER_FENCED_SINCE = 4

Response = schema.InitProducerIdResponse


async def handle(ctx: RequestContext, request: schema.InitProducerIdRequest) -> Response:
    transactional_id = request.transactional_id
    if transactional_id == "":
        return Response(error_code=ErrorCode.INVALID_REQUEST, producer_epoch=-1)
    try:
        if transactional_id is None:
            return Response(producer_id=ctx.broker.producer_ids.next_id(), producer_epoch=0)
        expected = None
        if request.producer_id >= 0:
            expected = ProducerIdAndEpoch(request.producer_id, request.producer_epoch)
        granted = ctx.broker.transactions.init_producer_id(
            transactional_id, request.transaction_timeout_ms, expected
        )
    except KafkaError as exc:
        error = for_version(exc.code, ctx.api_version, PRODUCER_FENCED_SINCE)
        return Response(error_code=error, producer_epoch=-1)
    return Response(producer_id=granted.producer_id, producer_epoch=granted.producer_epoch)
