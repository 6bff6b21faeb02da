"""One transactional id's state, as Kafka's TransactionMetadata keeps it, and the states it moves through.

    Empty ──AddPartitions──▶ Ongoing ──EndTxn──▶ PrepareCommit / PrepareAbort ──markers written──▶
    CompleteCommit / CompleteAbort ──AddPartitions──▶ Ongoing ...

InitProducerId moves any settled state back to Empty with a bumped epoch; on an Ongoing transaction it first
aborts it with a bumped epoch, which fences the producer that opened it (Kafka's PrepareEpochFence). The
numbers are Kafka's, as stored in ``__transaction_state``; the names are what DescribeTransactions and
ListTransactions report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from strom.coordinator.transaction.records import TransactionLogValue

#: An epoch is an int16; Kafka hands out a new producer id instead of reaching the maximum.
MAX_PRODUCER_EPOCH = 2**15 - 1


class TxnState(enum.IntEnum):
    EMPTY = 0
    ONGOING = 1
    PREPARE_COMMIT = 2
    PREPARE_ABORT = 3
    COMPLETE_COMMIT = 4
    COMPLETE_ABORT = 5
    DEAD = 6
    PREPARE_EPOCH_FENCE = 7

    @property
    def display_name(self) -> str:
        return _DISPLAY_NAMES[self]

    @classmethod
    def from_display_name(cls, name: str) -> TxnState | None:
        return next((state for state, shown in _DISPLAY_NAMES.items() if shown == name), None)


_DISPLAY_NAMES = {
    TxnState.EMPTY: "Empty",
    TxnState.ONGOING: "Ongoing",
    TxnState.PREPARE_COMMIT: "PrepareCommit",
    TxnState.PREPARE_ABORT: "PrepareAbort",
    TxnState.COMPLETE_COMMIT: "CompleteCommit",
    TxnState.COMPLETE_ABORT: "CompleteAbort",
    TxnState.DEAD: "Dead",
    TxnState.PREPARE_EPOCH_FENCE: "PrepareEpochFence",
}

#: States in which markers are being written: the transaction is decided but not yet complete.
PREPARING = (TxnState.PREPARE_COMMIT, TxnState.PREPARE_ABORT)
#: States in which no transaction is open.
SETTLED = (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    start_timestamp: int = -1
    last_update_timestamp: int = -1
    #: The epoch before the last bump, so a retried InitProducerId is recognised (KIP-360).
    last_producer_epoch: int = -1
    #: The producer id before the epoch ran out and a new id was handed out.
    previous_producer_id: int = -1

    @property
    def epoch_exhausted(self) -> bool:
        """Kafka hands out a new producer id rather than the last epoch, which markers would need."""
        return self.producer_epoch >= MAX_PRODUCER_EPOCH - 1

    def may_be_claimed_by(self, producer_id: int, producer_epoch: int) -> bool:
        """Whether a producer recovering with (id, epoch) may ask for the next epoch (KIP-360): the id's
        current producer id, or the one before it with the epoch it exhausted (a retried rotation). Its
        epoch is checked when bumping."""
        if self.producer_epoch == -1 or producer_id == self.producer_id:
            return True
        return producer_id == self.previous_producer_id and producer_epoch >= MAX_PRODUCER_EPOCH - 1

    def to_record_value(self) -> TransactionLogValue:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in self.partitions:
            by_topic.setdefault(topic, []).append(partition)
        return TransactionLogValue(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            timeout_ms=self.timeout_ms,
            state=int(self.state),
            partitions=by_topic,
            last_update_timestamp=self.last_update_timestamp,
            start_timestamp=self.start_timestamp,
            previous_producer_id=self.previous_producer_id,
        )

    @classmethod
    def from_record_value(cls, transactional_id: str, value: TransactionLogValue) -> TransactionMetadata:
        return cls(
            transactional_id=transactional_id,
            producer_id=value.producer_id,
            producer_epoch=value.producer_epoch,
            timeout_ms=value.timeout_ms,
            state=TxnState(value.state),
            partitions={(topic, p) for topic, indexes in value.partitions.items() for p in indexes},
            start_timestamp=value.start_timestamp,
            last_update_timestamp=value.last_update_timestamp,
            previous_producer_id=value.previous_producer_id,
        )
