"""DescribeLogDirs (API key 35): each log directory (log.dirs), and the size of each partition in it.

Versions served: 0-4.
- v1: same as v0.
- v2: flexible versions.
- v3: top-level error code.
- v4: total and usable bytes of the directory's file system (KIP-827).

A null topic list asks for every partition; an empty one for none. A directory whose last write failed (a full
disk, say) reports KAFKA_STORAGE_ERROR, as Kafka reports an offline directory; unlike Kafka's, its partitions
keep serving reads and take writes again once space returns, so they are still listed with their sizes.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_log_dirs as schema

if TYPE_CHECKING:
    from strom.server.dispatch import RequestContext

VERSIONS = (0, 4)

Response = schema.DescribeLogDirsResponse
DirResult = schema.DescribeLogDirsResponse.DescribeLogDirsResult
TopicResult = schema.DescribeLogDirsResponse.DescribeLogDirsTopic
PartitionResult = schema.DescribeLogDirsResponse.DescribeLogDirsPartition


async def handle(ctx: RequestContext, request: schema.DescribeLogDirsRequest) -> Response:
    wanted: set[tuple[str, int]] | None = None
    if request.topics is not None:
        wanted = {(t.topic, p) for t in request.topics for p in t.partitions}
    results = []
    for log_dir, logs in ctx.broker.logs.logs_by_dir():
        sizes: dict[str, list[PartitionResult]] = defaultdict(list)
        for log in logs:
            if wanted is None or (log.topic, log.partition) in wanted:
                sizes[log.topic].append(
                    PartitionResult(
                        partition_index=log.partition, partition_size=log.size_bytes(), offset_lag=0
                    )
                )
        result = DirResult(
            error_code=ErrorCode.KAFKA_STORAGE_ERROR if log_dir.error else ErrorCode.NONE,
            log_dir=str(log_dir.path),
            topics=[
                TopicResult(name=name, partitions=sorted(parts, key=lambda p: p.partition_index))
                for name, parts in sorted(sizes.items())
            ],
        )
        try:
            usage = shutil.disk_usage(log_dir.path)
        except OSError:
            result.error_code = ErrorCode.KAFKA_STORAGE_ERROR
        else:
            result.total_bytes, result.usable_bytes = usage.total, usage.free
        results.append(result)
    return Response(results=results)
