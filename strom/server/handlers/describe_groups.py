"""DescribeGroups (API key 15): state, protocol and members of consumer groups.

Versions served: 0-5.
- v0: state, protocol type and data (the assignor) and members with their metadata and assignment.
- v1: throttle time.
- v2: same as v1.
- v3: the authorized operations, when asked for (KIP-430).
- v4: members' group.instance.id (KIP-345).
- v5: flexible versions.

A group that does not exist is described as Dead with no error, as Kafka does, and so is a group of the
consumer group protocol (ConsumerGroupDescribe describes those). Members' metadata and
assignments are only shown while the group is Stable. Strom has no authorizer, so every client may do
every group operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_groups as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 5)

#: READ, DELETE and DESCRIBE: the operations Kafka's ACLs know for groups.
ALL_GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8))

Response = schema.DescribeGroupsResponse


async def handle(ctx: RequestContext, request: schema.DescribeGroupsRequest) -> Response:
    groups = ctx.broker.groups.describe_groups(request.groups)
    if ctx.api_version >= 3 and request.include_authorized_operations:
        for group in groups:
            if group.error_code == ErrorCode.NONE:
                group.authorized_operations = ALL_GROUP_OPERATIONS
    return Response(groups=groups)
