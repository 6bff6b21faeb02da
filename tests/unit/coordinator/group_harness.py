"""A group coordinator on a fake clock and an in-memory ``__consumer_offsets``, and terse ways to drive it.

Records written by the coordinator go through the real byte encoding and back, so every test also checks
that what the coordinator writes is what it can replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strom.coordinator.group import GroupConfig, GroupCoordinator
from strom.coordinator.group.offsets import ProducerStamp
from strom.coordinator.group.records import StoredRecord, decode_key, decode_value, encode_key, encode_value
from strom.coordinator.group.state import ClassicGroup
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.messages import heartbeat, join_group, leave_group, offset_commit, sync_group

START_MS = 1_700_000_000_000
PARTITIONS = 4
SESSION_MS = 10_000
REBALANCE_MS = 30_000
CONSUMER = "consumer"


class FakeClock:
    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class MemoryLog:
    """The partitions of __consumer_offsets as lists of records; `fail_with` makes the next appends fail."""

    partitions: dict[int, list[StoredRecord]] = field(default_factory=dict)
    appends: int = 0
    fail_with: ErrorCode | None = None

    def __call__(
        self, partition: int, records: Sequence[StoredRecord], producer: ProducerStamp | None = None
    ) -> None:
        if self.fail_with is not None:
            raise KafkaError(self.fail_with)
        self.appends += 1
        stored = self.partitions.setdefault(partition, [])
        for record in records:
            key = decode_key(encode_key(record.key))
            assert key is not None
            value = None if record.value is None else decode_value(key, encode_value(record.value))
            stored.append(StoredRecord(key, value))

    def all_records(self) -> list[StoredRecord]:
        return [record for records in self.partitions.values() for record in records]


class Reply:
    """Catches the response a parked JoinGroup or SyncGroup is eventually given."""

    def __init__(self) -> None:
        self.responses: list[Any] = []

    def __call__(self, response: Any) -> None:
        self.responses.append(response)

    @property
    def done(self) -> bool:
        return bool(self.responses)

    @property
    def value(self) -> Any:
        assert len(self.responses) == 1, f"expected one response, got {self.responses}"
        return self.responses[0]


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0 with these topics, as consumers put in JoinGroup."""
    out = bytearray(b"\x00\x00") + len(topics).to_bytes(4, "big")
    for topic in topics:
        out += len(topic).to_bytes(2, "big") + topic.encode()
    return bytes(out + b"\xff\xff\xff\xff")


