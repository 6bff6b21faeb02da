"""LeaveGroup (API key 13): members leave a group, which then rebalances without them.

Versions served: 0-5.
- v0: one member id.
- v1: throttle time.
- v2: same as v1.
- v3: a batch of members, each by member id and/or group.instance.id, each with its own error; an admin
  may remove a static member by instance id alone (KIP-345).
- v4: flexible versions.
- v5: a reason per member (KIP-800).

Before v3 the one member's error is the response's error, as Kafka answers older clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import leave_group as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)

Response = schema.LeaveGroupResponse
MemberIdentity = schema.LeaveGroupRequest.MemberIdentity


async def handle(ctx: RequestContext, request: schema.LeaveGroupRequest) -> Response:
    version = ctx.api_version
    members = request.members if version >= 3 else [MemberIdentity(member_id=request.member_id)]
    response = ctx.broker.groups.leave_group(request.group_id, members)
    if version >= 3:
        return response
    error = response.error_code or next((m.error_code for m in response.members if m.error_code), 0)
    return Response(error_code=error)
