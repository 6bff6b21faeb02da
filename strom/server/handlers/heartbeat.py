"""Heartbeat (API key 12): a member tells its coordinator it is alive, and learns of rebalances.

Versions served: 0-4.
- v0: group, generation and member id.
- v1: throttle time.
- v2: same as v1.
- v3: group.instance.id (KIP-345).
- v4: flexible versions.

REBALANCE_IN_PROGRESS tells a member to rejoin; ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID and
FENCED_INSTANCE_ID tell it that it is no longer part of the current generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import heartbeat as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

Response = schema.HeartbeatResponse


async def handle(ctx: RequestContext, request: schema.HeartbeatRequest) -> Response:
    return Response(error_code=ctx.broker.groups.heartbeat(request))
