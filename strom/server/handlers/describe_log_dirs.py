"""DescribeLogDirs (API key 35): the log directory, and the size of each partition in it.

Versions served: 0-4.
- v1: same as v0.
- v2: flexible versions.
- v3: top-level error code.
- v4: total and usable bytes of the directory's file system (KIP-827).

A null topic list asks for every partition; an empty one for none.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from typing import TYPE_CHECKING

from strom.protocol.messages import describe_log_dirs as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

Response = schema.DescribeLogDirsResponse
DirResult = schema.DescribeLogDirsResponse.DescribeLogDirsResult
TopicResult = schema.DescribeLogDirsResponse.DescribeLogDirsTopic
PartitionResult = schema.DescribeLogDirsResponse.DescribeLogDirsPartition


async def handle(ctx: RequestContext, request: schema.DescribeLogDirsRequest) -> Response:
    broker = ctx.broker
    wanted: set[tuple[str, int]] | None = None
    if request.topics is not None:
        wanted = {(t.topic, p) for t in request.topics for p in t.partitions}
    sizes: dict[str, list[PartitionResult]] = defaultdict(list)
    for log in broker.logs.logs():
        if wanted is None or (log.topic, log.partition) in wanted:
            sizes[log.topic].append(
                PartitionResult(partition_index=log.partition, partition_size=log.size_bytes(), offset_lag=0)
            )
    usage = shutil.disk_usage(broker.log_dir)
    result = DirResult(
        log_dir=str(broker.log_dir),
        topics=[
            TopicResult(name=name, partitions=sorted(parts, key=lambda p: p.partition_index))
            for name, parts in sorted(sizes.items())
        ],
        total_bytes=usage.total,
        usable_bytes=usage.free,
    )
    return Response(results=[result])
