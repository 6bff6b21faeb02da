"""clean() on real logs: build a log with PartitionLog, clean its non-active segments, open the output."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP

from strom.log import AppendOrigin, LogConfig, PartitionLog
from strom.log.cleaner.batch_filter import DELETE_HORIZON_FLAG
from strom.log.cleaner.clean import CleanResult, CleanTask, SegmentFile, clean
from strom.log.files import CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX
from strom.log.segment import LogSegment
from strom.protocol.record_batch import (
    BatchHeader,
    Compression,
    ControlType,
    Record,
    build_batch,
    build_control_batch,
    decode_batch,
)

DAY_MS = 86_400_000
CONFIG = LogConfig(segment_bytes=1024, index_interval_bytes=256, file_delete_delay_ms=0)


def produce(
    log: PartitionLog,
    pairs: list[tuple[bytes | None, bytes | None]],
    *,
    compression: int = Compression.NONE,
    timestamp: int = BASE_TIMESTAMP,
    **kwargs: object,
) -> int:
    """Append one batch of (key, value) records; returns its base offset."""
    records = [Record(i, i, key, value) for i, (key, value) in enumerate(pairs)]
    batch = bytearray(build_batch(records, base_timestamp=timestamp, compression=compression, **kwargs))  # type: ignore[arg-type]
    return log.append(memoryview(batch)).base_offset


def marker(log: PartitionLog, producer_id: int, commit: bool) -> int:
    control = ControlType.COMMIT if commit else ControlType.ABORT
    batch = bytearray(build_control_batch(producer_id, 0, control, 0, BASE_TIMESTAMP))
    return log.append(memoryview(batch), origin=AppendOrigin.COORDINATOR).base_offset


def segment_files(directory: Path) -> list[SegmentFile]:
    """The log's non-active segments, as the scheduler would describe them."""
    logs = sorted(directory.glob(f"*{LOG_SUFFIX}"))
    bases = [int(path.stem) for path in logs]
    return [
        SegmentFile(base, path, path.stat().st_size, next_base)
        for base, path, next_base in zip(bases, logs, bases[1:], strict=False)
    ]


def make_task(log: PartitionLog, **overrides: object) -> CleanTask:
    log.flush()
    segments = tuple(segment_files(log.directory))
    task = CleanTask(
        directory=log.directory,
        segments=segments,
        first_dirty_offset=log.log_start_offset,
        end_offset=segments[-1].next_offset,
        aborted=tuple(
            (t.producer_id, t.first_offset, t.last_offset)
            for t in log.aborted_txns.overlapping(0, segments[-1].next_offset)
        ),
        producer_last_offsets={},
        now_ms=BASE_TIMESTAMP,
        delete_retention_ms=DAY_MS,
        segment_bytes=CONFIG.segment_bytes,
        index_interval_bytes=CONFIG.index_interval_bytes,
        segment_index_bytes=CONFIG.segment_index_bytes,
        max_map_entries=100_000,
    )
    return replace(task, **overrides)  # type: ignore[arg-type]


def open_output(result: CleanResult, directory: Path, into: Path) -> list[LogSegment]:
    """Copy each cleaned segment under its normal names into ``into`` and load it as a segment (which checks
    that the indexes fit the data)."""
    into.mkdir(exist_ok=True)
    segments = []
    for cleaned in result.cleaned:
        stem = f"{cleaned.base_offset:020d}"
        for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX):
            shutil.copy(directory / f"{stem}{suffix}{CLEANED_SUFFIX}", into / f"{stem}{suffix}")
        segment = LogSegment(into, cleaned.base_offset, CONFIG, BASE_TIMESTAMP, fresh=False)
        segment.load()
        segments.append(segment)
    return segments


