"""The transaction coordinator as a state machine: fake storage and marker writers, a clock moved by hand.

Every durable step shows up in what the fakes record: the __transaction_state records (in order) and the
marker writes, so the tests check both the answers and what a crash at any point would leave behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from strom.coordinator.transaction import (
    ProducerIdAndEpoch,
    TransactionConfig,
    TransactionCoordinator,
    TxnState,
)
from strom.coordinator.transaction.records import TransactionLogValue
from strom.coordinator.transaction.state import MAX_PRODUCER_EPOCH, TopicPartition
from strom.protocol.errors import ErrorCode, KafkaError

TXN = "payments"
NUM_PARTITIONS = 4
FIRST_PRODUCER_ID = 1000
COORDINATOR_EPOCH = 7
TIMEOUT_MS = 60_000
ORDERS_0: TopicPartition = ("orders", 0)
ORDERS_1: TopicPartition = ("orders", 1)
AUDIT_0: TopicPartition = ("audit", 0)

CONFIG = TransactionConfig(
    num_partitions=NUM_PARTITIONS,
    max_timeout_ms=900_000,
    abort_timed_out_interval_ms=1_000,
    id_expiration_ms=100_000,
    remove_expired_interval_ms=1_000,
)


@dataclass(frozen=True)
class MarkerWrite:
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    partitions: list[TopicPartition]


@dataclass
class Fakes:
    """What the coordinator is given: its clock, its writers (which may be told to fail) and id source."""

    now_ms: int = 0
    records: list[tuple[int, str, TransactionLogValue | None]] = field(default_factory=list)
    markers: list[MarkerWrite] = field(default_factory=list)
    fail_records: bool = False
    #: Fail only the records of these states (step 2's Complete records, say).
    fail_states: frozenset[TxnState] = frozenset()
    fail_markers: bool = False
    next_producer_id: int = FIRST_PRODUCER_ID

    def clock(self) -> int:
        return self.now_ms

    def write_record(self, partition: int, transactional_id: str, value: TransactionLogValue | None) -> None:
        if self.fail_records or (value is not None and value.state in self.fail_states):
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS)
        self.records.append((partition, transactional_id, value))

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> bool:
        if self.fail_markers:
            return False
        self.markers.append(
            MarkerWrite(producer_id, producer_epoch, commit, coordinator_epoch, list(partitions))
        )
        return True

    def new_producer_id(self) -> int:
        self.next_producer_id += 1
        return self.next_producer_id - 1

    def states(self, transactional_id: str = TXN) -> list[TxnState | None]:
        """The states written for the id, oldest first (None for a tombstone)."""
        return [
            None if value is None else TxnState(value.state)
            for _, written_id, value in self.records
            if written_id == transactional_id
        ]


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


def new_coordinator(fakes: Fakes, config: TransactionConfig = CONFIG) -> TransactionCoordinator:
    return TransactionCoordinator(
        config,
        write_record=fakes.write_record,
        write_markers=fakes.write_markers,
        new_producer_id=fakes.new_producer_id,
        coordinator_epoch=lambda partition: COORDINATOR_EPOCH,
        clock=fakes.clock,
    )


def serve_all(coordinator: TransactionCoordinator) -> None:
    coordinator.begin_loading(NUM_PARTITIONS, range(NUM_PARTITIONS))
    for partition in range(NUM_PARTITIONS):
        coordinator.finish_loading(partition)


@pytest.fixture
def coordinator(fakes: Fakes) -> TransactionCoordinator:
    served = new_coordinator(fakes)
    serve_all(served)
    return served


def error_of(call: Callable[..., object], *args: object) -> ErrorCode:
    """The error code ``call(*args)`` raises (it must raise)."""
    with pytest.raises(KafkaError) as caught:
        call(*args)
    return caught.value.code


def open_transaction(
    coordinator: TransactionCoordinator, partitions: Iterable[TopicPartition] = (ORDERS_0, ORDERS_1)
) -> ProducerIdAndEpoch:
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, partitions)
    return producer


def stored_value(
    state: TxnState,
    *,
    producer_id: int = 500,
    producer_epoch: int = 3,
    partitions: dict[str, list[int]] | None = None,
    start: int = -1,
) -> TransactionLogValue:
    """A record as replay finds it in __transaction_state."""
    return TransactionLogValue(
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        timeout_ms=TIMEOUT_MS,
        state=int(state),
        partitions=partitions or {},
        last_update_timestamp=0,
        start_timestamp=start,
    )


def partitions_of(value: TransactionLogValue) -> dict[str, list[int]]:
    """The record's partitions, in order (their order in a record carries no meaning)."""
    return {topic: sorted(indexes) for topic, indexes in value.partitions.items()}


