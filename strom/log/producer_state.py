"""Producer state of one partition: per producer id, its epoch, last five batches and open transaction.

What Kafka's ProducerStateManager keeps, and the checks its ProducerAppendInfo applies to a batch before it is
written:
- a batch with the same epoch and the same first and last sequence as one of the producer's last five is a
  retry of a batch already written: the log answers with that batch's offsets and writes nothing;
- an epoch lower than the last one seen is a fenced producer: INVALID_PRODUCER_EPOCH;
- a new epoch must start at sequence 0, and within an epoch each batch must follow the last one:
  OUT_OF_ORDER_SEQUENCE_NUMBER otherwise;
- a producer with no state here (new, or its batches are gone) may start at any sequence, as in Kafka 2.5+
  (KIP-360): the broker cannot tell a lost producer from a new one, so it no longer answers
  UNKNOWN_PRODUCER_ID.

Transactions: the first transactional batch of a producer opens its transaction here (its offset is where
read_committed consumers must stop: the first unstable offset), and the coordinator's marker (a control
batch) closes it as a `CompletedTxn`. A marker carries the coordinator's epochs: one older than the
producer's is INVALID_PRODUCER_EPOCH, a coordinator epoch older than the last one seen is
TRANSACTION_COORDINATOR_FENCED. A producer with an open transaction may not write outside it
(INVALID_TXN_STATE).

The state is persisted in snapshots (see `producer_snapshot`) and, when a log opens or truncates, restored
from the latest one and brought up to date from the batch headers (and marker records) after it. When the log
start offset moves, what the batches below it contributed is forgotten: producers left with nothing above it
(unless they have a transaction open), batches below it, and a marker below it with its coordinator epoch.
Together with ``last_timestamp`` being that of the producer's latest batch or marker (as in Kafka), this keeps
what is in memory equal to what a replay of the log from its start offset produces, so a snapshot taken at
any time restores exactly. The one thing a replay cannot know is where a transaction that spans the log start
offset began: the state keeps the true first offset, a replay finds the first batch it still sees.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import BatchHeader, ControlType

BATCHES_TO_RETAIN = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN; clients keep at most 5 in flight
INT32_MAX = 2**31 - 1


@dataclass(slots=True, frozen=True)
class BatchMetadata:
    """Where one producer batch went: enough to answer its retries."""

    first_sequence: int
    last_sequence: int
    first_offset: int
    last_offset: int
    max_timestamp: int


@dataclass(slots=True, frozen=True)
class CompletedTxn:
    """A transaction a marker closed: its data spans first_offset up to the marker at last_offset."""

    producer_id: int
    first_offset: int
    last_offset: int
    aborted: bool


@dataclass(slots=True)
class ProducerEntry:
    """One producer's epoch, its most recent batches (oldest first) and its open transaction, if any."""

    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))
    coordinator_epoch: int = -1
    #: Max timestamp of the producer's latest batch or marker (Kafka's lastTimestamp: latest, not largest).
    last_timestamp: int = -1
    #: Offset of the producer's first batch in its open transaction; -1 when none is open.
    txn_first_offset: int = -1
    #: Offset of the last marker written for the producer; -1 when none.
    last_marker_offset: int = -1

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else -1

    @property
    def last_offset(self) -> int:
        return max(self.batches[-1].last_offset if self.batches else -1, self.last_marker_offset)

    def find_duplicate(self, epoch: int, first_sequence: int, last_sequence: int) -> BatchMetadata | None:
        if epoch != self.epoch:
            return None
        for batch in self.batches:
            if batch.first_sequence == first_sequence and batch.last_sequence == last_sequence:
                return batch
        return None


def last_sequence(batch: BatchHeader) -> int:
    """The batch's last sequence number; sequences wrap from INT32_MAX to 0."""
    return (batch.base_sequence + batch.last_offset_delta) % (INT32_MAX + 1)


def _in_sequence(last: int, following: int) -> bool:
    return following == last + 1 or (following == 0 and last == INT32_MAX)


def _fenced(batch: BatchHeader, entry: ProducerEntry) -> KafkaError:
    return KafkaError(
        ErrorCode.INVALID_PRODUCER_EPOCH,
        f"epoch {batch.producer_epoch} of producer {batch.producer_id} is older than the last seen epoch "
        f"{entry.epoch}",
    )


