"""ConsumerGroupHeartbeat (API key 68): a member of a consumer-protocol group (KIP-848) joins, heartbeats,
reconciles its assignment and leaves.

Versions served: 0-1.
- v0: member epoch, subscription by topic names, owned partitions, server assignor; the coordinator may
  generate the member id on join.
- v1: subscription by regular expression (refused here with INVALID_REQUEST), and the client always
  generates its member id (KIP-1082).

The coordinator answers every error in the response (error code and message), as Kafka does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import consumer_group_heartbeat as schema
from strom.server.handlers.join_group import client_host

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 1)

Response = schema.ConsumerGroupHeartbeatResponse


async def handle(ctx: RequestContext, request: schema.ConsumerGroupHeartbeatRequest) -> Response:
    return ctx.broker.groups.consumer_group_heartbeat(
        request,
        client_id=ctx.header.client_id or "",
        client_host=client_host(ctx),
        api_version=ctx.api_version,
    )