def loaded_with(fakes: Fakes, values: dict[str, TransactionLogValue]) -> TransactionCoordinator:
    """A coordinator that replayed ``values`` and finished loading every partition."""
    coordinator = new_coordinator(fakes)
    coordinator.begin_loading(NUM_PARTITIONS, range(NUM_PARTITIONS))
    for transactional_id, value in values.items():
        coordinator.replay(transactional_id, value)
    for partition in range(NUM_PARTITIONS):
        coordinator.finish_loading(partition)
    return coordinator


# ------------------------------------------------------------------------------------------ InitProducerId
def test_a_new_transactional_id_gets_a_new_producer_id_at_epoch_zero(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS) == ProducerIdAndEpoch(FIRST_PRODUCER_ID, 0)
    [(partition, written_id, value)] = fakes.records
    assert (partition, written_id) == (coordinator.partition_for(TXN), TXN)
    assert value is not None
    assert (value.producer_id, value.producer_epoch, value.timeout_ms, value.state, value.partitions) == (
        FIRST_PRODUCER_ID,
        0,
        TIMEOUT_MS,
        TxnState.EMPTY,
        {},
    )
    other = coordinator.init_producer_id("another-app", TIMEOUT_MS)
    assert other.producer_id == FIRST_PRODUCER_ID + 1


def test_init_again_bumps_the_epoch_and_keeps_the_producer_id(coordinator: TransactionCoordinator) -> None:
    first = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    second = coordinator.init_producer_id(TXN, 30_000)
    assert second == ProducerIdAndEpoch(first.producer_id, first.producer_epoch + 1)
    assert coordinator.describe(TXN).timeout_ms == 30_000


@pytest.mark.parametrize("timeout_ms", [0, -1, CONFIG.max_timeout_ms + 1])
def test_a_timeout_outside_the_allowed_range_is_refused(
    coordinator: TransactionCoordinator, fakes: Fakes, timeout_ms: int
) -> None:
    assert error_of(coordinator.init_producer_id, TXN, timeout_ms) == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    assert fakes.records == []
    assert coordinator.init_producer_id(TXN, CONFIG.max_timeout_ms).producer_epoch == 0


def test_init_fences_an_ongoing_transaction_by_aborting_it_with_a_bumped_epoch(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    zombie = open_transaction(coordinator)
    successor = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    assert fakes.markers == [
        MarkerWrite(
            zombie.producer_id, zombie.producer_epoch + 1, False, COORDINATOR_EPOCH, [ORDERS_0, ORDERS_1]
        )
    ]
    assert fakes.states() == [
        TxnState.EMPTY,
        TxnState.ONGOING,
        TxnState.PREPARE_ABORT,
        TxnState.COMPLETE_ABORT,
        TxnState.EMPTY,
    ]
    assert successor.producer_id == zombie.producer_id
    assert successor.producer_epoch > zombie.producer_epoch + 1  # beyond the epoch of the abort markers
    described = coordinator.describe(TXN)
    assert (described.state, described.partitions) == (TxnState.EMPTY, set())
    for call in (coordinator.add_partitions, coordinator.verify_partitions):
        assert error_of(call, TXN, zombie.producer_id, zombie.producer_epoch, [ORDERS_0]) == (
            ErrorCode.PRODUCER_FENCED
        )
    assert error_of(coordinator.end_transaction, TXN, zombie.producer_id, zombie.producer_epoch, True) == (
        ErrorCode.PRODUCER_FENCED
    )


def test_init_while_the_fencing_markers_cannot_be_written_answers_concurrent_transactions(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    zombie = open_transaction(coordinator)
    fakes.fail_markers = True
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert coordinator.describe(TXN).state is TxnState.PREPARE_ABORT
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS) == ErrorCode.CONCURRENT_TRANSACTIONS
    fakes.fail_markers = False
    fakes.now_ms += CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert [m.producer_epoch for m in fakes.markers] == [zombie.producer_epoch + 1]
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_ABORT
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS).producer_epoch == zombie.producer_epoch + 2


