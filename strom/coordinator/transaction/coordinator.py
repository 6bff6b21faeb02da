"""The transaction coordinator: transactional ids, their producer ids and epochs, and their transactions, as
a sans-I/O state machine (KIP-98), driven by calls and a clock.

Everything durable goes through two callables it is given: ``write_record`` appends a transactional id's
state to its partition of ``__transaction_state`` (acks=all), and ``write_markers`` appends a commit or abort
marker to every partition of a transaction, returning whether all were written. A request is answered only
after its record is written. Ending a transaction follows Kafka's two steps, so a crash at any point leaves
the transaction either fully committed or fully aborted:

1. PrepareCommit/PrepareAbort is written: from then on the outcome is decided;
2. the markers are written, then CompleteCommit/CompleteAbort.

A broker that restarts between the two finds the Prepare state when it replays the topic and writes the
markers again before serving the id (`finish_loading`); markers that fail to be written are retried by
`tick`. Kafka sends markers to partition leaders asynchronously and answers EndTxn after step 1; here the
partitions are local, so the markers are written before the answer, and a client that commits sees its
transaction complete.

`tick` also aborts transactions open longer than their timeout, bumping the epoch so the producer that
opened them is fenced (as Kafka does, every ``transaction.abort.timed.out.transaction.cleanup.interval.ms``),
and forgets transactional ids idle for ``transactional.id.expiration.ms``.

Errors follow Kafka's TransactionCoordinator: an unknown id or a producer id that is not the id's current one
is INVALID_PRODUCER_ID_MAPPING, an old epoch PRODUCER_FENCED (handlers turn it into INVALID_PRODUCER_EPOCH for
request versions older than KIP-588), an operation while markers are being written CONCURRENT_TRANSACTIONS,
and one that does not fit the state INVALID_TXN_STATE.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NamedTuple

from strom.coordinator.internal_topic import PartitionOwnership, partition_for
from strom.coordinator.transaction.records import TransactionLogValue
from strom.coordinator.transaction.state import (
    MAX_PRODUCER_EPOCH,
    PREPARING,
    SETTLED,
    TopicPartition,
    TransactionMetadata,
    TxnState,
)
from strom.protocol.errors import ErrorCode, KafkaError

if TYPE_CHECKING:
    from strom.metadata.properties import BrokerConfig

log = logging.getLogger(__name__)

#: (partition of __transaction_state, transactional id, value or None for a tombstone); raises KafkaError.
RecordWriter = Callable[[int, str, TransactionLogValue | None], None]
#: (producer id, producer epoch, commit?, coordinator epoch, partitions) -> whether every marker was written.
MarkerWriter = Callable[[int, int, bool, int, Iterable[TopicPartition]], bool]


@dataclass(frozen=True, slots=True)
class TransactionConfig:
    """The broker settings the coordinator follows, by Kafka's names (defaults are Kafka's)."""

    num_partitions: int = 50  # transaction.state.log.num.partitions
    max_timeout_ms: int = 900_000  # transaction.max.timeout.ms
    abort_timed_out_interval_ms: int = 10_000  # transaction.abort.timed.out.transaction.cleanup.interval.ms
    id_expiration_ms: int = 7 * 24 * 3_600_000  # transactional.id.expiration.ms
    remove_expired_interval_ms: int = 3_600_000  # transaction.remove.expired.transaction.cleanup.interval.ms

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> TransactionConfig:
        return cls(
            num_partitions=config.get_int("transaction.state.log.num.partitions"),
            max_timeout_ms=config.get_int("transaction.max.timeout.ms"),
            abort_timed_out_interval_ms=config.get_int(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms"
            ),
            id_expiration_ms=config.get_int("transactional.id.expiration.ms"),
            remove_expired_interval_ms=config.get_int(
                "transaction.remove.expired.transaction.cleanup.interval.ms"
            ),
        )


class ProducerIdAndEpoch(NamedTuple):
    producer_id: int
    producer_epoch: int


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    def __init__(
        self,
        config: TransactionConfig,
        *,
        write_record: RecordWriter,
        write_markers: MarkerWriter,
        new_producer_id: Callable[[], int],
        coordinator_epoch: Callable[[int], int],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.config = config
        self._write_record = write_record
        self._write_markers = write_markers
        self._new_producer_id = new_producer_id
        self._coordinator_epoch = coordinator_epoch
        self._clock = clock
        self._txns: dict[str, TransactionMetadata] = {}
        self._ownership = PartitionOwnership()
        now = clock()
        self._next_abort_check = now + config.abort_timed_out_interval_ms
        self._next_expiry_check = now + config.remove_expired_interval_ms

    # ================================================================== ownership and loading
    @property
    def num_partitions(self) -> int:
        return self._ownership.num_partitions

    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self._ownership.num_partitions or self.config.num_partitions)

    def begin_loading(self, num_partitions: int, partitions: Iterable[int]) -> None:
        self._ownership.begin_loading(num_partitions, partitions)

    def replay(self, transactional_id: str, value: TransactionLogValue | None) -> None:
        """Apply one record of __transaction_state: the last one of an id wins, a tombstone forgets it."""
        if value is None:
            self._txns.pop(transactional_id, None)
        else:
            self._txns[transactional_id] = TransactionMetadata.from_record_value(transactional_id, value)

    def finish_loading(self, partition: int) -> None:
        """The partition is replayed: finish what a crash left decided but incomplete, then serve it."""
        for txn in list(self._txns.values()):
            if txn.state in PREPARING and self.partition_for(txn.transactional_id) == partition:
                self._complete(txn)
        self._ownership.finish_loading(partition)

    def _check_available(self, transactional_id: str) -> None:
        error = self._ownership.availability_error(self.partition_for(transactional_id))
        if error is not None:
            raise KafkaError(error)

    # ================================================================== InitProducerId
    def init_producer_id(
        self, transactional_id: str, timeout_ms: int, expected: ProducerIdAndEpoch | None = None
    ) -> ProducerIdAndEpoch:
        """A producer id and a bumped epoch for the transactional id, fencing any earlier producer of it.

        ``expected`` is the caller's current id and epoch when it asks to recover (KIP-360); a retry of a
        bump that already happened gets the same answer again."""
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            raise KafkaError(
                ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                f"transaction timeout {timeout_ms} ms is outside (0, {self.config.max_timeout_ms}] "
                f"(transaction.max.timeout.ms)",
            )
        self._check_available(transactional_id)
        txn = self._txns.get(transactional_id)
        if txn is None:
            txn = TransactionMetadata(transactional_id, self._new_producer_id(), -1, timeout_ms)
        elif expected is not None and not txn.may_be_claimed_by(*expected):
            raise KafkaError(ErrorCode.PRODUCER_FENCED, "the expected producer id and epoch are not current")
        if txn.state in PREPARING:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)
        if txn.state is TxnState.ONGOING:
            self._fence_and_abort(txn)
            txn = self._txns[transactional_id]
            if txn.state is not TxnState.COMPLETE_ABORT:
                raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)  # markers still to be written
        updated = _copy(txn)
        expected_epoch = None if expected is None else expected.producer_epoch
        if updated.epoch_exhausted and expected_epoch in (None, updated.producer_epoch):
            # Rotate to a new producer id; a recovering caller's retry must find the old epoch again.
            updated.previous_producer_id = updated.producer_id
            updated.last_producer_epoch = updated.producer_epoch if expected is not None else -1
            updated.producer_id = self._new_producer_id()
            updated.producer_epoch = 0
        elif expected_epoch is None:
            updated.last_producer_epoch = -1
            updated.producer_epoch += 1
        elif updated.producer_epoch in (-1, expected_epoch):
            updated.last_producer_epoch = updated.producer_epoch
            updated.producer_epoch += 1
        elif expected_epoch == updated.last_producer_epoch:
            return ProducerIdAndEpoch(txn.producer_id, txn.producer_epoch)  # a retried bump: same answer
        else:
            raise KafkaError(ErrorCode.PRODUCER_FENCED, f"epoch {expected_epoch} is not the current epoch")
        updated.timeout_ms = timeout_ms
        updated.state = TxnState.EMPTY
        updated.partitions = set()
        updated.start_timestamp = -1
        self._store(updated)
        return ProducerIdAndEpoch(updated.producer_id, updated.producer_epoch)

    def _fence_and_abort(self, txn: TransactionMetadata) -> None:
        """Abort an open transaction with a bumped epoch, so its producer can write no more (a zombie); the
        fenced epoch is not remembered, so that producer cannot recover into its successor's epoch."""
        fenced = _copy(txn)
        if fenced.producer_epoch < MAX_PRODUCER_EPOCH:
            fenced.producer_epoch += 1
        fenced.last_producer_epoch = -1
        self._prepare_and_complete(fenced, commit=False)

    # ================================================================== AddPartitionsToTxn / AddOffsetsToTxn
    def add_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> None:
        """Make the partitions part of the producer's transaction, opening it if none is."""
        txn = self._owned_txn(transactional_id, producer_id, producer_epoch)
        if txn.state in PREPARING:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)
        wanted = set(partitions)
        if txn.state is TxnState.ONGOING and wanted <= txn.partitions:
            return
        updated = _copy(txn)
        if txn.state is not TxnState.ONGOING:
            updated.start_timestamp = self._clock()
            updated.partitions = set()
        updated.state = TxnState.ONGOING
        updated.partitions |= wanted
        self._store(updated)

    def verify_partitions(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """KIP-890's verification: whether each partition is in the producer's open transaction (NONE) or not
        (INVALID_TXN_STATE); nothing is changed."""
        txn = self._owned_txn(transactional_id, producer_id, producer_epoch)
        if txn.state in PREPARING:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)
        ongoing = txn.state is TxnState.ONGOING
        return {
            tp: ErrorCode.NONE if ongoing and tp in txn.partitions else ErrorCode.INVALID_TXN_STATE
            for tp in partitions
        }

    def _owned_txn(self, transactional_id: str, producer_id: int, producer_epoch: int) -> TransactionMetadata:
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "the transactional id is empty")
        self._check_available(transactional_id)
        txn = self._txns.get(transactional_id)
        if txn is None or txn.producer_id != producer_id:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                f"producer {producer_id} is not the producer of transactional id {transactional_id!r}",
            )
        if txn.producer_epoch != producer_epoch:
            raise KafkaError(
                ErrorCode.PRODUCER_FENCED,
                f"producer {producer_id} epoch {producer_epoch} is not the current {txn.producer_epoch}",
            )
        return txn

    # ================================================================== EndTxn
    def end_transaction(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool
    ) -> None:
        """Commit or abort the producer's transaction; a retry of the same decision succeeds again."""
        txn = self._owned_txn(transactional_id, producer_id, producer_epoch)
        wanted_prepare = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        wanted_complete = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        if txn.state is TxnState.ONGOING:
            self._prepare_and_complete(_copy(txn), commit=commit)
        elif txn.state is wanted_prepare:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS)
        elif txn.state is not wanted_complete:
            action = "commit" if commit else "abort"
            raise KafkaError(
                ErrorCode.INVALID_TXN_STATE,
                f"cannot {action} transactional id {transactional_id!r} in state {txn.state.display_name}",
            )

    def _prepare_and_complete(self, txn: TransactionMetadata, *, commit: bool) -> None:
        """Step 1 (decide) then step 2 (markers, complete); raises only when the decision was not written."""
        txn.state = TxnState.PREPARE_COMMIT if commit else TxnState.PREPARE_ABORT
        self._store(txn)
        self._complete(txn)

    def _complete(self, txn: TransactionMetadata) -> None:
        """Write the decided transaction's markers, then its Complete state; on failure `tick` tries again."""
        commit = txn.state is TxnState.PREPARE_COMMIT
        partition = self.partition_for(txn.transactional_id)
        written = self._write_markers(
            txn.producer_id,
            txn.producer_epoch,
            commit,
            self._coordinator_epoch(partition),
            sorted(txn.partitions),
        )
        if not written:
            log.warning("markers of transactional id %r not all written; will retry", txn.transactional_id)
            return
        completed = _copy(txn)
        completed.state = TxnState.COMPLETE_COMMIT if commit else TxnState.COMPLETE_ABORT
        completed.partitions = set()
        try:
            self._store(completed)
        except KafkaError as exc:
            log.warning("could not complete transactional id %r: %s", txn.transactional_id, exc)

    def _store(self, txn: TransactionMetadata) -> None:
        """Write the id's new state, then adopt it; raises KafkaError (state unchanged) if the write fails,
        with the code Kafka gives clients for it: retry elsewhere or later, never a storage detail."""
        txn.last_update_timestamp = self._clock()
        try:
            self._write_record(
                self.partition_for(txn.transactional_id), txn.transactional_id, txn.to_record_value()
            )
        except KafkaError as exc:
            code = _WRITE_ERRORS.get(exc.code, ErrorCode.UNKNOWN_SERVER_ERROR)
            raise KafkaError(code, exc.message) from exc
        self._txns[txn.transactional_id] = txn

    # ================================================================== administration
    def describe(self, transactional_id: str) -> TransactionMetadata:
        """The id's state, for DescribeTransactions; TRANSACTIONAL_ID_NOT_FOUND when unknown."""
        self._check_available(transactional_id)
        txn = self._txns.get(transactional_id)
        if txn is None:
            raise KafkaError(ErrorCode.TRANSACTIONAL_ID_NOT_FOUND)
        return txn

    def list_transactions(
        self,
        states: Iterable[TxnState] = (),
        producer_ids: Iterable[int] = (),
        min_duration_ms: int = -1,
    ) -> list[TransactionMetadata]:
        """Ids of the served partitions, filtered as ListTransactions asks (empty filters match all); the
        duration filter keeps open transactions running longer than that. COORDINATOR_LOAD_IN_PROGRESS while
        a partition loads, as from Kafka."""
        if self._ownership.loading:
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS)
        wanted_states, wanted_ids = set(states), set(producer_ids)
        now = self._clock()
        listed = []
        for txn in self._txns.values():
            if self._ownership.availability_error(self.partition_for(txn.transactional_id)) is not None:
                continue
            if wanted_states and txn.state not in wanted_states:
                continue
            if wanted_ids and txn.producer_id not in wanted_ids:
                continue
            running_ms = now - txn.start_timestamp
            if min_duration_ms >= 0 and (txn.state in SETTLED or running_ms <= min_duration_ms):
                continue
            listed.append(txn)
        return sorted(listed, key=lambda t: t.transactional_id)

    # ================================================================== time
    def tick(self) -> None:
        """Abort timed-out transactions, retry unwritten markers, forget long-idle transactional ids."""
        now = self._clock()
        if now >= self._next_abort_check:
            self._next_abort_check = now + self.config.abort_timed_out_interval_ms
            self._abort_timed_out(now)
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + self.config.remove_expired_interval_ms
            self._expire_idle_ids(now)

    def _abort_timed_out(self, now: int) -> None:
        for txn in list(self._txns.values()):
            if self._ownership.availability_error(self.partition_for(txn.transactional_id)) is not None:
                continue
            try:
                if txn.state in PREPARING:
                    self._complete(txn)
                elif txn.state is TxnState.ONGOING and now - txn.start_timestamp > txn.timeout_ms:
                    log.info(
                        "aborting transactional id %r: open longer than %d ms",
                        txn.transactional_id,
                        txn.timeout_ms,
                    )
                    self._fence_and_abort(txn)
            except KafkaError as exc:
                log.warning("could not abort transactional id %r: %s", txn.transactional_id, exc)

    def _expire_idle_ids(self, now: int) -> None:
        for txn in list(self._txns.values()):
            partition = self.partition_for(txn.transactional_id)
            if self._ownership.availability_error(partition) is not None or txn.state not in SETTLED:
                continue
            if now - txn.last_update_timestamp >= self.config.id_expiration_ms:
                try:
                    self._write_record(partition, txn.transactional_id, None)
                except KafkaError as exc:
                    log.warning("could not expire transactional id %r: %s", txn.transactional_id, exc)
                    continue
                del self._txns[txn.transactional_id]


#: What a failed write to __transaction_state tells the client (Kafka's TransactionStateManager mapping).
_WRITE_ERRORS = {
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.REQUEST_TIMED_OUT: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.NOT_LEADER_OR_FOLLOWER: ErrorCode.NOT_COORDINATOR,
    ErrorCode.KAFKA_STORAGE_ERROR: ErrorCode.NOT_COORDINATOR,
}


def _copy(txn: TransactionMetadata) -> TransactionMetadata:
    """A copy to change: the stored state changes only once the new one is written."""
    return replace(txn, partitions=set(txn.partitions))
