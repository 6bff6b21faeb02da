"""The consumer group protocol (KIP-848): ConsumerGroupHeartbeat and ConsumerGroupDescribe, as in Kafka.

Members join by heartbeating with member epoch 0 and their subscription; from then on each heartbeat carries
their epoch and the partitions they own, and the answer their (new) epoch and, when it changed, their
assignment. The server computes the assignment: a heartbeat that changes the group (a new member, a new
subscription, new partitions of a subscribed topic) bumps the group epoch, the configured assignor computes a
target assignment for that epoch, and every member reconciles toward it at its own pace (see
`consumer_group.reconcile`). A member leaves with epoch -1; a static member (with an instance id) may leave
with -2, keeping its place and assignment for another instance with the same id to take over. A member that
does not heartbeat within ``group.consumer.session.timeout.ms``, or does not revoke partitions within its
rebalance timeout, is removed.

Like Kafka's coordinator, a request computes the records that describe its changes, writes them to
``__consumer_offsets`` and only then applies them, through the same `replay` that loads them at start-up.

Member ids: ConsumerGroupHeartbeat v0 lets the server generate one on join; from v1 the client must send
its own (KIP-1082). Subscriptions by regular expression (v1) are refused with INVALID_REQUEST, which is how
Kafka answered before it supported them.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from strom.coordinator.group.assignors import Assignor, MemberSpec, assignors_by_name
from strom.coordinator.group.consumer_group import (
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    ConsumerGroup,
    ConsumerMember,
    MemberState,
    TopicCatalog,
    is_subset,
    reconcile,
)
from strom.coordinator.group.consumer_records import (
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
    ConsumerRecordKey,
    ConsumerRecordValue,
    TopicPartitions,
)
from strom.coordinator.group.records import StoredRecord
from strom.coordinator.group.timer import Timer
from strom.metadata.properties import BrokerConfig
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import consumer_group_describe as describe_schema
from strom.protocol.messages import consumer_group_heartbeat as heartbeat_schema

log = logging.getLogger(__name__)

HeartbeatRequest = heartbeat_schema.ConsumerGroupHeartbeatRequest
HeartbeatResponse = heartbeat_schema.ConsumerGroupHeartbeatResponse
DescribedGroup = describe_schema.ConsumerGroupDescribeResponse.DescribedGroup
DescribedMember = describe_schema.ConsumerGroupDescribeResponse.Member

#: Writes records of one group durably and applies them (through `replay`); raises KafkaError if it cannot.
StoreRecords = Callable[[str, Sequence[StoredRecord]], None]

_INT_MAX = 2**31 - 1
#: Kafka's ConsumerGroupHeartbeat version from which the client generates its member id (KIP-1082).
CLIENT_GENERATED_MEMBER_ID_VERSION = 1


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    """Kafka's ``group.consumer.*`` broker settings, with Kafka's defaults and bounds."""

    session_timeout_ms: int = 45_000
    min_session_timeout_ms: int = 45_000
    max_session_timeout_ms: int = 60_000
    heartbeat_interval_ms: int = 5_000
    min_heartbeat_interval_ms: int = 5_000
    max_heartbeat_interval_ms: int = 15_000
    max_size: int = _INT_MAX
    assignors: tuple[str, ...] = ("uniform", "range")

    def __post_init__(self) -> None:
        if not self.min_session_timeout_ms <= self.session_timeout_ms <= self.max_session_timeout_ms:
            raise ValueError(
                "group.consumer.session.timeout.ms must be within group.consumer.min.session.timeout.ms and "
                "group.consumer.max.session.timeout.ms"
            )
        if not self.min_heartbeat_interval_ms <= self.heartbeat_interval_ms <= self.max_heartbeat_interval_ms:
            raise ValueError(
                "group.consumer.heartbeat.interval.ms must be within "
                "group.consumer.min.heartbeat.interval.ms and group.consumer.max.heartbeat.interval.ms"
            )
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("group.consumer.heartbeat.interval.ms must be less than the session timeout")
        assignors_by_name(list(self.assignors))  # unknown names fail at start-up

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> ConsumerGroupConfig:
        """The broker's ``group.consumer.*`` settings, by Kafka's names."""
        return cls(
            session_timeout_ms=config.get_int("group.consumer.session.timeout.ms"),
            min_session_timeout_ms=config.get_int("group.consumer.min.session.timeout.ms"),
            max_session_timeout_ms=config.get_int("group.consumer.max.session.timeout.ms"),
            heartbeat_interval_ms=config.get_int("group.consumer.heartbeat.interval.ms"),
            min_heartbeat_interval_ms=config.get_int("group.consumer.min.heartbeat.interval.ms"),
            max_heartbeat_interval_ms=config.get_int("group.consumer.max.heartbeat.interval.ms"),
            max_size=config.get_int("group.consumer.max.size"),
            assignors=tuple(config.get_list("group.consumer.assignors")),
        )


@dataclass(slots=True)
class _Change:
    """The records one request writes, in order; they are applied only once all are written."""

    records: list[StoredRecord] = field(default_factory=list)

    def put(self, key: ConsumerRecordKey, value: ConsumerRecordValue | None) -> None:
        self.records.append(StoredRecord(key, value))


class ConsumerGroups:
    """Consumer-protocol groups; the coordinator routes their requests and records here."""

    def __init__(
        self,
        config: ConsumerGroupConfig,
        timer: Timer,
        clock: Callable[[], int],
        store: StoreRecords,
        topics: TopicCatalog,
    ) -> None:
        self.config = config
        self._timer = timer
        self._clock = clock
        self._store = store
        self._topics = topics
        self._assignors: dict[str, Assignor] = assignors_by_name(list(config.assignors))
        self._default_assignor = next(iter(self._assignors))
        self._groups: dict[str, ConsumerGroup] = {}

    def get(self, group_id: str) -> ConsumerGroup | None:
        """A group's live state, for inspection; callers must not change it."""
        return self._groups.get(group_id)

    def __iter__(self) -> Iterator[ConsumerGroup]:
        return iter(list(self._groups.values()))

    # ================================================================== ConsumerGroupHeartbeat
    def heartbeat(
        self, request: HeartbeatRequest, *, client_id: str, client_host: str, api_version: int
    ) -> HeartbeatResponse:
        """One heartbeat: join, leave, or keep alive and reconcile. Errors come back in the response."""
        try:
            self._validate(request, api_version)
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(request)
            return self._heartbeat(request, client_id, client_host)
        except KafkaError as exc:
            log.debug("group %s: heartbeat of %r refused: %s", request.group_id, request.member_id, exc)
            return HeartbeatResponse(error_code=exc.code, error_message=exc.message)

    def _validate(self, request: HeartbeatRequest, api_version: int) -> None:
        if request.instance_id == "":
            raise _invalid("InstanceId can't be empty.")
        if request.rack_id == "":
            raise _invalid("RackId can't be empty.")
        if request.subscribed_topic_regex:  # librdkafka sends an empty one: no regex
            raise _invalid("SubscribedTopicRegex is not supported yet.")
        epoch = request.member_epoch
        if (api_version >= CLIENT_GENERATED_MEMBER_ID_VERSION or epoch != 0) and not request.member_id:
            raise _invalid("MemberId can't be empty.")
        if epoch == 0:
            if request.rebalance_timeout_ms == -1:
                raise _invalid("RebalanceTimeoutMs must be provided in first request.")
            if request.topic_partitions is None or request.topic_partitions:
                raise _invalid("TopicPartitions must be empty when (re-)joining.")
            if not request.subscribed_topic_names:
                raise _invalid("SubscribedTopicNames must be set in first request.")
        elif epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if request.instance_id is None:
                raise _invalid("InstanceId can't be null.")
        elif epoch < LEAVE_GROUP_MEMBER_EPOCH:
            raise _invalid("MemberEpoch is invalid.")
        if request.server_assignor is not None and request.server_assignor not in self._assignors:
            raise KafkaError(
                ErrorCode.UNSUPPORTED_ASSIGNOR,
                f"ServerAssignor {request.server_assignor} is not supported. "
                f"Supported assignors: {', '.join(self._assignors)}.",
            )

    def _heartbeat(self, request: HeartbeatRequest, client_id: str, client_host: str) -> HeartbeatResponse:
        group_id = request.group_id
        joining = request.member_epoch == 0
        group = self._groups.get(group_id)
        if group is None:
            if not joining:
                raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
            group = ConsumerGroup(group_id)  # materialized when its records are applied
        member_id = request.member_id or _random_member_id()
        if len(group.members) >= self.config.max_size and member_id not in group.members:
            raise KafkaError(
                ErrorCode.GROUP_MAX_SIZE_REACHED,
                f"The consumer group has reached its maximum capacity of {self.config.max_size} members.",
            )
        owned = _owned(request.topic_partitions)
        change = _Change()
        member, replaced = self._member_for(group, request, member_id, owned, change)

        updated = replace(
            member,
            instance_id=request.instance_id if request.instance_id is not None else member.instance_id,
            rack_id=request.rack_id if request.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=request.rebalance_timeout_ms
            if request.rebalance_timeout_ms != -1
            else member.rebalance_timeout_ms,
            server_assignor=request.server_assignor
            if request.server_assignor is not None
            else member.server_assignor,
            subscribed_topic_names=tuple(request.subscribed_topic_names)
            if request.subscribed_topic_names is not None
            else member.subscribed_topic_names,
            client_id=client_id,
            client_host=client_host,
        )
        is_new = member_id not in group.members
        if is_new or not updated.same_metadata(member):
            change.put(ConsumerGroupMemberMetadataKey(group_id, member_id), _metadata_value(updated))
        bump = updated.subscribed_topic_names != member.subscribed_topic_names or group.group_epoch == 0

        metadata = self._subscription_metadata(group.subscribed_topic_names(updated))
        bump |= metadata != group.subscription_metadata
        group_epoch = group.group_epoch + 1 if bump else group.group_epoch
        if bump:
            change.put(ConsumerGroupMetadataKey(group_id), ConsumerGroupMetadataValue(group_epoch))

        if group_epoch > group.assignment_epoch or replaced is not None:
            target = self._new_target_assignment(group, group_epoch, updated, replaced, metadata, change)
            target_epoch = group_epoch
        else:
            target = group.target_assignment.get(member_id, {})
            target_epoch = group.assignment_epoch

        reconciled = updated
        if not updated.is_reconciled_to(target_epoch):
            reconciled = reconcile(updated, target_epoch, target, group.current_partition_epoch, owned)
        if is_new or not reconciled.same_assignment(updated):
            change.put(
                ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id), _assignment_value(reconciled)
            )

        self._apply(group_id, change)
        live = self._groups[group_id]
        live.subscription_metadata = metadata
        if not reconciled.same_assignment(member) or is_new:
            self._update_rebalance_timer(group_id, reconciled)
        self._schedule_session(group_id, member_id)

        response = HeartbeatResponse(
            member_id=member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
        )
        full_request = joining or (
            request.rebalance_timeout_ms != -1
            and request.subscribed_topic_names is not None
            and request.topic_partitions is not None
        )
        if full_request or _normalized(reconciled.assigned) != _normalized(member.assigned):
            response.assignment = HeartbeatResponse.Assignment(
                [
                    heartbeat_schema.TopicPartitions(topic_id, sorted(partitions))
                    for topic_id, partitions in sorted(reconciled.assigned.items())
                ]
            )
        return response

    def _member_for(
        self,
        group: ConsumerGroup,
        request: HeartbeatRequest,
        member_id: str,
        owned: Mapping[uuid.UUID, list[int]] | None,
        change: _Change,
    ) -> tuple[ConsumerMember, ConsumerMember | None]:
        """The member as stored (or new), and the static member it replaces, if any."""
        joining = request.member_epoch == 0
        instance_id = request.instance_id
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if not joining:
                    raise KafkaError(
                        ErrorCode.UNKNOWN_MEMBER_ID,
                        f"Member {member_id} is not a member of group {group.group_id}.",
                    )
                return ConsumerMember(member_id), None
            if not joining:
                _check_member_epoch(member, request.member_epoch, owned)
            return member, None
        existing = group.static_member(instance_id)
        if joining:
            if existing is None:
                return group.members.get(member_id) or ConsumerMember(member_id), None
            if existing.member_id == member_id:
                return existing, None
            if existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH:
                raise KafkaError(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"Static member {member_id} with instance id {instance_id} cannot join the group because "
                    f"the instance id is owned by {existing.member_id} member.",
                )
            # The new instance takes over the old one's place and assignment under its own member id; the
            # caller writes the successor's records after the old member's tombstones.
            successor = replace(existing, member_id=member_id, member_epoch=0, previous_member_epoch=0)
            self._removal_records(group.group_id, existing.member_id, change)
            log.info(
                "group %s: static member %s replaces %s (instance id %s)",
                group.group_id,
                member_id,
                existing.member_id,
                instance_id,
            )
            return successor, existing
        if existing is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {instance_id} is unknown.")
        if existing.member_id != member_id:
            raise KafkaError(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {member_id} with instance id {instance_id} was fenced by member "
                f"{existing.member_id}.",
            )
        _check_member_epoch(existing, request.member_epoch, owned)
        return existing, None

    def _subscription_metadata(self, names: set[str]) -> dict[str, tuple[uuid.UUID, int]]:
        metadata = {}
        for name in names:
            topic = self._topics.by_name(name)
            if topic is not None:
                metadata[name] = (topic.topic_id, topic.num_partitions)
        return metadata

    def _new_target_assignment(
        self,
        group: ConsumerGroup,
        group_epoch: int,
        updated: ConsumerMember,
        replaced: ConsumerMember | None,
        metadata: Mapping[str, tuple[uuid.UUID, int]],
        change: _Change,
    ) -> TopicPartitions:
        """Run the assignor over the group with ``updated`` in it; record the targets that changed."""
        members = dict(group.members)
        if replaced is not None:
            del members[replaced.member_id]
        members[updated.member_id] = updated
        previous = dict(group.target_assignment)
        if replaced is not None:
            previous[updated.member_id] = previous.pop(replaced.member_id, {})
        specs = {
            member_id: MemberSpec(
                frozenset(metadata[name][0] for name in member.subscribed_topic_names if name in metadata),
                previous.get(member_id, {}),
            )
            for member_id, member in members.items()
        }
        counts = dict(metadata.values())
        assignor = self._assignors[group.preferred_assignor(self._default_assignor, updated)]
        assignment = assignor.assign(specs, counts)
        for member_id in members:
            new = _normalized(assignment.get(member_id, {}))
            if new != _normalized(previous.get(member_id, {})) or member_id not in group.target_assignment:
                change.put(
                    ConsumerGroupTargetAssignmentMemberKey(group.group_id, member_id),
                    ConsumerGroupTargetAssignmentMemberValue(new),
                )
        change.put(
            ConsumerGroupTargetAssignmentMetadataKey(group.group_id),
            ConsumerGroupTargetAssignmentMetadataValue(group_epoch),
        )
        log.info(
            "group %s: new target assignment for epoch %d by the %s assignor",
            group.group_id,
            group_epoch,
            assignor.name,
        )
        return assignment.get(updated.member_id, {})

    # ================================================================== leaving and fencing
    def _leave(self, request: HeartbeatRequest) -> HeartbeatResponse:
        group_id = request.group_id
        group = self._groups.get(group_id)
        if group is None:
            raise KafkaError(ErrorCode.GROUP_ID_NOT_FOUND, f"Consumer group {group_id} not found.")
        response = HeartbeatResponse(member_id=request.member_id, member_epoch=request.member_epoch)
        if request.instance_id is None:
            member = group.members.get(request.member_id)
            if member is None:
                raise KafkaError(
                    ErrorCode.UNKNOWN_MEMBER_ID,
                    f"Member {request.member_id} is not a member of group {group_id}.",
                )
            log.info("group %s: member %s left", group_id, member.member_id)
            self._fence(group, member)
            return response
        member = group.static_member(request.instance_id)
        if member is None:
            raise KafkaError(ErrorCode.UNKNOWN_MEMBER_ID, f"Instance id {request.instance_id} is unknown.")
        if member.member_id != request.member_id:
            raise KafkaError(
                ErrorCode.FENCED_INSTANCE_ID,
                f"Static member {request.member_id} with instance id {request.instance_id} was fenced by "
                f"member {member.member_id}.",
            )
        if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            # It keeps its place and assignment until its session times out or another instance takes over.
            leaving = replace(member, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH, pending_revocation={})
            change = _Change()
            change.put(
                ConsumerGroupCurrentMemberAssignmentKey(group_id, member.member_id),
                _assignment_value(leaving),
            )
            self._apply(group_id, change)
            log.info("group %s: static member %s left temporarily", group_id, member.member_id)
            return response
        log.info("group %s: static member %s left", group_id, member.member_id)
        self._fence(group, member)
        return response

    def _fence(self, group: ConsumerGroup, member: ConsumerMember) -> None:
        """Remove a member and bump the group epoch, so the others get its partitions."""
        change = _Change()
        self._removal_records(group.group_id, member.member_id, change)
        remaining = [m for m in group.members.values() if m.member_id != member.member_id]
        metadata = self._subscription_metadata({name for m in remaining for name in m.subscribed_topic_names})
        change.put(
            ConsumerGroupMetadataKey(group.group_id), ConsumerGroupMetadataValue(group.group_epoch + 1)
        )
        self._apply(group.group_id, change)
        group.subscription_metadata = metadata
        self._timer.cancel(_session_key(group.group_id, member.member_id))
        self._timer.cancel(_rebalance_key(group.group_id, member.member_id))

    @staticmethod
    def _removal_records(group_id: str, member_id: str, change: _Change) -> None:
        change.put(ConsumerGroupCurrentMemberAssignmentKey(group_id, member_id), None)
        change.put(ConsumerGroupTargetAssignmentMemberKey(group_id, member_id), None)
        change.put(ConsumerGroupMemberMetadataKey(group_id, member_id), None)

    def _apply(self, group_id: str, change: _Change) -> None:
        if change.records:
            self._store(group_id, change.records)

    # ================================================================== timers
    def _schedule_session(self, group_id: str, member_id: str) -> None:
        self._timer.schedule(
            _session_key(group_id, member_id),
            self._clock() + self.config.session_timeout_ms,
            lambda: self._expire_session(group_id, member_id),
        )

    def _expire_session(self, group_id: str, member_id: str) -> None:
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            return
        log.info("group %s: member %s missed its session timeout and is removed", group_id, member_id)
        try:
            self._fence(group, member)
        except KafkaError as exc:
            log.warning("group %s: could not remove expired member %s: %s", group_id, member_id, exc)
            self._schedule_session(group_id, member_id)

    def _update_rebalance_timer(self, group_id: str, member: ConsumerMember) -> None:
        key = _rebalance_key(group_id, member.member_id)
        if member.state is not MemberState.UNREVOKED_PARTITIONS:
            self._timer.cancel(key)
            return
        epoch = member.member_epoch
        self._timer.schedule(
            key,
            self._clock() + max(member.rebalance_timeout_ms, 0),
            lambda: self._expire_revocation(group_id, member.member_id, epoch),
        )

    def _expire_revocation(self, group_id: str, member_id: str, epoch: int) -> None:
        group = self._groups.get(group_id)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            return
        if member.state is MemberState.UNREVOKED_PARTITIONS and member.member_epoch == epoch:
            log.info(
                "group %s: member %s did not revoke its partitions in time and is removed",
                group_id,
                member_id,
            )
            try:
                self._fence(group, member)
            except KafkaError as exc:
                log.warning("group %s: could not remove member %s: %s", group_id, member_id, exc)

    def on_loaded(self, group_ids: set[str]) -> None:
        """After loading: start the session of every member, and the revocation deadline where one runs."""
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None:
                continue
            for member in group.members.values():
                self._schedule_session(group_id, member.member_id)
                self._update_rebalance_timer(group_id, member)

    # ================================================================== records
    def replay(self, key: ConsumerRecordKey, value: object) -> None:
        """Apply one record of a consumer group; the last record of a key wins, a tombstone deletes it."""
        group_id = key.group
        if isinstance(key, ConsumerGroupMetadataKey):
            if value is None:
                self._delete(group_id)
            else:
                assert isinstance(value, ConsumerGroupMetadataValue)
                self._group(group_id).group_epoch = value.epoch
            return
        group = self._groups.get(group_id)
        if group is None:
            if value is None:
                return
            group = self._group(group_id)
        if isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
            group.assignment_epoch = (
                value.assignment_epoch if isinstance(value, ConsumerGroupTargetAssignmentMetadataValue) else 0
            )
        elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
            if isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
                group.target_assignment[key.member_id] = value.partitions
            else:
                group.target_assignment.pop(key.member_id, None)
        elif isinstance(key, ConsumerGroupMemberMetadataKey):
            if isinstance(value, ConsumerGroupMemberMetadataValue):
                member = group.members.get(key.member_id) or ConsumerMember(key.member_id)
                group.put_member(
                    replace(
                        member,
                        instance_id=value.instance_id,
                        rack_id=value.rack_id,
                        client_id=value.client_id,
                        client_host=value.client_host,
                        subscribed_topic_names=value.subscribed_topic_names,
                        subscribed_topic_regex=value.subscribed_topic_regex,
                        rebalance_timeout_ms=value.rebalance_timeout_ms,
                        server_assignor=value.server_assignor,
                    )
                )
            else:
                group.remove_member(key.member_id)
        elif isinstance(key, ConsumerGroupCurrentMemberAssignmentKey):
            holder = group.members.get(key.member_id)
            if isinstance(value, ConsumerGroupCurrentMemberAssignmentValue):
                group.put_member(
                    replace(
                        holder or ConsumerMember(key.member_id),
                        member_epoch=value.member_epoch,
                        previous_member_epoch=value.previous_member_epoch,
                        state=_member_state(value.state),
                        assigned=value.assigned,
                        pending_revocation=value.pending_revocation,
                    )
                )
            elif holder is not None:
                group.put_member(
                    replace(
                        holder,
                        member_epoch=0,
                        previous_member_epoch=0,
                        state=MemberState.STABLE,
                        assigned={},
                        pending_revocation={},
                    )
                )

    def _group(self, group_id: str) -> ConsumerGroup:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = ConsumerGroup(group_id)
        return group

    def _delete(self, group_id: str) -> None:
        group = self._groups.pop(group_id, None)
        if group is None:
            return
        group.deleted = True
        for member_id in group.members:
            self._timer.cancel(_session_key(group_id, member_id))
            self._timer.cancel(_rebalance_key(group_id, member_id))

    def deletion_records(self, group_id: str) -> list[StoredRecord]:
        """Tombstones for every record of a group (members included), ending with its metadata."""
        group = self._groups.get(group_id)
        if group is None:
            return []
        change = _Change()
        for member_id in group.members:
            self._removal_records(group_id, member_id, change)
        for member_id in group.target_assignment:
            if member_id not in group.members:
                change.put(ConsumerGroupTargetAssignmentMemberKey(group_id, member_id), None)
        change.put(ConsumerGroupTargetAssignmentMetadataKey(group_id), None)
        change.put(ConsumerGroupMetadataKey(group_id), None)
        return change.records

    # ================================================================== offsets and administration
    def validate_offset_commit(
        self, group: ConsumerGroup, member_id: str, member_epoch: int, api_version: int
    ) -> None:
        """Commits of an empty group need no member; else the member's epoch must be current (KIP-848)."""
        if member_epoch < 0 and not group.members:
            return
        self.validate_member_epoch(group, member_id, member_epoch, legacy=api_version < 9)

    def validate_member_epoch(
        self, group: ConsumerGroup, member_id: str, member_epoch: int, *, legacy: bool = False
    ) -> None:
        """UNKNOWN_MEMBER_ID for a stranger; STALE_MEMBER_EPOCH (ILLEGAL_GENERATION for clients older than
        KIP-848) unless the epoch is the member's current one."""
        member = group.members.get(member_id)
        if member is None:
            raise KafkaError(
                ErrorCode.UNKNOWN_MEMBER_ID, f"Member {member_id} is not a member of group {group.group_id}."
            )
        if member_epoch != member.member_epoch:
            raise KafkaError(ErrorCode.ILLEGAL_GENERATION if legacy else ErrorCode.STALE_MEMBER_EPOCH)

    def describe(self, group: ConsumerGroup) -> DescribedGroup:
        def assignment(partitions: TopicPartitions) -> describe_schema.Assignment:
            listed = []
            for topic_id, indexes in sorted(partitions.items()):
                topic = self._topics.by_id(topic_id)
                if topic is not None:
                    listed.append(describe_schema.TopicPartitions(topic_id, topic.name, sorted(indexes)))
            return describe_schema.Assignment(listed)

        return DescribedGroup(
            group_id=group.group_id,
            group_state=group.state.value,
            group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch,
            assignor_name=group.preferred_assignor(self._default_assignor),
            members=[
                DescribedMember(
                    member_id=m.member_id,
                    instance_id=m.instance_id,
                    rack_id=m.rack_id,
                    member_epoch=m.member_epoch,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    subscribed_topic_names=list(m.subscribed_topic_names),
                    subscribed_topic_regex=m.subscribed_topic_regex,
                    assignment=assignment(m.assigned),
                    target_assignment=assignment(group.target_assignment.get(m.member_id, {})),
                )
                for m in group.members.values()
            ],
        )