# ------------------------------------------------------------------------------------------ KIP-360 recovery
def test_a_producer_recovering_with_its_current_id_and_epoch_gets_the_next_epoch(
    coordinator: TransactionCoordinator,
) -> None:
    current = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    bumped = coordinator.init_producer_id(TXN, TIMEOUT_MS, current)
    assert bumped == ProducerIdAndEpoch(current.producer_id, current.producer_epoch + 1)


def test_a_retried_recovery_gets_the_same_answer_again(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    current = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    bumped = coordinator.init_producer_id(TXN, TIMEOUT_MS, current)
    assert (
        coordinator.init_producer_id(TXN, TIMEOUT_MS, current) == bumped
    )  # the answer was lost: asked again
    assert coordinator.describe(TXN).producer_epoch == bumped.producer_epoch


@pytest.mark.parametrize(
    ("id_delta", "epoch_delta"),
    [(50, 0), (0, -2), (0, 1)],
    ids=["another-producer-id", "an-older-epoch", "a-future-epoch"],
)
def test_a_recovery_with_an_id_and_epoch_that_are_not_current_is_fenced(
    coordinator: TransactionCoordinator, id_delta: int, epoch_delta: int
) -> None:
    for _ in range(3):
        latest = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    current = coordinator.init_producer_id(TXN, TIMEOUT_MS, latest)
    wrong = ProducerIdAndEpoch(current.producer_id + id_delta, current.producer_epoch + epoch_delta)
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS, wrong) == ErrorCode.PRODUCER_FENCED
    assert coordinator.describe(TXN).producer_epoch == current.producer_epoch


def test_a_zombie_cannot_recover_after_a_new_producer_initialised_the_id(
    coordinator: TransactionCoordinator,
) -> None:
    """A fresh InitProducerId (no expected epoch) forgets the previous epoch, as Kafka's
    prepareIncrementProducerEpoch does; otherwise the fenced producer's "retry" would be handed the new
    producer's epoch and both would write as the same producer."""
    zombie = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    successor = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS, zombie) == ErrorCode.PRODUCER_FENCED
    assert coordinator.describe(TXN).producer_epoch == successor.producer_epoch


def test_a_recovery_for_an_id_the_coordinator_does_not_know_gets_a_new_producer_id(
    coordinator: TransactionCoordinator,
) -> None:
    granted = coordinator.init_producer_id(TXN, TIMEOUT_MS, ProducerIdAndEpoch(77, 4))
    assert granted == ProducerIdAndEpoch(FIRST_PRODUCER_ID, 0)


# ------------------------------------------------------------------------------------------ epoch exhaustion
EXHAUSTED_EPOCH = MAX_PRODUCER_EPOCH - 1
OLD_PRODUCER_ID = 500


def exhausted(fakes: Fakes) -> TransactionCoordinator:
    return loaded_with(
        fakes,
        {
            TXN: stored_value(
                TxnState.COMPLETE_COMMIT, producer_id=OLD_PRODUCER_ID, producer_epoch=EXHAUSTED_EPOCH
            )
        },
    )


def test_an_exhausted_epoch_gets_a_new_producer_id_at_epoch_zero(fakes: Fakes) -> None:
    coordinator = exhausted(fakes)
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS) == ProducerIdAndEpoch(FIRST_PRODUCER_ID, 0)
    assert coordinator.describe(TXN).producer_id == FIRST_PRODUCER_ID


def test_a_fence_that_exhausts_the_epoch_ends_with_a_new_producer_id(fakes: Fakes) -> None:
    coordinator = loaded_with(
        fakes,
        {
            TXN: stored_value(
                TxnState.ONGOING,
                producer_id=OLD_PRODUCER_ID,
                producer_epoch=EXHAUSTED_EPOCH - 1,
                partitions={"orders": [0]},
                start=0,
            )
        },
    )
    granted = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    assert fakes.markers == [
        MarkerWrite(OLD_PRODUCER_ID, EXHAUSTED_EPOCH, False, COORDINATOR_EPOCH, [ORDERS_0])
    ]
    assert granted == ProducerIdAndEpoch(FIRST_PRODUCER_ID, 0)


def test_a_retried_recovery_across_a_new_producer_id_gets_the_same_answer(fakes: Fakes) -> None:
    """Kafka records the exhausted epoch as the last epoch when it rotates the id for a recovering producer,
    so the retry (still naming the old id and epoch) is answered with the same new id and epoch."""
    coordinator = exhausted(fakes)
    old = ProducerIdAndEpoch(OLD_PRODUCER_ID, EXHAUSTED_EPOCH)
    rotated = coordinator.init_producer_id(TXN, TIMEOUT_MS, old)
    assert rotated == ProducerIdAndEpoch(FIRST_PRODUCER_ID, 0)
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS, old) == rotated


