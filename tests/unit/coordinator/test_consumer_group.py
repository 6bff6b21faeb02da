"""The consumer group protocol (KIP-848) on a fake clock: joining, assignment, reconciliation, leaving."""

from __future__ import annotations

import uuid

import pytest
from consumer_group_harness import GROUP, REBALANCE_MS, Client, ConsumerHarness, settle

from strom.coordinator.group.consumer_group import ConsumerGroupState, MemberState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.consumer_group_heartbeat import ConsumerGroupHeartbeatRequest

SESSION_MS = 45_000
HEARTBEAT_MS = 5_000


@pytest.fixture
def h() -> ConsumerHarness:
    return ConsumerHarness()


def test_three_members_split_six_partitions_evenly_with_uniform(h: ConsumerHarness) -> None:
    topic_id = h.topics.add("orders", 6)
    clients = [h.client(["orders"]) for _ in range(3)]
    for client in clients:
        assert client.heartbeat().error_code == ErrorCode.NONE
    settle(clients)

    owned = [c.partitions() for c in clients]
    assert [len(p) for p in owned] == [2, 2, 2]
    assert set().union(*owned) == {(topic_id, p) for p in range(6)}
    group = h.group()
    assert group.state is ConsumerGroupState.STABLE
    assert {c.epoch for c in clients} == {group.group_epoch} == {group.assignment_epoch}
    assert all(m.state is MemberState.STABLE for m in group.members.values())


def test_range_assignor_gives_consecutive_ranges_in_member_id_order(h: ConsumerHarness) -> None:
    topic_id = h.topics.add("orders", 6)
    clients = [h.client(["orders"], assignor="range", member_id=f"member-{i}") for i in (2, 0, 1)]
    for client in clients:
        client.heartbeat()
    settle(clients)

    by_member = {c.member_id: sorted(p for _, p in c.partitions()) for c in clients}
    assert by_member == {"member-0": [0, 1], "member-1": [2, 3], "member-2": [4, 5]}
    assert all(t == topic_id for c in clients for t, _ in c.partitions())


def test_partitions_move_only_after_their_owner_revoked_them(h: ConsumerHarness) -> None:
    h.topics.add("orders", 6)
    first = h.client(["orders"])
    first.heartbeat()
    assert len(first.partitions()) == 6
    first.stubborn = True  # keeps its partitions until told otherwise below

    second = h.client(["orders"])
    joined = second.heartbeat()
    assert joined.assignment is not None and joined.assignment.topic_partitions == []
    assert h.group().group_epoch == 2

    reply = first.heartbeat()
    assert reply.member_epoch == 1  # it must revoke before moving to epoch 2
    assert reply.assignment is not None
    assert sum(len(tp.partitions) for tp in reply.assignment.topic_partitions) == 3
    assert h.group().members[first.member_id].state is MemberState.UNREVOKED_PARTITIONS
    assert second.heartbeat().assignment is None  # still owned by the first member: nothing yet

    first.stubborn = False
    first.owned = {tp.topic_id: list(tp.partitions) for tp in reply.assignment.topic_partitions}
    assert first.heartbeat().member_epoch == 2
    second_reply = second.heartbeat()
    assert second_reply.assignment is not None
    assert len(second.partitions()) == 3
    assert not first.partitions() & second.partitions()
    assert h.group().state is ConsumerGroupState.STABLE


def test_member_that_does_not_revoke_in_time_is_removed(h: ConsumerHarness) -> None:
    h.topics.add("orders", 4)
    first = h.client(["orders"])
    first.heartbeat()
    first.stubborn = True
    second = h.client(["orders"])
    second.heartbeat()
    first.heartbeat()
    assert h.group().members[first.member_id].state is MemberState.UNREVOKED_PARTITIONS

    h.advance(REBALANCE_MS)
    assert first.member_id not in h.group().members
    settle([second])
    assert len(second.partitions()) == 4


