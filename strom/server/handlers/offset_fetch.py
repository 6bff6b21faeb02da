"""OffsetFetch (API key 9): a group's committed offsets.

Versions served: 1-9 (v0, which read offsets from ZooKeeper, is gone in Kafka 4).
- v1: offsets kept by the coordinator.
- v2: a null topic list asks for every partition with an offset; a top-level error code.
- v3: throttle time.
- v4-v5: same as v3; v5 adds the committed leader epoch (KIP-320).
- v6: flexible versions.
- v7: require_stable (KIP-447): wait out pending transactional commits.
- v8: several groups per request, each with its own error (KIP-709).
- v9: member id and epoch of the new protocol (KIP-848).

A partition without a committed offset answers offset -1 and no error, as does an unknown group. Before v2
a group-level error (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR) is reported on every partition.
With require_stable, a partition whose offset is pending in an open transaction answers
UNSTABLE_OFFSET_COMMIT, which clients retry until the transaction ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strom.protocol.messages import offset_fetch as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (1, 9)

Response = schema.OffsetFetchResponse
TopicResponse = schema.OffsetFetchResponse.OffsetFetchResponseTopic
PartitionResponse = schema.OffsetFetchResponse.OffsetFetchResponsePartition


async def handle(ctx: RequestContext, request: schema.OffsetFetchRequest) -> Response:
    coordinator = ctx.broker.groups
    if ctx.api_version >= 8:
        return Response(
            groups=[
                coordinator.fetch_offsets(
                    group.group_id,
                    None if group.topics is None else [(t.name, t.partition_indexes) for t in group.topics],
                    require_stable=request.require_stable,
                )
                for group in request.groups
            ]
        )
    wanted = None if request.topics is None else [(t.name, t.partition_indexes) for t in request.topics]
    result = coordinator.fetch_offsets(request.group_id, wanted, require_stable=request.require_stable)
    if result.error_code and ctx.api_version < 2:
        return Response(
            topics=[
                TopicResponse(name, [PartitionResponse(i, -1, -1, "", result.error_code) for i in indexes])
                for name, indexes in wanted or []
            ]
        )
    return Response(
        error_code=result.error_code,
        topics=[
            TopicResponse(
                t.name,
                [
                    PartitionResponse(
                        p.partition_index,
                        p.committed_offset,
                        p.committed_leader_epoch,
                        p.metadata,
                        p.error_code,
                    )
                    for p in t.partitions
                ],
            )
            for t in result.topics
        ],
    )
