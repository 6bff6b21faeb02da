"""Which leading segments a log may drop: Kafka's deletion rules, as pure functions over the segment list.

Only a prefix of whole segments is ever deleted, and only segments entirely below the high watermark. The
active segment qualifies too (the log rolls a fresh one first), except when it is empty.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from strom.log.segment import LogSegment

Predicate = Callable[[LogSegment, "LogSegment | None"], bool]


def deletable_prefix(
    segments: Sequence[LogSegment], predicate: Predicate, *, high_watermark: int, log_end_offset: int
) -> int:
    """How many leading segments satisfy ``predicate`` (given each segment and its successor)."""
    count = 0
    for position, segment in enumerate(segments):
        successor = segments[position + 1] if position + 1 < len(segments) else None
        upper_bound = successor.base_offset if successor else log_end_offset
        if successor is None and segment.size == 0:
            break
        if high_watermark < upper_bound or not predicate(segment, successor):
            break
        count += 1
    return count


def below_log_start(log_start_offset: int) -> Predicate:
    """Segments whose records all precede the log start offset (moved by DeleteRecords or retention)."""
    return lambda segment, successor: successor is not None and successor.base_offset <= log_start_offset


def older_than(retention_ms: int, now_ms: int) -> Predicate:
    """retention.ms: segments whose newest record is older than the retention time (-1 keeps forever)."""
    if retention_ms < 0:
        return lambda segment, successor: False
    return lambda segment, successor: now_ms - segment.largest_timestamp() > retention_ms


def beyond_size(retention_bytes: int, total_bytes: int) -> Predicate:
    """retention.bytes: the oldest segments whose removal keeps the log at or above the retention size."""
    excess = total_bytes - retention_bytes
    if retention_bytes < 0 or excess <= 0:
        return lambda segment, successor: False

    def predicate(segment: LogSegment, successor: LogSegment | None) -> bool:
        nonlocal excess
        if segment.size > excess:
            return False
        excess -= segment.size
        return True

    return predicate
