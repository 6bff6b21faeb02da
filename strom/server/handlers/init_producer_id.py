"""InitProducerId (API key 22): a producer id and epoch for an idempotent producer.

Versions served: 0-5 (all that Kafka 4 serves).
- v0: transactional id and transaction timeout in; producer id and epoch out.
- v1: same as v0.
- v2: flexible versions.
- v3: the producer's current id and epoch, so a transactional producer can bump its epoch (KIP-360).
- v4: PRODUCER_FENCED may be answered (KIP-588).
- v5: TRANSACTION_ABORTABLE may be answered (KIP-890).

Without a transactional id Kafka ignores any id and epoch in the request and always hands out a fresh producer
id with epoch 0 (an idempotent producer bumps its epoch itself, KIP-360); so does this broker, from blocks the
metadata controller allocates durably (`strom.coordinator.producer_ids`). An empty transactional id is
INVALID_REQUEST, as in Kafka. Transactions are not served yet, so any other transactional id gets the
retriable COORDINATOR_NOT_AVAILABLE, matching what FindCoordinator says for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import init_producer_id as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)

Response = schema.InitProducerIdResponse


async def handle(ctx: RequestContext, request: schema.InitProducerIdRequest) -> Response:
    transactional_id = request.transactional_id
    if transactional_id == "":
        return Response(error_code=ErrorCode.INVALID_REQUEST, producer_epoch=-1)
    if transactional_id is not None:
        return Response(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE, producer_epoch=-1)
    try:
        producer_id = ctx.broker.producer_ids.next_id()
    except KafkaError as exc:
        return Response(error_code=exc.code, producer_epoch=-1)
    return Response(producer_id=producer_id, producer_epoch=0)
