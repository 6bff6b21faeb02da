"""Idempotent producers at the log: duplicates answered with their original offsets, sequence gaps and old
epochs refused, and the state rebuilt from the log after a reopen, a kill, a truncation and retention."""

from __future__ import annotations

from pathlib import Path

import pytest
from log_helpers import FakeClock, make_batch, record_offsets

from strom.log import AppendResult, LogConfig, PartitionLog
from strom.log.producer_state import ProducerStateManager
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import parse_batch_header

PRODUCER = 1000
RECORDS_PER_BATCH = 3


def _send(log: PartitionLog, sequence: int, *, epoch: int = 0, producer_id: int = PRODUCER) -> AppendResult:
    """Append a 3-record batch from ``producer_id`` starting at ``sequence``."""
    batch = make_batch(
        RECORDS_PER_BATCH, producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence
    )
    return log.append(memoryview(batch))


def _send_many(log: PartitionLog, batches: int, *, epoch: int = 0) -> list[AppendResult]:
    return [_send(log, n * RECORDS_PER_BATCH, epoch=epoch) for n in range(batches)]


def _all_offsets(log: PartitionLog) -> list[int]:
    return record_offsets(log.read_bytes(log.log_start_offset, 1 << 30))


def _expect_error(code: ErrorCode, log: PartitionLog, sequence: int, *, epoch: int = 0) -> None:
    end = log.log_end_offset
    with pytest.raises(KafkaError) as caught:
        _send(log, sequence, epoch=epoch)
    assert caught.value.code == code
    assert log.log_end_offset == end


@pytest.fixture
def log(log_dir: Path, small_config: LogConfig, clock: FakeClock) -> PartitionLog:
    return PartitionLog(log_dir, small_config, clock=clock)


@pytest.mark.parametrize("which", range(5))
def test_a_retry_of_any_of_the_last_five_batches_is_answered_with_its_offsets_and_not_written(
    log: PartitionLog, which: int
) -> None:
    results = _send_many(log, 7)
    end = log.log_end_offset
    original = results[2 + which]  # the last five are batches 2..6
    retried = _send(log, (2 + which) * RECORDS_PER_BATCH)
    assert (retried.base_offset, retried.last_offset) == (original.base_offset, original.last_offset)
    assert retried.record_count == RECORDS_PER_BATCH
    assert log.log_end_offset == end
    assert _all_offsets(log) == list(range(end))


def test_a_retry_older_than_the_last_five_is_out_of_order(log: PartitionLog) -> None:
    _send_many(log, 6)
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, log, 0)


def test_a_sequence_gap_is_out_of_order_and_the_next_batch_in_order_is_accepted(log: PartitionLog) -> None:
    _send_many(log, 2)
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, log, 2 * RECORDS_PER_BATCH + 1)
    assert _send(log, 2 * RECORDS_PER_BATCH).base_offset == 2 * RECORDS_PER_BATCH


def test_a_batch_overlapping_an_earlier_one_without_matching_it_is_out_of_order(log: PartitionLog) -> None:
    _send_many(log, 2)
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, log, 1)


def test_an_older_epoch_is_fenced(log: PartitionLog) -> None:
    _send(log, 0, epoch=3)
    _expect_error(ErrorCode.INVALID_PRODUCER_EPOCH, log, RECORDS_PER_BATCH, epoch=2)


def test_a_new_epoch_must_start_at_sequence_zero(log: PartitionLog) -> None:
    _send_many(log, 2)
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, log, 2 * RECORDS_PER_BATCH, epoch=1)
    assert _send(log, 0, epoch=1).base_offset == 2 * RECORDS_PER_BATCH


def test_a_new_epoch_forgets_the_old_epochs_batches(log: PartitionLog) -> None:
    _send(log, 0)
    _send(log, 0, epoch=1)
    _expect_error(ErrorCode.INVALID_PRODUCER_EPOCH, log, 0, epoch=0)  # not answered as a duplicate
    assert _send(log, 0, epoch=1).base_offset == RECORDS_PER_BATCH  # but this one is