def test_an_old_producer_id_with_an_epoch_that_was_not_exhausted_is_fenced(fakes: Fakes) -> None:
    """Only a producer that held the exhausted epoch may recover across the new producer id (Kafka's
    isValidProducerId); an older zombie of the old id must not bump the new producer's epoch."""
    coordinator = exhausted(fakes)
    successor = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    zombie = ProducerIdAndEpoch(OLD_PRODUCER_ID, 5)
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS, zombie) == ErrorCode.PRODUCER_FENCED
    assert coordinator.describe(TXN).producer_epoch == successor.producer_epoch


# ----------------------------------------------------------------------------------------- AddPartitionsToTxn
def test_adding_partitions_opens_a_transaction(coordinator: TransactionCoordinator, fakes: Fakes) -> None:
    fakes.now_ms = 5_000
    open_transaction(coordinator)
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.partitions, txn.start_timestamp) == (TxnState.ONGOING, {ORDERS_0, ORDERS_1}, 5_000)
    last = fakes.records[-1][2]
    assert last is not None and (last.state, partitions_of(last), last.start_timestamp) == (
        TxnState.ONGOING,
        {"orders": [0, 1]},
        5_000,
    )


def test_adding_partitions_already_in_the_transaction_writes_nothing(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    written = len(fakes.records)
    fakes.now_ms += 1_000
    coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, [ORDERS_1])
    assert len(fakes.records) == written
    coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, [ORDERS_1, AUDIT_0])
    txn = coordinator.describe(TXN)
    assert (txn.partitions, txn.start_timestamp) == ({ORDERS_0, ORDERS_1, AUDIT_0}, 0)
    assert len(fakes.records) == written + 1


def test_the_next_transaction_starts_afresh_after_a_commit(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, True)
    fakes.now_ms = 9_000
    coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, [AUDIT_0])
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.partitions, txn.start_timestamp) == (TxnState.ONGOING, {AUDIT_0}, 9_000)


def test_adding_partitions_checks_the_producer(coordinator: TransactionCoordinator, fakes: Fakes) -> None:
    assert error_of(coordinator.add_partitions, TXN, FIRST_PRODUCER_ID, 0, [ORDERS_0]) == (
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    coordinator.init_producer_id(TXN, TIMEOUT_MS)
    pid, epoch = producer.producer_id, producer.producer_epoch
    assert error_of(coordinator.add_partitions, TXN, pid + 1, epoch + 1, [ORDERS_0]) == (
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )
    assert error_of(coordinator.add_partitions, TXN, pid, epoch, [ORDERS_0]) == ErrorCode.PRODUCER_FENCED
    assert coordinator.describe(TXN).state is TxnState.EMPTY


# ------------------------------------------------------------------------------------------ verification
def test_verification_reports_each_partition_and_changes_nothing(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    pid, epoch = producer.producer_id, producer.producer_epoch
    assert coordinator.verify_partitions(TXN, pid, epoch, [ORDERS_0]) == {
        ORDERS_0: ErrorCode.INVALID_TXN_STATE
    }
    coordinator.add_partitions(TXN, pid, epoch, [ORDERS_0])
    written = len(fakes.records)
    assert coordinator.verify_partitions(TXN, pid, epoch, [ORDERS_0, AUDIT_0]) == {
        ORDERS_0: ErrorCode.NONE,
        AUDIT_0: ErrorCode.INVALID_TXN_STATE,
    }
    assert len(fakes.records) == written
    assert coordinator.describe(TXN).partitions == {ORDERS_0}
    coordinator.end_transaction(TXN, pid, epoch, True)
    assert coordinator.verify_partitions(TXN, pid, epoch, [ORDERS_0]) == {
        ORDERS_0: ErrorCode.INVALID_TXN_STATE
    }
    assert error_of(coordinator.verify_partitions, TXN, pid + 1, epoch, [ORDERS_0]) == (
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )
    assert (
        error_of(coordinator.verify_partitions, TXN, pid, epoch - 1, [ORDERS_0]) == ErrorCode.PRODUCER_FENCED
    )


# ------------------------------------------------------------------------------------------ EndTxn
@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_ending_a_transaction_writes_the_decision_then_the_markers_then_completes(
    coordinator: TransactionCoordinator, fakes: Fakes, commit: bool
) -> None:
    producer = open_transaction(coordinator, [ORDERS_1, AUDIT_0, ORDERS_0])
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, commit)
    assert fakes.markers == [
        MarkerWrite(
            producer.producer_id,
            producer.producer_epoch,
            commit,
            COORDINATOR_EPOCH,
            [AUDIT_0, ORDERS_0, ORDERS_1],
        )
    ]
    prepared, completed = (
        (TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT)
        if commit
        else (TxnState.PREPARE_ABORT, TxnState.COMPLETE_ABORT)
    )
    assert fakes.states()[-2:] == [prepared, completed]
    decision = fakes.records[-2][2]
    assert decision is not None and partitions_of(decision) == {"audit": [0], "orders": [0, 1]}
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.partitions, txn.producer_epoch) == (completed, set(), producer.producer_epoch)


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_a_retried_end_with_the_same_decision_succeeds_and_writes_nothing(
    coordinator: TransactionCoordinator, fakes: Fakes, commit: bool
) -> None:
    producer = open_transaction(coordinator)
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, commit)
    written, marked = len(fakes.records), len(fakes.markers)
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, commit)
    assert (len(fakes.records), len(fakes.markers)) == (written, marked)
    assert error_of(
        coordinator.end_transaction, TXN, producer.producer_id, producer.producer_epoch, not commit
    ) == (ErrorCode.INVALID_TXN_STATE)


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_ending_without_a_transaction_is_an_invalid_state(
    coordinator: TransactionCoordinator, fakes: Fakes, commit: bool
) -> None:
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    assert error_of(
        coordinator.end_transaction, TXN, producer.producer_id, producer.producer_epoch, commit
    ) == (ErrorCode.INVALID_TXN_STATE)
    assert fakes.markers == []


