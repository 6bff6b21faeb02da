"""JoinGroup (API key 11): join a classic consumer group, or rejoin it for a rebalance.

Versions served: 2-9 (v0-v1 are gone in Kafka 4).
- v2: throttle time (v1 brought the rebalance timeout).
- v3: same as v2.
- v4: a new member without an id gets MEMBER_ID_REQUIRED with its id and joins again with it (KIP-394).
- v5: group.instance.id, static membership (KIP-345).
- v6: flexible versions.
- v7: the protocol type in the response, and a nullable protocol name (KIP-559).
- v8: the client's reason for joining (KIP-800).
- v9: skip_assignment, for a static leader that rejoined without changes (KIP-814).

The request is parked until the group's join phase completes, which blocks only its own connection, as in
Kafka (see `strom.coordinator.group.membership`). A new group waits ``group.initial.rebalance.delay.ms``
for more members first; a single-node Strom defaults that to 0 rather than Kafka's 3000, so a consumer gets
its first messages at once (see `strom.coordinator.group.config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import join_group as schema
from strom.server.waiters import answered_later

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (2, 9)

Response = schema.JoinGroupResponse


async def handle(ctx: RequestContext, request: schema.JoinGroupRequest) -> Response:
    response: Response = await answered_later(
        lambda respond: ctx.broker.groups.join_group(
            request,
            client_id=ctx.header.client_id or "",
            client_host=client_host(ctx),
            api_version=ctx.api_version,
            respond=respond,
        )
    )
    if ctx.api_version < 7 and response.protocol_name is None:
        response.protocol_name = ""
    return response


def client_host(ctx: RequestContext) -> str:
    """The client's address as Kafka shows it in group descriptions ("/127.0.0.1")."""
    host = ctx.connection.peer.rpartition(":")[0] or ctx.connection.peer
    return f"/{host}"
