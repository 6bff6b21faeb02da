"""DeleteGroups (API key 42): delete empty consumer groups and their committed offsets.

Versions served: 1-2 (v0 is gone in Kafka 4).
- v1: same as v0 (throttle time is reported from v1).
- v2: flexible versions.

A group with members is refused with NON_EMPTY_GROUP; an unknown group gets GROUP_ID_NOT_FOUND. Deleting
writes tombstones for the group and each of its offsets to ``__consumer_offsets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import delete_groups as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (1, 2)

Response = schema.DeleteGroupsResponse


async def handle(ctx: RequestContext, request: schema.DeleteGroupsRequest) -> Response:
    names = list(dict.fromkeys(request.groups_names))  # each group once, as Kafka answers
    return Response(results=ctx.broker.groups.delete_groups(names))
