"""Idempotent-producer state of one partition: per producer id, its epoch and its last five batches.

What Kafka's ProducerStateManager keeps for idempotence, and the checks its ProducerAppendInfo applies to a
client batch before it is written:
- a batch with the same epoch and the same first and last sequence as one of the producer's last five is a
  retry of a batch already written: the log answers with that batch's offsets and writes nothing;
- an epoch lower than the last one seen is a fenced producer: INVALID_PRODUCER_EPOCH;
- a new epoch must start at sequence 0, and within an epoch each batch must follow the last one:
  OUT_OF_ORDER_SEQUENCE_NUMBER otherwise;
- a producer with no state here (new, or its batches are gone) may start at any sequence, as in Kafka 2.5+
  (KIP-360): the broker cannot tell a lost producer from a new one, so it no longer answers
  UNKNOWN_PRODUCER_ID.

The state is rebuilt from batch headers when a log opens (there are no producer snapshot files yet, so the
scan starts at the log start offset) and after a truncation, and producers whose batches all fall below the
log start offset are forgotten, so what is in memory always equals what a rebuild would produce.
Transactions (control batches, ongoing transactions) are not tracked yet.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import BatchHeader

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


@dataclass(slots=True)
class ProducerEntry:
    """One producer's epoch and its most recent batches, oldest first."""

    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_TO_RETAIN))

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence

    @property
    def last_offset(self) -> int:
        return self.batches[-1].last_offset

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


class ProducerStateManager:
    """The idempotence state of one partition log. Only batches with a producer id (>= 0) reach it."""

    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def entry(self, producer_id: int) -> ProducerEntry | None:
        return self._producers.get(producer_id)

    def check_client_batch(self, batch: BatchHeader) -> BatchMetadata | None:
        """Validate a producer's batch before it is written: the earlier batch it duplicates, or None when it
        is new and in order. Raises INVALID_PRODUCER_EPOCH or OUT_OF_ORDER_SEQUENCE_NUMBER."""
        entry = self._producers.get(batch.producer_id)
        if entry is None:
            return None
        epoch, first = batch.producer_epoch, batch.base_sequence
        if epoch < entry.epoch:
            raise KafkaError(
                ErrorCode.INVALID_PRODUCER_EPOCH,
                f"epoch {epoch} of producer {batch.producer_id} is older than the last seen epoch "
                f"{entry.epoch}",
            )
        if epoch == entry.epoch:
            duplicate = entry.find_duplicate(epoch, first, last_sequence(batch))
            if duplicate is not None:
                return duplicate
            if not _in_sequence(entry.last_sequence, first):
                raise KafkaError(
                    ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                    f"out of order sequence number for producer {batch.producer_id}: {first} "
                    f"(incoming), {entry.last_sequence} (current end sequence number)",
                )
        elif first != 0:
            raise KafkaError(
                ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER,
                f"a new epoch {epoch} of producer {batch.producer_id} must start at sequence 0, not {first}",
            )
        return None

    def record(self, batch: BatchHeader) -> None:
        """Remember a written batch (its offsets assigned). A new epoch forgets the old epoch's batches."""
        if batch.is_control:  # transaction markers carry no sequence; transactions are not tracked yet
            return
        entry = self._producers.get(batch.producer_id)
        if entry is None or entry.epoch != batch.producer_epoch:
            entry = self._producers[batch.producer_id] = ProducerEntry(
                batch.producer_id, batch.producer_epoch
            )
        entry.batches.append(
            BatchMetadata(
                batch.base_sequence,
                last_sequence(batch),
                batch.base_offset,
                batch.last_offset,
                batch.max_timestamp,
            )
        )

    def rebuild(self, batches: Iterable[BatchHeader]) -> None:
        """Start over from the batches still in the log, oldest first (no sequence checks: they were done)."""
        self._producers.clear()
        for batch in batches:
            if batch.producer_id >= 0:
                self.record(batch)

    def forget_before(self, log_start_offset: int) -> None:
        """Drop batches that ended below the new log start offset, and producers left with none."""
        for producer_id, entry in list(self._producers.items()):
            batches = entry.batches
            while batches and batches[0].last_offset < log_start_offset:
                batches.popleft()
            if not batches:
                del self._producers[producer_id]