def read_back(
    segments: list[LogSegment],
) -> list[tuple[BatchHeader, list[tuple[int, bytes | None, bytes | None]]]]:
    """Every batch (CRC-checked) with its (offset, key, value) records; checks that offsets increase and that
    the offset index leads to batch boundaries."""
    out = []
    last = -1
    for segment in segments:
        boundaries = set()
        for position, header in segment.batches_from(0):
            boundaries.add(position)
            assert header.base_offset > last
            last = header.last_offset
            found = segment.translate_offset(header.last_offset)
            assert found is not None and found[0] == position
            decoded_header, records = decode_batch(segment.read_bytes(position, header.total_size))
            offsets = [header.base_offset + r.offset_delta for r in records]
            assert offsets == sorted(set(offsets))
            out.append(
                (decoded_header, [(header.base_offset + r.offset_delta, r.key, r.value) for r in records])
            )
        for relative, position in zip(
            segment.offset_index._relative_offsets, segment.offset_index._positions, strict=True
        ):
            assert position in boundaries
            assert segment.translate_offset(segment.base_offset + relative) is not None
        segment.close()
    return out


def records_of(
    batches: list[tuple[BatchHeader, list[tuple[int, bytes | None, bytes | None]]]],
) -> list[tuple[int, bytes | None, bytes | None]]:
    return [record for header, records in batches if not header.is_control for record in records]


def digest(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()
    }


@pytest.fixture
def log(tmp_path: Path) -> PartitionLog:
    opened = PartitionLog(tmp_path / "compacted-0", CONFIG, clock=lambda: BASE_TIMESTAMP / 1000)
    yield opened
    opened.close()


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.LZ4])
def test_latest_value_per_key_survives(log: PartitionLog, tmp_path: Path, codec: int) -> None:
    written: list[tuple[int, bytes | None, bytes | None]] = []
    for round_ in range(60):
        pairs = [(b"key-%d" % ((round_ * 7 + i) % 23), b"value-%d-%d" % (round_, i)) for i in range(5)]
        base = produce(log, pairs, compression=codec)
        written += [(base + i, key, value) for i, (key, value) in enumerate(pairs)]
    produce(log, [(b"active", b"x")])
    assert len(segment_files(log.directory)) > 3
    task = make_task(log)
    before = digest(log.directory)
    result = clean(task)

    latest = {key: (offset, value) for offset, key, value in written if offset < task.end_offset}
    assert result.next_dirty_offset == task.end_offset
    assert [c.replaces for c in result.cleaned] and sum(len(c.replaces) for c in result.cleaned) == len(
        task.segments
    )
    assert all(c.base_offset == c.replaces[0] for c in result.cleaned)
    survivors = records_of(read_back(open_output(result, log.directory, tmp_path / "out")))
    assert sorted(survivors) == sorted((offset, key, value) for key, (offset, value) in latest.items())
    assert result.records_read == task.end_offset
    assert result.records_kept == len(latest) == 23
    assert result.bytes_read == sum(s.size for s in task.segments)
    assert result.bytes_written == sum(
        (log.directory / f"{c.base_offset:020d}.log.cleaned").stat().st_size for c in result.cleaned
    )
    assert result.earliest_delete_horizon_ms is None
    after = digest(log.directory)
    assert {name: after[name] for name in before} == before  # inputs untouched


def test_small_segments_merge_up_to_segment_bytes(log: PartitionLog, tmp_path: Path) -> None:
    for round_ in range(40):
        produce(log, [(b"k%d" % (i % 3), b"r%d" % round_ * 10) for i in range(10)])
    produce(log, [(b"active", b"x")])
    task = make_task(log, segment_bytes=1024 * 1024)
    result = clean(task)
    assert len(task.segments) > 2
    assert len(result.cleaned) == 1
    assert result.cleaned[0].replaces == tuple(s.base_offset for s in task.segments)
    survivors = records_of(read_back(open_output(result, log.directory, tmp_path / "out")))
    assert [key for _, key, _ in survivors] == [b"k1", b"k2", b"k0"]  # the last batch's order


