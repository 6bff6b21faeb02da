"""Producer-state snapshots: the file format, when logs write and delete them, and the proof that restoring
one and replaying the log after it gives exactly the state a replay of the whole log gives."""

from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, make_batch

from strom.log import AppendOrigin, LogConfig, PartitionLog
from strom.log.producer_snapshot import (
    SNAPSHOT_SUFFIX,
    SNAPSHOTS_TO_KEEP,
    CorruptSnapshotError,
    decode_snapshot,
    encode_snapshot,
    snapshot_path,
)
from strom.log.producer_state import BatchMetadata, CompletedTxn, ProducerEntry, ProducerStateManager
from strom.protocol.record_batch import BatchHeader, ControlType, build_control_batch, validate_record_set

PRODUCER = 2000
COORDINATOR = AppendOrigin.COORDINATOR


@dataclass(slots=True, frozen=True)
class State:
    """Everything a rebuild must get right, in a form that compares and prints well."""

    entries: list[ProducerEntry]
    first_unstable_offset: int | None
    aborted: list[CompletedTxn]


def state_of(log: PartitionLog) -> State:
    return State(
        sorted(log.producers, key=attrgetter("producer_id")),
        log.producers.first_unstable_offset(),
        log.aborted_txns.to_snapshot(),
    )


def full_scan_state(log: PartitionLog, scratch: Path) -> State:
    """The state a replay of the whole log gives: a copy of the directory without snapshots, opened with full
    recovery at the same log start offset."""
    copy = scratch / "full-scan" / log.directory.name
    shutil.copytree(log.directory, copy)
    for path in copy.glob("*" + SNAPSHOT_SUFFIX):
        path.unlink()
    scanned = PartitionLog(copy, log.config, log_start_offset=log.log_start_offset)
    try:
        return state_of(scanned)
    finally:
        scanned.close(flush=False)
        shutil.rmtree(copy.parent)


def send(
    log: PartitionLog,
    sequence: int,
    *,
    producer_id: int = PRODUCER,
    epoch: int = 0,
    count: int = 2,
    transactional: bool = False,
    timestamp: int = BASE_TIMESTAMP,
) -> None:
    batch = make_batch(
        count,
        timestamp=timestamp,
        producer_id=producer_id,
        producer_epoch=epoch,
        base_sequence=sequence,
        transactional=transactional,
    )
    log.append(memoryview(batch))


def end_txn(log: PartitionLog, control: ControlType, *, producer_id: int = PRODUCER, epoch: int = 0) -> None:
    marker = bytearray(build_control_batch(producer_id, epoch, control, 0, BASE_TIMESTAMP))
    log.append(memoryview(marker), origin=COORDINATOR)


def fill_segments(log: PartitionLog, rolls: int) -> None:
    """Idempotent and transactional batches, one transaction aborted per segment, until ``rolls`` rolls."""
    sequence = 0
    while len(log._segments) <= rolls:
        send(log, sequence, producer_id=PRODUCER, count=3)
        send(log, sequence, producer_id=PRODUCER + 1, count=3, transactional=True)
        end_txn(log, ControlType.ABORT if sequence % 4 == 0 else ControlType.COMMIT, producer_id=PRODUCER + 1)
        sequence += 3


def reopen(log: PartitionLog, clock: FakeClock, *, clean: bool) -> PartitionLog:
    """Close and reopen, or abandon the log as kill -9 would and open its directory again."""
    if clean:
        log.close()
    return PartitionLog(
        log.directory,
        log.config,
        clock=clock,
        clean_shutdown=clean,
        recovery_point=log.recovery_point,
        log_start_offset=log.log_start_offset,
    )