def test_ending_checks_the_producer(coordinator: TransactionCoordinator) -> None:
    assert error_of(coordinator.end_transaction, TXN, FIRST_PRODUCER_ID, 0, True) == (
        ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )
    producer = open_transaction(coordinator)
    pid, epoch = producer.producer_id, producer.producer_epoch
    assert (
        error_of(coordinator.end_transaction, TXN, pid + 1, epoch, True)
        == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    )
    assert error_of(coordinator.end_transaction, TXN, pid, epoch + 1, True) == ErrorCode.PRODUCER_FENCED
    assert coordinator.describe(TXN).state is TxnState.ONGOING


def test_markers_that_fail_leave_the_decision_and_tick_writes_them(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    pid, epoch = producer.producer_id, producer.producer_epoch
    fakes.fail_markers = True
    coordinator.end_transaction(TXN, pid, epoch, True)  # decided: the answer may go out
    assert coordinator.describe(TXN).state is TxnState.PREPARE_COMMIT
    assert error_of(coordinator.end_transaction, TXN, pid, epoch, True) == ErrorCode.CONCURRENT_TRANSACTIONS
    assert error_of(coordinator.end_transaction, TXN, pid, epoch, False) == ErrorCode.INVALID_TXN_STATE
    assert (
        error_of(coordinator.add_partitions, TXN, pid, epoch, [AUDIT_0]) == ErrorCode.CONCURRENT_TRANSACTIONS
    )
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS) == ErrorCode.CONCURRENT_TRANSACTIONS
    fakes.now_ms += CONFIG.abort_timed_out_interval_ms
    coordinator.tick()  # still failing: nothing changes
    assert coordinator.describe(TXN).state is TxnState.PREPARE_COMMIT
    fakes.fail_markers = False
    fakes.now_ms += CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert fakes.markers == [MarkerWrite(pid, epoch, True, COORDINATOR_EPOCH, [ORDERS_0, ORDERS_1])]
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_COMMIT
    coordinator.end_transaction(TXN, pid, epoch, True)


def test_a_decision_that_cannot_be_written_leaves_the_transaction_open(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    written = list(fakes.records)
    fakes.fail_records = True
    with pytest.raises(KafkaError):
        coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, True)
    assert (fakes.records, fakes.markers) == (written, [])
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.partitions) == (TxnState.ONGOING, {ORDERS_0, ORDERS_1})
    fakes.fail_records = False
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, True)
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_COMMIT