def test_clean_section_records_go_when_the_dirty_section_updates_them(
    log: PartitionLog, tmp_path: Path
) -> None:
    for round_ in range(30):
        produce(log, [(b"a", b"old-%d" % round_ * 20), (b"b", b"old-%d" % round_ * 20)])
    first_dirty = produce(log, [(b"a", b"new")])
    for _ in range(20):
        produce(log, [(b"c", b"filler" * 20)])
    produce(log, [(b"active", b"x")])
    result = clean(make_task(log, first_dirty_offset=first_dirty))
    survivors = records_of(read_back(open_output(result, log.directory, tmp_path / "out")))
    keys = [key for _, key, _ in survivors]
    # a's old records go (a later one is mapped); b's records are all kept: only the dirty section is mapped.
    assert keys.count(b"a") == 1 and keys.count(b"b") == 30 and keys.count(b"c") == 1


def test_tombstones_get_a_horizon_then_disappear(log: PartitionLog, tmp_path: Path) -> None:
    for round_ in range(20):
        produce(log, [(b"keep", b"v%d" % round_ * 30), (b"gone", b"v%d" % round_ * 30)])
    tombstone_offset = produce(log, [(b"gone", None), (b"keep", b"last")], timestamp=BASE_TIMESTAMP + 500)
    for _ in range(15):
        produce(log, [(b"other", b"z" * 60)])
    produce(log, [(b"active", b"x")])

    first = clean(make_task(log))
    assert first.earliest_delete_horizon_ms == BASE_TIMESTAMP + DAY_MS
    batches = read_back(open_output(first, log.directory, tmp_path / "first"))
    tombstone_batch = next(h for h, records in batches if any(o == tombstone_offset for o, _, _ in records))
    assert tombstone_batch.attributes & DELETE_HORIZON_FLAG
    assert tombstone_batch.base_timestamp == BASE_TIMESTAMP + DAY_MS
    assert tombstone_batch.max_timestamp == BASE_TIMESTAMP + 501
    assert (tombstone_offset, b"gone", None) in records_of(batches)

    # Swap the output in by hand and clean again, before and after the horizon.
    for cleaned in first.cleaned:
        for base in cleaned.replaces:
            (log.directory / f"{base:020d}.log").unlink()
        stem = log.directory / f"{cleaned.base_offset:020d}"
        os.replace(f"{stem}.log.cleaned", f"{stem}.log")
    second_task = make_task(log, first_dirty_offset=first.next_dirty_offset)
    early = clean(replace(second_task, now_ms=BASE_TIMESTAMP + DAY_MS - 1))
    assert (tombstone_offset, b"gone", None) in records_of(
        read_back(open_output(early, log.directory, tmp_path / "early"))
    )
    assert early.earliest_delete_horizon_ms == BASE_TIMESTAMP + DAY_MS

    late = clean(replace(second_task, now_ms=BASE_TIMESTAMP + DAY_MS))
    survivors = records_of(read_back(open_output(late, log.directory, tmp_path / "late")))
    assert [key for _, key, _ in survivors] == [b"keep", b"other"]
    assert late.earliest_delete_horizon_ms is None


