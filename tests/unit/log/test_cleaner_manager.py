"""LogCleaner scheduling: the cleanable section and dirty ratio, which log is picked, the worker process, the
cleaner-offset-checkpoint, delete horizons."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, range_bytes

from strom.log import LogConfig, PartitionLog
from strom.log.checkpoint import read_checkpoint
from strom.log.cleaner import CLEANER_OFFSET_CHECKPOINT, CleanerConfig, LogCleaner
from strom.log.cleaner.manager import cleanable_section, first_dirty_offset, needs_cleaning
from strom.log.partition_log import CleanerView, SegmentSummary
from strom.protocol.record_batch import Record, build_batch, decode_batch

COMPACT = LogConfig(
    segment_bytes=2048, index_interval_bytes=128, file_delete_delay_ms=0, cleanup_policy="compact"
)


def summary(base: int, end: int, size: int = 100, largest: int = 0, first: int = 0) -> SegmentSummary:
    return SegmentSummary(base, Path(f"{base:020d}.log"), size, end, end, largest, first)


def view(segments: list[SegmentSummary], *, lso: int | None = None, start: int = 0) -> CleanerView:
    active = segments[-1].end_offset if segments else 0
    return CleanerView(tuple(segments), active, start, active + 10, active + 10 if lso is None else lso, 0)


SEGMENTS = [summary(0, 10), summary(10, 20), summary(20, 30), summary(30, 40)]


def test_the_cleanable_section_ends_at_the_active_segment() -> None:
    section = cleanable_section(view(SEGMENTS), COMPACT, 20, now_ms=0)
    assert section.end_offset == 40 and len(section.segments) == 4
    assert (section.clean_bytes, section.dirty_bytes, section.first_dirty_offset) == (200, 200, 20)
    assert section.dirty_ratio == 0.5


def test_the_cleanable_section_ends_before_the_last_stable_offset() -> None:
    section = cleanable_section(view(SEGMENTS, lso=25), COMPACT, 0, now_ms=0)
    assert section.end_offset == 20  # the segment holding the LSO stays: only whole segments are cleaned
    assert [s.base_offset for s in section.segments] == [0, 10]


def test_min_compaction_lag_keeps_recent_segments_out() -> None:
    config = LogConfig(cleanup_policy="compact", min_compaction_lag_ms=1000)
    segments = [summary(0, 10, largest=100), summary(10, 20, largest=5000), summary(20, 30, largest=100)]
    section = cleanable_section(view(segments), config, 0, now_ms=5500)
    assert section.end_offset == 10


def test_max_compaction_lag_forces_cleaning_below_the_ratio() -> None:
    config = LogConfig(cleanup_policy="compact", max_compaction_lag_ms=1000, min_cleanable_dirty_ratio=0.9)
    segments = [summary(0, 10, first=100), summary(10, 20, first=200)]
    assert not needs_cleaning(cleanable_section(view(segments), config, 10, now_ms=1000), config)
    section = cleanable_section(view(segments), config, 10, now_ms=1300)
    assert section.max_lag_exceeded and needs_cleaning(section, config)


def test_dirty_ratio_threshold_is_kafkas_strict_comparison() -> None:
    config = LogConfig(cleanup_policy="compact", min_cleanable_dirty_ratio=0.5)
    assert not needs_cleaning(cleanable_section(view(SEGMENTS), config, 20, now_ms=0), config)
    assert needs_cleaning(cleanable_section(view(SEGMENTS), config, 10, now_ms=0), config)
    assert not needs_cleaning(cleanable_section(view(SEGMENTS), config, 40, now_ms=0), config)


def test_first_dirty_offset_falls_back_to_the_log_start() -> None:
    log_view = view(SEGMENTS, start=15)
    assert first_dirty_offset(None, log_view) == 15
    assert first_dirty_offset(5, log_view) == 15  # below the log start
    assert first_dirty_offset(10**9, log_view) == 15  # past the log end: the log was truncated
    assert first_dirty_offset(30, log_view) == 30


def test_map_capacity_follows_the_dedupe_buffer() -> None:
    assert CleanerConfig(dedupe_buffer_size=24 * 1000, threads=1).max_map_entries == 900
    assert CleanerConfig(dedupe_buffer_size=24 * 1000, threads=2).max_map_entries == 450
    assert not CleanerConfig(threads=0).enabled and not CleanerConfig(enable=False).enabled


# -- with real logs ----------------------------------------------------------------------------------------


def put(log: PartitionLog, key: bytes, value: bytes | None, timestamp: int = BASE_TIMESTAMP) -> None:
    log.append(memoryview(bytearray(build_batch([Record(0, 0, key, value)], base_timestamp=timestamp))))


def fill(log: PartitionLog, count: int, keys: int = 10) -> dict[bytes, bytes]:
    latest = {}
    for i in range(count):
        key, value = b"k%d" % (i % keys), b"value-%d" % i
        put(log, key, value, BASE_TIMESTAMP + i)
        latest[key] = value
    return latest


def contents(log: PartitionLog) -> dict[bytes | None, bytes | None]:
    """The latest value per key, from a read of the whole log."""
    values: dict[bytes | None, bytes | None] = {}
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = range_bytes(log.read(offset, 1 << 20))
        position = 0
        while position < len(data):
            header, records = decode_batch(memoryview(data)[position:])
            values.update((record.key, record.value) for record in records)
            position += header.total_size
            offset = header.next_offset
    return values


@pytest.fixture
def logs(tmp_path: Path, clock: FakeClock) -> Iterator[dict[str, PartitionLog]]:
    opened = {
        "compacted": PartitionLog(tmp_path / "compacted-0", COMPACT, clock=clock),
        "deleted": PartitionLog(
            tmp_path / "plain-0", LogConfig(segment_bytes=2048, file_delete_delay_ms=0), clock=clock
        ),
    }
    yield opened
    for log in opened.values():
        log.close()


def cleaner_for(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock, **config: object
) -> LogCleaner:
    return LogCleaner(lambda: list(logs.values()), [tmp_path], CleanerConfig(**config), clock=clock)  # type: ignore[arg-type]


def test_clean_now_compacts_and_checkpoints_the_first_dirty_offset(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock
) -> None:
    log = logs["compacted"]
    latest = fill(log, 300)
    size = log.size_bytes()
    cleaner = cleaner_for(tmp_path, logs, clock)

    result = cleaner.clean_now(log)

    assert result is not None and result.records_kept < result.records_read
    assert contents(log) == latest and log.size_bytes() < size / 3
    active_base = log.cleaner_view().active_base_offset
    assert read_checkpoint(tmp_path / CLEANER_OFFSET_CHECKPOINT) == {("compacted", 0): active_base}
    # A new cleaner starts from the checkpoint: nothing is dirty until more is written.
    again = cleaner_for(tmp_path, logs, clock)
    assert again.first_dirty_offsets() == {("compacted", 0): active_base}


def test_checkpoint_entries_follow_the_logs(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock
) -> None:
    log = logs["compacted"]
    fill(log, 300)
    cleaner = cleaner_for(tmp_path, logs, clock, threads=0)
    assert cleaner.clean_now(log) is not None
    fill(log, 300)
    log.delete_records_before(log.log_end_offset - 5)  # the log start passes the checkpointed offset
    cleaner.tick(clock.now_ms)
    assert read_checkpoint(tmp_path / CLEANER_OFFSET_CHECKPOINT) == {("compacted", 0): log.log_start_offset}
    del logs["compacted"]  # the topic is deleted
    log.close()
    cleaner.tick(clock.now_ms)
    assert read_checkpoint(tmp_path / CLEANER_OFFSET_CHECKPOINT) == {}


def test_tick_cleans_in_a_worker_process(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock
) -> None:
    log = logs["compacted"]
    latest = fill(log, 300)
    fill(logs["deleted"], 300)  # "delete" policy: never cleaned
    cleaner = cleaner_for(tmp_path, logs, clock)
    try:
        cleaner.tick(clock.now_ms)
        assert cleaner.running == 1
        wait_until_idle(cleaner, clock.now_ms)
        assert contents(log) == latest
        assert cleaner.first_dirty_offsets() == {("compacted", 0): log.cleaner_view().active_base_offset}
        cleaner.tick(clock.now_ms)
        assert cleaner.running == 0  # nothing dirty is left
    finally:
        cleaner.close()


def test_nothing_to_clean_starts_no_worker(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock
) -> None:
    fill(logs["deleted"], 300)
    fill(logs["compacted"], 300)
    idle = [
        cleaner_for(tmp_path, {"deleted": logs["deleted"]}, clock),
        cleaner_for(tmp_path, logs, clock, threads=0),
    ]
    for cleaner in idle:
        cleaner.tick(clock.now_ms)
        assert cleaner.running == 0 and cleaner._executor is None
        cleaner.close()


def wait_until_idle(cleaner: LogCleaner, now_ms: int) -> None:
    deadline = time.monotonic() + 60
    while cleaner.running and time.monotonic() < deadline:
        time.sleep(0.05)
        cleaner.tick(now_ms)
    assert cleaner.running == 0


def test_a_passed_delete_horizon_makes_the_log_cleanable_again(
    tmp_path: Path, logs: dict[str, PartitionLog], clock: FakeClock
) -> None:
    log = logs["compacted"]
    log.config = replace(COMPACT, delete_retention_ms=1000)
    fill(log, 200)
    for key in range(5):
        put(log, b"k%d" % key, None)
    for i in range(100):  # later updates of the other keys push the tombstones out of the active segment
        put(log, b"k%d" % (5 + i % 5), b"late-%d" % i)
    cleaner = cleaner_for(tmp_path, logs, clock)
    try:
        assert cleaner.clean_now(log) is not None
        assert [key for key, value in contents(log).items() if value is None] == [
            b"k%d" % i for i in range(5)
        ]
        cleaner.tick(clock.now_ms)
        assert cleaner.running == 0  # nothing dirty, and the tombstones' horizon is ahead
        clock.advance(1001)
        cleaner.tick(clock.now_ms)
        assert cleaner.running == 1
        wait_until_idle(cleaner, clock.now_ms)
        assert sorted(contents(log)) == [b"k%d" % i for i in range(5, 10)]
    finally:
        cleaner.close()
