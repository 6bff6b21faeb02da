"""FindCoordinator (API key 10): which broker coordinates a consumer group (or a transactional id).

Versions served: 1-6 (v0 is gone in Kafka 4).
- v1: key type (0 group, 1 transaction), throttle time and an error message.
- v2: same as v1.
- v3: flexible versions.
- v4: several keys per request, one result each (KIP-699).
- v5: same as v4 (TRANSACTION_ABORTABLE for transactional clients, KIP-890).
- v6: key type 2, share groups (KIP-932).

A group's coordinator is the leader of the group's partition of ``__consumer_offsets``, a transactional
id's the leader of its partition of ``__transaction_state``; the first lookup creates the topic, as Kafka
does (see `strom.coordinator.internal_topic`). Share groups are not served, so they get INVALID_REQUEST as
from a Kafka broker without them, and so does an unknown key type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import find_coordinator as schema

if TYPE_CHECKING:
    from strom.metadata.image import BrokerImage
    from strom.server.broker import Broker
    from strom.server.dispatch import RequestContext

VERSIONS = (1, 6)

GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1

Response = schema.FindCoordinatorResponse
Coordinator = schema.FindCoordinatorResponse.Coordinator


async def handle(ctx: RequestContext, request: schema.FindCoordinatorRequest) -> Response:
    broker = ctx.broker
    if ctx.api_version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            error, node = _find(broker, request.key_type, key)
            coordinators.append(
                Coordinator(
                    key=key,
                    node_id=node.node_id if node else -1,
                    host=node.host if node else "",
                    port=node.port if node else -1,
                    error_code=error,
                )
            )
        return Response(coordinators=coordinators)
    error, node = _find(broker, request.key_type, request.key)
    return Response(
        error_code=error,
        error_message=error.message if error else error.name,  # Kafka sends "NONE" on success
        node_id=node.node_id if node else -1,
        host=node.host if node else "",
        port=node.port if node else -1,
    )


def _find(broker: Broker, key_type: int, key: str) -> tuple[ErrorCode, BrokerImage | None]:
    if key_type == GROUP_KEY_TYPE:
        node = broker.offsets_topic.coordinator_node(key)
    elif key_type == TRANSACTION_KEY_TYPE:
        node = broker.transaction_state_topic.coordinator_node(key)
    else:
        return ErrorCode.INVALID_REQUEST, None
    return (ErrorCode.NONE, node) if node is not None else (ErrorCode.COORDINATOR_NOT_AVAILABLE, None)