def test_aborted_data_goes_and_markers_follow_their_data(log: PartitionLog, tmp_path: Path) -> None:
    aborted_pid, committed_pid = 10, 11
    produce(
        log,
        [(b"t", b"aborted" * 10)],
        producer_id=aborted_pid,
        producer_epoch=0,
        base_sequence=0,
        transactional=True,
    )
    produce(
        log,
        [(b"t", b"committed")],
        producer_id=committed_pid,
        producer_epoch=0,
        base_sequence=0,
        transactional=True,
    )
    abort_offset = marker(log, aborted_pid, commit=False)
    commit_offset = marker(log, committed_pid, commit=True)
    for i in range(40):
        produce(log, [(b"u%d" % (i % 4), b"w" * 80)])
    produce(log, [(b"active", b"x")])

    first = clean(make_task(log))
    batches = read_back(open_output(first, log.directory, tmp_path / "first"))
    assert (b"t", b"aborted" * 10) not in [(k, v) for _, k, v in records_of(batches)]
    assert (b"t", b"committed") in [(k, v) for _, k, v in records_of(batches)]
    markers = [h.base_offset for h, _ in batches if h.is_control]
    assert markers == [abort_offset, commit_offset]  # both transactions still had data in this pass
    assert first.earliest_delete_horizon_ms is None

    def swap(result: CleanResult) -> None:
        for cleaned in result.cleaned:
            for base in cleaned.replaces:
                (log.directory / f"{base:020d}.log").unlink()
            stem = log.directory / f"{cleaned.base_offset:020d}"
            os.replace(f"{stem}.log.cleaned", f"{stem}.log")

    swap(first)
    # The abort marker's data is gone: it gets a horizon and goes once that passes. The commit marker stays.
    second = clean(make_task(log, first_dirty_offset=first.next_dirty_offset))
    assert second.earliest_delete_horizon_ms == BASE_TIMESTAMP + DAY_MS
    batches = read_back(open_output(second, log.directory, tmp_path / "second"))
    abort_header = next(h for h, _ in batches if h.is_control and h.base_offset == abort_offset)
    assert abort_header.attributes & DELETE_HORIZON_FLAG
    swap(second)
    third = clean(make_task(log, first_dirty_offset=second.next_dirty_offset, now_ms=BASE_TIMESTAMP + DAY_MS))
    batches = read_back(open_output(third, log.directory, tmp_path / "third"))
    assert [h.base_offset for h, _ in batches if h.is_control] == [commit_offset]
    assert third.earliest_delete_horizon_ms is None


def test_a_producers_latest_batch_stays_even_when_emptied(log: PartitionLog, tmp_path: Path) -> None:
    last_of_producer = produce(
        log, [(b"k", b"old" * 20)] * 3, producer_id=5, producer_epoch=0, base_sequence=0
    )
    for i in range(40):
        produce(log, [(b"k", b"v%d" % i * 40)])
    produce(log, [(b"active", b"x")])
    result = clean(make_task(log, producer_last_offsets={5: last_of_producer + 2}))
    batches = read_back(open_output(result, log.directory, tmp_path / "out"))
    empty = [h for h, records in batches if not records]
    assert len(empty) == 1
    assert (empty[0].base_offset, empty[0].last_offset, empty[0].producer_id) == (
        last_of_producer,
        last_of_producer + 2,
        5,
    )
    assert empty[0].base_sequence == 0
    assert len(records_of(batches)) == 1


def test_a_full_map_cleans_a_prefix_and_says_where_it_stopped(log: PartitionLog, tmp_path: Path) -> None:
    offsets_by_key: dict[bytes, list[int]] = {}
    for i in range(120):
        key = b"key-%d" % i
        base = produce(log, [(key, b"first" * 20), (key, b"second" * 20)])
        offsets_by_key[key] = [base, base + 1]
    produce(log, [(b"active", b"x")])
    task = make_task(log, max_map_entries=50)
    result = clean(task)

    assert result.next_dirty_offset == 100  # 50 keys mapped, two records each
    assert result.next_dirty_offset < task.end_offset
    cleaned_bases = [base for c in result.cleaned for base in c.replaces]
    assert cleaned_bases == [s.base_offset for s in task.segments if s.base_offset < 100]
    survivors = records_of(read_back(open_output(result, log.directory, tmp_path / "out")))
    mapped = [offset for offset, _, _ in survivors if offset < 100]
    assert mapped == list(range(1, 100, 2))  # only each mapped key's latest record
    replaced_end = next((s.base_offset for s in task.segments if s.base_offset >= 100), task.end_offset)
    assert [o for o, _, _ in survivors if o >= 100] == list(range(100, replaced_end))  # kept as they were


def test_runs_in_a_worker_process(log: PartitionLog) -> None:
    for i in range(40):
        produce(log, [(b"k%d" % (i % 2), b"v" * 60)])
    produce(log, [(b"active", b"x")])
    task = make_task(log)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = pool.submit(clean, task).result(timeout=60)
    assert result.records_kept == 2
    assert all((log.directory / f"{c.base_offset:020d}.log.cleaned").exists() for c in result.cleaned)