class ProducerStateManager:
    """The producer state of one partition log. Only batches with a producer id (>= 0) reach it."""

    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}
        self._open_txns: dict[int, int] = {}  # producer id -> first offset of its open transaction

    def __len__(self) -> int:
        return len(self._producers)

    def __iter__(self) -> Iterator[ProducerEntry]:
        return iter(list(self._producers.values()))

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def first_unstable_offset(self) -> int | None:
        """The first offset of the oldest open transaction: read_committed consumers stop there."""
        return min(self._open_txns.values()) if self._open_txns else None

    # -- checks before a write -------------------------------------------------------------------------------

    def check_client_batch(self, batch: BatchHeader) -> BatchMetadata | None:
        """Validate a producer's batch before it is written: the earlier batch it duplicates, or None when it
        is new and in order. Raises INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER or
        INVALID_TXN_STATE."""
        entry = self._producers.get(batch.producer_id)
        if entry is None:
            return None
        epoch, first = batch.producer_epoch, batch.base_sequence
        if epoch < entry.epoch:
            raise _fenced(batch, entry)
        if epoch == entry.epoch:
            duplicate = entry.find_duplicate(epoch, first, last_sequence(batch))
            if duplicate is not None:
                return duplicate
            expected_after = entry.last_sequence
            if (expected_after < 0 and first != 0) or (
                expected_after >= 0 and not _in_sequence(expected_after, first)
            ):
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"out of order sequence number for producer {batch.producer_id}: {first} "
                    f"(incoming), {expected_after} (current end sequence number)",
                )
        elif first != 0:
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"a new epoch {epoch} of producer {batch.producer_id} must start at sequence 0, not {first}",
            )
        if entry.txn_first_offset >= 0 and not batch.is_transactional:
            raise KafkaError(
                ErrorCode.INVALID_TXN_STATE,
                f"producer {batch.producer_id} has a transaction open and wrote a non-transactional batch",
            )
        return None

    def check_coordinator_batch(self, batch: BatchHeader) -> None:
        """A coordinator's batch on behalf of a producer (transactional offset commits): epoch check only."""
        entry = self._producers.get(batch.producer_id)
        if entry is not None and batch.producer_epoch < entry.epoch:
            raise _fenced(batch, entry)

    def check_marker(self, batch: BatchHeader, coordinator_epoch: int) -> None:
        """A transaction marker may not come from an older producer epoch or an older coordinator."""
        entry = self._producers.get(batch.producer_id)
        if entry is None:
            return
        if batch.producer_epoch < entry.epoch:
            raise _fenced(batch, entry)
        if coordinator_epoch < entry.coordinator_epoch:
            raise KafkaError(
                ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                f"coordinator epoch {coordinator_epoch} is older than {entry.coordinator_epoch}",
            )

    # -- state changes after a write -------------------------------------------------------------------------

    def _entry_for(self, batch: BatchHeader) -> ProducerEntry:
        """The producer's entry at the batch's epoch: a new epoch starts with no batches remembered."""
        entry = self._producers.get(batch.producer_id)
        if entry is None:
            entry = self._producers[batch.producer_id] = ProducerEntry(
                batch.producer_id, batch.producer_epoch
            )
        elif entry.epoch != batch.producer_epoch:
            entry.epoch = batch.producer_epoch
            entry.batches.clear()
        return entry

    def record(self, batch: BatchHeader) -> None:
        """Remember a written data batch (offsets assigned); a transactional one may open a transaction."""
        entry = self._entry_for(batch)
        if batch.base_sequence >= 0:  # coordinator batches (offset commits) carry no sequence
            entry.batches.append(
                BatchMetadata(
                    batch.base_sequence,
                    last_sequence(batch),
                    batch.base_offset,
                    batch.last_offset,
                    batch.max_timestamp,
                )
            )
        entry.last_timestamp = batch.max_timestamp
        if batch.is_transactional and entry.txn_first_offset < 0:
            entry.txn_first_offset = batch.base_offset
            self._open_txns[batch.producer_id] = batch.base_offset

    def record_marker(
        self, batch: BatchHeader, control_type: ControlType, coordinator_epoch: int
    ) -> CompletedTxn:
        """Close the producer's transaction with a written marker (one with nothing open closes nothing)."""
        entry = self._entry_for(batch)
        first = entry.txn_first_offset if entry.txn_first_offset >= 0 else batch.base_offset
        entry.txn_first_offset = -1
        self._open_txns.pop(batch.producer_id, None)
        entry.coordinator_epoch = coordinator_epoch
        entry.last_marker_offset = batch.base_offset
        entry.last_timestamp = batch.max_timestamp
        return CompletedTxn(batch.producer_id, first, batch.base_offset, control_type is ControlType.ABORT)

    def clear(self) -> None:
        """Forget everything, before a rebuild from the log."""
        self._producers.clear()
        self._open_txns.clear()

    def forget_before(self, log_start_offset: int) -> None:
        """Drop batches that ended below the new log start offset, a last marker below it (with the
        coordinator epoch it carried), and producers left with nothing there: what a replay would not see."""
        for producer_id, entry in list(self._producers.items()):
            batches = entry.batches
            while batches and batches[0].last_offset < log_start_offset:
                batches.popleft()
            if entry.last_marker_offset < log_start_offset:
                entry.last_marker_offset = entry.coordinator_epoch = -1
            if not batches and entry.txn_first_offset < 0 and entry.last_marker_offset < 0:
                del self._producers[producer_id]

    # -- snapshots -------------------------------------------------------------------------------------------

    def to_snapshot(self) -> list[ProducerEntry]:
        """The entries a snapshot persists (live objects: encode them before the next change)."""
        return list(self._producers.values())

    def restore_snapshot(self, entries: Iterable[ProducerEntry]) -> None:
        """Replace the whole state with a snapshot's entries, open transactions included."""
        self.clear()
        for entry in entries:
            self._producers[entry.producer_id] = entry
            if entry.txn_first_offset >= 0:
                self._open_txns[entry.producer_id] = entry.txn_first_offset
