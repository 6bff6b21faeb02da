"""Transactions at the partition log: open transactions hold the last stable offset, the coordinator's markers
close them, aborted ones are listed for read_committed fetches, and all of it is rebuilt from the log."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, make_batch

from strom.log import AppendOrigin, AppendResult, LogConfig, PartitionLog
from strom.log.producer_state import CompletedTxn
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import ControlType, build_control_batch

RECORDS_PER_BATCH = 3


@dataclass
class Producer:
    """A producer as the log sees it: its id, epoch and next sequence number."""

    producer_id: int
    epoch: int = 0
    sequence: int = 0

    def send(
        self, log: PartitionLog, *, transactional: bool = True, timestamp: int = BASE_TIMESTAMP
    ) -> AppendResult:
        batch = make_batch(
            RECORDS_PER_BATCH,
            timestamp=timestamp,
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=self.sequence,
            transactional=transactional,
        )
        result = log.append(memoryview(batch))
        self.sequence += RECORDS_PER_BATCH
        return result

    def end(
        self,
        log: PartitionLog,
        *,
        commit: bool,
        epoch: int | None = None,
        coordinator_epoch: int = 0,
        timestamp: int = BASE_TIMESTAMP,
    ) -> AppendResult:
        """The coordinator's marker for this producer's transaction."""
        return write_marker(
            log,
            self.producer_id,
            self.epoch if epoch is None else epoch,
            commit,
            coordinator_epoch,
            timestamp,
        )


def write_marker(
    log: PartitionLog,
    producer_id: int,
    epoch: int,
    commit: bool,
    coordinator_epoch: int = 0,
    timestamp: int = BASE_TIMESTAMP,
    origin: AppendOrigin = AppendOrigin.COORDINATOR,
) -> AppendResult:
    control = ControlType.COMMIT if commit else ControlType.ABORT
    marker = bytearray(build_control_batch(producer_id, epoch, control, coordinator_epoch, timestamp))
    return log.append(memoryview(marker), origin=origin)


def plain(log: PartitionLog, timestamp: int = BASE_TIMESTAMP) -> AppendResult:
    """A batch from a producer without a producer id."""
    return log.append(memoryview(make_batch(RECORDS_PER_BATCH, timestamp=timestamp)))


def aborted(log: PartitionLog) -> list[CompletedTxn]:
    return log.aborted_txns.overlapping(0, log.log_end_offset + 1)


def expect_error(code: ErrorCode, log: PartitionLog, append: Callable[[], object]) -> None:
    """``append()`` fails with ``code`` and leaves the log and its stable offset as they were."""
    end, stable = log.log_end_offset, log.last_stable_offset
    with pytest.raises(KafkaError) as caught:
        append()
    assert caught.value.code == code
    assert (log.log_end_offset, log.last_stable_offset) == (end, stable)


@dataclass(frozen=True)
class TxnView:
    """Everything transactions leave in memory: the stable offset, aborted list and each producer's entry."""

    last_stable_offset: int
    aborted: list[CompletedTxn]
    producers: Sequence[tuple[object, ...]]


def view_of(log: PartitionLog) -> TxnView:
    producers = sorted(
        (
            e.producer_id,
            e.epoch,
            e.last_sequence,
            e.coordinator_epoch,
            e.txn_first_offset,
            e.last_marker_offset,
            tuple(e.batches),
        )
        for e in log.producers
    )
    return TxnView(log.last_stable_offset, aborted(log), producers)


@pytest.fixture
def log(log_dir: Path, small_config: LogConfig, clock: FakeClock) -> PartitionLog:
    return PartitionLog(log_dir, small_config, clock=clock)


# ---------------------------------------------------------------------------------------- last stable offset
def test_an_empty_or_non_transactional_log_is_stable_up_to_the_high_watermark(log: PartitionLog) -> None:
    assert log.last_stable_offset == 0
    plain(log)
    Producer(7).send(log, transactional=False)
    assert log.last_stable_offset == log.high_watermark == 2 * RECORDS_PER_BATCH


def test_an_open_transaction_holds_the_stable_offset_until_its_marker(log: PartitionLog) -> None:
    producer = Producer(7)
    first = producer.send(log)
    plain(log)
    producer.send(log)
    assert (log.last_stable_offset, log.high_watermark) == (first.base_offset, 3 * RECORDS_PER_BATCH)
    marker = producer.end(log, commit=True)
    assert marker.base_offset == 3 * RECORDS_PER_BATCH
    assert log.last_stable_offset == log.high_watermark == marker.base_offset + 1
    assert aborted(log) == []


def test_the_oldest_open_transaction_sets_the_stable_offset(log: PartitionLog) -> None:
    first, second = Producer(7), Producer(8)
    first.send(log)
    later = second.send(log)
    first.send(log)
    first.end(log, commit=True)
    assert log.last_stable_offset == later.base_offset
    closing = second.end(log, commit=False)
    assert log.last_stable_offset == closing.base_offset + 1


