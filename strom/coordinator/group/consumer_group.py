"""A consumer-protocol group (KIP-848): its epochs, members, target assignment and their reconciliation.

The group epoch goes up whenever membership, subscriptions or the subscribed topics' partitions change;
the target assignment is computed by a server-side assignor for a group epoch (its assignment epoch). Each
member moves toward its target on its own, as Kafka's CurrentAssignmentBuilder does (`reconcile`):

- a member keeps the partitions it has that are still in its target;
- partitions no longer in its target must be revoked first (state UNREVOKED_PARTITIONS, epoch unchanged),
  which the member confirms by heartbeating without them;
- it then moves to the target epoch and gets the new partitions that nobody else holds any more; those
  another member still holds (assigned or pending revocation) come later (state UNRELEASED_PARTITIONS).

So a partition is never given to two members at once. The group's state follows from its members: Empty
without members, Assigning while the group epoch is ahead of the assignment epoch, Reconciling while a
member is not Stable at the assignment epoch, else Stable.

This module holds the data and the reconciliation rule; `consumer_membership` runs the protocol.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from strom.coordinator.group.consumer_records import TopicPartitions
from strom.metadata.image import MetadataImage

#: The member epoch a member leaves with; -2 is a static member leaving temporarily (it keeps its place).
LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
CONSUMER_GROUP_TYPE = "consumer"
NO_PARTITIONS: TopicPartitions = {}


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


class MemberState(enum.IntEnum):
    """Kafka's MemberState, with the byte it is stored as."""

    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TopicInfo:
    topic_id: uuid.UUID
    name: str
    num_partitions: int


class TopicCatalog(Protocol):
    """The broker's view of topics, which the coordinator resolves subscriptions against."""

    def by_name(self, name: str) -> TopicInfo | None: ...

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None: ...


class ImageTopicCatalog:
    """The topics of the broker's metadata image, which changes in place as metadata records apply."""

    def __init__(self, image: MetadataImage) -> None:
        self._image = image

    def by_name(self, name: str) -> TopicInfo | None:
        topic = self._image.topic(name)
        return None if topic is None else TopicInfo(topic.topic_id, topic.name, len(topic.partitions))

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        topic = self._image.topic_by_id(topic_id)
        return None if topic is None else TopicInfo(topic.topic_id, topic.name, len(topic.partitions))


class NoTopics:
    """A catalog without topics, for a coordinator that serves no consumer-protocol groups."""

    def by_name(self, name: str) -> TopicInfo | None:
        return None

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        return None


@dataclass(frozen=True, slots=True)
class ConsumerMember:
    """One member, immutable: a heartbeat computes an updated copy, which is stored, then applied."""

    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: TopicPartitions = field(default_factory=dict)
    pending_revocation: TopicPartitions = field(default_factory=dict)

    def is_reconciled_to(self, epoch: int) -> bool:
        return self.state is MemberState.STABLE and self.member_epoch == epoch

    def same_metadata(self, other: ConsumerMember) -> bool:
        return (
            self.instance_id,
            self.rack_id,
            self.client_id,
            self.client_host,
            self.subscribed_topic_names,
            self.subscribed_topic_regex,
            self.rebalance_timeout_ms,
            self.server_assignor,
        ) == (
            other.instance_id,
            other.rack_id,
            other.client_id,
            other.client_host,
            other.subscribed_topic_names,
            other.subscribed_topic_regex,
            other.rebalance_timeout_ms,
            other.server_assignor,
        )

    def same_assignment(self, other: ConsumerMember) -> bool:
        return (
            self.member_epoch,
            self.previous_member_epoch,
            self.state,
            _normalized(self.assigned),
            _normalized(self.pending_revocation),
        ) == (
            other.member_epoch,
            other.previous_member_epoch,
            other.state,
            _normalized(other.assigned),
            _normalized(other.pending_revocation),
        )


