"""ListGroups (API key 16): the consumer groups this broker coordinates.

Versions served: 0-5.
- v0: group ids and protocol types.
- v1: throttle time.
- v2: same as v1.
- v3: flexible versions.
- v4: filter by state, and each group's state (KIP-518).
- v5: filter by type, and each group's type (KIP-848): "classic", or "consumer" for groups of the
  consumer group protocol (ConsumerGroupHeartbeat), whose protocol type is "consumer" too.

Filters compare case-insensitively, as in Kafka. While ``__consumer_offsets`` is still loading the answer
is COORDINATOR_LOAD_IN_PROGRESS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import list_groups as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)

Response = schema.ListGroupsResponse


async def handle(ctx: RequestContext, request: schema.ListGroupsRequest) -> Response:
    error, groups = ctx.broker.groups.list_groups(request.states_filter, request.types_filter)
    return Response(error_code=error, groups=groups)