def test_an_unknown_producer_may_start_at_any_sequence(log: PartitionLog) -> None:
    """Kafka 2.5+: a producer whose state is gone (or never existed here) is accepted wherever it resumes."""
    assert _send(log, 500).base_offset == 0
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, log, 504)


def test_producers_are_independent_and_plain_batches_are_untouched(log: PartitionLog) -> None:
    _send(log, 0)
    _send(log, 0, producer_id=PRODUCER + 1)
    log.append(memoryview(make_batch(RECORDS_PER_BATCH)))
    assert _send(log, RECORDS_PER_BATCH).base_offset == 3 * RECORDS_PER_BATCH
    assert len(log.producers) == 2


def test_sequences_wrap_from_int32_max_to_zero() -> None:
    state = ProducerStateManager()
    first = parse_batch_header(make_batch(2, producer_id=PRODUCER, producer_epoch=0, base_sequence=2**31 - 2))
    state.record(first)
    entry = state.entry(PRODUCER)
    assert entry is not None and entry.last_sequence == 2**31 - 1
    wrapped = parse_batch_header(make_batch(1, producer_id=PRODUCER, producer_epoch=0, base_sequence=0))
    assert state.check_client_batch(wrapped) is None


def test_state_is_rebuilt_after_a_clean_reopen(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    results = _send_many(log, 30, epoch=1)  # several segments
    log.close()
    reopened = PartitionLog(log_dir, small_config, clock=clock, clean_shutdown=True)
    assert len(reopened._segments) > 1
    assert _send(reopened, 29 * RECORDS_PER_BATCH, epoch=1).base_offset == results[29].base_offset
    _expect_error(ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, reopened, 31 * RECORDS_PER_BATCH, epoch=1)
    _expect_error(ErrorCode.INVALID_PRODUCER_EPOCH, reopened, 30 * RECORDS_PER_BATCH, epoch=0)


def test_state_is_rebuilt_after_a_kill_with_a_torn_tail(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    """Abandon the log as kill -9 would, with half a batch at the end: the torn batch is not remembered."""
    results = _send_many(log, 4)
    active = log._segments[-1].path
    torn = make_batch(RECORDS_PER_BATCH, producer_id=PRODUCER, producer_epoch=0, base_sequence=12)
    with active.open("ab") as file:
        file.write(bytes(torn)[: len(torn) // 2])
    reopened = PartitionLog(log_dir, small_config, clock=clock)
    assert reopened.log_end_offset == 4 * RECORDS_PER_BATCH
    assert _send(reopened, 9).base_offset == results[3].base_offset
    assert _send(reopened, 12).base_offset == 4 * RECORDS_PER_BATCH  # the torn batch, sent again, is new


def test_truncation_rebuilds_the_state_from_what_is_left(log: PartitionLog) -> None:
    _send_many(log, 4)
    log.truncate_to(2 * RECORDS_PER_BATCH)
    assert _send(log, 2 * RECORDS_PER_BATCH).base_offset == 2 * RECORDS_PER_BATCH
    assert _send(log, RECORDS_PER_BATCH).base_offset == RECORDS_PER_BATCH  # still a duplicate


def test_producers_whose_batches_are_all_deleted_are_forgotten_as_a_reopen_would(
    log: PartitionLog, log_dir: Path, small_config: LogConfig, clock: FakeClock
) -> None:
    _send(log, 0, producer_id=PRODUCER + 1)
    _send_many(log, 2)
    log.delete_records_before(2 * RECORDS_PER_BATCH)
    assert log.producers.entry(PRODUCER + 1) is None
    entry = log.producers.entry(PRODUCER)
    assert entry is not None and [b.first_sequence for b in entry.batches] == [RECORDS_PER_BATCH]
    log.close()
    reopened = PartitionLog(
        log_dir, small_config, clock=clock, clean_shutdown=True, log_start_offset=2 * RECORDS_PER_BATCH
    )
    assert reopened.producers.entry(PRODUCER + 1) is None
    rebuilt = reopened.producers.entry(PRODUCER)
    assert rebuilt is not None and list(rebuilt.batches) == list(entry.batches)