def test_the_stable_offset_never_passes_the_high_watermark(log: PartitionLog) -> None:
    plain(log)
    log.high_watermark = 1
    assert log.last_stable_offset == 1


def test_a_coordinators_transactional_batch_without_sequence_opens_a_transaction(log: PartitionLog) -> None:
    """How the group coordinator writes TxnOffsetCommit offsets to __consumer_offsets."""
    batch = make_batch(1, producer_id=7, producer_epoch=2, transactional=True)  # base sequence -1
    opened = log.append(memoryview(batch), origin=AppendOrigin.COORDINATOR)
    assert log.last_stable_offset == opened.base_offset
    write_marker(log, 7, 2, commit=True)
    assert log.last_stable_offset == log.high_watermark


# ------------------------------------------------------------------------------------------ aborted list
def test_aborted_transactions_are_listed_with_their_first_offset_and_marker(log: PartitionLog) -> None:
    doomed, kept = Producer(7), Producer(8)
    doomed.send(log)  # 0-2
    plain(log)  # 3-5
    kept.send(log)  # 6-8
    doomed.send(log)  # 9-11
    abort = doomed.end(log, commit=False)  # 12
    kept.end(log, commit=True)  # 13
    expected = CompletedTxn(7, 0, abort.base_offset, True)
    assert aborted(log) == [expected]
    assert log.aborted_txns.overlapping(0, 1) == [expected]
    assert log.aborted_txns.overlapping(3, 6) == [expected]  # data of the transaction on both sides
    assert log.aborted_txns.overlapping(12, 13) == [expected]  # the marker itself
    assert log.aborted_txns.overlapping(13, 20) == []  # all of it before the range
    assert len(log.aborted_txns) == 1


def test_aborted_transactions_are_kept_in_marker_order(log: PartitionLog) -> None:
    first, second = Producer(7), Producer(8)
    first.send(log)
    second.send(log)
    second_abort = second.end(log, commit=False)
    first_abort = first.end(log, commit=False)
    assert aborted(log) == [
        CompletedTxn(8, RECORDS_PER_BATCH, second_abort.base_offset, True),
        CompletedTxn(7, 0, first_abort.base_offset, True),
    ]
    assert log.aborted_txns.overlapping(first_abort.base_offset, first_abort.base_offset + 1) == [
        CompletedTxn(7, 0, first_abort.base_offset, True)
    ]


# ------------------------------------------------------------------------------------------ marker checks
def test_a_marker_from_an_older_producer_epoch_is_refused(log: PartitionLog) -> None:
    producer = Producer(7, epoch=3)
    producer.send(log)
    expect_error(ErrorCode.INVALID_PRODUCER_EPOCH, log, lambda: producer.end(log, commit=True, epoch=2))
    producer.end(log, commit=True)
    assert log.last_stable_offset == log.high_watermark


def test_a_marker_from_an_older_coordinator_is_refused(log: PartitionLog) -> None:
    producer = Producer(7)
    producer.send(log)
    producer.end(log, commit=True, coordinator_epoch=5)
    producer.send(log)
    expect_error(
        ErrorCode.TRANSACTION_COORDINATOR_FENCED,
        log,
        lambda: producer.end(log, commit=False, coordinator_epoch=4),
    )
    producer.end(log, commit=False, coordinator_epoch=5)
    assert log.last_stable_offset == log.high_watermark


def test_a_marker_with_a_bumped_epoch_closes_the_transaction_and_fences_the_producer(
    log: PartitionLog,
) -> None:
    """What InitProducerId and the timeout abort do to a zombie: abort with its epoch + 1."""
    zombie = Producer(7, epoch=4)
    zombie.send(log)
    zombie.end(log, commit=False, epoch=5)
    assert log.last_stable_offset == log.high_watermark
    assert [txn.producer_id for txn in aborted(log)] == [7]
    expect_error(ErrorCode.INVALID_PRODUCER_EPOCH, log, lambda: zombie.send(log))
    successor = Producer(7, epoch=5)
    successor.send(log)
    assert log.last_stable_offset < log.high_watermark


def test_a_producer_with_an_open_transaction_cannot_write_outside_it(log: PartitionLog) -> None:
    producer = Producer(7)
    producer.send(log)
    expect_error(ErrorCode.INVALID_TXN_STATE, log, lambda: producer.send(log, transactional=False))
    producer.sequence -= RECORDS_PER_BATCH  # the refused batch was not written
    producer.end(log, commit=True)
    producer.send(log, transactional=False)
    assert log.last_stable_offset == log.high_watermark


def test_clients_cannot_write_control_batches(log: PartitionLog) -> None:
    Producer(7).send(log)
    for commit in (True, False):
        as_client = partial(write_marker, log, 7, 0, commit, origin=AppendOrigin.CLIENT)
        expect_error(ErrorCode.INVALID_RECORD, log, as_client)
    assert log.last_stable_offset == 0
    assert aborted(log) == []


