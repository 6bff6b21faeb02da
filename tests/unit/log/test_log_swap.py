"""Swapping cleaned segments into a live log: the happy path, a crash at every step of the swap (the reopened
log is whole and consistent), and results that must be discarded because the log changed meanwhile."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, range_bytes

import strom.log.partition_log as partition_log
from strom.log import LogConfig, PartitionLog
from strom.log.cleaner.clean import CleanResult, CleanTask, SegmentFile, clean
from strom.log.cleaner.manager import cleanable_section
from strom.log.files import CLEANED_SUFFIX, DELETED_SUFFIX, SWAP_SUFFIX
from strom.protocol.record_batch import Record, build_batch, decode_batch

KEYS = 10
UPDATES = 300


@pytest.fixture
def config() -> LogConfig:
    return LogConfig(
        segment_bytes=2048,
        index_interval_bytes=128,
        file_delete_delay_ms=0,
        cleanup_policy="compact",
        retention_ms=-1,
    )


def produce_updates(log: PartitionLog, count: int = UPDATES, keys: int = KEYS) -> dict[bytes, bytes]:
    """Write ``count`` single-record batches cycling over ``keys`` keys; returns the latest value per key."""
    latest: dict[bytes, bytes] = {}
    for i in range(count):
        key, value = b"k%d" % (i % keys), b"v%d" % i
        batch = build_batch([Record(0, 0, key, value)], base_timestamp=BASE_TIMESTAMP + i)
        log.append(memoryview(bytearray(batch)))
        latest[key] = value
    return latest


def read_all(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record, validating batch sizes and CRCs on the way."""
    out: list[tuple[int, bytes | None, bytes | None]] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        data = range_bytes(log.read(offset, 1 << 20))
        if not data:
            break
        position = 0
        while position < len(data):
            header, records = decode_batch(memoryview(data)[position:])
            out += [(header.base_offset + r.offset_delta, r.key, r.value) for r in records]
            position += header.total_size
            offset = header.next_offset
    return out


def latest_values(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, bytes | None]:
    return {key: value for _, key, value in records}


def prepare(log: PartitionLog, now_ms: int) -> tuple[CleanTask, int]:
    """The cleaning task of every non-active segment, and the log generation it was made at."""
    view = log.cleaner_view()
    section = cleanable_section(view, log.config, view.log_start_offset, now_ms)
    task = CleanTask(
        directory=log.directory,
        segments=tuple(SegmentFile(s.base_offset, s.path, s.size, s.next_offset) for s in section.segments),
        first_dirty_offset=section.first_dirty_offset,
        end_offset=section.end_offset,
        aborted=(),
        producer_last_offsets={},
        now_ms=now_ms,
        delete_retention_ms=log.config.delete_retention_ms,
        segment_bytes=log.config.segment_bytes,
        index_interval_bytes=log.config.index_interval_bytes,
        segment_index_bytes=log.config.segment_index_bytes,
        max_map_entries=1000,
    )
    return task, view.generation


def leftovers(directory: Path) -> list[str]:
    return sorted(
        p.name for p in directory.iterdir() if p.name.endswith((CLEANED_SUFFIX, SWAP_SUFFIX, DELETED_SUFFIX))
    )


def test_swap_replaces_segments_with_the_cleaned_ones(
    log_dir: Path, config: LogConfig, clock: FakeClock
) -> None:
    log = PartitionLog(log_dir, config, clock=clock)
    latest = produce_updates(log)
    before = read_all(log)
    size_before = log.size_bytes()
    task, generation = prepare(log, clock.now_ms)
    result = clean(task)

    assert log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)

    after = read_all(log)
    assert latest_values(after) == latest
    offsets = [offset for offset, _, _ in after]
    assert offsets == sorted(set(offsets)) and len(after) < len(before) / 5
    assert offsets[-1] == before[-1][0]  # the active segment is untouched
    assert log.size_bytes() < size_before / 3
    assert leftovers(log_dir) == []
    # Appends and reads go on; the reopened log is the same.
    produce_updates(log, count=5)
    expected = read_all(log)
    log.close()
    reopened = PartitionLog(log_dir, config, clock=clock, clean_shutdown=True)
    assert read_all(reopened) == expected
    reopened.close()


class Crash(Exception):
    """Stands for the process dying at this point."""


def swap_steps(log_dir: Path, config: LogConfig, clock: FakeClock) -> int:
    """How many renames and directory fsyncs one swap of the test log performs."""
    log = PartitionLog(log_dir, config, clock=clock)
    produce_updates(log)
    task, generation = prepare(log, clock.now_ms)
    result = clean(task)
    with counting_steps(lambda step: None) as counter:
        log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)
    log.close()
    return counter[0]


@contextmanager
def counting_steps(at_step: Callable[[int], None]) -> Iterator[list[int]]:
    """Count os.rename / os.replace / directory fsync calls, running ``at_step(n)`` before the n-th."""
    counter = [0]
    originals = [
        (os, "rename", os.rename),
        (os, "replace", os.replace),
        (partition_log, "fsync_dir", partition_log.fsync_dir),
    ]

    def counted(original: Callable[..., None]) -> Callable[..., None]:
        def step(*args: object) -> None:
            counter[0] += 1
            at_step(counter[0])
            original(*args)

        return step

    try:
        for owner, name, original in originals:
            setattr(owner, name, counted(original))
        yield counter
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def crash_points(tmp_path: Path, config: LogConfig, clock: FakeClock) -> Iterator[int]:
    yield from range(1, swap_steps(tmp_path / "probe-0", config, clock) + 1)


