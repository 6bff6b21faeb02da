"""The group coordinator: consumer groups and their committed offsets, as a sans-I/O state machine.

The coordinator is driven by calls and a clock and never touches a socket or a file. Handlers call one
method per request; JoinGroup and SyncGroup take a ``respond`` callback the coordinator calls when the
rebalance lets it answer (possibly later, from `tick`). Everything durable goes through the ``write``
callable it is given, which appends records to a partition of ``__consumer_offsets`` (with acks=all) and
raises KafkaError when it cannot; a request is answered only after its records are written. At start-up the
records are fed back through `replay`, partition by partition, between `begin_loading` and `finish_loading`;
requests for groups of a partition still loading get COORDINATOR_LOAD_IN_PROGRESS, and groups of a partition
this broker does not own get NOT_COORDINATOR.

`tick` runs whatever is due: session and rebalance timeouts, the initial rebalance delay, and every
``offsets.retention.check.interval.ms`` the expiry of old offsets and of empty groups that have none left.
Due timers also run at the end of every membership call, so a zero delay takes effect at once.

Groups of the consumer group protocol (KIP-848) are run by `consumer_membership.ConsumerGroups`, which
shares the timer, the offsets and ``__consumer_offsets``. A group id names one type of group at a time, as
in Kafka without online migration between the protocols: ConsumerGroupHeartbeat for a classic group is
answered GROUP_ID_NOT_FOUND unless that group is empty (it then becomes a consumer group, keeping its
offsets), and JoinGroup for a consumer group with members is answered INCONSISTENT_GROUP_PROTOCOL (an empty
one is deleted, offsets kept, and the classic group takes its place). Commits by members of a consumer group
are checked against their member epoch (STALE_MEMBER_EPOCH), as KIP-848 says.

A group lives in partition ``abs(hashCode(group_id)) % partitions`` of ``__consumer_offsets``, with Java's
String.hashCode, so a group maps to the same partition as in Kafka.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.consumer_group import CONSUMER_GROUP_TYPE, NoTopics, TopicCatalog
from strom.coordinator.group.consumer_membership import ConsumerGroupConfig, ConsumerGroups
from strom.coordinator.group.consumer_records import CONSUMER_KEY_TYPES
from strom.coordinator.group.membership import Membership, append_error
from strom.coordinator.group.offsets import (
    NO_OFFSET,
    CommittedOffset,
    OffsetStore,
    PendingTxnOffsets,
    ProducerStamp,
    expired_partitions,
)
from strom.coordinator.group.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    OffsetCommitKey,
    OffsetCommitValue,
    StoredRecord,
)
from strom.coordinator.group.state import CLASSIC_GROUP_TYPE, ClassicGroup, GroupState, Respond
from strom.coordinator.group.subscriptions import CONSUMER_PROTOCOL_TYPE
from strom.coordinator.group.timer import Timer
from strom.coordinator.internal_topic import PartitionOwnership, partition_for
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import consumer_group_describe as consumer_describe
from strom.protocol.messages import consumer_group_heartbeat as consumer_heartbeat
from strom.protocol.messages import (
    delete_groups,
    describe_groups,
    list_groups,
    offset_commit,
    offset_delete,
    offset_fetch,
    txn_offset_commit,
)
from strom.protocol.messages.heartbeat import HeartbeatRequest
from strom.protocol.messages.join_group import JoinGroupRequest, JoinGroupResponse
from strom.protocol.messages.leave_group import LeaveGroupRequest, LeaveGroupResponse
from strom.protocol.messages.sync_group import SyncGroupRequest, SyncGroupResponse

log = logging.getLogger(__name__)


class _CommitRequestPartition(Protocol):
    partition_index: int
    committed_offset: int
    committed_leader_epoch: int
    committed_metadata: str | None


class _CommitRequestTopic(Protocol):
    name: str

    @property
    def partitions(self) -> Sequence[_CommitRequestPartition]: ...


class _PartitionResult(Protocol):
    error_code: int


_Result = TypeVar("_Result", bound=_PartitionResult)
_TopicResult = TypeVar("_TopicResult")


class RecordWriter(Protocol):
    """Appends records to a partition of __consumer_offsets, durably (a transactional batch when a producer
    is given); raises KafkaError when it cannot."""

    def __call__(
        self, partition: int, records: Sequence[StoredRecord], producer: ProducerStamp | None = None
    ) -> None: ...


CommitTopic = offset_commit.OffsetCommitResponse.OffsetCommitResponseTopic
CommitPartition = offset_commit.OffsetCommitResponse.OffsetCommitResponsePartition
FetchGroup = offset_fetch.OffsetFetchResponse.OffsetFetchResponseGroup
FetchTopic = offset_fetch.OffsetFetchResponse.OffsetFetchResponseTopics
FetchPartition = offset_fetch.OffsetFetchResponse.OffsetFetchResponsePartitions
DescribedGroup = describe_groups.DescribeGroupsResponse.DescribedGroup
ConsumerDescribedGroup = consumer_describe.ConsumerGroupDescribeResponse.DescribedGroup
DescribedMember = describe_groups.DescribeGroupsResponse.DescribedGroupMember
ListedGroup = list_groups.ListGroupsResponse.ListedGroup
DeletedGroup = delete_groups.DeleteGroupsResponse.DeletableGroupResult
OffsetDeleteTopic = offset_delete.OffsetDeleteResponse.OffsetDeleteResponseTopic
OffsetDeletePartition = offset_delete.OffsetDeleteResponse.OffsetDeleteResponsePartition
TxnCommitTopic = txn_offset_commit.TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic
TxnCommitPartition = txn_offset_commit.TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition

_CLEANUP_KEY = ("cleanup",)


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class GroupCoordinator:
    """Consumer groups and committed offsets; see the module docstring for how it is driven."""

    def __init__(
        self,
        config: GroupConfig,
        write: RecordWriter,
        clock: Callable[[], int] = wall_clock_ms,
        *,
        consumer_config: ConsumerGroupConfig | None = None,
        topics: TopicCatalog | None = None,
    ) -> None:
        self.config = config
        self._write = write
        self._clock = clock
        self._groups: dict[str, ClassicGroup] = {}
        self._offsets = OffsetStore()
        self._pending_txn_offsets = PendingTxnOffsets()
        self._timer = Timer()
        self._ownership = PartitionOwnership()
        #: Groups replayed per partition still loading: their member sessions start when it is done.
        self._loaded_groups: defaultdict[int, set[str]] = defaultdict(set)
        self._membership = Membership(self._groups, self._timer, config, clock, self._store_group)
        # Consumer-protocol groups (KIP-848) share the group id space, the offsets and the timer.
        self.consumer_groups = ConsumerGroups(
            consumer_config or ConsumerGroupConfig(),
            self._timer,
            clock,
            self._store_consumer_records,
            topics or NoTopics(),
        )
        self._schedule_cleanup()

    # ================================================================== ownership and loading
    @property
    def num_partitions(self) -> int:
        return self._ownership.num_partitions

    def partition_for(self, group_id: str) -> int:
        return partition_for(
            group_id, self._ownership.num_partitions or self.config.offsets_topic_num_partitions
        )

    def begin_loading(self, num_partitions: int, partitions: Iterable[int]) -> None:
        """Take ownership of partitions of a topic with `num_partitions`; they answer once loaded."""
        self._ownership.begin_loading(num_partitions, partitions)

    def replay(self, record: StoredRecord, *, producer_id: int = -1) -> None:
        """Apply one record of __consumer_offsets; the last record of a key wins, a tombstone deletes it.
        A record of a transaction (``producer_id`` >= 0) is an offset commit pending until its marker."""
        key = record.key
        if producer_id >= 0:
            if isinstance(key, OffsetCommitKey) and isinstance(record.value, OffsetCommitValue):
                committed = CommittedOffset.from_value(record.value)
                self._pending_txn_offsets.put(producer_id, (key.group, key.topic, key.partition), committed)
        elif isinstance(key, CONSUMER_KEY_TYPES):
            self._drop_simple_group(key.group)
            self.consumer_groups.replay(key, record.value)
        elif isinstance(key, OffsetCommitKey):
            if isinstance(record.value, OffsetCommitValue):
                self._replay_offset(key, record.value)
            else:
                self._offsets.remove(key.group, key.topic, key.partition)
        elif isinstance(record.value, GroupMetadataValue):
            self._replace_group(ClassicGroup.from_record_value(key.group, record.value))
        else:
            self._remove_group(key.group)

    def finish_loading(self, partition: int) -> None:
        """The partition is replayed: start the sessions of its groups' members and serve it."""
        self.consumer_groups.on_loaded(
            {g.group_id for g in self.consumer_groups if self.partition_for(g.group_id) == partition}
        )
        for group_id in self._loaded_groups.pop(partition, ()):
            group = self._groups.get(group_id)
            if group is not None:
                self._membership.on_loaded(group)
        self._ownership.finish_loading(partition)
        self._run_due()

    def _availability_error(self, group_id: str) -> ErrorCode | None:
        return self._ownership.availability_error(self.partition_for(group_id))

    def get_group(self, group_id: str) -> ClassicGroup | None:
        """A group's live state, for inspection; callers must not change it."""
        return self._groups.get(group_id)

    # ================================================================== membership
    def join_group(
        self,
        request: JoinGroupRequest,
        *,
        client_id: str,
        client_host: str,
        api_version: int,
        respond: Respond,
    ) -> None:
        error = _empty_group_id_error(request.group_id) or self._availability_error(request.group_id)
        if error is not None:
            respond(JoinGroupResponse(error_code=error, member_id=request.member_id))
            return
        consumer_group = self.consumer_groups.get(request.group_id)
        if consumer_group is not None:
            # A group id is of one type at a time: an empty consumer group gives way to a classic one.
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL if consumer_group.members else None
            error = error or self._delete_consumer_group(request.group_id, with_offsets=False)
            if error is not ErrorCode.NONE:
                respond(JoinGroupResponse(error_code=error, member_id=request.member_id))
                return
        self._membership.join_group(request, client_id, client_host, api_version, respond)
        self._run_due()

    def sync_group(self, request: SyncGroupRequest, *, respond: Respond) -> None:
        error = _empty_group_id_error(request.group_id) or self._availability_error(request.group_id)
        if error is not None:
            respond(SyncGroupResponse(error_code=error))
            return
        self._membership.sync_group(request, respond)
        self._run_due()

    def heartbeat(self, request: HeartbeatRequest) -> ErrorCode:
        error = _empty_group_id_error(request.group_id) or self._availability_error(request.group_id)
        if error is None:
            error = self._membership.heartbeat(request)
            self._run_due()
        return error

    def leave_group(
        self, group_id: str, members: list[LeaveGroupRequest.MemberIdentity]
    ) -> LeaveGroupResponse:
        error = _empty_group_id_error(group_id) or self._availability_error(group_id)
        if error is not None:
            return LeaveGroupResponse(error_code=error)
        response = self._membership.leave_group(group_id, members)
        self._run_due()
        return response

    # ================================================================== offsets
    def commit_offsets(
        self, request: offset_commit.OffsetCommitRequest, api_version: int
    ) -> list[CommitTopic]:
        """OffsetCommit for partitions the caller checked exist; one append for the whole request."""
        error = self._availability_error(request.group_id)
        if error is None:
            try:
                self._validate_commit(request, api_version)
            except KafkaError as exc:
                error = exc.code
        if error is None:
            group = self._groups.get(request.group_id)
            if group is not None and group.is_in(GroupState.STABLE, GroupState.PREPARING_REBALANCE):
                self._membership.keep_alive(group, request.member_id)  # commits count as heartbeats
        now = self._clock()
        response = self._store_offsets(
            request.group_id,
            request.topics,
            error,
            expire=now + request.retention_time_ms if request.retention_time_ms >= 0 else -1,
            producer=None,
            make_topic=CommitTopic,
            make_partition=CommitPartition,
        )
        self._run_due()
        return response

    def commit_txn_offsets(
        self, request: txn_offset_commit.TxnOffsetCommitRequest, api_version: int
    ) -> list[TxnCommitTopic]:
        """TxnOffsetCommit: offsets written in the producer's transaction, pending until its marker.

        The transaction coordinator has already checked the producer added this group's partition to its
        transaction (AddOffsetsToTxn). A commit naming a member and generation (v3+, KIP-447) is checked
        against the group as OffsetCommit is; one naming none (older clients) is taken as it is."""
        error = self._availability_error(request.group_id)
        if error is None:
            try:
                self._validate_txn_commit(request, api_version)
            except KafkaError as exc:
                error = exc.code
        return self._store_offsets(
            request.group_id,
            request.topics,
            error,
            expire=-1,
            producer=ProducerStamp(request.producer_id, request.producer_epoch),
            make_topic=TxnCommitTopic,
            make_partition=TxnCommitPartition,
        )

    def _store_offsets(
        self,
        group_id: str,
        topics: Sequence[_CommitRequestTopic],
        error: ErrorCode | None,
        *,
        expire: int,
        producer: ProducerStamp | None,
        make_topic: Callable[[str, list[_Result]], _TopicResult],
        make_partition: Callable[[int, int], _Result],
    ) -> list[_TopicResult]:
        """Write the commits of an OffsetCommit or TxnOffsetCommit (``producer`` set: a transactional batch,
        pending until its marker) in one append, and answer per partition; ``error`` fails them all."""
        if error is not None:
            return [
                make_topic(t.name, [make_partition(p.partition_index, error) for p in t.partitions])
                for t in topics
            ]
        now = self._clock()
        max_metadata = self.config.offset_metadata_max_bytes
        records: list[StoredRecord] = []
        accepted: list[_Result] = []
        response: list[_TopicResult] = []
        for topic in topics:
            results = []
            for p in topic.partitions:
                metadata = p.committed_metadata or ""
                if _java_length(metadata) > max_metadata:
                    results.append(make_partition(p.partition_index, ErrorCode.OFFSET_METADATA_TOO_LARGE))
                    continue
                value = OffsetCommitValue(p.committed_offset, p.committed_leader_epoch, metadata, now, expire)
                records.append(StoredRecord(OffsetCommitKey(group_id, topic.name, p.partition_index), value))
                result = make_partition(p.partition_index, ErrorCode.NONE)
                accepted.append(result)
                results.append(result)
            response.append(make_topic(topic.name, results))
        if records:
            try:
                self._write(self.partition_for(group_id), records, producer)
            except KafkaError as exc:
                for result in accepted:
                    result.error_code = append_error(exc.code)
                return response
            producer_id = producer.producer_id if producer is not None else -1
            for record in records:
                self.replay(record, producer_id=producer_id)
        return response

    def _validate_txn_commit(
        self, request: txn_offset_commit.TxnOffsetCommitRequest, api_version: int
    ) -> None:
        if request.member_id == "" and request.generation_id < 0 and request.group_instance_id is None:
            return
        consumer_group = self.consumer_groups.get(request.group_id)
        if consumer_group is not None:
            self.consumer_groups.validate_member_epoch(
                consumer_group, request.member_id, request.generation_id, legacy=True
            )
            return
        group = self._groups.get(request.group_id)
        if group is None or group.is_in(GroupState.DEAD):
            raise KafkaError(
                ErrorCode.UNKNOWN_MEMBER_ID if group is None else ErrorCode.COORDINATOR_NOT_AVAILABLE
            )
        group.validate_member(request.member_id, request.group_instance_id)
        if request.generation_id >= 0 and request.generation_id != group.generation_id:
            raise KafkaError(ErrorCode.ILLEGAL_GENERATION)

    def complete_transaction(self, producer_id: int, *, committed: bool) -> None:
        """A marker for the producer reached __consumer_offsets: its pending offsets count, or vanish."""
        offsets = self._pending_txn_offsets.complete(producer_id)
        if committed:
            for (group, topic, partition), offset in offsets.items():
                self._replay_offset(OffsetCommitKey(group, topic, partition), offset.to_value())

    def _validate_commit(self, request: offset_commit.OffsetCommitRequest, api_version: int) -> None:
        consumer_group = self.consumer_groups.get(request.group_id)
        if consumer_group is not None:
            self.consumer_groups.validate_offset_commit(
                consumer_group, request.member_id, request.generation_id_or_member_epoch, api_version
            )
            return
        group = self._groups.get(request.group_id)
        if group is None:
            if request.generation_id_or_member_epoch < 0:
                return  # a simple group: it comes to exist with its first offset
            # From v9 the answer works for both group protocols; older clients expect ILLEGAL_GENERATION.
            raise KafkaError(
                ErrorCode.GROUP_ID_NOT_FOUND if api_version >= 9 else ErrorCode.ILLEGAL_GENERATION
            )
        group.validate_offset_commit(
            request.member_id, request.group_instance_id, request.generation_id_or_member_epoch
        )

    def fetch_offsets(
        self,
        group_id: str,
        topics: list[tuple[str, list[int]]] | None,
        *,
        member_id: str | None = None,
        member_epoch: int = -1,
        require_stable: bool = False,
    ) -> FetchGroup:
        """Committed offsets of the given partitions (-1 where none), or of every partition when topics is
        None. With ``require_stable``, a partition with an offset pending in an open transaction answers
        UNSTABLE_OFFSET_COMMIT (the client retries). A member of a consumer-protocol group that names itself
        (v9) must have the current epoch."""
        error = self._availability_error(group_id)
        consumer_group = self.consumer_groups.get(group_id)
        if error is None and consumer_group is not None and (member_id is not None or member_epoch >= 0):
            try:
                self.consumer_groups.validate_member_epoch(consumer_group, member_id or "", member_epoch)
            except KafkaError as exc:
                error = exc.code
        if error is not None:
            return FetchGroup(group_id=group_id, error_code=error)
        offsets = self._offsets.group_offsets(group_id)
        pending = self._pending_txn_offsets
        check_stable = require_stable and pending.has_group(group_id)

        def fetched(topic: str, index: int, committed: CommittedOffset | None) -> FetchPartition:
            if check_stable and pending.is_pending((group_id, topic, index)):
                return FetchPartition(index, NO_OFFSET, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)
            return _fetched(index, committed)

        if topics is None:
            listed = [
                FetchTopic(topic, [fetched(topic, index, c) for index, c in sorted(partitions.items())])
                for topic, partitions in sorted(offsets.items())
            ]
        else:
            listed = []
            for topic, indexes in topics:
                committed_in_topic = offsets.get(topic, {})
                listed.append(
                    FetchTopic(
                        topic, [fetched(topic, index, committed_in_topic.get(index)) for index in indexes]
                    )
                )
        return FetchGroup(group_id=group_id, topics=listed)

    def delete_offsets(
        self, request: offset_delete.OffsetDeleteRequest
    ) -> offset_delete.OffsetDeleteResponse:
        """OffsetDelete: only offsets of topics the group does not consume, unless the group is empty."""
        error = self._availability_error(request.group_id)
        group = self._groups.get(request.group_id)
        if error is None:
            if group is None or group.is_in(GroupState.DEAD):
                error = ErrorCode.GROUP_ID_NOT_FOUND
            elif not group.is_in(GroupState.EMPTY) and not group.uses_consumer_protocol:
                error = ErrorCode.NON_EMPTY_GROUP
        if error is not None:
            return offset_delete.OffsetDeleteResponse(error_code=error)
        assert group is not None
        records: list[StoredRecord] = []
        response: list[OffsetDeleteTopic] = []
        for topic in request.topics:
            subscribed = group.is_subscribed_to(topic.name)
            results = []
            for p in topic.partitions:
                if subscribed:
                    results.append(
                        OffsetDeletePartition(p.partition_index, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC)
                    )
                    continue
                results.append(OffsetDeletePartition(p.partition_index, ErrorCode.NONE))
                if self._offsets.get(group.group_id, topic.name, p.partition_index) is not None:
                    records.append(
                        StoredRecord(OffsetCommitKey(group.group_id, topic.name, p.partition_index), None)
                    )
            response.append(OffsetDeleteTopic(topic.name, results))
        if records:
            try:
                self._write(self.partition_for(group.group_id), records)
            except KafkaError as exc:
                return offset_delete.OffsetDeleteResponse(error_code=append_error(exc.code))
            for record in records:
                self.replay(record)
        return offset_delete.OffsetDeleteResponse(topics=response)

    # ================================================================== administration
    def describe_groups(self, group_ids: list[str]) -> list[DescribedGroup]:
        described = []
        for group_id in group_ids:
            error = self._availability_error(group_id)
            group = self._groups.get(group_id)
            if error is not None:
                described.append(DescribedGroup(error_code=error, group_id=group_id))
            elif group is None:
                described.append(DescribedGroup(group_id=group_id, group_state=GroupState.DEAD.value))
            else:
                described.append(_describe(group))
        return described

    def list_groups(
        self, states_filter: list[str], types_filter: list[str]
    ) -> tuple[ErrorCode, list[ListedGroup]]:
        """Groups of the partitions this coordinator serves; states and types compare case-insensitively."""
        if self._ownership.loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, []
        states = {s.strip().lower() for s in states_filter}
        types = {t.strip().lower() for t in types_filter}
        listed = []
        if not types or CLASSIC_GROUP_TYPE in types:
            listed = [
                ListedGroup(group.group_id, group.protocol_type or "", group.state.value, CLASSIC_GROUP_TYPE)
                for group in self._groups.values()
                if not states or group.state.value.lower() in states
            ]
        if not types or CONSUMER_GROUP_TYPE in types:
            listed.extend(
                ListedGroup(group.group_id, CONSUMER_PROTOCOL_TYPE, group.state.value, CONSUMER_GROUP_TYPE)
                for group in self.consumer_groups
                if not states or group.state.value.lower() in states
            )
        return ErrorCode.NONE, listed

    def delete_groups(self, group_ids: list[str]) -> list[DeletedGroup]:
        """DeleteGroups: empty groups only (NON_EMPTY_GROUP otherwise), with all their offsets."""
        results = []
        for group_id in group_ids:
            error = self._availability_error(group_id)
            group = self._groups.get(group_id)
            consumer_group = self.consumer_groups.get(group_id)
            if error is None and consumer_group is not None:
                error = (
                    ErrorCode.NON_EMPTY_GROUP
                    if consumer_group.members
                    else self._delete_consumer_group(group_id, with_offsets=True)
                )
            elif error is None:
                if group is None or group.is_in(GroupState.DEAD):
                    error = ErrorCode.GROUP_ID_NOT_FOUND
                elif not group.is_in(GroupState.EMPTY):
                    error = ErrorCode.NON_EMPTY_GROUP
                else:
                    error = self._delete_group(group_id)
            results.append(DeletedGroup(group_id, error))
        return results

    def _delete_group(self, group_id: str) -> ErrorCode:
        records = [
            StoredRecord(OffsetCommitKey(group_id, t, p), None) for t, p in self._offsets.partitions(group_id)
        ]
        records.append(StoredRecord(GroupMetadataKey(group_id), None))
        return self._write_and_apply(group_id, records)

    # ================================================================== consumer-protocol groups
    def consumer_group_heartbeat(
        self,
        request: consumer_heartbeat.ConsumerGroupHeartbeatRequest,
        *,
        client_id: str,
        client_host: str,
        api_version: int,
    ) -> consumer_heartbeat.ConsumerGroupHeartbeatResponse:
        """ConsumerGroupHeartbeat; a classic group's id is refused unless that group is empty (then it
        gives way, its offsets kept), as Kafka does when online migration does not apply."""
        group_id = request.group_id
        error = _empty_group_id_error(group_id) or self._availability_error(group_id)
        if error is not None:
            return consumer_heartbeat.ConsumerGroupHeartbeatResponse(error_code=error)
        classic = self._groups.get(group_id)
        if classic is not None:
            if request.member_epoch != 0 or classic.members or not classic.is_in(GroupState.EMPTY):
                return consumer_heartbeat.ConsumerGroupHeartbeatResponse(
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=f"Group {group_id} is not a consumer group.",
                )
            # Its stored record stays: replaying this group's records drops it again (`_drop_simple_group`).
            self._drop_simple_group(group_id)
        response = self.consumer_groups.heartbeat(
            request, client_id=client_id, client_host=client_host, api_version=api_version
        )
        self._run_due()
        return response

    def consumer_group_describe(
        self, group_ids: list[str]
    ) -> list[consumer_describe.ConsumerGroupDescribeResponse.DescribedGroup]:
        described = []
        for group_id in group_ids:
            error = _empty_group_id_error(group_id) or self._availability_error(group_id)
            group = self.consumer_groups.get(group_id)
            if error is not None:
                described.append(ConsumerDescribedGroup(error_code=error, group_id=group_id))
            elif group is None:
                problem = "is not a consumer group" if group_id in self._groups else "not found"
                message = f"Group {group_id} {problem}."
                described.append(
                    ConsumerDescribedGroup(
                        error_code=ErrorCode.GROUP_ID_NOT_FOUND, error_message=message, group_id=group_id
                    )
                )
            else:
                described.append(self.consumer_groups.describe(group))
        return described

    def _store_consumer_records(self, group_id: str, records: Sequence[StoredRecord]) -> None:
        """Write a consumer group's records and apply them; KafkaError with the client's error if not."""
        error = self._write_and_apply(group_id, records)
        if error is not ErrorCode.NONE:
            raise KafkaError(error)

    def _write_and_apply(self, group_id: str, records: Sequence[StoredRecord]) -> ErrorCode:
        """Append a group's records to its __consumer_offsets partition, then apply them (only if written)."""
        try:
            self._write(self.partition_for(group_id), records)
        except KafkaError as exc:
            return append_error(exc.code)
        for record in records:
            self.replay(record)
        return ErrorCode.NONE

    def _delete_consumer_group(self, group_id: str, *, with_offsets: bool) -> ErrorCode:
        records = self.consumer_groups.deletion_records(group_id)
        if with_offsets:
            offsets = self._offsets.partitions(group_id)
            records[:0] = [StoredRecord(OffsetCommitKey(group_id, t, p), None) for t, p in offsets]
        return self._write_and_apply(group_id, records)

    def _drop_simple_group(self, group_id: str) -> None:
        """A consumer group takes the place of an empty classic group of the same id (offsets stay)."""
        classic = self._groups.get(group_id)
        if classic is not None and not classic.members:
            del self._groups[group_id]
            self._membership.forget(classic)

    # ================================================================== time
    def tick(self) -> None:
        """Run everything due by now: expired sessions, rebalance timeouts, delays, offset expiry."""
        self._run_due()

    def _run_due(self) -> None:
        timer = self._timer
        while (action := timer.pop_due(self._clock())) is not None:
            try:
                action()
            except Exception:  # one broken group must not stop the others' timers
                log.exception("group coordinator timer action failed")

    def _schedule_cleanup(self) -> None:
        self._timer.schedule(
            _CLEANUP_KEY, self._clock() + self.config.offsets_retention_check_interval_ms, self._cleanup
        )

    def _cleanup(self) -> None:
        """Expire old offsets (KIP-211) and delete empty groups left without any, one append per partition."""
        self._schedule_cleanup()
        now = self._clock()
        retention = self.config.offsets_retention_ms
        by_partition: dict[int, list[StoredRecord]] = defaultdict(list)
        for group_id, group in list(self._groups.items()):
            partition = self.partition_for(group_id)
            if partition not in self._ownership.active:
                continue
            all_expired = True
            offsets = self._offsets.group_offsets(group_id)
            if offsets:
                base = group.offset_retention_base()
                if base is None:
                    continue
                expired, all_expired = expired_partitions(
                    offsets, now, retention, base, group.is_subscribed_to
                )
                by_partition[partition].extend(
                    StoredRecord(OffsetCommitKey(group_id, topic, index), None) for topic, index in expired
                )
            if all_expired and group.is_in(GroupState.EMPTY):
                by_partition[partition].append(StoredRecord(GroupMetadataKey(group_id), None))
        for partition, records in by_partition.items():
            try:
                self._write(partition, records)
            except KafkaError as exc:
                log.warning("could not expire offsets in partition %d: %s", partition, exc)
                continue
            for record in records:
                self.replay(record)
            log.info("expired %d offsets and groups in partition %d", len(records), partition)

    # ================================================================== state helpers
    def _store_group(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        record = StoredRecord(GroupMetadataKey(group.group_id), group.to_record_value(assignment))
        self._write(self.partition_for(group.group_id), [record])

    def _replay_offset(self, key: OffsetCommitKey, value: OffsetCommitValue) -> None:
        if key.group not in self._groups and self.consumer_groups.get(key.group) is None:
            # Offsets without a group: a simple group, which only commits (e.g. assign() + commit).
            self._add_group(ClassicGroup(key.group, state_timestamp=self._clock()))
        self._offsets.put(key.group, key.topic, key.partition, CommittedOffset.from_value(value))

    def _add_group(self, group: ClassicGroup) -> None:
        self._groups[group.group_id] = group
        partition = self.partition_for(group.group_id)
        if partition in self._ownership.loading:
            self._loaded_groups[partition].add(group.group_id)

    def _replace_group(self, group: ClassicGroup) -> None:
        old = self._groups.pop(group.group_id, None)
        if old is not None:
            self._membership.forget(old)
        self._add_group(group)

    def _remove_group(self, group_id: str) -> None:
        group = self._groups.pop(group_id, None)
        if group is not None:
            group.state = GroupState.DEAD
            self._membership.forget(group)
        for topic, index in list(self._offsets.partitions(group_id)):
            self._offsets.remove(group_id, topic, index)


def _empty_group_id_error(group_id: str) -> ErrorCode | None:
    return ErrorCode.INVALID_GROUP_ID if not group_id else None


def _fetched(index: int, committed: CommittedOffset | None) -> FetchPartition:
    if committed is None:
        return FetchPartition(index, NO_OFFSET, -1, "", ErrorCode.NONE)
    return FetchPartition(index, committed.offset, committed.leader_epoch, committed.metadata, ErrorCode.NONE)


def _describe(group: ClassicGroup) -> DescribedGroup:
    """Members with their metadata and assignment once the group is Stable; without them before."""
    stable = group.is_in(GroupState.STABLE)
    return DescribedGroup(
        group_id=group.group_id,
        group_state=group.state.value,
        protocol_type=group.protocol_type or "",
        protocol_data=(group.protocol_name or "") if stable else "",
        members=[
            DescribedMember(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_metadata=m.metadata(group.protocol_name) if stable else b"",
                member_assignment=m.assignment if stable else b"",
            )
            for m in group.members.values()
        ],
    )


def _java_length(text: str) -> int:
    """Kafka limits commit metadata by Java's String.length(): UTF-16 code units, not characters."""
    return len(text.encode("utf-16-le")) // 2
