"""Committed offsets and group administration: who may commit, fetch, expiry, delete, describe, list."""

from __future__ import annotations

from group_harness import SESSION_MS, Harness, subscription

from strom.coordinator.group.records import GroupMetadataKey, OffsetCommitKey, OffsetCommitValue
from strom.coordinator.group.state import GroupState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_delete import OffsetDeleteRequest

G = "payments"
NONE = ErrorCode.NONE
DAY_MS = 24 * 60 * 60 * 1000


def delete_offsets(h: Harness, group_id: str, topic: str, *partitions: int) -> tuple[int, dict[int, int]]:
    request = OffsetDeleteRequest(
        group_id,
        [
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                topic, [OffsetDeleteRequest.OffsetDeleteRequestPartition(p) for p in partitions]
            )
        ],
    )
    response = h.coordinator.delete_offsets(request)
    return response.error_code, {
        p.partition_index: p.error_code for t in response.topics for p in t.partitions
    }


def deleted_keys(h: Harness) -> set[object]:
    """The keys of the tombstones written so far."""
    return {r.key for r in h.log.all_records() if r.value is None}


# ---------------------------------------------------------------------------------------------- commit
def test_simple_commit_creates_a_simple_group_and_keeps_metadata() -> None:
    h = Harness()
    assert h.commit(G, {("t", 0): 42, ("t", 1): 7}, metadata="note") == {("t", 0): NONE, ("t", 1): NONE}
    fetched = h.coordinator.fetch_offsets(G, [("t", [0, 1, 2])])
    assert [
        (p.committed_offset, p.committed_leader_epoch, p.metadata) for p in fetched.topics[0].partitions
    ] == [
        (42, 3, "note"),
        (7, 3, "note"),
        (-1, -1, ""),
    ]
    group = h.group(G)
    assert group.state is GroupState.EMPTY and group.protocol_type is None
    assert h.coordinator.list_groups([], [])[1][0].protocol_type == ""


def test_one_append_per_commit_request() -> None:
    h = Harness()
    h.commit(G, {("t", p): p for p in range(10)})
    assert h.log.appends == 1
    assert [r.key for r in h.log.all_records()] == [OffsetCommitKey(G, "t", p) for p in range(10)]
    value = h.log.all_records()[0].value
    assert isinstance(value, OffsetCommitValue) and value.commit_timestamp == h.clock.now


def test_null_metadata_is_stored_as_empty_and_too_large_metadata_is_refused() -> None:
    h = Harness(offset_metadata_max_bytes=5)
    h.commit(G, {("t", 0): 1}, metadata=None)
    assert h.coordinator.fetch_offsets(G, [("t", [0])]).topics[0].partitions[0].metadata == ""
    assert h.commit(G, {("t", 0): 2, ("u", 0): 3}, metadata="123456") == {
        ("t", 0): ErrorCode.OFFSET_METADATA_TOO_LARGE,
        ("u", 0): ErrorCode.OFFSET_METADATA_TOO_LARGE,
    }
    assert h.commit(G, {("t", 0): 4}, metadata="12345") == {("t", 0): NONE}
    assert h.committed(G, "t", 0) == 4


def test_commit_with_a_generation_to_an_unknown_group() -> None:
    h = Harness()
    assert h.commit(G, {("t", 0): 1}, generation=3, member_id="m") == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    v9 = h.commit(G, {("t", 0): 1}, generation=3, member_id="m", version=9)
    assert v9 == {("t", 0): ErrorCode.GROUP_ID_NOT_FOUND}
    assert h.coordinator.get_group(G) is None


def test_member_commits_are_checked_against_the_generation() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2)
    generation = h.group(G).generation_id
    ok = h.commit(G, {("t", 0): 10}, generation=generation, member_id=leader)
    assert ok == {("t", 0): NONE}
    stale = h.commit(G, {("t", 0): 11}, generation=generation - 1, member_id=leader)
    assert stale == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    stranger = h.commit(G, {("t", 0): 11}, generation=generation, member_id="stranger")
    assert stranger == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    simple = h.commit(G, {("t", 0): 11})  # generation -1, no member: only while the group is empty
    assert simple == {("t", 0): ErrorCode.UNKNOWN_MEMBER_ID}
    assert h.committed(G, "t", 0) == 10
    h.join(G, leader)
    h.join(G, follower)  # both rejoined: CompletingRebalance, assignments not yet handed out
    during = h.commit(G, {("t", 0): 12}, generation=generation + 1, member_id=follower)
    assert during == {("t", 0): ErrorCode.REBALANCE_IN_PROGRESS}


