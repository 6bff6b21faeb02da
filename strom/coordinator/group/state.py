"""A classic consumer group: its state, generation, members and the bookkeeping Kafka's rebalance needs.

The states, and the moves between them that Kafka allows:

- Empty -> PreparingRebalance: a first member joins.
- PreparingRebalance -> CompletingRebalance: every member has (re)joined, or the rebalance timed out; the
  next generation starts and the leader is sent everyone's metadata to compute the assignment.
- PreparingRebalance -> Empty: the join phase ended with no members left.
- CompletingRebalance -> Stable: the leader's SyncGroup brought the assignment, which is now stored.
- Stable or CompletingRebalance -> PreparingRebalance: a member joins, leaves, changes its subscription or
  misses its session timeout.
- any state -> Dead: the group is deleted.

This module holds data and its invariants only (who is awaiting which response, which protocols every member
supports, who leads); the rebalance protocol that drives it is in `membership`.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strom.coordinator.group.offsets import CommittedOffset
from strom.coordinator.group.records import GroupMetadataValue, MemberMetadata
from strom.coordinator.group.subscriptions import CONSUMER_PROTOCOL_TYPE, subscribed_topics
from strom.protocol.errors import ErrorCode, KafkaError

#: The only group type this coordinator serves, as ListGroups v5 reports it.
CLASSIC_GROUP_TYPE = "classic"

#: A callback completing a parked JoinGroup or SyncGroup with its response.
Respond = Callable[[Any], None]


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"

    @property
    def valid_previous_states(self) -> frozenset[GroupState]:
        return _VALID_PREVIOUS_STATES[self]


_VALID_PREVIOUS_STATES = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


@dataclass(slots=True, eq=False)
class Member:
    """A member of a classic group; ``protocols`` are (name, metadata) pairs, most preferred first."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    awaiting_join: Respond | None = None
    awaiting_sync: Respond | None = None
    #: Joined but not yet through a completed join phase: it has no session to keep alive yet.
    is_new: bool = False

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: Sequence[tuple[str, bytes]]) -> bool:
        return list(protocols) == self.protocols

    def vote(self, candidates: Iterable[str]) -> str:
        """The first protocol in this member's preference order that every member supports."""
        allowed = set(candidates)
        for name, _ in self.protocols:
            if name in allowed:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(allowed)}")


