"""SyncGroup (API key 14): the leader hands in the group's assignment; every member gets its own part.

Versions served: 0-5.
- v0: the assignment of this generation.
- v1: throttle time.
- v2: same as v1.
- v3: group.instance.id (KIP-345).
- v4: flexible versions.
- v5: protocol type and name in request and response, checked against the group's (KIP-559).

A follower's request is parked until the leader's brings the assignment and it has been stored in
``__consumer_offsets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import sync_group as schema
from strom.server.waiters import answered_later

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)

Response = schema.SyncGroupResponse


async def handle(ctx: RequestContext, request: schema.SyncGroupRequest) -> Response:
    return await answered_later(lambda respond: ctx.broker.groups.sync_group(request, respond=respond))