@pytest.fixture
def replayed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Base offsets of the batches and markers that reach the producer state, by append or by replay."""
    offsets: list[int] = []
    record, record_marker = ProducerStateManager.record, ProducerStateManager.record_marker

    def counting_record(self: ProducerStateManager, batch: BatchHeader) -> None:
        offsets.append(batch.base_offset)
        record(self, batch)

    def counting_marker(
        self: ProducerStateManager, batch: BatchHeader, control: ControlType, coordinator_epoch: int
    ) -> CompletedTxn:
        offsets.append(batch.base_offset)
        return record_marker(self, batch, control, coordinator_epoch)

    monkeypatch.setattr(ProducerStateManager, "record", counting_record)
    monkeypatch.setattr(ProducerStateManager, "record_marker", counting_marker)
    return offsets


@pytest.fixture
def log(log_dir: Path, small_config: LogConfig, clock: FakeClock) -> PartitionLog:
    return PartitionLog(log_dir, small_config, clock=clock)


# -- the file format ----------------------------------------------------------------------------------------


def sample_entries() -> list[ProducerEntry]:
    idle = ProducerEntry(7, 0)
    busy = ProducerEntry(8, 3, coordinator_epoch=5, last_timestamp=BASE_TIMESTAMP, txn_first_offset=40)
    busy.batches.extend(
        BatchMetadata(n * 2, n * 2 + 1, 30 + n * 2, 31 + n * 2, BASE_TIMESTAMP + n) for n in range(5)
    )
    wrapped = ProducerEntry(2**40, 32767, last_marker_offset=12, coordinator_epoch=2**31 - 1)
    wrapped.batches.append(BatchMetadata(2**31 - 2, 2**31 - 1, 10, 11, -1))
    return [idle, busy, wrapped]


def sample_aborted() -> list[CompletedTxn]:
    return [CompletedTxn(8, 3, 9, aborted=True), CompletedTxn(2**40, 5, 12, aborted=True)]


def test_a_snapshot_decodes_to_what_was_encoded() -> None:
    entries, aborted = decode_snapshot(encode_snapshot(sample_entries(), sample_aborted()))
    assert entries == sample_entries()
    assert aborted == sample_aborted()
    assert [entry.batches.maxlen for entry in entries] == [5, 5, 5]


def test_an_empty_snapshot_decodes_to_nothing() -> None:
    assert decode_snapshot(encode_snapshot([], [])) == ([], [])


def test_every_damaged_byte_and_every_torn_length_is_detected() -> None:
    data = encode_snapshot(sample_entries(), sample_aborted())
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        with pytest.raises(CorruptSnapshotError):
            decode_snapshot(bytes(damaged))
    for length in range(len(data)):
        with pytest.raises(CorruptSnapshotError):
            decode_snapshot(data[:length])
    with pytest.raises(CorruptSnapshotError):
        decode_snapshot(data + b"\0")


# -- when logs write and delete snapshots --------------------------------------------------------------------


def test_a_snapshot_is_taken_at_each_roll_and_only_the_latest_few_are_kept(log: PartitionLog) -> None:
    fill_segments(log, SNAPSHOTS_TO_KEEP + 2)
    bases = [segment.base_offset for segment in log._segments]
    assert log._snapshots.offsets == bases[-SNAPSHOTS_TO_KEEP:]
    on_disk = sorted(path.name for path in log.directory.glob("*" + SNAPSHOT_SUFFIX))
    assert on_disk == [snapshot_path(log.directory, base).name for base in bases[-SNAPSHOTS_TO_KEEP:]]


def test_a_clean_close_snapshots_the_log_end_and_the_reopen_replays_nothing(
    log: PartitionLog, clock: FakeClock, tmp_path: Path, replayed: list[int]
) -> None:
    fill_segments(log, 3)
    send(log, 0, producer_id=PRODUCER + 2, transactional=True)  # left open
    before = state_of(log)
    end = log.log_end_offset
    replayed.clear()
    reopened = reopen(log, clock, clean=True)
    assert reopened._snapshots.latest_offset == end
    assert replayed == []
    assert state_of(reopened) == before == full_scan_state(reopened, tmp_path)
    assert before.first_unstable_offset == end - 2


def test_after_a_kill_only_the_batches_after_the_last_roll_are_replayed(
    log: PartitionLog, clock: FakeClock, tmp_path: Path, replayed: list[int]
) -> None:
    fill_segments(log, 3)
    send(log, 99, producer_id=PRODUCER + 2)
    active_base = log._segments[-1].base_offset
    before = state_of(log)
    in_active = [offset for offset in replayed if offset >= active_base]
    replayed.clear()
    reopened = reopen(log, clock, clean=False)
    assert reopened._snapshots.latest_offset == active_base
    assert replayed == in_active and in_active
    assert state_of(reopened) == before == full_scan_state(reopened, tmp_path)


def test_a_damaged_snapshot_is_deleted_and_the_next_older_one_used(
    log: PartitionLog, clock: FakeClock, tmp_path: Path, replayed: list[int]
) -> None:
    fill_segments(log, 3)
    before = state_of(log)
    older, latest = log._snapshots.offsets[-2:]
    path = snapshot_path(log.directory, latest)
    path.write_bytes(path.read_bytes()[:-3])
    replayed.clear()
    reopened = reopen(log, clock, clean=False)
    assert not path.exists()
    assert reopened._snapshots.latest_offset == older
    assert replayed and min(replayed) == older
    assert state_of(reopened) == before == full_scan_state(reopened, tmp_path)


def test_with_every_snapshot_unreadable_the_whole_log_is_replayed(
    log: PartitionLog, clock: FakeClock, tmp_path: Path, replayed: list[int]
) -> None:
    fill_segments(log, 3)
    before = state_of(log)
    for offset in log._snapshots.offsets:
        snapshot_path(log.directory, offset).write_bytes(b"not a snapshot")
    replayed.clear()
    reopened = reopen(log, clock, clean=False)
    assert list(log.directory.glob("*" + SNAPSHOT_SUFFIX)) == []
    assert min(replayed) == 0
    assert state_of(reopened) == before == full_scan_state(reopened, tmp_path)


def test_a_crash_that_loses_data_below_a_snapshot_makes_it_useless(
    log: PartitionLog, clock: FakeClock, tmp_path: Path
) -> None:
    """Power lost before the tail reached the disk: the snapshot at the old end describes batches now gone."""
    fill_segments(log, 2)
    log.close()
    snapshot_at_end = snapshot_path(log.directory, log.log_end_offset)
    active = log._segments[-1].path
    with active.open("r+b") as file:
        file.truncate(active.stat().st_size - 10)
    reopened = PartitionLog(log.directory, log.config, clock=clock)
    assert reopened.log_end_offset < log.log_end_offset
    assert not snapshot_at_end.exists()
    assert all(offset <= reopened.log_end_offset for offset in reopened._snapshots.offsets)
    assert state_of(reopened) == full_scan_state(reopened, tmp_path)


def test_truncation_deletes_the_snapshots_above_the_new_end_and_restores_from_one_below(
    log: PartitionLog, tmp_path: Path, replayed: list[int]
) -> None:
    fill_segments(log, 4)
    older = log._snapshots.offsets[0]
    replayed.clear()
    log.truncate_to(older + 3)
    assert log._snapshots.offsets == [older]
    assert replayed and min(replayed) == older
    assert state_of(log) == full_scan_state(log, tmp_path)


def test_moving_the_log_start_deletes_the_snapshots_below_it(log: PartitionLog, tmp_path: Path) -> None:
    fill_segments(log, 4)
    before = log._snapshots.offsets
    cut = clean_cut(log, before[1] + 1)
    log.delete_records_before(cut)
    assert log._snapshots.offsets == [offset for offset in before if offset >= cut] != before
    on_disk = sorted(path.name for path in log.directory.glob("*" + SNAPSHOT_SUFFIX))
    assert on_disk == [snapshot_path(log.directory, offset).name for offset in log._snapshots.offsets]
    assert state_of(log) == full_scan_state(log, tmp_path)


def test_half_written_snapshots_are_removed_on_open(log: PartitionLog, clock: FakeClock) -> None:
    fill_segments(log, 1)
    leftover = log.directory / ("00000000000000000001" + SNAPSHOT_SUFFIX + ".tmp")
    leftover.write_bytes(b"torn")
    reopen(log, clock, clean=True)
    assert not leftover.exists()


def test_a_transaction_open_across_the_log_start_keeps_its_first_offset_through_a_snapshot(
    log: PartitionLog, clock: FakeClock, tmp_path: Path
) -> None:
    """The one thing a replay cannot know: the transaction began below the log start. The snapshot (like the
    live state) keeps where it began; a replay only sees its first batch still in the log."""
    send(log, 0, transactional=True)
    send(log, 0, producer_id=PRODUCER + 1)
    send(log, 2, transactional=True)
    log.delete_records_before(2)
    reopened = reopen(log, clock, clean=True)
    assert reopened.producers.first_unstable_offset() == 0
    assert full_scan_state(reopened, tmp_path).first_unstable_offset == 4


def test_a_replay_forgets_what_the_log_start_moved_past_as_the_live_state_does(
    log: PartitionLog, clock: FakeClock, tmp_path: Path
) -> None:
    """A marker below the log start takes its coordinator epoch with it; the last timestamp is the latest."""
    send(log, 0, transactional=True, timestamp=BASE_TIMESTAMP + 50)
    end_txn(log, ControlType.COMMIT)
    send(log, 2, timestamp=BASE_TIMESTAMP)
    log.delete_records_before(3)
    entry = log.producers.entry(PRODUCER)
    assert entry is not None
    assert (entry.coordinator_epoch, entry.last_marker_offset, entry.last_timestamp) == (
        -1,
        -1,
        BASE_TIMESTAMP + 1,
    )
    assert state_of(reopen(log, clock, clean=True)) == state_of(log) == full_scan_state(log, tmp_path)


# -- equality with a full replay, under random histories -----------------------------------------------------


@dataclass(slots=True)
class Producer:
    """What the test's producer believes about itself, resynchronised with the log after it changes."""

    producer_id: int
    epoch: int = 0
    next_sequence: int = 0
    in_txn: bool = False

    def resync(self, log: PartitionLog) -> None:
        entry = log.producers.entry(self.producer_id)
        if entry is None:
            self.in_txn = False
            return
        self.epoch = entry.epoch
        self.next_sequence = entry.last_sequence + 1 if entry.batches else 0
        self.in_txn = entry.txn_first_offset >= 0