# -------------------------------------------------------------------------------------- rebuilt from the log
def mixed_history(log: PartitionLog) -> None:
    """Several segments of committed, aborted, open and plain writes, with two coordinator epochs."""
    committer, aborter, hanging = Producer(7), Producer(8, epoch=2), Producer(9)
    for round_ in range(6):
        committer.send(log)
        aborter.send(log)
        plain(log)
        committer.end(log, commit=True, coordinator_epoch=round_ // 3)
        aborter.end(log, commit=False, coordinator_epoch=1)
    hanging.send(log)
    committer.send(log)
    plain(log)


def test_a_clean_reopen_rebuilds_the_same_transaction_state(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    mixed_history(log)
    before = view_of(log)
    assert len(log._segments) > 1
    assert before.last_stable_offset < log.high_watermark and len(before.aborted) == 6
    log.close()
    reopened = PartitionLog(log_dir, small_config, clock=clock, clean_shutdown=True)
    assert view_of(reopened) == before
    reopened.close()


def test_a_reopen_after_a_kill_rebuilds_the_same_transaction_state(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    mixed_history(log)
    before = view_of(log)
    reopened = PartitionLog(log_dir, small_config, clock=clock)  # the first was never closed
    assert view_of(reopened) == before


def test_a_truncation_below_a_marker_reopens_its_transaction(log: PartitionLog) -> None:
    producer = Producer(7)
    first = producer.send(log)
    marker = producer.end(log, commit=False)
    plain(log)
    log.truncate_to(marker.base_offset)
    assert log.last_stable_offset == first.base_offset
    assert aborted(log) == []
    producer.end(log, commit=False)
    assert log.last_stable_offset == log.high_watermark


# ------------------------------------------------------------------------------------------ deleting old data
def test_delete_records_forgets_aborted_transactions_whose_marker_is_gone(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    early, late = Producer(7), Producer(8)
    early.send(log)
    early_abort = early.end(log, commit=False)
    late.send(log)
    late_abort = late.end(log, commit=False)
    log.delete_records_before(early_abort.base_offset)
    assert [txn.producer_id for txn in aborted(log)] == [7, 8]  # the marker is still there
    log.delete_records_before(early_abort.base_offset + 1)
    assert aborted(log) == [CompletedTxn(8, early_abort.base_offset + 1, late_abort.base_offset, True)]
    log.close()
    reopened = PartitionLog(
        log_dir, small_config, clock=clock, clean_shutdown=True, log_start_offset=early_abort.base_offset + 1
    )
    assert aborted(reopened) == aborted(log)
    reopened.close()


def test_retention_forgets_aborted_transactions_of_deleted_segments(
    log: PartitionLog, small_config: LogConfig
) -> None:
    old = Producer(7)
    old.send(log)
    old.end(log, commit=False)
    while len(log._segments) < 3:
        plain(log)
    recent = Producer(8)
    recent.send(log, timestamp=BASE_TIMESTAMP + 60_000)
    recent_abort = recent.end(log, commit=False, timestamp=BASE_TIMESTAMP + 60_000)
    small_config.retention_ms = 30_000
    assert log.enforce_retention(BASE_TIMESTAMP + 61_000) > 0
    assert log.log_start_offset > 0
    assert [(txn.producer_id, txn.last_offset) for txn in aborted(log)] == [(8, recent_abort.base_offset)]


def test_the_stable_offset_is_never_below_the_log_start(log: PartitionLog) -> None:
    """Kafka's first unstable offset is at least the log start offset (UnifiedLog's
    maybeIncrementFirstUnstableOffset): data below it cannot be fetched, so read_committed consumers must not
    be told to stop there."""
    Producer(7).send(log)  # 0-2, its transaction stays open
    plain(log)  # 3-5
    log.delete_records_before(RECORDS_PER_BATCH)
    assert log.last_stable_offset == RECORDS_PER_BATCH


def test_an_open_transaction_whose_first_batch_was_deleted_survives_a_clean_reopen(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    """The in-memory state keeps a producer with an open transaction after DeleteRecords, so a clean reopen
    must too (Kafka's producer snapshot does): the transaction may still abort."""
    producer = Producer(7)
    producer.send(log)  # 0-2, open
    plain(log)  # 3-5
    log.delete_records_before(RECORDS_PER_BATCH)
    entry = log.producers.entry(7)
    assert entry is not None and entry.txn_first_offset == 0
    log.close()
    reopened = PartitionLog(
        log_dir, small_config, clock=clock, clean_shutdown=True, log_start_offset=RECORDS_PER_BATCH
    )
    rebuilt = reopened.producers.entry(7)
    assert rebuilt is not None and rebuilt.txn_first_offset == 0
    assert reopened.last_stable_offset < reopened.high_watermark
    producer.end(reopened, commit=False)
    assert [txn.producer_id for txn in aborted(reopened)] == [7]
    assert reopened.last_stable_offset == reopened.high_watermark
    reopened.close()
