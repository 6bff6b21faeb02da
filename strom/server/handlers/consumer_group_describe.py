"""ConsumerGroupDescribe (API key 69): state, epochs, assignor and members of consumer-protocol groups.

Versions served: 0.
- v0: group state and epochs, the assignor, and each member's client, subscription, current assignment and
  target assignment.

A group that does not exist, or is a classic group, is answered with GROUP_ID_NOT_FOUND, as Kafka does.
Strom has no authorizer, so every client may do every group operation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import consumer_group_describe as schema
from strom.server.handlers.describe_groups import ALL_GROUP_OPERATIONS

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 0)

Response = schema.ConsumerGroupDescribeResponse


async def handle(ctx: RequestContext, request: schema.ConsumerGroupDescribeRequest) -> Response:
    groups = ctx.broker.groups.consumer_group_describe(request.group_ids)
    if request.include_authorized_operations:
        for group in groups:
            if group.error_code == ErrorCode.NONE:
                group.authorized_operations = ALL_GROUP_OPERATIONS
    return Response(groups=groups)