def _invalid(message: str) -> KafkaError:
    return KafkaError(ErrorCode.INVALID_REQUEST, message)


def _check_member_epoch(
    member: ConsumerMember, received: int, owned: Mapping[uuid.UUID, list[int]] | None
) -> None:
    """FENCED_MEMBER_EPOCH unless the epoch is the member's, or its previous one with a subset of its
    partitions owned (the answer that bumped the epoch may have been lost)."""
    if received > member.member_epoch:
        raise KafkaError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a greater member epoch ({received}) than the one known by the "
            f"group coordinator ({member.member_epoch}). The member must abandon all its partitions and "
            "rejoin.",
        )
    if received < member.member_epoch and (
        received != member.previous_member_epoch or not is_subset(owned, member.assigned)
    ):
        raise KafkaError(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"The consumer group member has a smaller member epoch ({received}) than the one known by the "
            f"group coordinator ({member.member_epoch}). The member must abandon all its partitions and "
            "rejoin.",
        )


def _owned(
    topic_partitions: list[HeartbeatRequest.TopicPartitions] | None,
) -> dict[uuid.UUID, list[int]] | None:
    if topic_partitions is None:
        return None
    owned: dict[uuid.UUID, list[int]] = {}
    for tp in topic_partitions:
        owned.setdefault(tp.topic_id, []).extend(tp.partitions)
    return owned


