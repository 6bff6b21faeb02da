"""Committed offsets: what a group has consumed, per topic partition, and when those commits expire.

Kafka's expiry rule (KIP-211), which `expired_partitions` applies to one group:

- a group with members keeps every offset of a topic it is subscribed to;
- an empty group keeps its offsets for ``offsets.retention.minutes`` after it became empty;
- a stable consumer group, and a simple group (one that only commits, with no protocol type), keep an offset
  of a topic nobody subscribes to for the retention time after its last commit;
- a commit that carried its own expire timestamp (OffsetCommit v2-v4 with a retention time) expires then.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from strom.coordinator.group.records import OffsetCommitValue

NO_OFFSET = -1


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """One committed offset; leader_epoch and expire_timestamp are -1 when absent."""

    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    expire_timestamp: int = -1

    @classmethod
    def from_value(cls, value: OffsetCommitValue) -> CommittedOffset:
        return cls(
            value.offset, value.leader_epoch, value.metadata, value.commit_timestamp, value.expire_timestamp
        )

    def to_value(self) -> OffsetCommitValue:
        return OffsetCommitValue(
            self.offset, self.leader_epoch, self.metadata, self.commit_timestamp, self.expire_timestamp
        )


#: Offsets of one group: topic -> partition -> commit.
GroupOffsets = Mapping[str, Mapping[int, CommittedOffset]]


class OffsetStore:
    """Committed offsets by group, topic and partition; lookups and updates touch one entry."""

    def __init__(self) -> None:
        self._by_group: dict[str, dict[str, dict[int, CommittedOffset]]] = {}

    def get(self, group: str, topic: str, partition: int) -> CommittedOffset | None:
        topics = self._by_group.get(group)
        if topics is None:
            return None
        partitions = topics.get(topic)
        return partitions.get(partition) if partitions is not None else None

    def put(self, group: str, topic: str, partition: int, committed: CommittedOffset) -> None:
        self._by_group.setdefault(group, {}).setdefault(topic, {})[partition] = committed

    def remove(self, group: str, topic: str, partition: int) -> None:
        topics = self._by_group.get(group)
        if topics is None:
            return
        partitions = topics.get(topic)
        if partitions is None:
            return
        partitions.pop(partition, None)
        if not partitions:
            del topics[topic]
            if not topics:
                del self._by_group[group]

    def group_offsets(self, group: str) -> GroupOffsets:
        return self._by_group.get(group, {})

    def partitions(self, group: str) -> Iterator[tuple[str, int]]:
        """Every (topic, partition) the group has an offset for."""
        for topic, partitions in self._by_group.get(group, {}).items():
            for partition in partitions:
                yield topic, partition


def expired_partitions(
    offsets: GroupOffsets,
    now_ms: int,
    retention_ms: int,
    base_timestamp: Callable[[CommittedOffset], int],
    is_subscribed: Callable[[str], bool],
) -> tuple[list[tuple[str, int]], bool]:
    """The (topic, partition) pairs whose offsets have expired, and whether that is all of them.

    ``base_timestamp`` gives the moment a commit's retention starts (the group's empty-since time, or the
    commit time); ``is_subscribed`` protects the topics the group consumes.
    """
    expired: list[tuple[str, int]] = []
    everything = True
    for topic, partitions in offsets.items():
        if is_subscribed(topic):
            everything = False
            continue
        for partition, committed in partitions.items():
            if committed.expire_timestamp >= 0:
                is_expired = now_ms >= committed.expire_timestamp
            else:
                is_expired = now_ms - base_timestamp(committed) >= retention_ms
            if is_expired:
                expired.append((topic, partition))
            else:
                everything = False
    return expired, everything


class ProducerStamp(NamedTuple):
    """The transactional producer a coordinator writes on behalf of (TxnOffsetCommit)."""

    producer_id: int
    producer_epoch: int


#: (group, topic, partition)
OffsetKey = tuple[str, str, int]


class PendingTxnOffsets:
    """Offsets committed inside transactions still open, by producer: they become the group's committed
    offsets only when the producer's transaction commits (KIP-98), and OffsetFetch with require_stable
    answers UNSTABLE_OFFSET_COMMIT for them meanwhile (KIP-447)."""

    def __init__(self) -> None:
        self._by_producer: dict[int, dict[OffsetKey, CommittedOffset]] = {}
        self._producers_by_group: dict[str, set[int]] = {}

    def put(self, producer_id: int, key: OffsetKey, committed: CommittedOffset) -> None:
        self._by_producer.setdefault(producer_id, {})[key] = committed
        self._producers_by_group.setdefault(key[0], set()).add(producer_id)

    def complete(self, producer_id: int) -> dict[OffsetKey, CommittedOffset]:
        """Take the producer's pending offsets away (its transaction ended, either way)."""
        offsets = self._by_producer.pop(producer_id, {})
        for group, _, _ in offsets:
            producers = self._producers_by_group.get(group)
            if producers is not None:
                producers.discard(producer_id)
                if not producers:
                    del self._producers_by_group[group]
        return offsets

    def is_pending(self, key: OffsetKey) -> bool:
        return any(key in self._by_producer[p] for p in self._producers_by_group.get(key[0], ()))

    def has_group(self, group: str) -> bool:
        return group in self._producers_by_group