def test_records_that_cannot_be_written_change_no_state(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    fakes.fail_records = True
    with pytest.raises(KafkaError):
        coordinator.init_producer_id(TXN, TIMEOUT_MS)
    assert error_of(coordinator.describe, TXN) == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    fakes.fail_records = False
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    fakes.fail_records = True
    with pytest.raises(KafkaError):
        coordinator.init_producer_id(TXN, TIMEOUT_MS)
    with pytest.raises(KafkaError):
        coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, [ORDERS_0])
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.producer_epoch, txn.partitions) == (TxnState.EMPTY, producer.producer_epoch, set())


def test_a_completion_that_cannot_be_written_is_finished_by_tick(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    fakes.fail_states = frozenset({TxnState.COMPLETE_COMMIT})
    coordinator.end_transaction(TXN, producer.producer_id, producer.producer_epoch, True)
    assert coordinator.describe(TXN).state is TxnState.PREPARE_COMMIT
    fakes.fail_states = frozenset()
    fakes.now_ms += CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_COMMIT
    assert fakes.states()[-2:] == [TxnState.PREPARE_COMMIT, TxnState.COMPLETE_COMMIT]
    assert all(m.commit for m in fakes.markers)


# ------------------------------------------------------------------------------------------ time
def test_tick_aborts_a_timed_out_transaction_and_fences_its_producer(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = open_transaction(coordinator)
    pid, epoch = producer.producer_id, producer.producer_epoch
    fakes.now_ms = TIMEOUT_MS  # exactly the timeout: not yet
    coordinator.tick()
    assert coordinator.describe(TXN).state is TxnState.ONGOING
    fakes.now_ms = TIMEOUT_MS + CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert fakes.markers == [MarkerWrite(pid, epoch + 1, False, COORDINATOR_EPOCH, [ORDERS_0, ORDERS_1])]
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.producer_epoch) == (TxnState.COMPLETE_ABORT, epoch + 1)
    assert error_of(coordinator.end_transaction, TXN, pid, epoch, True) == ErrorCode.PRODUCER_FENCED
    assert error_of(coordinator.add_partitions, TXN, pid, epoch, [ORDERS_0]) == ErrorCode.PRODUCER_FENCED
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS).producer_epoch == epoch + 2


def test_tick_waits_for_the_abort_check_interval(coordinator: TransactionCoordinator, fakes: Fakes) -> None:
    coordinator.init_producer_id(TXN, 1)
    producer = coordinator.describe(TXN)
    coordinator.add_partitions(TXN, producer.producer_id, producer.producer_epoch, [ORDERS_0])
    fakes.now_ms = CONFIG.abort_timed_out_interval_ms - 1
    coordinator.tick()
    assert coordinator.describe(TXN).state is TxnState.ONGOING
    fakes.now_ms = CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_ABORT


def test_settled_ids_idle_past_the_expiration_are_removed_with_a_tombstone(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    coordinator.init_producer_id(TXN, TIMEOUT_MS)
    busy = coordinator.init_producer_id("busy", CONFIG.max_timeout_ms)
    coordinator.add_partitions("busy", busy.producer_id, busy.producer_epoch, [ORDERS_0])
    fakes.now_ms = CONFIG.id_expiration_ms + CONFIG.remove_expired_interval_ms
    coordinator.tick()
    assert fakes.records[-1] == (coordinator.partition_for(TXN), TXN, None)
    assert error_of(coordinator.describe, TXN) == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    assert coordinator.describe("busy").state is TxnState.ONGOING  # an open transaction never expires
    assert fakes.states("busy")[-1] is TxnState.ONGOING
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS).producer_id == FIRST_PRODUCER_ID + 2  # a new one


