"""Server-side assignors of consumer-protocol groups (KIP-848): ``uniform`` (the default) and ``range``.

An assignor turns the members' subscriptions (topic ids) and the subscribed topics' partition counts into a
target assignment. It sees each member's previous target assignment so it can be sticky.

- ``uniform`` spreads all subscribed partitions as evenly as the subscriptions allow, moving as few as it
  can: partitions stay with their previous owner while that owner still subscribes to the topic, unowned
  ones go to the least loaded eligible member, then partitions move from the most to the least loaded
  member until no move can reduce the spread. Like Kafka's UniformAssignor the result is balanced and
  sticky; which exact partitions move when several choices are equal may differ from Kafka's.
- ``range`` assigns each topic on its own: its subscribers sorted by member id get consecutive ranges,
  the first ``partitions % members`` one partition more, so members subscribed to co-partitioned topics get
  the same partition numbers of each.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from strom.coordinator.group.consumer_records import TopicPartitions

UNIFORM = "uniform"
RANGE = "range"


@dataclass(frozen=True, slots=True)
class MemberSpec:
    """What an assignor knows of a member: the topic ids it subscribes to and its previous target."""

    subscribed_topic_ids: frozenset[uuid.UUID]
    current: TopicPartitions = field(default_factory=dict)


#: Target partitions by member id.
GroupAssignment = dict[str, dict[uuid.UUID, frozenset[int]]]


class Assignor(Protocol):
    name: str

    def assign(
        self, members: Mapping[str, MemberSpec], partition_counts: Mapping[uuid.UUID, int]
    ) -> GroupAssignment:
        """Every member's target partitions; ``partition_counts`` holds the subscribed topics that exist."""
        ...


class UniformAssignor:
    name = UNIFORM

    def assign(
        self, members: Mapping[str, MemberSpec], partition_counts: Mapping[uuid.UUID, int]
    ) -> GroupAssignment:
        owned: dict[str, set[tuple[uuid.UUID, int]]] = {member_id: set() for member_id in members}
        taken: set[tuple[uuid.UUID, int]] = set()
        for member_id in sorted(members):
            spec = members[member_id]
            for topic_id, indexes in spec.current.items():
                count = partition_counts.get(topic_id)
                if count is None or topic_id not in spec.subscribed_topic_ids:
                    continue
                for index in indexes:
                    if index < count and (topic_id, index) not in taken:
                        owned[member_id].add((topic_id, index))
                        taken.add((topic_id, index))
        subscribers: dict[uuid.UUID, list[str]] = defaultdict(list)
        for member_id in sorted(members):
            for topic_id in members[member_id].subscribed_topic_ids:
                if topic_id in partition_counts:
                    subscribers[topic_id].append(member_id)
        for topic_id in sorted(subscribers):
            for index in range(partition_counts[topic_id]):
                if (topic_id, index) not in taken:
                    least = min(subscribers[topic_id], key=lambda m: (len(owned[m]), m))
                    owned[least].add((topic_id, index))
                    taken.add((topic_id, index))
        _balance(owned, subscribers)
        return {member_id: _by_topic(partitions) for member_id, partitions in owned.items()}


def _balance(
    owned: dict[str, set[tuple[uuid.UUID, int]]], subscribers: Mapping[uuid.UUID, list[str]]
) -> None:
    """Move partitions from the most to the least loaded members while a move narrows the spread."""
    eligible = {topic_id: set(members) for topic_id, members in subscribers.items()}
    moved = True
    while moved:
        moved = False
        for receiver in sorted(owned, key=lambda m: (len(owned[m]), m)):
            donors = sorted(owned, key=lambda m: (-len(owned[m]), m))
            for donor in donors:
                if len(owned[donor]) - len(owned[receiver]) <= 1:
                    break
                movable = sorted(p for p in owned[donor] if receiver in eligible.get(p[0], ()))
                if movable:
                    partition = movable[-1]
                    owned[donor].remove(partition)
                    owned[receiver].add(partition)
                    moved = True
                    break
            if moved:
                break


class RangeAssignor:
    name = RANGE

    def assign(
        self, members: Mapping[str, MemberSpec], partition_counts: Mapping[uuid.UUID, int]
    ) -> GroupAssignment:
        result: dict[str, dict[uuid.UUID, set[int]]] = {member_id: {} for member_id in members}
        for topic_id, count in partition_counts.items():
            subscribed = sorted(m for m, spec in members.items() if topic_id in spec.subscribed_topic_ids)
            if not subscribed:
                continue
            quota, extra = divmod(count, len(subscribed))
            start = 0
            for i, member_id in enumerate(subscribed):
                size = quota + (1 if i < extra else 0)
                if size:
                    result[member_id][topic_id] = set(range(start, start + size))
                start += size
        return {m: {t: frozenset(p) for t, p in topics.items()} for m, topics in result.items()}


def _by_topic(partitions: set[tuple[uuid.UUID, int]]) -> dict[uuid.UUID, frozenset[int]]:
    grouped: dict[uuid.UUID, set[int]] = defaultdict(set)
    for topic_id, index in partitions:
        grouped[topic_id].add(index)
    return {topic_id: frozenset(indexes) for topic_id, indexes in grouped.items()}


#: The assignors ``group.consumer.assignors`` may name, by short name and by Kafka's class name.
KNOWN_ASSIGNORS: dict[str, type[UniformAssignor] | type[RangeAssignor]] = {
    UNIFORM: UniformAssignor,
    RANGE: RangeAssignor,
    "org.apache.kafka.coordinator.group.assignor.UniformAssignor": UniformAssignor,
    "org.apache.kafka.coordinator.group.assignor.RangeAssignor": RangeAssignor,
}


def assignors_by_name(names: list[str]) -> dict[str, Assignor]:
    """The configured assignors by their short name, in configured order (the first is the default)."""
    assignors: dict[str, Assignor] = {}
    for name in names:
        cls = KNOWN_ASSIGNORS.get(name.strip())
        if cls is None:
            raise ValueError(f"unknown consumer group assignor {name!r}; known: uniform, range")
        assignor = cls()
        assignors.setdefault(assignor.name, assignor)
    if not assignors:
        raise ValueError("group.consumer.assignors must name at least one assignor")
    return assignors
