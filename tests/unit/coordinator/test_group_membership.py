"""The classic rebalance protocol on a fake clock: joins, syncs, heartbeats, leaves and every timeout."""

from __future__ import annotations

from group_harness import REBALANCE_MS, SESSION_MS, FakeClock, Harness, MemoryLog, Reply

from strom.coordinator.group import GroupCoordinator
from strom.coordinator.group.records import GroupMetadataKey, GroupMetadataValue
from strom.coordinator.group.state import GroupState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.join_group import JoinGroupRequest

G = "orders"


# ---------------------------------------------------------------------------------------------- joining
def test_new_member_needs_a_member_id_first_then_leads_its_own_generation() -> None:
    h = Harness()
    first = h.join(G).value
    assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED
    assert first.member_id.startswith("client-")
    assert h.group(G).state is GroupState.EMPTY

    joined = h.join(G, first.member_id).value
    assert joined.error_code == ErrorCode.NONE
    assert (joined.generation_id, joined.leader, joined.member_id) == (1, first.member_id, first.member_id)
    assert joined.protocol_type == "consumer" and joined.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in joined.members] == [(first.member_id, b"r")]
    assert h.group(G).state is GroupState.COMPLETING_REBALANCE


def test_before_v4_a_new_member_joins_at_once() -> None:
    h = Harness()
    joined = h.join(G, version=3).value
    assert joined.error_code == ErrorCode.NONE and joined.generation_id == 1


def test_static_member_needs_no_member_id_round() -> None:
    h = Harness()
    joined = h.join(G, instance_id="host-1").value
    assert joined.error_code == ErrorCode.NONE
    assert joined.member_id.startswith("host-1-")


def test_join_with_an_unknown_member_id_of_an_unknown_group() -> None:
    h = Harness()
    assert h.join(G, "ghost").value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.coordinator.get_group(G) is None


def test_invalid_group_id_and_session_timeouts() -> None:
    h = Harness(min_session_timeout_ms=6000, max_session_timeout_ms=60_000)
    assert h.join("").value.error_code == ErrorCode.INVALID_GROUP_ID
    assert h.join(G, session_ms=5999).value.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join(G, session_ms=60_001).value.error_code == ErrorCode.INVALID_SESSION_TIMEOUT
    assert h.join(G, session_ms=6000).value.error_code == ErrorCode.MEMBER_ID_REQUIRED


def test_inconsistent_protocols_are_refused_and_leave_an_empty_group_as_kafka_does() -> None:
    h = Harness()
    assert h.join(G, protocol_type="").value.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.join(G, protocols=()).value.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    created = h.coordinator.get_group(G)
    assert created is not None and not created.members
    h.stable_group(G, 1)
    assert h.join(G, protocol_type="connect").value.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    refused = h.join(G, protocols=[("sticky", b"")]).value
    assert refused.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL


def test_protocol_is_chosen_by_the_members_preferences() -> None:
    h = Harness()
    a = h.join_new(G, protocols=[("range", b"a"), ("roundrobin", b"a")]).value.member_id
    h.join_new(G, protocols=[("roundrobin", b"b"), ("range", b"b")])
    c = h.join_new(G, protocols=[("roundrobin", b"c"), ("range", b"c")])
    leader = h.join(G, a, protocols=[("range", b"a"), ("roundrobin", b"a")]).value
    # Both protocols are supported by all; two of the three members prefer roundrobin.
    assert c.value.protocol_name == leader.protocol_name == "roundrobin"
    assert leader.leader == a
    assert sorted(m.metadata for m in leader.members) == [b"a", b"b", b"c"]


def test_a_tie_goes_to_the_protocol_voted_for_first() -> None:
    h = Harness()
    a = h.join_new(G, protocols=[("range", b""), ("roundrobin", b"")]).value.member_id
    b = h.join_new(G, protocols=[("roundrobin", b""), ("range", b"")])
    h.join(G, a, protocols=[("range", b""), ("roundrobin", b"")])
    assert b.value.protocol_name == "range"


def test_group_max_size() -> None:
    h = Harness(max_size=1)
    [member] = h.stable_group(G, 1)
    assert h.join(G).value.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert h.join(G, instance_id="host-9").value.error_code == ErrorCode.GROUP_MAX_SIZE_REACHED
    assert list(h.group(G).members) == [member]
    assert h.join(G, member).value.error_code == ErrorCode.NONE  # a known member always gets in


