"""The server-side assignors: balance, stickiness and heterogeneous subscriptions."""

from __future__ import annotations

import uuid

import pytest

from strom.coordinator.group.assignors import MemberSpec, RangeAssignor, UniformAssignor, assignors_by_name

A, B = uuid.UUID(int=1), uuid.UUID(int=2)


def flat(assignment: dict[uuid.UUID, frozenset[int]]) -> set[tuple[uuid.UUID, int]]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def test_uniform_balances_and_covers_everything() -> None:
    members = {m: MemberSpec(frozenset({A, B})) for m in ("m1", "m2", "m3")}
    result = UniformAssignor().assign(members, {A: 4, B: 3})
    sizes = sorted(len(flat(a)) for a in result.values())
    assert sizes == [2, 2, 3]
    everything = set().union(*(flat(a) for a in result.values()))
    assert everything == {(A, p) for p in range(4)} | {(B, p) for p in range(3)}


def test_uniform_is_sticky_when_a_member_joins() -> None:
    before = UniformAssignor().assign({m: MemberSpec(frozenset({A})) for m in ("m1", "m2")}, {A: 6})
    members = {m: MemberSpec(frozenset({A}), before[m]) for m in ("m1", "m2")}
    members["m3"] = MemberSpec(frozenset({A}))
    after = UniformAssignor().assign(members, {A: 6})
    assert [len(flat(after[m])) for m in ("m1", "m2", "m3")] == [2, 2, 2]
    assert flat(after["m1"]) <= flat(before["m1"])
    assert flat(after["m2"]) <= flat(before["m2"])


def test_uniform_respects_heterogeneous_subscriptions() -> None:
    members = {"only-a": MemberSpec(frozenset({A})), "both": MemberSpec(frozenset({A, B}))}
    result = UniformAssignor().assign(members, {A: 2, B: 2})
    assert {t for t, _ in flat(result["only-a"])} == {A}
    assert len(flat(result["only-a"])) == 2
    assert flat(result["both"]) == {(B, 0), (B, 1)}


def test_uniform_drops_partitions_of_unsubscribed_or_missing_topics() -> None:
    members = {"m1": MemberSpec(frozenset({A}), {A: frozenset({0, 7}), B: frozenset({0})})}
    assert UniformAssignor().assign(members, {A: 2, B: 1}) == {"m1": {A: frozenset({0, 1})}}


def test_range_gives_the_first_members_the_extra_partitions() -> None:
    members = {m: MemberSpec(frozenset({A, B})) for m in ("c", "a", "b")}
    result = RangeAssignor().assign(members, {A: 4, B: 3})
    assert result == {
        "a": {A: frozenset({0, 1}), B: frozenset({0})},
        "b": {A: frozenset({2}), B: frozenset({1})},
        "c": {A: frozenset({3}), B: frozenset({2})},
    }


def test_configured_assignors_by_short_or_class_name() -> None:
    configured = assignors_by_name(["org.apache.kafka.coordinator.group.assignor.RangeAssignor", "uniform"])
    assert list(configured) == ["range", "uniform"]
    with pytest.raises(ValueError):
        assignors_by_name(["sticky"])
