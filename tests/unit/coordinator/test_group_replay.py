"""A coordinator rebuilt from the records another one wrote has the same groups and offsets."""

from __future__ import annotations

from group_harness import PARTITIONS, SESSION_MS, Harness, subscription

from strom.coordinator.group import GroupCoordinator
from strom.coordinator.group.state import ClassicGroup, GroupState
from strom.protocol.errors import ErrorCode
from strom.protocol.messages.offset_delete import OffsetDeleteRequest


def rebuilt(h: Harness) -> GroupCoordinator:
    """A fresh coordinator on the same clock, loaded from everything `h` wrote."""
    coordinator = GroupCoordinator(h.config, h.log, h.clock)
    coordinator.begin_loading(PARTITIONS, range(PARTITIONS))
    for partition in range(PARTITIONS):
        for record in h.log.partitions.get(partition, []):
            coordinator.replay(record)
        coordinator.finish_loading(partition)
    return coordinator


def snapshot(coordinator: GroupCoordinator, group_ids: list[str]) -> dict[str, object]:
    """What must survive a restart: each group's identity, members and assignments, and its offsets."""
    result: dict[str, object] = {}
    for group_id in group_ids:
        group = coordinator.get_group(group_id)
        offsets = coordinator.fetch_offsets(group_id, None)
        committed = sorted(
            (t.name, p.partition_index, p.committed_offset, p.committed_leader_epoch, p.metadata)
            for t in offsets.topics
            for p in t.partitions
        )
        result[group_id] = None if group is None else (describe(group), committed)
    return result


def describe(group: ClassicGroup) -> tuple[object, ...]:
    members = sorted(
        (
            m.member_id,
            m.group_instance_id,
            m.client_id,
            m.client_host,
            m.session_timeout_ms,
            m.rebalance_timeout_ms,
            m.metadata(group.protocol_name),
            m.assignment,
        )
        for m in group.members.values()
    )
    return (
        group.state,
        group.generation_id,
        group.protocol_type,
        group.protocol_name,
        group.leader_id,
        members,
        group.subscribed_topics,
    )


def test_restart_rebuilds_groups_and_offsets() -> None:
    h = Harness()
    protocols = [("range", subscription("orders"))]
    stable = h.stable_group("stable", 2, protocols=protocols)
    h.commit(
        "stable", {("orders", 0): 10, ("orders", 1): 11}, generation=2, member_id=stable[0], metadata="m"
    )
    h.commit("stable", {("orders", 0): 12}, generation=2, member_id=stable[1])

    static_id = h.join("static", instance_id="host-1", protocols=protocols).value.member_id
    h.sync("static", static_id, 1, {static_id: b"part"}, instance_id="host-1")
    h.join("static", instance_id="host-1", protocols=protocols)  # restarted: a new member id, no rebalance

    h.commit("simple", {("t", 0): 1})
    h.commit("deleted", {("t", 0): 1})
    h.coordinator.delete_groups(["deleted"])

    [leaver] = h.stable_group("emptied", 1)
    h.commit("emptied", {("t", 0): 5, ("t", 1): 6}, generation=1, member_id=leaver)
    h.leave("emptied", (leaver, None))
    request = OffsetDeleteRequest(
        "emptied",
        [
            OffsetDeleteRequest.OffsetDeleteRequestTopic(
                "t", [OffsetDeleteRequest.OffsetDeleteRequestPartition(1)]
            )
        ],
    )
    assert h.coordinator.delete_offsets(request).error_code == ErrorCode.NONE

    names = ["stable", "static", "simple", "deleted", "emptied"]
    before = snapshot(h.coordinator, names)
    after = snapshot(rebuilt(h), names)
    assert after == before
    assert after["deleted"] is None
    assert before["stable"] is not None and before["static"] is not None


def test_loaded_members_keep_their_generation_and_their_sessions_start_at_load() -> None:
    h = Harness()
    leader, follower = h.stable_group("g", 2)
    h.clock.now += SESSION_MS * 5  # the broker is down for longer than a session: none carry over
    h.coordinator = rebuilt(h)
    group = h.group("g")
    assert group.state is GroupState.STABLE and group.generation_id == 2
    assert h.heartbeat("g", leader, 2) == ErrorCode.NONE
    assert h.sync("g", follower, 2).value.assignment == f"assigned-{follower}".encode()

    h.advance(SESSION_MS // 2)
    assert h.heartbeat("g", leader, 2) == ErrorCode.NONE
    h.advance(SESSION_MS // 2)  # the follower never heartbeated after the restart
    assert follower not in h.group("g").members
    assert h.heartbeat("g", leader, 2) == ErrorCode.REBALANCE_IN_PROGRESS


def test_last_record_of_a_key_wins_and_tombstones_delete() -> None:
    h = Harness()
    h.commit("g", {("t", 0): 1})
    h.commit("g", {("t", 0): 2})
    h.commit("gone", {("t", 0): 3})
    h.coordinator.delete_groups(["gone"])
    h.commit("gone", {("t", 1): 4})  # recreated afterwards
    coordinator = rebuilt(h)
    assert coordinator.fetch_offsets("g", None).topics[0].partitions[0].committed_offset == 2
    [topic] = coordinator.fetch_offsets("gone", None).topics
    assert [(p.partition_index, p.committed_offset) for p in topic.partitions] == [(1, 4)]