def test_a_failed_append_commits_nothing() -> None:
    h = Harness()
    h.log.fail_with = ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert h.commit(G, {("t", 0): 5}) == {("t", 0): ErrorCode.NOT_COORDINATOR}
    h.log.fail_with = ErrorCode.NOT_ENOUGH_REPLICAS
    assert h.commit(G, {("t", 0): 5}) == {("t", 0): ErrorCode.COORDINATOR_NOT_AVAILABLE}
    h.log.fail_with = None
    assert h.coordinator.fetch_offsets(G, [("t", [0])]).topics[0].partitions[0].committed_offset == -1


# ---------------------------------------------------------------------------------------------- fetch
def test_fetch_every_partition_when_no_topics_are_named() -> None:
    h = Harness()
    h.commit(G, {("b", 1): 5, ("a", 0): 3, ("b", 0): 4})
    fetched = h.coordinator.fetch_offsets(G, None)
    assert [
        (t.name, [(p.partition_index, p.committed_offset) for p in t.partitions]) for t in fetched.topics
    ] == [
        ("a", [(0, 3)]),
        ("b", [(0, 4), (1, 5)]),
    ]
    assert h.coordinator.fetch_offsets("unknown", None).topics == []


# ---------------------------------------------------------------------------------------------- expiry
def test_simple_group_offsets_expire_after_the_retention_since_their_commit() -> None:
    h = Harness(offsets_retention_ms=DAY_MS, offsets_retention_check_interval_ms=60_000)
    h.commit(G, {("t", 0): 1})
    h.advance(DAY_MS // 2)
    h.commit(G, {("t", 1): 2})
    h.advance(DAY_MS // 2 + 60_000)
    fetched = h.coordinator.fetch_offsets(G, [("t", [0, 1])]).topics[0].partitions
    assert [p.committed_offset for p in fetched] == [-1, 2]
    h.advance(DAY_MS // 2)
    assert h.coordinator.get_group(G) is None  # no offsets left and no members: the group goes too
    assert deleted_keys(h) >= {OffsetCommitKey(G, "t", 0), OffsetCommitKey(G, "t", 1), GroupMetadataKey(G)}


def test_consumer_group_keeps_offsets_of_subscribed_topics_while_it_is_active() -> None:
    h = Harness(offsets_retention_ms=DAY_MS, offsets_retention_check_interval_ms=60_000)
    protocols = [("range", subscription("orders"))]
    [member] = h.stable_group(G, 1, protocols=protocols, session_ms=1_800_000)
    generation = h.group(G).generation_id
    h.commit(G, {("orders", 0): 9, ("old-topic", 0): 3}, generation=generation, member_id=member)
    for _ in range(25 * 3):  # a day and an hour of heartbeats, every 20 minutes
        h.advance(20 * 60_000)
        assert h.heartbeat(G, member, generation) == NONE
    assert h.committed(G, "orders", 0) == 9
    assert h.committed(G, "old-topic", 0) == -1


def test_empty_group_offsets_expire_after_the_retention_since_it_became_empty() -> None:
    h = Harness(offsets_retention_ms=DAY_MS, offsets_retention_check_interval_ms=60_000)
    [member] = h.stable_group(G, 1, protocols=[("range", subscription("orders"))])
    h.commit(G, {("orders", 0): 9}, generation=1, member_id=member)
    h.advance(DAY_MS)  # still a member: nothing expires (it did not heartbeat, so it left the group)
    assert h.committed(G, "orders", 0) == 9
    assert h.group(G).state is GroupState.EMPTY
    h.advance(DAY_MS - SESSION_MS)
    assert h.committed(G, "orders", 0) == 9
    h.advance(SESSION_MS + 60_000)
    assert h.coordinator.get_group(G) is None


def test_a_commit_with_its_own_retention_time_expires_then() -> None:
    h = Harness(offsets_retention_ms=DAY_MS, offsets_retention_check_interval_ms=60_000)
    h.commit(G, {("t", 0): 1}, retention_ms=120_000, version=4)
    h.advance(60_000)
    assert h.committed(G, "t", 0) == 1
    h.advance(60_000)
    assert h.committed(G, "t", 0) == -1


# ---------------------------------------------------------------------------------------------- delete
def test_delete_groups() -> None:
    h = Harness()
    h.stable_group("busy", 1)
    h.commit(G, {("t", 0): 1, ("t", 1): 2})
    results = {r.group_id: r.error_code for r in h.coordinator.delete_groups([G, "busy", "unknown"])}
    assert results == {G: NONE, "busy": ErrorCode.NON_EMPTY_GROUP, "unknown": ErrorCode.GROUP_ID_NOT_FOUND}
    assert h.coordinator.get_group(G) is None
    assert h.coordinator.fetch_offsets(G, [("t", [0])]).topics[0].partitions[0].committed_offset == -1
    assert deleted_keys(h) == {OffsetCommitKey(G, "t", 0), OffsetCommitKey(G, "t", 1), GroupMetadataKey(G)}


def test_offset_delete() -> None:
    h = Harness()
    [member] = h.stable_group(G, 1, protocols=[("range", subscription("orders"))])
    h.commit(G, {("orders", 0): 1, ("gone", 0): 2}, generation=1, member_id=member)
    assert delete_offsets(h, G, "orders", 0) == (NONE, {0: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC})
    assert delete_offsets(h, G, "gone", 0, 1) == (NONE, {0: NONE, 1: NONE})
    assert h.committed(G, "gone", 0) == -1 and h.committed(G, "orders", 0) == 1
    assert delete_offsets(h, "unknown", "orders", 0)[0] == ErrorCode.GROUP_ID_NOT_FOUND

    h.stable_group("connectors", 1, protocol_type="connect")
    assert delete_offsets(h, "connectors", "orders", 0)[0] == ErrorCode.NON_EMPTY_GROUP

    h.leave(G, (member, None))  # an empty group may drop anything
    assert delete_offsets(h, G, "orders", 0) == (NONE, {0: NONE})
    assert h.committed(G, "orders", 0) == -1


# ---------------------------------------------------------------------------------------- describe and list
def test_describe_groups() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2, protocols=[("range", b"meta")])
    described = {d.group_id: d for d in h.coordinator.describe_groups([G, "unknown"])}
    stable = described[G]
    assert (stable.error_code, stable.group_state, stable.protocol_type, stable.protocol_data) == (
        NONE,
        "Stable",
        "consumer",
        "range",
    )
    assert {m.member_id: (m.client_id, m.client_host, m.member_metadata) for m in stable.members} == {
        leader: ("client", "/127.0.0.1", b"meta"),
        follower: ("client", "/127.0.0.1", b"meta"),
    }
    assert {m.member_assignment for m in stable.members} == {
        f"assigned-{m}".encode() for m in (leader, follower)
    }
    assert (described["unknown"].error_code, described["unknown"].group_state) == (NONE, "Dead")

    h.join(G, leader)  # rebalancing: no metadata or assignments shown
    rebalancing = h.coordinator.describe_groups([G])[0]
    assert rebalancing.group_state == "PreparingRebalance" and rebalancing.protocol_data == ""
    assert {m.member_assignment for m in rebalancing.members} == {b""}


def test_list_groups_with_state_and_type_filters() -> None:
    h = Harness()
    h.stable_group("active", 1)
    h.commit("simple", {("t", 0): 1})
    everything = {(g.group_id, g.group_state, g.group_type) for g in h.coordinator.list_groups([], [])[1]}
    assert everything == {("active", "Stable", "classic"), ("simple", "Empty", "classic")}
    assert [g.group_id for g in h.coordinator.list_groups(["STABLE "], [])[1]] == ["active"]
    assert [g.group_id for g in h.coordinator.list_groups(["empty"], ["Classic"])[1]] == ["simple"]
    assert h.coordinator.list_groups([], ["consumer"])[1] == []