# ---------------------------------------------------------------------------------------------- syncing
def test_leader_assignment_reaches_followers_and_is_stored() -> None:
    h = Harness()
    leader_reply = h.join_new(G)
    leader = leader_reply.value.member_id
    follower_reply = h.join_new(G)
    assert not follower_reply.done  # parked until the leader rejoins
    h.join(G, leader)
    follower = follower_reply.value
    assert follower.generation_id == 2 and follower.leader == leader and follower.members == []

    follower_sync = h.sync(G, follower.member_id, 2)
    assert not follower_sync.done
    h.log.partitions.clear()
    leader_sync = h.sync(G, leader, 2, {leader: b"L", follower.member_id: b"F"})
    assert leader_sync.value.assignment == b"L"
    assert follower_sync.value.assignment == b"F"
    assert follower_sync.value.protocol_name == "range"
    assert h.group(G).state is GroupState.STABLE

    [record] = h.log.all_records()
    assert record.key == GroupMetadataKey(G)
    assert isinstance(record.value, GroupMetadataValue)
    assert record.value.generation == 2 and record.value.leader == leader
    assert {m.member_id: m.assignment for m in record.value.members} == {
        leader: b"L",
        follower.member_id: b"F",
    }

    # A late SyncGroup in a Stable group gets the stored assignment.
    assert h.sync(G, follower.member_id, 2).value.assignment == b"F"


def test_members_missing_from_the_assignment_get_an_empty_one() -> None:
    h = Harness()
    leader = h.join_new(G).value.member_id
    follower_reply = h.join_new(G)
    h.join(G, leader)
    follower = follower_reply.value.member_id
    waiting = h.sync(G, follower, 2)
    h.sync(G, leader, 2, {leader: b"everything"})
    assert waiting.value.error_code == ErrorCode.NONE and waiting.value.assignment == b""


def test_sync_errors() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2)
    generation = h.group(G).generation_id
    assert h.sync(G, leader, generation - 1).value.error_code == ErrorCode.ILLEGAL_GENERATION
    assert h.sync(G, "stranger", generation).value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    mismatch = h.sync(G, leader, generation, protocol_name="roundrobin").value
    assert mismatch.error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert h.sync("nobody", leader, 1).value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.sync("", leader, 1).value.error_code == ErrorCode.INVALID_GROUP_ID
    h.join(G, leader)  # the leader rejoining starts a rebalance
    assert h.sync(G, follower, generation).value.error_code == ErrorCode.REBALANCE_IN_PROGRESS


def test_failed_assignment_store_sends_everyone_back_to_rejoin() -> None:
    h = Harness()
    leader = h.join_new(G).value.member_id
    follower_reply = h.join_new(G)
    h.join(G, leader)
    follower = follower_reply.value.member_id
    waiting = h.sync(G, follower, 2)
    h.log.fail_with = ErrorCode.NOT_LEADER_OR_FOLLOWER
    assert h.sync(G, leader, 2, {leader: b"x"}).value.error_code == ErrorCode.NOT_COORDINATOR
    assert waiting.value.error_code == ErrorCode.NOT_COORDINATOR
    assert h.group(G).state is GroupState.PREPARING_REBALANCE


# ---------------------------------------------------------------------------------------------- rebalancing
def test_heartbeats_tell_members_of_a_rebalance_and_rejoining_completes_it() -> None:
    h = Harness()
    [leader] = h.stable_group(G, 1)
    assert h.heartbeat(G, leader, 1) == ErrorCode.NONE
    newcomer = h.join_new(G)
    assert h.heartbeat(G, leader, 1) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = h.join(G, leader)
    assert rejoined.value.generation_id == newcomer.value.generation_id == 2
    assert {m.member_id for m in rejoined.value.members} == {leader, newcomer.value.member_id}