def test_an_id_expires_once_idle_for_exactly_the_expiration_time(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    """Kafka expires an id when its last update is at or before now - transactional.id.expiration.ms."""
    coordinator.init_producer_id(TXN, TIMEOUT_MS)
    fakes.now_ms = CONFIG.id_expiration_ms  # a multiple of the check interval: the check runs now
    coordinator.tick()
    assert fakes.states()[-1] is None
    assert error_of(coordinator.describe, TXN) == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND


def test_a_tombstone_that_cannot_be_written_keeps_the_id(
    coordinator: TransactionCoordinator, fakes: Fakes
) -> None:
    producer = coordinator.init_producer_id(TXN, TIMEOUT_MS)
    fakes.fail_records = True
    fakes.now_ms = CONFIG.id_expiration_ms + CONFIG.remove_expired_interval_ms
    coordinator.tick()
    assert coordinator.describe(TXN).producer_id == producer.producer_id
    fakes.fail_records = False
    fakes.now_ms += CONFIG.remove_expired_interval_ms
    coordinator.tick()
    assert error_of(coordinator.describe, TXN) == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND


# ------------------------------------------------------------------------------------------ loading
def test_not_coordinator_before_loading_and_load_in_progress_while_loading(fakes: Fakes) -> None:
    coordinator = new_coordinator(fakes)
    assert error_of(coordinator.init_producer_id, TXN, TIMEOUT_MS) == ErrorCode.NOT_COORDINATOR
    assert error_of(coordinator.describe, TXN) == ErrorCode.NOT_COORDINATOR
    partition = coordinator.partition_for(TXN)
    coordinator.begin_loading(NUM_PARTITIONS, [partition])
    calls: list[tuple[Callable[..., object], tuple[object, ...]]] = [
        (coordinator.init_producer_id, (TXN, TIMEOUT_MS)),
        (coordinator.add_partitions, (TXN, 1, 0, [ORDERS_0])),
        (coordinator.verify_partitions, (TXN, 1, 0, [ORDERS_0])),
        (coordinator.end_transaction, (TXN, 1, 0, True)),
        (coordinator.describe, (TXN,)),
    ]
    for call, args in calls:
        assert error_of(call, *args) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    other = next(t for t in ("a", "b", "c", "d", "e", "f") if coordinator.partition_for(t) != partition)
    assert error_of(coordinator.init_producer_id, other, TIMEOUT_MS) == ErrorCode.NOT_COORDINATOR
    coordinator.finish_loading(partition)
    assert coordinator.init_producer_id(TXN, TIMEOUT_MS).producer_epoch == 0
    assert fakes.records[0][0] == partition


def test_partition_for_follows_the_topics_partition_count(fakes: Fakes) -> None:
    coordinator = new_coordinator(fakes)
    assert coordinator.partition_for(TXN) == coordinator.partition_for(TXN) < CONFIG.num_partitions
    coordinator.begin_loading(1, [0])
    assert coordinator.num_partitions == 1
    assert coordinator.partition_for(TXN) == 0


def test_replay_keeps_the_last_record_of_each_id_and_a_tombstone_forgets(fakes: Fakes) -> None:
    coordinator = new_coordinator(fakes)
    coordinator.begin_loading(NUM_PARTITIONS, range(NUM_PARTITIONS))
    coordinator.replay(TXN, stored_value(TxnState.EMPTY, producer_epoch=1))
    coordinator.replay(
        TXN, stored_value(TxnState.ONGOING, producer_epoch=2, partitions={"orders": [1]}, start=10)
    )
    coordinator.replay("gone", stored_value(TxnState.COMPLETE_ABORT, producer_id=600))
    coordinator.replay("gone", None)
    for partition in range(NUM_PARTITIONS):
        coordinator.finish_loading(partition)
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.producer_id, txn.producer_epoch, txn.partitions, txn.start_timestamp) == (
        TxnState.ONGOING,
        500,
        2,
        {ORDERS_1},
        10,
    )
    assert error_of(coordinator.describe, "gone") == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    assert fakes.records == [] and fakes.markers == []  # nothing to finish
    coordinator.end_transaction(TXN, 500, 2, False)
    assert fakes.markers == [MarkerWrite(500, 2, False, COORDINATOR_EPOCH, [ORDERS_1])]


@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_finishing_the_load_completes_a_decision_a_crash_left_behind(fakes: Fakes, commit: bool) -> None:
    prepared = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
    coordinator = new_coordinator(fakes)
    partition = coordinator.partition_for(TXN)
    coordinator.begin_loading(NUM_PARTITIONS, range(NUM_PARTITIONS))
    coordinator.replay(TXN, stored_value(prepared, partitions={"orders": [0, 1]}, start=0))
    other = next(p for p in range(NUM_PARTITIONS) if p != partition)
    coordinator.finish_loading(other)
    assert fakes.markers == []  # not this partition's transaction
    coordinator.finish_loading(partition)
    assert fakes.markers == [MarkerWrite(500, 3, commit, COORDINATOR_EPOCH, [ORDERS_0, ORDERS_1])]
    completed = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
    assert fakes.states() == [completed]
    assert fakes.records[0][0] == partition
    txn = coordinator.describe(TXN)
    assert (txn.state, txn.partitions) == (completed, set())
    coordinator.end_transaction(TXN, 500, 3, commit)  # the producer's retry is answered


