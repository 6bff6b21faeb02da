"""Partition log storage: segments of opaque record batches with Kafka's on-disk layout."""

from strom.log.config import LogConfig
from strom.log.manager import LogDirectoryLockedError, LogManager
from strom.log.partition_log import AppendOrigin, AppendResult, PartitionLog, ReadResult
from strom.log.segment import FileRange

__all__ = [
    "AppendOrigin",
    "AppendResult",
    "FileRange",
    "LogConfig",
    "LogDirectoryLockedError",
    "LogManager",
    "PartitionLog",
    "ReadResult",
]