@dataclass(slots=True, eq=False)
class ClassicGroup:
    group_id: str
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState = GroupState.DEAD
    #: When the group entered its current state (ms); None for groups loaded from records that lack it.
    state_timestamp: int | None = None
    #: None for a simple group: one that only ever had offsets committed, never members.
    protocol_type: str | None = None
    protocol_name: str | None = None
    generation_id: int = 0
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    #: KIP-394: members given an id by MEMBER_ID_REQUIRED that have not joined with it yet.
    pending_join_members: set[str] = field(default_factory=set)
    #: Members sent a JoinGroup response of the current generation that have not sent SyncGroup yet.
    pending_sync_members: set[str] = field(default_factory=set)
    num_awaiting_join: int = 0
    supported_protocols: Counter[str] = field(default_factory=Counter)
    subscribed_topics: frozenset[str] | None = None
    #: A member joined during the initial rebalance delay, so the delay may be extended.
    new_member_added: bool = False

    # ------------------------------------------------------------------ state
    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        if self.state not in state.valid_previous_states:
            raise RuntimeError(
                f"group {self.group_id}: invalid transition {self.state.value} -> {state.value}"
            )
        self.previous_state = self.state
        self.state = state
        self.state_timestamp = now_ms

    def can_rebalance(self) -> bool:
        return self.state in GroupState.PREPARING_REBALANCE.valid_previous_states

    # ------------------------------------------------------------------ membership
    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def static_member_id(self, group_instance_id: str | None) -> str | None:
        return self.static_members.get(group_instance_id) if group_instance_id is not None else None

    def is_pending_member(self, member_id: str) -> bool:
        return member_id in self.pending_join_members

    def add(self, member: Member, respond: Respond | None = None) -> None:
        if member.group_instance_id is not None:
            if member.group_instance_id in self.static_members:
                raise RuntimeError(f"static member {member.group_instance_id} is already in {self.group_id}")
            self.static_members[member.group_instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(member.protocol_names())
        member.awaiting_join = respond
        if respond is not None:
            self.num_awaiting_join += 1
        self.pending_join_members.discard(member.member_id)

    def remove(self, member_id: str) -> None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(member.protocol_names())
            if member.awaiting_join is not None:
                self.num_awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_join_members.discard(member_id)
        self.pending_sync_members.discard(member_id)

    def update_member(
        self,
        member: Member,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        respond: Respond | None,
    ) -> None:
        self.supported_protocols.subtract(member.protocol_names())
        member.protocols = protocols
        self.supported_protocols.update(member.protocol_names())
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        if respond is not None and member.awaiting_join is None:
            self.num_awaiting_join += 1
        elif respond is None and member.awaiting_join is not None:
            self.num_awaiting_join -= 1
        member.awaiting_join = respond

    def replace_static_member(self, group_instance_id: str, old_member_id: str, new_member_id: str) -> Member:
        """Give a static member a new member id (KIP-345); returns the member under its old id, whose
        parked responses the caller must fence."""
        old = self.members.pop(old_member_id)
        new = Member(
            new_member_id,
            old.group_instance_id,
            old.client_id,
            old.client_host,
            old.rebalance_timeout_ms,
            old.session_timeout_ms,
            old.protocol_type,
            old.protocols,
            old.assignment,
        )
        self.members[new_member_id] = new
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[group_instance_id] = new_member_id
        return old

    def validate_member(self, member_id: str, group_instance_id: str | None) -> None:
        """UNKNOWN_MEMBER_ID for a stranger, FENCED_INSTANCE_ID for an old id of a static member."""
        if group_instance_id is not None:
            current = self.static_members.get(group_instance_id)
            if current is None:
                raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
            if current != member_id:
                raise KafkaError(ErrorCode.FENCED_INSTANCE_ID)
        if member_id not in self.members:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)

    def complete_join(self, member: Member, response: Any) -> bool:
        respond = member.awaiting_join
        if respond is None:
            return False
        member.awaiting_join = None
        self.num_awaiting_join -= 1
        respond(response)
        return True

    def complete_sync(self, member: Member, response: Any) -> bool:
        respond = member.awaiting_sync
        if respond is None:
            return False
        member.awaiting_sync = None
        respond(response)
        return True

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_awaiting_join and not self.pending_join_members

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if m.awaiting_join is None]

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep a leader that rejoined, else pick the first member that did; False if nobody rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join is not None:
            return True
        for member in self.members.values():
            if member.awaiting_join is not None:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # ------------------------------------------------------------------ protocols
    def supports_protocols(self, protocol_type: str, protocol_names: Iterable[str]) -> bool:
        names = list(protocol_names)
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        size = len(self.members)
        return self.protocol_type == protocol_type and any(self.supported_protocols[n] == size for n in names)

    def select_protocol(self) -> str:
        """Each member votes for its most preferred protocol that all members support; most votes wins.

        Kafka breaks ties by hash order; here the protocol voted for first (in member join order) wins, so
        the choice is deterministic.
        """
        size = len(self.members)
        candidates = {name for name, count in self.supported_protocols.items() if count == size}
        votes = Counter(member.vote(candidates) for member in self.members.values())
        return votes.most_common(1)[0][0]

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    # ------------------------------------------------------------------ subscriptions and offsets
    @property
    def uses_consumer_protocol(self) -> bool:
        return self.protocol_type == CONSUMER_PROTOCOL_TYPE

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        """Union of the members' subscriptions for consumer groups; None when unknown."""
        if not self.uses_consumer_protocol:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            subscribed = subscribed_topics(member.metadata(self.protocol_name))
            if subscribed is None:
                return None
            topics |= subscribed
        return frozenset(topics)

    def is_subscribed_to(self, topic: str) -> bool:
        if self.subscribed_topics is None:
            return self.uses_consumer_protocol
        return topic in self.subscribed_topics

    def offset_retention_base(self) -> Callable[[CommittedOffset], int] | None:
        """When a commit's retention starts for this group (KIP-211), or None while none may expire."""
        if self.protocol_type is None:
            return _commit_time
        if self.state is GroupState.EMPTY:
            empty_since = self.state_timestamp
            return _commit_time if empty_since is None else lambda _committed: empty_since
        if (
            self.uses_consumer_protocol
            and self.subscribed_topics is not None
            and self.state is GroupState.STABLE
        ):
            return _commit_time
        return None

    def validate_offset_commit(
        self, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> None:
        """Who may commit: any client while the group is empty and the commit carries no generation (simple
        commits, e.g. ``assign()`` + commit); otherwise only a current member of the current generation."""
        if self.state is GroupState.DEAD:
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE)
        if generation_id < 0 and self.state is GroupState.EMPTY:
            return
        if generation_id >= 0 or member_id or group_instance_id is not None:
            self.validate_member(member_id, group_instance_id)
            if generation_id != self.generation_id:
                raise KafkaError(ErrorCode.ILLEGAL_GENERATION)
        elif self.state is not GroupState.EMPTY:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID)
        if self.state is GroupState.COMPLETING_REBALANCE:
            # A current member that has its JoinGroup answer but not yet its assignment: it must finish the
            # rebalance first.
            raise KafkaError(ErrorCode.REBALANCE_IN_PROGRESS)

    # ------------------------------------------------------------------ records
    def to_record_value(self, assignment: dict[str, bytes]) -> GroupMetadataValue:
        """The group as a GroupMetadataValue record, with the given assignment per member."""
        return GroupMetadataValue(
            protocol_type=self.protocol_type or "",
            generation=self.generation_id,
            protocol=self.protocol_name,
            leader=self.leader_id,
            current_state_timestamp=-1 if self.state_timestamp is None else self.state_timestamp,
            members=[
                MemberMetadata(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout=m.rebalance_timeout_ms,
                    session_timeout=m.session_timeout_ms,
                    subscription=m.metadata(self.protocol_name),
                    assignment=assignment.get(m.member_id, b""),
                )
                for m in self.members.values()
            ],
        )

    @classmethod
    def from_record_value(cls, group_id: str, value: GroupMetadataValue) -> ClassicGroup:
        """A group as it was last stored: Stable with its members and assignments, or Empty."""
        group = cls(
            group_id,
            state=GroupState.STABLE if value.members else GroupState.EMPTY,
            state_timestamp=None if value.current_state_timestamp < 0 else value.current_state_timestamp,
            protocol_type=value.protocol_type or None,
            protocol_name=value.protocol,
            generation_id=value.generation,
            leader_id=value.leader,
        )
        for stored in value.members:
            group.add(
                Member(
                    member_id=stored.member_id,
                    group_instance_id=stored.group_instance_id,
                    client_id=stored.client_id,
                    client_host=stored.client_host,
                    rebalance_timeout_ms=stored.session_timeout
                    if stored.rebalance_timeout < 0
                    else stored.rebalance_timeout,
                    session_timeout_ms=stored.session_timeout,
                    protocol_type=value.protocol_type,
                    protocols=[(value.protocol or "", stored.subscription)],
                    assignment=stored.assignment,
                )
            )
        group.subscribed_topics = group.compute_subscribed_topics()
        return group


def new_member_id(client_id: str, group_instance_id: str | None) -> str:
    """Kafka's member ids: the instance id (static) or client id (dynamic), a dash and a random UUID."""
    return f"{group_instance_id if group_instance_id is not None else client_id}-{uuid.uuid4()}"


def _commit_time(committed: CommittedOffset) -> int:
    return committed.commit_timestamp