class History:
    """Random producer traffic: idempotent and transactional batches, offset commits, markers, epoch bumps."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.producers = [Producer(PRODUCER + n) for n in range(4)]
        self.coordinator_epoch = 0

    def step(self, log: PartitionLog) -> None:
        rng = self.rng
        producer = rng.choice(self.producers)
        timestamp = BASE_TIMESTAMP + rng.randrange(-1000, 1000)  # out of order on purpose
        action = rng.choices(["data", "commit", "marker", "bump", "plain"], [10, 2, 4, 1, 2])[0]
        if action == "data":
            transactional = producer.in_txn or rng.random() < 0.4
            count = rng.randint(1, 3)
            batch = make_batch(
                count,
                producer_id=producer.producer_id,
                producer_epoch=producer.epoch,
                base_sequence=producer.next_sequence,
                transactional=transactional,
                timestamp=timestamp,
            )
            log.append(memoryview(batch))
            producer.next_sequence += count
            producer.in_txn = transactional
        elif action == "commit":  # a transactional offset commit, written by the group coordinator
            batch = make_batch(
                1,
                producer_id=producer.producer_id,
                producer_epoch=producer.epoch,
                transactional=True,
                timestamp=timestamp,
            )
            log.append(memoryview(batch), origin=COORDINATOR)
            producer.resync(
                log
            )  # a first write without sequence numbers makes the next data batch start at 0
        elif action == "marker":
            self.coordinator_epoch += rng.random() < 0.2
            control = rng.choice([ControlType.COMMIT, ControlType.ABORT])
            marker = build_control_batch(
                producer.producer_id, producer.epoch, control, self.coordinator_epoch, timestamp
            )
            log.append(memoryview(bytearray(marker)), origin=COORDINATOR)
            producer.resync(log)
        elif action == "bump" and not producer.in_txn:
            producer.epoch += 1
            producer.next_sequence = 0
        else:
            log.append(memoryview(make_batch(rng.randint(1, 3), timestamp=timestamp)))

    def resync(self, log: PartitionLog) -> None:
        for producer in self.producers:
            producer.resync(log)


def all_batches(log: PartitionLog) -> list[BatchHeader]:
    """The headers of every batch from the log start offset on (a read stops at the end of a segment)."""
    headers: list[BatchHeader] = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        read = log.read(offset, 1 << 30)
        assert read.records is not None
        data = bytearray(os.pread(read.records.file.fileno(), read.size, read.records.position))
        read_headers = validate_record_set(memoryview(data))
        headers += read_headers
        offset = read_headers[-1].next_offset
    return headers


def transaction_spans(log: PartitionLog) -> list[tuple[int, float]]:
    """(first offset, marker offset) of each transaction with data in the log; infinity while still open."""
    opened: dict[int, int] = {}
    spans: list[tuple[int, float]] = []
    for header in all_batches(log):
        if header.is_control and header.producer_id in opened:
            spans.append((opened.pop(header.producer_id), header.base_offset))
        elif header.is_transactional and not header.is_control:
            opened.setdefault(header.producer_id, header.base_offset)
    return spans + [(first, math.inf) for first in opened.values()]


def clean_cut(log: PartitionLog, wanted: int) -> int:
    """The highest offset at or below ``wanted`` that no transaction straddles (began below it, ended at or
    above it or not yet): where that happens, only the state knows where the transaction began, not a replay.
    A committed one matters too, as a truncation below its marker opens it again."""
    spans = transaction_spans(log)
    cut = wanted
    while straddled := [first for first, end in spans if first < cut <= end]:
        cut = min(straddled)
    return max(cut, log.log_start_offset)


@pytest.mark.parametrize("seed", range(12))
def test_snapshot_and_tail_equal_a_full_replay_through_rolls_reopens_truncations_and_deletions(
    seed: int, log_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    rng = random.Random(seed)
    config = LogConfig(segment_bytes=1024, index_interval_bytes=128, file_delete_delay_ms=0)
    log = PartitionLog(log_dir, config, clock=clock)
    history = History(rng)
    restored_from_snapshot = 0
    for _ in range(150):
        history.step(log)
        if rng.random() > 0.12:
            continue
        check = rng.choice(["compare", "close", "kill", "truncate", "delete"])
        if check in ("close", "kill"):
            before = state_of(log)
            restored_from_snapshot += bool(log._snapshots.offsets)
            log = reopen(log, clock, clean=check == "close")
            assert state_of(log) == before, check
        elif check == "truncate":
            log.truncate_to(rng.randint(log.log_start_offset, log.log_end_offset))
            assert all(offset <= log.log_end_offset for offset in log._snapshots.offsets)
        elif check == "delete":
            log.delete_records_before(clean_cut(log, rng.randint(log.log_start_offset, log.log_end_offset)))
            assert all(offset >= log.log_start_offset for offset in log._snapshots.offsets)
        assert state_of(log) == full_scan_state(log, tmp_path), check
        history.resync(log)
    log.close()
    assert restored_from_snapshot > 0
