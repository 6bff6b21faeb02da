"""Per-topic log settings: Kafka's topic-config names, defaults and validation rules."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from strom.protocol.errors import ErrorCode, KafkaError

LONG_MAX = 9223372036854775807
INT_MAX = 2147483647

_Number = TypeVar("_Number", int, float)

CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"
CLEANUP_DELETE = "delete"
CLEANUP_COMPACT = "compact"

# Kafka raised the floor of segment.bytes to 1 MiB; "internal.segment.bytes" bypasses it (for tests).
MIN_SEGMENT_BYTES = 1024 * 1024
INTERNAL_SEGMENT_BYTES = "internal.segment.bytes"


@dataclass(slots=True)
class LogConfig:
    """Settings a PartitionLog obeys; field names mirror the Kafka topic configs (``segment.bytes`` ...)."""

    segment_bytes: int = 1073741824
    segment_ms: int = 604800000
    retention_ms: int = 604800000
    retention_bytes: int = -1
    index_interval_bytes: int = 4096
    segment_index_bytes: int = 10485760
    max_message_bytes: int = 1048588
    message_timestamp_type: str = CREATE_TIME
    flush_interval_messages: int = LONG_MAX
    flush_interval_ms: int = LONG_MAX
    file_delete_delay_ms: int = 60000
    cleanup_policy: str = CLEANUP_DELETE
    delete_retention_ms: int = 86400000
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = LONG_MAX

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == LOG_APPEND_TIME

    @property
    def deletes_old_segments(self) -> bool:
        """Whether retention.ms / retention.bytes apply ("delete" in cleanup.policy)."""
        return CLEANUP_DELETE in self.cleanup_policy.split(",")

    @property
    def compacts(self) -> bool:
        """Whether the log cleaner keeps only the latest record per key ("compact" in cleanup.policy)."""
        return CLEANUP_COMPACT in self.cleanup_policy.split(",")

    @property
    def max_segment_ms(self) -> int:
        """How long a segment may stay active: a compacted log rolls by max.compaction.lag.ms too, since
        the cleaner never touches the active segment (Kafka's LogConfig.maxSegmentMs)."""
        if self.compacts:
            return min(self.segment_ms, self.max_compaction_lag_ms)
        return self.segment_ms

    @classmethod
    def from_properties(cls, props: Mapping[str, str], base: LogConfig | None = None) -> LogConfig:
        """Build a config from Kafka topic-config names, on top of ``base`` (or Kafka's defaults).

        Keys this class does not model (compression.type, min.insync.replicas ...) are ignored: other layers
        own them. A bad value raises KafkaError(INVALID_CONFIG), as CreateTopics / AlterConfigs report it.
        """
        values: dict[str, Any] = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        for name, (attr, parse) in _PROPERTIES.items():
            if name in props:
                values[attr] = _parse(name, props[name], parse)
        if INTERNAL_SEGMENT_BYTES in props:
            values["segment_bytes"] = _parse(
                INTERNAL_SEGMENT_BYTES, props[INTERNAL_SEGMENT_BYTES], _int(1, INT_MAX)
            )
        if values["min_compaction_lag_ms"] > values["max_compaction_lag_ms"]:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                f"conflict topic config setting min.compaction.lag.ms ({values['min_compaction_lag_ms']}) > "
                f"max.compaction.lag.ms ({values['max_compaction_lag_ms']})",
            )
        return cls(**values)

    def to_properties(self) -> dict[str, str]:
        """The Kafka topic-config view of this config (for DescribeConfigs)."""
        return {name: str(getattr(self, attr)) for name, (attr, _) in _PROPERTIES.items()}


def _parse(name: str, raw: str, parse: Callable[[str], Any]) -> Any:
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise KafkaError(
            ErrorCode.INVALID_CONFIG, f"Invalid value {raw} for configuration {name}: {exc}"
        ) from exc


def _in_range(convert: Callable[[str], _Number], low: _Number, high: _Number) -> Callable[[str], _Number]:
    """A parser of numbers between ``low`` and ``high``, with Kafka's ConfigDef.Range messages."""

    def parse(raw: str) -> _Number:
        value = convert(raw)
        if value < low:
            raise ValueError(f"Value must be at least {low}")
        if value > high:
            raise ValueError(f"Value must be no more than {high}")
        return value

    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    return _in_range(int, low, high)


def _float(low: float, high: float) -> Callable[[str], float]:
    return _in_range(float, low, high)


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"String must be one of: {', '.join(choices)}")
        return raw

    return parse


def _cleanup_policy(raw: str) -> str:
    policies = [item.strip() for item in raw.split(",") if item.strip()]
    if not policies or any(p not in (CLEANUP_DELETE, CLEANUP_COMPACT) for p in policies):
        raise ValueError(f"Invalid value {raw} for configuration cleanup.policy")
    return ",".join(sorted(set(policies), key=policies.index))


_PROPERTIES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "segment.bytes": ("segment_bytes", _int(MIN_SEGMENT_BYTES, INT_MAX)),
    "segment.ms": ("segment_ms", _int(1, LONG_MAX)),
    "retention.ms": ("retention_ms", _int(-1, LONG_MAX)),
    "retention.bytes": ("retention_bytes", _int(-LONG_MAX - 1, LONG_MAX)),
    "index.interval.bytes": ("index_interval_bytes", _int(0, INT_MAX)),
    "segment.index.bytes": ("segment_index_bytes", _int(4, INT_MAX)),
    "max.message.bytes": ("max_message_bytes", _int(0, INT_MAX)),
    "message.timestamp.type": ("message_timestamp_type", _one_of(CREATE_TIME, LOG_APPEND_TIME)),
    "flush.messages": ("flush_interval_messages", _int(1, LONG_MAX)),
    "flush.ms": ("flush_interval_ms", _int(0, LONG_MAX)),
    "file.delete.delay.ms": ("file_delete_delay_ms", _int(0, LONG_MAX)),
    "cleanup.policy": ("cleanup_policy", _cleanup_policy),
    "delete.retention.ms": ("delete_retention_ms", _int(0, LONG_MAX)),
    "min.cleanable.dirty.ratio": ("min_cleanable_dirty_ratio", _float(0.0, 1.0)),
    "min.compaction.lag.ms": ("min_compaction_lag_ms", _int(0, LONG_MAX)),
    "max.compaction.lag.ms": ("max_compaction_lag_ms", _int(1, LONG_MAX)),
}