def test_a_decision_whose_markers_fail_at_load_is_retried_by_tick(fakes: Fakes) -> None:
    fakes.fail_markers = True
    coordinator = loaded_with(fakes, {TXN: stored_value(TxnState.PREPARE_COMMIT, partitions={"orders": [0]})})
    assert coordinator.describe(TXN).state is TxnState.PREPARE_COMMIT
    fakes.fail_markers = False
    fakes.now_ms = CONFIG.abort_timed_out_interval_ms
    coordinator.tick()
    assert coordinator.describe(TXN).state is TxnState.COMPLETE_COMMIT


# ------------------------------------------------------------------------------------------ administration
def test_describe_reports_the_current_state(coordinator: TransactionCoordinator, fakes: Fakes) -> None:
    assert error_of(coordinator.describe, TXN) == ErrorCode.TRANSACTIONAL_ID_NOT_FOUND
    fakes.now_ms = 2_500
    producer = open_transaction(coordinator)
    txn = coordinator.describe(TXN)
    assert (txn.transactional_id, txn.producer_id, txn.producer_epoch, txn.timeout_ms) == (
        TXN,
        producer.producer_id,
        producer.producer_epoch,
        TIMEOUT_MS,
    )
    assert (txn.state.display_name, txn.start_timestamp, txn.partitions) == (
        "Ongoing",
        2_500,
        {ORDERS_0, ORDERS_1},
    )


def listing(
    coordinator: TransactionCoordinator,
    states: Iterable[TxnState] = (),
    producer_ids: Iterable[int] = (),
    min_duration_ms: int = -1,
) -> list[tuple[str, str]]:
    """(transactional id, state name) of each listed transaction."""
    listed = coordinator.list_transactions(states, producer_ids, min_duration_ms)
    return [(t.transactional_id, t.state.display_name) for t in listed]


@pytest.fixture
def three_ids(coordinator: TransactionCoordinator, fakes: Fakes) -> dict[str, ProducerIdAndEpoch]:
    """The ids "idle" (Empty), "done" (CompleteCommit, opened at 0) and "open" (Ongoing since 1000)."""
    idle = coordinator.init_producer_id("idle", TIMEOUT_MS)
    done = coordinator.init_producer_id("done", TIMEOUT_MS)
    coordinator.add_partitions("done", done.producer_id, done.producer_epoch, [ORDERS_0])
    coordinator.end_transaction("done", done.producer_id, done.producer_epoch, True)
    fakes.now_ms = 1_000
    ongoing = coordinator.init_producer_id("open", TIMEOUT_MS)
    coordinator.add_partitions("open", ongoing.producer_id, ongoing.producer_epoch, [ORDERS_1])
    return {"idle": idle, "done": done, "open": ongoing}


def test_list_filters_by_state_and_producer_id(
    coordinator: TransactionCoordinator, three_ids: dict[str, ProducerIdAndEpoch]
) -> None:
    everything = [("done", "CompleteCommit"), ("idle", "Empty"), ("open", "Ongoing")]
    assert listing(coordinator) == everything
    assert listing(coordinator, states=[TxnState.ONGOING, TxnState.EMPTY]) == [everything[1], everything[2]]
    assert listing(coordinator, states=[TxnState.PREPARE_ABORT]) == []
    assert listing(coordinator, producer_ids=[three_ids["done"].producer_id, 424242]) == [everything[0]]
    assert listing(coordinator, states=[TxnState.EMPTY], producer_ids=[three_ids["done"].producer_id]) == []


def test_list_duration_filter_keeps_transactions_running_longer_than_it(
    coordinator: TransactionCoordinator, fakes: Fakes, three_ids: dict[str, ProducerIdAndEpoch]
) -> None:
    fakes.now_ms = 1_000 + 500
    assert listing(coordinator, min_duration_ms=0) == [("open", "Ongoing")]
    assert listing(coordinator, min_duration_ms=499) == [("open", "Ongoing")]
    assert listing(coordinator, min_duration_ms=501) == []


def test_list_duration_filter_excludes_a_transaction_running_exactly_that_long(
    coordinator: TransactionCoordinator, fakes: Fakes, three_ids: dict[str, ProducerIdAndEpoch]
) -> None:
    """ListTransactions v1: "only transactions running longer than this duration" (Kafka's schema)."""
    fakes.now_ms = 1_000 + 500
    assert listing(coordinator, min_duration_ms=500) == []