@pytest.mark.parametrize("with_recovery", [False, True], ids=["trusting-indexes", "full-recovery"])
def test_a_crash_at_any_step_of_the_swap_leaves_a_consistent_log(
    tmp_path: Path, config: LogConfig, clock: FakeClock, with_recovery: bool
) -> None:
    points = list(crash_points(tmp_path, config, clock))
    assert len(points) >= 10  # 3 renames per file set and old segment, 3 directory fsyncs
    for crash_at in points:
        directory = tmp_path / f"crash{crash_at}-0"
        log = PartitionLog(directory, config, clock=clock)
        latest = produce_updates(log)
        log.flush()
        end = log.log_end_offset
        full = read_all(log)
        task, generation = prepare(log, clock.now_ms)
        result = clean(task)

        def crash(step: int, crash_at: int = crash_at) -> None:
            if step == crash_at:
                raise Crash

        with counting_steps(crash), pytest.raises(Crash):
            log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)
        # The process "dies": the log object is abandoned without closing; a new one opens the directory.
        reopened = PartitionLog(
            directory, config, clock=clock, recovery_point=0 if with_recovery else end, clean_shutdown=False
        )
        records = read_all(reopened)
        offsets = [offset for offset, _, _ in records]
        assert latest_values(records) == latest, crash_at
        assert offsets == sorted(set(offsets)), crash_at
        assert reopened.log_end_offset == end
        assert set(records) <= set(full)  # nothing invented: every record is one that was written
        assert leftovers(directory) == [], crash_at
        reopened.close()


def test_a_crash_after_the_swap_files_are_complete_finishes_the_swap(
    log_dir: Path, config: LogConfig, clock: FakeClock
) -> None:
    """Once <base>.log.swap exists the cleaned version wins on reopen (Kafka completes the swap)."""
    log = PartitionLog(log_dir, config, clock=clock)
    latest = produce_updates(log)
    log.flush()
    task, generation = prepare(log, clock.now_ms)
    result = clean(task)
    renames_of_new_files = 3 * len(result.cleaned)

    def crash(step: int) -> None:
        if step == renames_of_new_files + 2:  # all *.cleaned -> *.swap renames and their fsync done
            raise Crash

    with counting_steps(crash), pytest.raises(Crash):
        log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)
    reopened = PartitionLog(log_dir, config, clock=clock, recovery_point=log.log_end_offset)
    records = read_all(reopened)
    assert latest_values(records) == latest
    assert len(records) < UPDATES / 5  # the cleaned segments, not the old ones
    reopened.close()


def test_retention_meanwhile_discards_the_result(log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
    log = PartitionLog(log_dir, config, clock=clock)
    produce_updates(log)
    task, generation = prepare(log, clock.now_ms)
    result: CleanResult = clean(task)
    assert any(name.endswith(CLEANED_SUFFIX) for name in os.listdir(log_dir))
    log.delete_records_before(task.segments[1].base_offset)  # the first segment goes
    before = read_all(log)

    assert not log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)

    assert read_all(log) == before
    assert leftovers(log_dir) == []
    log.close()


def test_truncation_meanwhile_discards_the_result(log_dir: Path, config: LogConfig, clock: FakeClock) -> None:
    log = PartitionLog(log_dir, config, clock=clock)
    produce_updates(log)
    task, generation = prepare(log, clock.now_ms)
    result = clean(task)
    log.truncate_to(log.log_end_offset - 1)

    assert not log.swap_cleaned(result.cleaned, task.segments, generation, clock.now_ms)
    assert leftovers(log_dir) == []
    log.close()


def test_leftover_cleaned_files_are_removed_on_open(
    log_dir: Path, config: LogConfig, clock: FakeClock
) -> None:
    log = PartitionLog(log_dir, config, clock=clock)
    produce_updates(log)
    before = read_all(log)
    task, _ = prepare(log, clock.now_ms)
    clean(task)  # a cleaning that never got swapped in
    log.close()
    reopened = PartitionLog(log_dir, config, clock=clock, clean_shutdown=True)
    assert read_all(reopened) == before
    assert leftovers(log_dir) == []
    reopened.close()


def test_compacted_logs_roll_at_max_compaction_lag(log_dir: Path, clock: FakeClock) -> None:
    config = LogConfig(cleanup_policy="compact", max_compaction_lag_ms=1000, segment_ms=10**9)
    log = PartitionLog(log_dir, config, clock=clock)
    batch = build_batch([Record(0, 0, b"k", b"v")], base_timestamp=clock.now_ms)
    log.append(memoryview(bytearray(batch)))
    log.maybe_roll(clock.now_ms + 500)
    assert len(log.cleaner_view().segments) == 0
    log.maybe_roll(clock.now_ms + 1001)
    assert len(log.cleaner_view().segments) == 1
    log.close()