@dataclass(slots=True, eq=False)
class ConsumerGroup:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    target_assignment: dict[str, TopicPartitions] = field(default_factory=dict)
    #: (topic id, partition) -> epoch of the member holding it (assigned or pending revocation).
    partition_epochs: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)
    #: Subscribed topics as last resolved: name -> (id, partition count); None until first resolved.
    subscription_metadata: dict[str, tuple[uuid.UUID, int]] | None = None
    deleted: bool = False

    @property
    def state(self) -> ConsumerGroupState:
        if self.deleted:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(not m.is_reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def static_member(self, instance_id: str | None) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id) if instance_id is not None else None
        return self.members.get(member_id) if member_id is not None else None

    def current_partition_epoch(self, topic_id: uuid.UUID, partition: int) -> int:
        return self.partition_epochs.get((topic_id, partition), -1)

    def put_member(self, member: ConsumerMember) -> None:
        """Add or replace a member, keeping the partition epochs and the static member index in step."""
        old = self.members.get(member.member_id)
        if old is not None:
            self._drop_partition_epochs(old)
            if old.instance_id is not None and self.static_members.get(old.instance_id) == old.member_id:
                del self.static_members[old.instance_id]
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        for partitions in (member.assigned, member.pending_revocation):
            for topic_id, indexes in partitions.items():
                for index in indexes:
                    self.partition_epochs[(topic_id, index)] = member.member_epoch

    def remove_member(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is None:
            return
        self._drop_partition_epochs(member)
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]

    def _drop_partition_epochs(self, member: ConsumerMember) -> None:
        for partitions in (member.assigned, member.pending_revocation):
            for topic_id, indexes in partitions.items():
                for index in indexes:
                    if self.partition_epochs.get((topic_id, index)) == member.member_epoch:
                        del self.partition_epochs[(topic_id, index)]

    def subscribed_topic_names(self, replacing: ConsumerMember | None = None) -> set[str]:
        """Every topic some member subscribes to, with ``replacing`` in place of its stored version."""
        names: set[str] = set()
        for member_id, member in self.members.items():
            if replacing is None or member_id != replacing.member_id:
                names.update(member.subscribed_topic_names)
        if replacing is not None:
            names.update(replacing.subscribed_topic_names)
        return names

    def preferred_assignor(self, default: str, replacing: ConsumerMember | None = None) -> str:
        """The server assignor most members ask for (the first asked for among equals), else the default;
        with ``replacing`` in place of its stored version."""
        members = dict(self.members)
        if replacing is not None:
            members[replacing.member_id] = replacing
        votes: dict[str, int] = {}
        for member in members.values():
            if member.server_assignor is not None:
                votes[member.server_assignor] = votes.get(member.server_assignor, 0) + 1
        return max(votes, key=lambda name: votes[name]) if votes else default


OwnedPartitions = Mapping[uuid.UUID, Iterable[int]] | None


def owns_any(owned: OwnedPartitions, partitions: TopicPartitions) -> bool:
    """Whether the member still holds any of ``partitions``; a member that did not say holds them all."""
    if owned is None:
        return True
    return any(
        index in partitions.get(topic_id, ()) for topic_id, indexes in owned.items() for index in indexes
    )


def is_subset(owned: OwnedPartitions, assigned: TopicPartitions) -> bool:
    if owned is None:
        return False
    return all(
        index in assigned.get(topic_id, ()) for topic_id, indexes in owned.items() for index in indexes
    )


def reconcile(
    member: ConsumerMember,
    target_epoch: int,
    target: TopicPartitions,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions,
) -> ConsumerMember:
    """The member's next assignment state on its way to ``target`` (Kafka's CurrentAssignmentBuilder)."""
    if member.state is MemberState.UNREVOKED_PARTITIONS:
        if owns_any(owned, member.pending_revocation):
            return member
        return _next_assignment(
            member, min(member.member_epoch + 1, target_epoch), target_epoch, target, partition_epoch, owned
        )
    if member.state is MemberState.STABLE and member.member_epoch == target_epoch:
        return member
    return _next_assignment(member, member.member_epoch, target_epoch, target, partition_epoch, owned)


def _next_assignment(
    member: ConsumerMember,
    member_epoch: int,
    target_epoch: int,
    target: TopicPartitions,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions,
) -> ConsumerMember:
    keep: dict[uuid.UUID, frozenset[int]] = {}
    revoke: dict[uuid.UUID, frozenset[int]] = {}
    add: dict[uuid.UUID, frozenset[int]] = {}
    has_unreleased = False
    for topic_id in set(target) | set(member.assigned):
        wanted = frozenset(target.get(topic_id, ()))
        current = frozenset(member.assigned.get(topic_id, ()))
        free = frozenset(p for p in wanted - current if partition_epoch(topic_id, p) == -1)
        has_unreleased |= len(free) < len(wanted - current)
        for bucket, partitions in ((keep, current & wanted), (revoke, current - wanted), (add, free)):
            if partitions:
                bucket[topic_id] = partitions
    if revoke and owns_any(owned, revoke):
        return replace(
            member,
            state=MemberState.UNREVOKED_PARTITIONS,
            previous_member_epoch=member.member_epoch,
            member_epoch=member_epoch,
            assigned=keep,
            pending_revocation=revoke,
        )
    for topic_id, partitions in add.items():
        keep[topic_id] = keep.get(topic_id, frozenset()) | partitions
    return replace(
        member,
        state=MemberState.UNRELEASED_PARTITIONS if has_unreleased else MemberState.STABLE,
        previous_member_epoch=member.member_epoch,
        member_epoch=target_epoch,
        assigned=keep,
        pending_revocation={},
    )


def _normalized(partitions: TopicPartitions) -> dict[uuid.UUID, frozenset[int]]:
    return {topic_id: frozenset(indexes) for topic_id, indexes in partitions.items() if indexes}
