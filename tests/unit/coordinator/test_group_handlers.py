"""The group API handlers through the dispatcher, at the edges of the version ranges they advertise.

Requests and responses go through the real codec, so every answer is also proven encodable at its version
(the encoder refuses values a version cannot carry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from strom.coordinator.group import OFFSETS_TOPIC
from strom.metadata.properties import BrokerConfig, with_single_node_defaults
from strom.protocol.errors import ErrorCode
from strom.protocol.frames import decode_response_frame_body, encode_request_frame
from strom.protocol.messages import (
    delete_groups,
    describe_groups,
    find_coordinator,
    heartbeat,
    join_group,
    leave_group,
    list_groups,
    offset_commit,
    offset_delete,
    offset_fetch,
    sync_group,
)
from strom.server.broker import Broker
from strom.server.dispatch import Dispatcher
from strom.server.handlers import HANDLERS

TOPIC = "orders"
GROUP = "billing"


@dataclass
class StubConnection:
    peer: str = "10.1.2.3:5555"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    config = BrokerConfig(
        with_single_node_defaults({"log.dirs": str(tmp_path), "offsets.topic.num.partitions": "3"})
    )
    node = Broker(config, advertised_host="127.0.0.1", advertised_port=9092)
    node.controller.create_topics([node.controller.new_topic(TOPIC, 2, 1)])
    yield node
    node.close()


def call(broker: Broker, api_key: int, version: int, request: Any) -> Any:
    """One request through the dispatcher and the codec, both ways."""
    frame = b"".join(encode_request_frame(api_key, version, 7, "test-client", request))[4:]
    chunks = asyncio.run(Dispatcher(broker).handle_frame(StubConnection(), memoryview(bytearray(frame))))  # type: ignore[arg-type]
    assert chunks is not None
    correlation_id, response = decode_response_frame_body(api_key, version, memoryview(b"".join(chunks)[4:]))
    assert correlation_id == 7
    return response


def versions(api_key: int) -> tuple[int, int]:
    handler = HANDLERS[api_key]
    return handler.min_version, handler.max_version


def join(broker: Broker, version: int, member_id: str = "") -> Any:
    protocol = join_group.JoinGroupRequest.JoinGroupRequestProtocol(
        "range", b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"
    )
    request = join_group.JoinGroupRequest(
        group_id=GROUP,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=10_000,
        member_id=member_id,
        protocol_type="consumer",
        protocols=[protocol],
    )
    return call(broker, join_group.API_KEY, version, request)


# ------------------------------------------------------------------------------------------ FindCoordinator
@pytest.mark.parametrize("version", range(1, 4))
def test_find_coordinator_single_key(broker: Broker, version: int) -> None:
    response = call(
        broker, find_coordinator.API_KEY, version, find_coordinator.FindCoordinatorRequest(key=GROUP)
    )
    assert (response.error_code, response.node_id, response.host, response.port) == (0, 1, "127.0.0.1", 9092)
    assert response.error_message == "NONE"
    assert broker.image.topic(OFFSETS_TOPIC) is not None  # created by the first lookup


@pytest.mark.parametrize("version", range(4, 7))
def test_find_coordinator_batched_keys(broker: Broker, version: int) -> None:
    groups = call(
        broker,
        find_coordinator.API_KEY,
        version,
        find_coordinator.FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"]),
    )
    assert [(c.key, c.node_id, c.error_code) for c in groups.coordinators] == [("a", 1, 0), ("b", 1, 0)]
    transactions = call(
        broker,
        find_coordinator.API_KEY,
        version,
        find_coordinator.FindCoordinatorRequest(key_type=1, coordinator_keys=["tx"]),
    )
    assert [(c.key, c.node_id, c.error_code) for c in transactions.coordinators] == [("tx", 1, 0)]
    assert broker.image.topic("__transaction_state") is not None  # created by the first lookup


def test_find_coordinator_refuses_share_and_unknown_key_types(broker: Broker) -> None:
    for key_type in (2, 9):
        request = find_coordinator.FindCoordinatorRequest(key_type=key_type, coordinator_keys=["x"])
        response = call(broker, find_coordinator.API_KEY, 6, request)
        assert response.coordinators[0].error_code == ErrorCode.INVALID_REQUEST


# ------------------------------------------------------------------------------------------ a member's life
@pytest.mark.parametrize("edge", ["oldest", "newest"])
def test_a_member_lifecycle_at_the_edges_of_each_range(broker: Broker, edge: str) -> None:
    def version(api_key: int) -> int:
        low, high = versions(api_key)
        return low if edge == "oldest" else high

    find_version = version(find_coordinator.API_KEY)
    lookup = (
        find_coordinator.FindCoordinatorRequest(coordinator_keys=[GROUP])
        if find_version >= 4
        else find_coordinator.FindCoordinatorRequest(key=GROUP)
    )
    call(broker, find_coordinator.API_KEY, find_version, lookup)
    join_version = version(join_group.API_KEY)
    joined = join(broker, join_version)
    if joined.error_code == ErrorCode.MEMBER_ID_REQUIRED:
        joined = join(broker, join_version, joined.member_id)
    assert joined.error_code == ErrorCode.NONE and joined.generation_id == 1
    assert joined.protocol_name == "range"
    member = joined.member_id
    assert member.startswith("test-client-")

    assignment = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    synced = call(
        broker,
        sync_group.API_KEY,
        version(sync_group.API_KEY),
        sync_group.SyncGroupRequest(
            group_id=GROUP,
            generation_id=1,
            member_id=member,
            assignments=[sync_group.SyncGroupRequest.SyncGroupRequestAssignment(member, assignment)],
        ),
    )
    assert (synced.error_code, synced.assignment) == (0, assignment)
    beat = call(
        broker, heartbeat.API_KEY, version(heartbeat.API_KEY), heartbeat.HeartbeatRequest(GROUP, 1, member)
    )
    assert beat.error_code == ErrorCode.NONE

    commit = offset_commit.OffsetCommitRequest(
        group_id=GROUP,
        generation_id_or_member_epoch=1,
        member_id=member,
        topics=[
            offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                TOPIC,
                [
                    offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(
                        0, 17, committed_metadata="m"
                    )
                ],
            ),
            offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                "no-such-topic", [offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(0, 1)]
            ),
        ],
    )
    committed = call(broker, offset_commit.API_KEY, version(offset_commit.API_KEY), commit)
    assert [(t.name, [p.error_code for p in t.partitions]) for t in committed.topics] == [
        (TOPIC, [ErrorCode.NONE]),
        ("no-such-topic", [ErrorCode.UNKNOWN_TOPIC_OR_PARTITION]),
    ]

    fetch_version = version(offset_fetch.API_KEY)
    if fetch_version >= 8:
        request = offset_fetch.OffsetFetchRequest(
            groups=[
                offset_fetch.OffsetFetchRequest.OffsetFetchRequestGroup(
                    GROUP, topics=[offset_fetch.OffsetFetchRequest.OffsetFetchRequestTopics(TOPIC, [0, 1])]
                )
            ]
        )
        fetched = call(broker, offset_fetch.API_KEY, fetch_version, request).groups[0].topics
    else:
        request = offset_fetch.OffsetFetchRequest(
            group_id=GROUP, topics=[offset_fetch.OffsetFetchRequest.OffsetFetchRequestTopic(TOPIC, [0, 1])]
        )
        fetched = call(broker, offset_fetch.API_KEY, fetch_version, request).topics
    assert [(p.committed_offset, p.metadata) for p in fetched[0].partitions] == [(17, "m"), (-1, "")]

    described = call(
        broker,
        describe_groups.API_KEY,
        version(describe_groups.API_KEY),
        describe_groups.DescribeGroupsRequest([GROUP]),
    ).groups[0]
    assert (described.group_state, described.protocol_data) == ("Stable", "range")
    assert [(m.member_id, m.client_id, m.client_host, m.member_assignment) for m in described.members] == [
        (member, "test-client", "/10.1.2.3", assignment)
    ]
    listed = call(broker, list_groups.API_KEY, version(list_groups.API_KEY), list_groups.ListGroupsRequest())
    assert [(g.group_id, g.protocol_type) for g in listed.groups] == [(GROUP, "consumer")]

    leave_version = version(leave_group.API_KEY)
    if leave_version >= 3:
        request = leave_group.LeaveGroupRequest(
            GROUP, members=[leave_group.LeaveGroupRequest.MemberIdentity(member)]
        )
    else:
        request = leave_group.LeaveGroupRequest(GROUP, member_id=member)
    assert call(broker, leave_group.API_KEY, leave_version, request).error_code == ErrorCode.NONE

    deleted = call(
        broker,
        delete_groups.API_KEY,
        version(delete_groups.API_KEY),
        delete_groups.DeleteGroupsRequest([GROUP, GROUP]),
    )
    assert [(r.group_id, r.error_code) for r in deleted.results] == [(GROUP, ErrorCode.NONE)]


# -------------------------------------------------------------------------------------- per-version answers
def test_leave_group_before_v3_reports_the_members_error_at_the_top(broker: Broker) -> None:
    call(broker, find_coordinator.API_KEY, 1, find_coordinator.FindCoordinatorRequest(key=GROUP))
    join(broker, 3)
    response = call(
        broker, leave_group.API_KEY, 0, leave_group.LeaveGroupRequest(GROUP, member_id="stranger")
    )
    assert response.error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_offset_fetch_before_v2_reports_a_group_error_on_every_partition(broker: Broker) -> None:
    request = offset_fetch.OffsetFetchRequest(
        group_id=GROUP, topics=[offset_fetch.OffsetFetchRequest.OffsetFetchRequestTopic(TOPIC, [0, 1])]
    )
    old = call(broker, offset_fetch.API_KEY, 1, request)  # no __consumer_offsets yet: not the coordinator
    assert [p.error_code for p in old.topics[0].partitions] == [ErrorCode.NOT_COORDINATOR] * 2
    newer = call(broker, offset_fetch.API_KEY, 2, request)
    assert (newer.error_code, newer.topics) == (ErrorCode.NOT_COORDINATOR, [])


def test_describe_groups_reports_authorized_operations_when_asked(broker: Broker) -> None:
    call(broker, find_coordinator.API_KEY, 1, find_coordinator.FindCoordinatorRequest(key=GROUP))
    asked = describe_groups.DescribeGroupsRequest([GROUP], include_authorized_operations=True)
    assert call(broker, describe_groups.API_KEY, 3, asked).groups[0].authorized_operations == 328
    plain = describe_groups.DescribeGroupsRequest([GROUP])
    assert call(broker, describe_groups.API_KEY, 3, plain).groups[0].authorized_operations == -(2**31)


def test_join_group_before_v7_answers_an_empty_protocol_name_on_errors(broker: Broker) -> None:
    call(broker, find_coordinator.API_KEY, 1, find_coordinator.FindCoordinatorRequest(key=GROUP))
    response = join(broker, 6, member_id="stranger")
    assert (response.error_code, response.protocol_name) == (ErrorCode.UNKNOWN_MEMBER_ID, "")


def test_offset_delete_of_unknown_topics(broker: Broker) -> None:
    call(broker, find_coordinator.API_KEY, 1, find_coordinator.FindCoordinatorRequest(key=GROUP))
    commit = offset_commit.OffsetCommitRequest(
        group_id=GROUP,
        topics=[
            offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                TOPIC, [offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(0, 5)]
            )
        ],
    )
    call(broker, offset_commit.API_KEY, 9, commit)
    request = offset_delete.OffsetDeleteRequest(
        GROUP,
        [
            offset_delete.OffsetDeleteRequest.OffsetDeleteRequestTopic(
                name, [offset_delete.OffsetDeleteRequest.OffsetDeleteRequestPartition(p) for p in partitions]
            )
            for name, partitions in ((TOPIC, [0, 7]), ("no-such-topic", [0]))
        ],
    )
    response = call(broker, offset_delete.API_KEY, 0, request)
    assert response.error_code == ErrorCode.NONE
    assert sorted(
        (t.name, p.partition_index, p.error_code) for t in response.topics for p in t.partitions
    ) == [
        ("no-such-topic", 0, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        (TOPIC, 0, ErrorCode.NONE),
        (TOPIC, 7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
    ]