def _random_member_id() -> str:
    """A member id as Kafka generates one: a random UUID in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _metadata_value(member: ConsumerMember) -> ConsumerGroupMemberMetadataValue:
    return ConsumerGroupMemberMetadataValue(
        instance_id=member.instance_id,
        rack_id=member.rack_id,
        client_id=member.client_id,
        client_host=member.client_host,
        subscribed_topic_names=member.subscribed_topic_names,
        subscribed_topic_regex=member.subscribed_topic_regex,
        rebalance_timeout_ms=member.rebalance_timeout_ms,
        server_assignor=member.server_assignor,
    )


def _assignment_value(member: ConsumerMember) -> ConsumerGroupCurrentMemberAssignmentValue:
    return ConsumerGroupCurrentMemberAssignmentValue(
        member_epoch=member.member_epoch,
        previous_member_epoch=member.previous_member_epoch,
        state=int(member.state),
        assigned=member.assigned,
        pending_revocation=member.pending_revocation,
    )


def _member_state(stored: int) -> MemberState:
    try:
        return MemberState(stored)
    except ValueError:
        return MemberState.UNKNOWN


def _normalized(partitions: TopicPartitions) -> dict[uuid.UUID, frozenset[int]]:
    return {topic_id: frozenset(indexes) for topic_id, indexes in partitions.items() if indexes}


def _session_key(group_id: str, member_id: str) -> tuple[str, str, str]:
    return ("consumer-session", group_id, member_id)


def _rebalance_key(group_id: str, member_id: str) -> tuple[str, str, str]:
    return ("consumer-rebalance", group_id, member_id)
