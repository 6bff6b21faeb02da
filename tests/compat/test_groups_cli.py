"""``strom groups`` against a real broker and groups of real consumers (confluent-kafka members, run as
processes by test_groups_confluent.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cli_results import as_json, one_error_line, succeeded
from group_scenario import (
    GROUP_PARTITIONS,
    SMALL_PARTITIONS,
    Member,
    MemberConfig,
    committed_offsets,
    group_of,
    members_closed,
    produce_values,
    python_member,
    read_all,
    strom_command,
    wait_for,
    wait_for_split,
)
from scenario import create_topic_with_confluent

from strom.testing.process import StromProcess

CONFLUENT_MEMBER = Path(__file__).with_name("test_groups_confluent.py")
Strom = Callable[..., subprocess.CompletedProcess[str]]


def spawn(config: MemberConfig) -> Member:
    return python_member(CONFLUENT_MEMBER, config)


@pytest.fixture
def strom(group_broker: StromProcess) -> Strom:
    """``strom(ARGS...)`` against the module's broker."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return strom_command(group_broker.bootstrap, *args)

    return run


def listed(strom: Strom, *options: str) -> dict[str, str]:
    return {entry["group"]: entry["state"] for entry in as_json(strom("groups", "list", "--json", *options))}


def described(strom: Strom, group: str) -> dict[str, Any]:
    (document,) = as_json(strom("groups", "describe", group, "--json"))
    assert isinstance(document, dict)
    return document


def inactive_group(bootstrap: str, topic: str, partitions: int, committed: int) -> str:
    """A topic of ``partitions`` partitions with 5 records each, and a group, now without members, that
    committed ``committed`` on each."""
    create_topic_with_confluent(bootstrap, topic, partitions=partitions)
    produce_values(bootstrap, topic, range(partitions), 5, "cli")
    config = MemberConfig(bootstrap, topic, group_of(topic), commit_each=True, commit_limit=committed)
    with members_closed([spawn(config)]) as (member,):
        expected = {partition: committed for partition in range(partitions)}
        wait_for(lambda: member.committed() == expected, "the member's commits", [member])
    return config.group_id


def test_describe_an_active_group_and_refuse_to_change_it(group_broker, strom, unique_topic):
    bootstrap = group_broker.bootstrap
    create_topic_with_confluent(bootstrap, unique_topic, partitions=GROUP_PARTITIONS)
    produce_values(bootstrap, unique_topic, range(GROUP_PARTITIONS), 5, "cli")
    group = group_of(unique_topic)
    base = MemberConfig(bootstrap, unique_topic, group, commit_each=True, commit_limit=3)
    with members_closed([spawn(replace(base, client_id=f"cli-{name}")) for name in "ab"]) as members:
        owner = wait_for_split(members, range(GROUP_PARTITIONS))
        wait_for(
            lambda: all(owner[p].committed().get(p) == 3 for p in range(GROUP_PARTITIONS)), "commits", members
        )

        assert listed(strom)[group] == "Stable"
        assert group in listed(strom, "--state", "stable")
        assert group not in listed(strom, "--state", "Empty,Dead")
        table = succeeded(strom("groups", "list")).stdout.splitlines()
        assert table[0].split() == ["GROUP", "STATE"] and [group, "Stable"] in [
            line.split() for line in table
        ]

        document = described(strom, group)
        assert (document["group"], document["state"], document["assignor"]) == (group, "Stable", "roundrobin")
        by_client = {member["client_id"]: member for member in document["members"]}
        assert set(by_client) == {"cli-a", "cli-b"}
        for member in members:
            reported = by_client[f"cli-{member.name[-1]}"]
            assert reported["assignment"] == {unique_topic: sorted(member.assignment)}
            assert reported["host"] and reported["member_id"] and reported["instance_id"] is None
        member_of = {
            partition: reported["member_id"]
            for reported in document["members"]
            for partition in reported["assignment"][unique_topic]
        }
        assert document["partitions"] == [
            {
                "topic": unique_topic,
                "partition": partition,
                "committed": 3,
                "log_end": 5,
                "lag": 2,
                "member_id": member_of[partition],
            }
            for partition in range(GROUP_PARTITIONS)
        ]
        assert document["total_lag"] == 2 * GROUP_PARTITIONS
        text = succeeded(strom("groups", "describe", group)).stdout
        assert text.startswith(f"Group: {group}\n  State: Stable  Assignor: roundrobin")
        assert (
            "cli-a" in text
            and "cli-b" in text
            and text.rstrip().endswith(f"Total lag: {2 * GROUP_PARTITIONS}")
        )

        refused = one_error_line(strom("groups", "reset-offsets", group, "--all-topics", "--to-earliest"))
        assert "Stable" in refused and "inactive" in refused
        refused = one_error_line(
            strom("groups", "reset-offsets", group, "--all-topics", "--to-earliest", "--execute")
        )
        assert "Stable" in refused
        assert "NON_EMPTY_GROUP" in one_error_line(strom("groups", "delete", group))
        subscribed = strom("groups", "delete-offsets", group, "--topic", unique_topic, "--partition", "0")
        assert subscribed.returncode == 1
        status = subscribed.stdout.splitlines()[1].split()
        assert status[:4] == [unique_topic, "0", "error:", "GROUP_SUBSCRIBED_TO_TOPIC:"]
        assert committed_offsets(bootstrap, group) == {partition: 3 for partition in range(GROUP_PARTITIONS)}

    assert listed(strom)[group] == "Empty"
    emptied = described(strom, group)
    assert emptied["members"] == [] and [entry["member_id"] for entry in emptied["partitions"]] == [None] * 6