def test_heartbeat_errors() -> None:
    h = Harness()
    leader, _ = h.stable_group(G, 2)
    generation = h.group(G).generation_id
    assert h.heartbeat(G, leader, generation) == ErrorCode.NONE
    assert h.heartbeat(G, leader, generation + 1) == ErrorCode.ILLEGAL_GENERATION
    assert h.heartbeat(G, "stranger", generation) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("unknown-group", leader, generation) == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.heartbeat("", leader, generation) == ErrorCode.INVALID_GROUP_ID


def test_session_timeout_removes_a_silent_member_and_rebalances() -> None:
    h = Harness()
    leader, quiet = h.stable_group(G, 2)
    generation = h.group(G).generation_id
    for _ in range(3):  # the leader keeps heartbeating; the other member has gone silent
        h.advance(SESSION_MS // 3)
        assert h.heartbeat(G, leader, generation) == ErrorCode.NONE
    h.advance(SESSION_MS // 3)
    assert quiet not in h.group(G).members
    assert h.heartbeat(G, leader, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = h.join(G, leader).value
    assert rejoined.generation_id == generation + 1
    assert [m.member_id for m in rejoined.members] == [leader]


def test_offset_commits_keep_a_session_alive() -> None:
    h = Harness()
    [member] = h.stable_group(G, 1)
    generation = h.group(G).generation_id
    for _ in range(4):
        h.advance(SESSION_MS // 2)
        committed = h.commit(G, {("t", 0): 1}, generation=generation, member_id=member)
        assert committed == {("t", 0): ErrorCode.NONE}
    assert member in h.group(G).members


def test_rebalance_timeout_drops_members_that_do_not_rejoin() -> None:
    h = Harness()
    leader, slow = h.stable_group(G, 2)
    newcomer = h.join_new(G)
    rejoined = h.join(G, leader)
    for _ in range(5):  # the slow member stays alive but never rejoins: heartbeats are not rejoining
        h.advance(REBALANCE_MS // 6)
        assert h.heartbeat(G, slow, 2) == ErrorCode.REBALANCE_IN_PROGRESS
    assert not rejoined.done
    h.advance(REBALANCE_MS // 6)
    assert rejoined.value.generation_id == 3
    assert {m.member_id for m in rejoined.value.members} == {leader, newcomer.value.member_id}
    assert slow not in h.group(G).members


def test_member_that_never_syncs_is_dropped_after_the_rebalance_timeout() -> None:
    h = Harness()
    long_session = 3 * REBALANCE_MS  # so only the missing SyncGroup can end the follower's membership
    leader = h.join_new(G, session_ms=long_session).value.member_id
    follower_reply = h.join_new(G, session_ms=long_session)
    h.join(G, leader, session_ms=long_session)
    follower = follower_reply.value.member_id
    leader_sync = h.sync(G, leader, 2, {leader: b"a", follower: b"b"})
    assert leader_sync.value.error_code == ErrorCode.NONE
    h.advance(REBALANCE_MS - 1)
    assert follower in h.group(G).members
    h.advance(1)
    assert follower not in h.group(G).members
    assert h.group(G).state is GroupState.PREPARING_REBALANCE


def test_pending_member_that_never_returns_is_forgotten() -> None:
    h = Harness()
    [leader] = h.stable_group(G, 1)
    pending = h.join(G).value.member_id
    assert pending in h.group(G).pending_join_members
    h.advance(SESSION_MS // 2)
    assert h.heartbeat(G, leader, 1) == ErrorCode.NONE
    h.advance(SESSION_MS // 2)
    assert pending not in h.group(G).pending_join_members
    assert h.join(G, pending).value.error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_leader_rejoining_a_stable_group_triggers_a_rebalance() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2)
    h.join(G, leader)
    assert h.group(G).state is GroupState.PREPARING_REBALANCE
    assert h.heartbeat(G, follower, 2) == ErrorCode.REBALANCE_IN_PROGRESS


def test_follower_rejoining_unchanged_gets_the_current_generation() -> None:
    h = Harness()
    _, follower = h.stable_group(G, 2)
    again = h.join(G, follower).value
    assert again.generation_id == 2 and again.members == []
    assert h.group(G).state is GroupState.STABLE


def test_cooperative_rounds_are_plain_rejoins() -> None:
    """cooperative-sticky: after revoking, members rejoin at once; the group runs another generation."""
    h = Harness()
    first, second = h.stable_group(G, 2, protocols=[("cooperative-sticky", b"owned")])
    h.join(G, first, protocols=[("cooperative-sticky", b"owned-less")])
    h.join(G, second, protocols=[("cooperative-sticky", b"owned")])
    assert h.group(G).generation_id == 3
    for member_id in (first, second):
        h.join(G, member_id, protocols=[("cooperative-sticky", b"final")])
    assert h.group(G).generation_id == 4


# ---------------------------------------------------------------------------------------------- initial delay
def test_initial_rebalance_delay_waits_for_more_members() -> None:
    h = Harness(initial_rebalance_delay_ms=3000)
    first = h.join_new(G, rebalance_ms=10_000)
    h.advance(2000)
    second = h.join_new(G, rebalance_ms=10_000)
    h.advance(1000)  # the first delay ends, but a member arrived during it: wait once more
    assert not first.done
    h.advance(3000)
    assert first.value.generation_id == second.value.generation_id == 1
    assert len(first.value.members) + len(second.value.members) == 2


def test_initial_rebalance_delay_is_bounded_by_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=3000)
    first = h.join_new(G, rebalance_ms=4000)
    for _ in range(5):
        h.advance(1000)
        h.join_new(G, rebalance_ms=4000)
    assert first.done and first.value.generation_id == 1


# ------------------------------------------------------------------------------------------- static members
def test_static_member_restart_takes_over_without_a_rebalance() -> None:
    h = Harness()
    joined = h.join(G, instance_id="host-1").value
    old_id = joined.member_id
    assert h.sync(G, old_id, 1, {old_id: b"mine"}, instance_id="host-1").value.assignment == b"mine"
    other = h.join(G, instance_id="host-2")
    h.join(G, old_id, instance_id="host-1")
    second_id = other.value.member_id
    h.sync(G, second_id, 2, instance_id="host-2")
    h.sync(G, old_id, 2, {old_id: b"mine", second_id: b"yours"}, instance_id="host-1")
    assert h.group(G).state is GroupState.STABLE

    h.advance(SESSION_MS // 2)  # restarted within its session timeout, same metadata
    h.log.partitions.clear()
    back = h.join(G, instance_id="host-1").value
    assert back.error_code == ErrorCode.NONE
    assert back.member_id != old_id and back.generation_id == 2
    assert h.group(G).state is GroupState.STABLE
    assert h.heartbeat(G, second_id, 2, "host-2") == ErrorCode.NONE  # the other member saw nothing
    assert h.sync(G, back.member_id, 2, instance_id="host-1").value.assignment == b"mine"
    assert h.heartbeat(G, old_id, 2, "host-1") == ErrorCode.FENCED_INSTANCE_ID
    [record] = h.log.all_records()
    assert isinstance(record.value, GroupMetadataValue)
    assert {m.member_id for m in record.value.members} == {back.member_id, second_id}


def test_static_leader_restart_before_v9_keeps_the_old_leader_id_in_the_answer() -> None:
    h = Harness()
    old_id = h.join(G, instance_id="host-1").value.member_id
    h.sync(G, old_id, 1, {old_id: b"mine"}, instance_id="host-1")
    back = h.join(G, instance_id="host-1", version=8).value
    assert back.leader == old_id and back.members == []
    new_leader = h.join(G, instance_id="host-1", version=9).value
    assert new_leader.skip_assignment and new_leader.leader == new_leader.member_id


def test_static_member_with_a_new_protocol_triggers_a_rebalance() -> None:
    h = Harness()
    old_id = h.join(G, instance_id="host-1").value.member_id
    h.sync(G, old_id, 1, {old_id: b"mine"}, instance_id="host-1")
    back = h.join(G, instance_id="host-1", protocols=[("roundrobin", b""), ("range", b"")])
    assert back.value.generation_id == 2 and back.value.protocol_name == "roundrobin"


def test_static_member_that_misses_a_rebalance_is_kept_in_it() -> None:
    h = Harness()
    long_session = 3 * REBALANCE_MS
    static_id = h.join(G, instance_id="host-1", session_ms=long_session).value.member_id
    h.sync(G, static_id, 1, {static_id: b"a"}, instance_id="host-1")
    dynamic = h.join_new(G, session_ms=long_session)
    h.advance(REBALANCE_MS)  # the static member never rejoins, yet stays in the next generation
    assert dynamic.value.generation_id == 2 and dynamic.value.leader == dynamic.value.member_id
    assert {m.member_id for m in dynamic.value.members} == {static_id, dynamic.value.member_id}
    assert h.sync(G, dynamic.value.member_id, 2, {static_id: b"s"}).value.error_code == ErrorCode.NONE
    h.advance(REBALANCE_MS)  # but a member that never syncs is dropped like any other
    assert list(h.group(G).members) == [dynamic.value.member_id]


def test_old_member_id_of_a_static_member_is_fenced() -> None:
    h = Harness()
    old_id = h.join(G, instance_id="host-1").value.member_id
    h.sync(G, old_id, 1, {old_id: b"a"}, instance_id="host-1")
    h.join(G, instance_id="host-1")
    assert h.join(G, old_id, instance_id="host-1").value.error_code == ErrorCode.FENCED_INSTANCE_ID
    assert h.sync(G, old_id, 1, instance_id="host-1").value.error_code == ErrorCode.FENCED_INSTANCE_ID
    committed = h.commit(G, {("t", 0): 5}, generation=1, member_id=old_id, instance_id="host-1")
    assert committed == {("t", 0): ErrorCode.FENCED_INSTANCE_ID}


# ---------------------------------------------------------------------------------------------- leaving
def test_leaving_member_triggers_a_rebalance_for_the_rest() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2)
    response = h.leave(G, (follower, None))
    assert response.error_code == ErrorCode.NONE
    assert [(m.member_id, m.error_code) for m in response.members] == [(follower, ErrorCode.NONE)]
    assert h.heartbeat(G, leader, 2) == ErrorCode.REBALANCE_IN_PROGRESS
    assert [m.member_id for m in h.join(G, leader).value.members] == [leader]


def test_last_member_leaving_empties_the_group_and_stores_it() -> None:
    h = Harness()
    [member] = h.stable_group(G, 1)
    h.log.partitions.clear()
    h.leave(G, (member, None))
    group = h.group(G)
    assert group.state is GroupState.EMPTY and group.generation_id == 2 and group.protocol_type == "consumer"
    [record] = h.log.all_records()
    assert isinstance(record.value, GroupMetadataValue) and record.value.members == []


def test_batched_leave_reports_each_member() -> None:
    h = Harness()
    static_id = h.join(G, instance_id="host-1").value.member_id
    h.sync(G, static_id, 1, {static_id: b"a"}, instance_id="host-1")
    response = h.leave(G, ("", "host-1"), ("stranger", None), ("", "unknown-instance"))
    assert [m.error_code for m in response.members] == [
        ErrorCode.NONE,
        ErrorCode.UNKNOWN_MEMBER_ID,
        ErrorCode.UNKNOWN_MEMBER_ID,
    ]
    assert static_id not in h.group(G).members
    assert h.leave("unknown-group", ("m", None)).error_code == ErrorCode.UNKNOWN_MEMBER_ID


def test_parked_join_of_a_leaving_member_is_answered() -> None:
    h = Harness()
    leader, follower = h.stable_group(G, 2)
    parked = h.join(G, leader, protocols=[("range", b"new")])
    h.leave(G, (leader, None))
    assert parked.value.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert h.join(G, follower).value.generation_id == 3


# ---------------------------------------------------------------------------------------------- ownership
def test_groups_of_loading_or_foreign_partitions_are_not_served() -> None:
    h = Harness()
    partition = h.coordinator.partition_for(G)
    h.coordinator.begin_loading(4, [partition])
    assert h.join(G).value.error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert h.heartbeat(G, "m", 1) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert h.coordinator.list_groups([], [])[0] == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    h.coordinator.finish_loading(partition)
    assert h.join(G).value.error_code == ErrorCode.MEMBER_ID_REQUIRED

    unowned = GroupCoordinator(h.config, MemoryLog(), FakeClock())
    reply = Reply()
    unowned.join_group(
        JoinGroupRequest(G, SESSION_MS), client_id="c", client_host="/h", api_version=9, respond=reply
    )
    assert reply.value.error_code == ErrorCode.NOT_COORDINATOR