def test_expired_session_removes_the_member_and_others_take_its_partitions(h: ConsumerHarness) -> None:
    h.topics.add("orders", 6)
    alive, silent = h.client(["orders"]), h.client(["orders"])
    alive.heartbeat()
    silent.heartbeat()
    settle([alive, silent])
    assert len(alive.partitions()) == 3

    for _ in range(SESSION_MS // HEARTBEAT_MS):
        h.advance(HEARTBEAT_MS)
        alive.heartbeat()
    assert silent.member_id not in h.group().members
    assert len(alive.partitions()) == 6
    assert silent.heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_leaving_member_hands_its_partitions_over(h: ConsumerHarness) -> None:
    h.topics.add("orders", 6)
    clients = [h.client(["orders"]) for _ in range(3)]
    for client in clients:
        client.heartbeat()
    settle(clients)
    leaving = clients.pop()
    epoch_before = h.group().group_epoch

    reply = leaving.leave()
    assert (reply.error_code, reply.member_id, reply.member_epoch) == (ErrorCode.NONE, leaving.member_id, -1)
    assert h.group().group_epoch == epoch_before + 1
    settle(clients)
    assert sorted(len(c.partitions()) for c in clients) == [3, 3]

    for client in clients:
        client.leave()
    assert h.group().state is ConsumerGroupState.EMPTY


def test_static_member_is_replaced_by_a_new_instance_with_its_assignment(h: ConsumerHarness) -> None:
    h.topics.add("orders", 4)
    static = h.client(["orders"], instance_id="instance-a")
    other = h.client(["orders"])
    static.heartbeat()
    other.heartbeat()
    settle([static, other])
    kept = static.partitions()
    epoch = h.group().group_epoch

    successor = h.client(["orders"], instance_id="instance-a")
    refused = successor.heartbeat()
    assert refused.error_code == ErrorCode.UNRELEASED_INSTANCE_ID

    assert static.leave(epoch=-2).member_epoch == -2
    joined = successor.heartbeat()
    assert joined.error_code == ErrorCode.NONE
    assert successor.partitions() == kept
    assert joined.member_epoch == epoch
    group = h.group()
    assert group.group_epoch == epoch  # no rebalance
    assert static.member_id not in group.members
    assert group.static_members["instance-a"] == successor.member_id
    old = ConsumerGroupHeartbeatRequest(GROUP, static.member_id, epoch, instance_id="instance-a")
    assert h.send(old).error_code == ErrorCode.FENCED_INSTANCE_ID


def test_new_partitions_of_a_subscribed_topic_are_assigned(h: ConsumerHarness) -> None:
    h.topics.add("orders", 2)
    clients = [h.client(["orders"]) for _ in range(2)]
    for client in clients:
        client.heartbeat()
    settle(clients)
    epoch = h.group().group_epoch

    h.topics.grow("orders", 4)
    settle(clients)
    assert h.group().group_epoch == epoch + 1
    assert sorted(len(c.partitions()) for c in clients) == [2, 2]


def test_member_epoch_fencing(h: ConsumerHarness) -> None:
    topic_id = h.topics.add("orders", 2)
    client, other = h.client(["orders"]), h.client(["orders"])
    client.heartbeat()
    other.heartbeat()
    settle([client, other])
    epoch = client.epoch
    assert epoch == 2

    ahead = client.heartbeat(member_epoch=epoch + 1)
    assert ahead.error_code == ErrorCode.FENCED_MEMBER_EPOCH
    # The previous epoch is only accepted with no more than the current partitions owned.
    owning_too_much = [ConsumerGroupHeartbeatRequest.TopicPartitions(topic_id, [0, 1])]
    behind = client.heartbeat(member_epoch=epoch - 1, topic_partitions=owning_too_much)
    assert behind.error_code == ErrorCode.FENCED_MEMBER_EPOCH
    assert client.heartbeat().error_code == ErrorCode.NONE
    stranger = ConsumerGroupHeartbeatRequest(GROUP, "stranger", 1)
    assert h.send(stranger).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    unknown_group = ConsumerGroupHeartbeatRequest("nowhere", "someone", 1)
    assert h.send(unknown_group).error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_previous_epoch_is_accepted_while_owning_a_subset(h: ConsumerHarness) -> None:
    h.topics.add("orders", 4)
    first = h.client(["orders"])
    first.heartbeat()
    second = h.client(["orders"])
    second.heartbeat()
    settle([first, second])
    member = h.group().members[first.member_id]
    assert member.previous_member_epoch < member.member_epoch
    # The answer with the new epoch was lost: the member retries with its previous epoch.
    reply = first.heartbeat(member_epoch=member.previous_member_epoch)
    assert reply.error_code == ErrorCode.NONE
    assert reply.member_epoch == member.member_epoch


@pytest.mark.parametrize(
    ("fields", "version", "error"),
    [
        ({"member_id": ""}, 1, ErrorCode.INVALID_REQUEST),
        ({"rebalance_timeout_ms": -1}, 1, ErrorCode.INVALID_REQUEST),
        ({"subscribed_topic_names": None}, 1, ErrorCode.INVALID_REQUEST),
        ({"topic_partitions": None}, 1, ErrorCode.INVALID_REQUEST),
        ({"instance_id": ""}, 1, ErrorCode.INVALID_REQUEST),
        ({"subscribed_topic_regex": "orders.*"}, 1, ErrorCode.INVALID_REQUEST),
        ({"member_epoch": -3}, 1, ErrorCode.INVALID_REQUEST),
        ({"server_assignor": "sticky"}, 1, ErrorCode.UNSUPPORTED_ASSIGNOR),
        ({"group_id": ""}, 1, ErrorCode.INVALID_GROUP_ID),
    ],
)
def test_invalid_requests(
    h: ConsumerHarness, fields: dict[str, object], version: int, error: ErrorCode
) -> None:
    request = ConsumerGroupHeartbeatRequest(
        group_id=GROUP,
        member_id="m",
        member_epoch=0,
        rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=["orders"],
        topic_partitions=[],
    )
    for name, value in fields.items():
        setattr(request, name, value)
    assert h.send(request, version).error_code == error


def test_version_0_generates_the_member_id(h: ConsumerHarness) -> None:
    h.topics.add("orders", 1)
    request = ConsumerGroupHeartbeatRequest(
        GROUP,
        "",
        0,
        rebalance_timeout_ms=REBALANCE_MS,
        subscribed_topic_names=["orders"],
        topic_partitions=[],
    )
    reply = h.send(request, version=0)
    assert reply.error_code == ErrorCode.NONE
    assert reply.member_id and reply.member_id in h.group().members


def test_group_max_size(h: ConsumerHarness) -> None:
    h = ConsumerHarness(max_size=1)
    h.topics.add("orders", 1)
    h.client(["orders"]).heartbeat()
    assert h.client(["orders"]).heartbeat().error_code == ErrorCode.GROUP_MAX_SIZE_REACHED


def test_assignment_is_sent_only_when_it_changed(h: ConsumerHarness) -> None:
    h.topics.add("orders", 2)
    client = h.client(["orders"])
    assert client.heartbeat().assignment is not None
    assert client.heartbeat().assignment is None
    full = client.heartbeat(rebalance_timeout_ms=REBALANCE_MS, subscribed_topic_names=["orders"])
    assert full.assignment is not None


def test_new_subscription_bumps_the_group_epoch(h: ConsumerHarness) -> None:
    orders, payments = h.topics.add("orders", 1), h.topics.add("payments", 1)
    client = h.client(["orders"])
    client.heartbeat()
    epoch = h.group().group_epoch
    reply = client.heartbeat(subscribed_topic_names=["orders", "payments"])
    assert h.group().group_epoch == epoch + 1
    assert reply.assignment is not None
    assert {tp.topic_id for tp in reply.assignment.topic_partitions} == {orders, payments}


def test_offset_commits_are_checked_against_the_member_epoch(h: ConsumerHarness) -> None:
    from strom.protocol.messages import offset_commit

    h.topics.add("orders", 1)
    client = h.client(["orders"])
    client.heartbeat()

    def commit(epoch: int, version: int = 9) -> int:
        request = offset_commit.OffsetCommitRequest(
            group_id=GROUP,
            generation_id_or_member_epoch=epoch,
            member_id=client.member_id,
            topics=[
                offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                    "orders", [offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(0, 42)]
                )
            ],
        )
        return h.coordinator.commit_offsets(request, version)[0].partitions[0].error_code

    assert commit(client.epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert commit(client.epoch + 1, version=8) == ErrorCode.ILLEGAL_GENERATION
    assert commit(client.epoch) == ErrorCode.NONE
    fetched = h.coordinator.fetch_offsets(GROUP, [("orders", [0])])
    assert fetched.topics[0].partitions[0].committed_offset == 42


def test_offset_fetch_by_a_member_checks_its_epoch(h: ConsumerHarness) -> None:
    h.topics.add("orders", 1)
    client = h.client(["orders"])
    client.heartbeat()

    def fetch_error(member_id: str | None, epoch: int) -> int:
        fetched = h.coordinator.fetch_offsets(
            GROUP, [("orders", [0])], member_id=member_id, member_epoch=epoch
        )
        return fetched.error_code

    assert fetch_error(None, -1) == ErrorCode.NONE  # an admin client
    assert fetch_error(client.member_id, client.epoch) == ErrorCode.NONE
    assert fetch_error(client.member_id, client.epoch + 1) == ErrorCode.STALE_MEMBER_EPOCH
    assert fetch_error("stranger", 1) == ErrorCode.UNKNOWN_MEMBER_ID


def test_group_types_do_not_share_an_id(h: ConsumerHarness) -> None:
    from group_harness import Reply

    from strom.protocol.messages import join_group

    h.topics.add("orders", 1)
    h.client(["orders"]).heartbeat()
    reply = Reply()
    request = join_group.JoinGroupRequest(
        group_id=GROUP,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=REBALANCE_MS,
        member_id="",
        protocol_type="consumer",
        protocols=[join_group.JoinGroupRequest.JoinGroupRequestProtocol("range", b"")],
    )
    h.coordinator.join_group(request, client_id="c", client_host="/127.0.0.1", api_version=9, respond=reply)
    assert reply.value.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL

    request.group_id = "classic"
    h.coordinator.join_group(request, client_id="c", client_host="/127.0.0.1", api_version=3, respond=Reply())
    assert Client(h, ["orders"], group_id="classic").heartbeat().error_code == ErrorCode.GROUP_ID_NOT_FOUND


def test_list_describe_and_delete(h: ConsumerHarness) -> None:
    topic_id = h.topics.add("orders", 2)
    client = h.client(["orders"])
    client.heartbeat()

    error, listed = h.coordinator.list_groups([], ["consumer"])
    assert error == ErrorCode.NONE
    assert [(g.group_id, g.group_type, g.protocol_type, g.group_state) for g in listed] == [
        (GROUP, "consumer", "consumer", "Stable")
    ]
    assert h.coordinator.list_groups([], ["classic"])[1] == []

    described = h.coordinator.consumer_group_describe([GROUP, "missing"])
    group, missing = described
    assert (group.group_state, group.group_epoch, group.assignment_epoch, group.assignor_name) == (
        "Stable",
        1,
        1,
        "uniform",
    )
    member = group.members[0]
    assert member.member_id == client.member_id
    assert member.subscribed_topic_names == ["orders"]
    assert [(tp.topic_id, tp.topic_name, tp.partitions) for tp in member.assignment.topic_partitions] == [
        (topic_id, "orders", [0, 1])
    ]
    assert member.target_assignment == member.assignment
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND

    assert h.coordinator.delete_groups([GROUP])[0].error_code == ErrorCode.NON_EMPTY_GROUP
    client.leave()
    assert h.coordinator.delete_groups([GROUP])[0].error_code == ErrorCode.NONE
    assert h.coordinator.consumer_groups.get(GROUP) is None


def test_groups_are_replayed_from_their_records(h: ConsumerHarness) -> None:
    h.topics.add("orders", 6)
    clients = [h.client(["orders"], instance_id="s" if i == 0 else None) for i in range(3)]
    for client in clients:
        client.heartbeat()
    settle(clients)
    clients[0].stubborn = True
    newcomer = h.client(["orders"])
    newcomer.heartbeat()
    clients[0].heartbeat()  # now pending revocation

    def state(group_id: str = GROUP) -> object:
        group = h.coordinator.consumer_groups.get(group_id)
        assert group is not None
        return (
            group.group_epoch,
            group.assignment_epoch,
            group.members,
            group.static_members,
            group.target_assignment,
            group.partition_epochs,
            group.state,
        )

    before = state()
    h.coordinator = h.rebuilt()
    assert state() == before
    settle([*clients[1:], newcomer])  # the group carries on with the replayed state
    assert h.group().members[newcomer.member_id].member_epoch > 0


def test_replayed_members_expire_without_heartbeats(h: ConsumerHarness) -> None:
    h.topics.add("orders", 1)
    h.client(["orders"]).heartbeat()
    h.coordinator = h.rebuilt()
    h.advance(SESSION_MS)
    assert h.group().state is ConsumerGroupState.EMPTY


def test_unused_topic_ids_are_ignored_in_owned_partitions(h: ConsumerHarness) -> None:
    h.topics.add("orders", 1)
    client = h.client(["orders"])
    client.heartbeat()
    client.owned[uuid.uuid4()] = [0]
    assert client.heartbeat().error_code == ErrorCode.NONE