def test_reset_offsets_dry_run_then_execute(group_broker, strom, unique_topic):
    bootstrap = group_broker.bootstrap
    group = inactive_group(bootstrap, unique_topic, SMALL_PARTITIONS, committed=3)
    everything = range(SMALL_PARTITIONS)

    preview = succeeded(strom("groups", "reset-offsets", group, "--topic", unique_topic, "--to-earliest"))
    lines = preview.stdout.splitlines()
    assert lines[0].split() == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]
    assert [line.split() for line in lines[1:]] == [
        [group, unique_topic, str(p), "3", "0"] for p in everything
    ]
    assert "dry run" in preview.stderr
    assert committed_offsets(bootstrap, group) == {partition: 3 for partition in everything}

    def plan(*options: str) -> dict[int, int]:
        rows = as_json(strom("groups", "reset-offsets", group, "--json", *options))
        return {row["partition"]: row["new"] for row in rows}

    assert plan("--all-topics", "--to-latest") == {partition: 5 for partition in everything}
    assert plan("--all-topics", "--to-datetime", "2000-01-01T00:00:00Z") == {
        partition: 0 for partition in everything
    }
    far_future = strom(
        "groups", "reset-offsets", group, "--all-topics", "--to-datetime", "2999-01-01T00:00:00Z"
    )
    assert "log end" in succeeded(far_future).stderr
    clamped = strom("groups", "reset-offsets", group, "--all-topics", "--shift-by", "-10", "--json")
    assert {row["new"] for row in as_json(clamped)} == {0} and "first offset" in clamped.stderr
    assert committed_offsets(bootstrap, group) == {partition: 3 for partition in everything}

    executed = succeeded(
        strom("groups", "reset-offsets", group, "--all-topics", "--to-offset", "1", "--execute")
    )
    assert f"Reset offsets of group {group} for {SMALL_PARTITIONS} partition(s)." in executed.stdout
    assert committed_offsets(bootstrap, group) == {partition: 1 for partition in everything}
    succeeded(
        strom(
            "groups", "reset-offsets", group, "--topic", f"{unique_topic}:2", "--shift-by", "3", "--execute"
        )
    )
    assert committed_offsets(bootstrap, group) == {0: 1, 1: 1, 2: 4}

    config = MemberConfig(bootstrap, unique_topic, group)
    with members_closed([spawn(config)]) as (member,):
        wait_for(
            read_all(member, {0: 5, 1: 5}, start=1), "the member to read from the reset offsets", [member]
        )
        wait_for(read_all(member, {2: 5}, start=4), "the member to read partition 2", [member])
        assert {p: min(member.offsets_read(p)) for p in everything} == {0: 1, 1: 1, 2: 4}


def test_reset_offsets_of_a_new_group_creates_them(group_broker, strom, unique_topic):
    bootstrap = group_broker.bootstrap
    create_topic_with_confluent(bootstrap, unique_topic, partitions=SMALL_PARTITIONS)
    produce_values(bootstrap, unique_topic, range(SMALL_PARTITIONS), 2, "fresh")
    group = group_of(unique_topic)

    missing = one_error_line(strom("groups", "reset-offsets", group, "--all-topics", "--to-earliest"))
    assert "no committed offsets" in missing
    succeeded(strom("groups", "reset-offsets", group, "--topic", unique_topic, "--to-latest", "--execute"))
    assert committed_offsets(bootstrap, group) == {partition: 2 for partition in range(SMALL_PARTITIONS)}
    assert "no partition 7" in one_error_line(
        strom("groups", "reset-offsets", group, "--topic", f"{unique_topic}:7", "--to-latest")
    )
    assert "does not exist" in one_error_line(
        strom("groups", "reset-offsets", group, "--topic", f"{unique_topic}-nope", "--to-latest")
    )


def test_delete_offsets_then_the_group(group_broker, strom, unique_topic):
    bootstrap = group_broker.bootstrap
    group = inactive_group(bootstrap, unique_topic, SMALL_PARTITIONS, committed=2)

    deleted = succeeded(strom("groups", "delete-offsets", group, "--topic", unique_topic, "--partition", "0"))
    assert [line.split() for line in deleted.stdout.splitlines()] == [
        ["TOPIC", "PARTITION", "STATUS"],
        [unique_topic, "0", "deleted"],
    ]
    assert committed_offsets(bootstrap, group) == {1: 2, 2: 2}

    assert succeeded(strom("groups", "delete", group)).stdout == f"Deleted group {group}.\n"
    assert group not in listed(strom)
    assert one_error_line(strom("groups", "describe", group)) == f"error: group '{group}' does not exist"
    assert "GROUP_ID_NOT_FOUND" in one_error_line(strom("groups", "delete", group))
    assert committed_offsets(bootstrap, group) == {}