class Harness:
    """A coordinator serving every partition, with helpers named after the requests."""

    def __init__(self, **config: Any) -> None:
        settings: dict[str, Any] = {
            "initial_rebalance_delay_ms": 0,
            "offsets_topic_num_partitions": PARTITIONS,
        }
        settings.update(config)
        self.config = GroupConfig(**settings)
        self.clock = FakeClock()
        self.log = MemoryLog()
        self.coordinator = GroupCoordinator(self.config, self.log, self.clock)
        self.coordinator.begin_loading(PARTITIONS, range(PARTITIONS))
        for partition in range(PARTITIONS):
            self.coordinator.finish_loading(partition)

    def advance(self, ms: int) -> None:
        self.clock.now += ms
        self.coordinator.tick()

    def group(self, group_id: str) -> ClassicGroup:
        group = self.coordinator.get_group(group_id)
        assert group is not None, f"no group {group_id}"
        return group

    # ------------------------------------------------------------------ requests
    def join(
        self,
        group_id: str,
        member_id: str = "",
        *,
        protocols: Sequence[tuple[str, bytes]] = (("range", b"r"),),
        protocol_type: str = CONSUMER,
        instance_id: str | None = None,
        session_ms: int = SESSION_MS,
        rebalance_ms: int = REBALANCE_MS,
        version: int = 9,
        client_id: str = "client",
    ) -> Reply:
        reply = Reply()
        request = join_group.JoinGroupRequest(
            group_id=group_id,
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms,
            member_id=member_id,
            group_instance_id=instance_id,
            protocol_type=protocol_type,
            protocols=[join_group.JoinGroupRequest.JoinGroupRequestProtocol(n, m) for n, m in protocols],
        )
        self.coordinator.join_group(
            request, client_id=client_id, client_host="/127.0.0.1", api_version=version, respond=reply
        )
        return reply

    def join_new(self, group_id: str, **kwargs: Any) -> Reply:
        """KIP-394's two steps: get a member id, then join with it."""
        first = self.join(group_id, **kwargs).value
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
        return self.join(group_id, first.member_id, **kwargs)

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: dict[str, bytes] | None = None,
        *,
        instance_id: str | None = None,
        protocol_name: str | None = None,
    ) -> Reply:
        reply = Reply()
        request = sync_group.SyncGroupRequest(
            group_id=group_id,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=instance_id,
            protocol_name=protocol_name,
            assignments=[
                sync_group.SyncGroupRequest.SyncGroupRequestAssignment(m, a)
                for m, a in (assignments or {}).items()
            ],
        )
        self.coordinator.sync_group(request, respond=reply)
        return reply

    def heartbeat(
        self, group_id: str, member_id: str, generation: int, instance_id: str | None = None
    ) -> ErrorCode:
        request = heartbeat.HeartbeatRequest(group_id, generation, member_id, instance_id)
        return self.coordinator.heartbeat(request)

    def leave(self, group_id: str, *members: tuple[str, str | None]) -> leave_group.LeaveGroupResponse:
        identities = [leave_group.LeaveGroupRequest.MemberIdentity(m, i) for m, i in members]
        return self.coordinator.leave_group(group_id, identities)

    def commit(
        self,
        group_id: str,
        offsets: dict[tuple[str, int], int],
        *,
        generation: int = -1,
        member_id: str = "",
        instance_id: str | None = None,
        metadata: str | None = "",
        retention_ms: int = -1,
        version: int = 8,
    ) -> dict[tuple[str, int], int]:
        """Commit; returns the error code per partition."""
        by_topic: dict[str, list[offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition]] = {}
        for (topic, partition), offset in offsets.items():
            by_topic.setdefault(topic, []).append(
                offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(
                    partition_index=partition,
                    committed_offset=offset,
                    committed_leader_epoch=3,
                    committed_metadata=metadata,
                )
            )
        request = offset_commit.OffsetCommitRequest(
            group_id=group_id,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            group_instance_id=instance_id,
            retention_time_ms=retention_ms,
            topics=[
                offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(t, ps)
                for t, ps in by_topic.items()
            ],
        )
        result = self.coordinator.commit_offsets(request, version)
        return {(t.name, p.partition_index): p.error_code for t in result for p in t.partitions}

    def committed(self, group_id: str, topic: str, partition: int) -> int:
        group = self.coordinator.fetch_offsets(group_id, [(topic, [partition])])
        assert group.error_code == ErrorCode.NONE
        return group.topics[0].partitions[0].committed_offset

    # ------------------------------------------------------------------ whole steps
    def stable_group(self, group_id: str, count: int, **kwargs: Any) -> list[str]:
        """A Stable group of `count` dynamic members, each assigned b"assigned-<member id>"; leader first."""
        members: list[str] = []
        for _ in range(count):
            newcomer = self.join_new(group_id, **kwargs)
            for member_id in members:  # the others learn of the rebalance and rejoin
                self.join(group_id, member_id, **kwargs)
            members.append(newcomer.value.member_id)
        group = self.group(group_id)
        leader = group.leader_id
        assert leader is not None
        followers = [m for m in members if m != leader]
        syncs = [self.sync(group_id, m, group.generation_id) for m in followers]
        assignment = {m: f"assigned-{m}".encode() for m in members}
        assert self.sync(group_id, leader, group.generation_id, assignment).value.error_code == ErrorCode.NONE
        assert all(s.value.error_code == ErrorCode.NONE for s in syncs)
        return [leader, *followers]
