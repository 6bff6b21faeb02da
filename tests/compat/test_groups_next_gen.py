"""librdkafka consumers with ``group.protocol=consumer`` (KIP-848) as group members of a real Strom broker.

Run as a script (``python test_groups_next_gen.py MEMBER_CONFIG_JSON``) this module is one group member, as
group_scenario describes; the tests start members that way so that one can be killed with SIGKILL.

The broker runs with short consumer-group timeouts (the session timeout decides how long a killed member
holds its partitions), lowering Kafka's lower bounds for them too. With the consumer protocol the session
timeout, heartbeat interval and assignor are the broker's business: librdkafka refuses the classic
settings for them, so members set none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from group_scenario import (
    GROUP_BROKER_OVERRIDES,
    CommitTracker,
    Member,
    MemberConfig,
    MemberOutput,
    broker_restart_keeps_group_and_offsets,
    committed_offsets,
    group_of,
    member_config_from_argv,
    members_closed,
    produce_values,
    python_member,
    wait_for,
    wait_for_split,
)
from scenario import CLIENT_TIMEOUT_S, create_topic_with_confluent

from strom.testing.process import StromProcess

MEMBER_SCRIPT = Path(__file__).resolve()
POLL_S = 0.1
PARTITIONS = 6
SESSION_TIMEOUT_MS = 3000
HEARTBEAT_INTERVAL_MS = 500
NEXT_GEN_OVERRIDES = {
    **GROUP_BROKER_OVERRIDES,
    "group.consumer.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "group.consumer.min.session.timeout.ms": str(SESSION_TIMEOUT_MS),
    "group.consumer.heartbeat.interval.ms": str(HEARTBEAT_INTERVAL_MS),
    "group.consumer.min.heartbeat.interval.ms": str(HEARTBEAT_INTERVAL_MS),
}


def spawn(config: MemberConfig) -> Member:
    return python_member(MEMBER_SCRIPT, config)


@pytest.fixture(scope="module")
def next_gen_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    broker = StromProcess(tmp_path_factory.mktemp("next-gen") / "data", overrides=NEXT_GEN_OVERRIDES).start()
    yield broker
    broker.stop()


@pytest.fixture
def own_next_gen_broker(tmp_path: Path) -> Iterator[StromProcess]:
    broker = StromProcess(tmp_path / "data", overrides=NEXT_GEN_OVERRIDES).start()
    yield broker
    if broker.running:
        broker.stop()


def test_three_members_split_six_partitions_then_rebalance_on_leave_and_sigkill(
    next_gen_broker, unique_topic
):
    bootstrap = next_gen_broker.bootstrap
    create_topic_with_confluent(bootstrap, unique_topic, partitions=PARTITIONS)
    group = group_of(unique_topic)
    everything = range(PARTITIONS)
    base = MemberConfig(bootstrap, unique_topic, group, commit_each=True)
    with members_closed([spawn(replace(base, client_id=f"member-{i}")) for i in range(3)]) as members:
        owner = wait_for_split(members, everything)
        assert sorted(len(member.assignment) for member in members) == [2, 2, 2]
        assert_described_as_consumer_group(bootstrap, group, members=3)

        produce_values(bootstrap, unique_topic, everything, 5, "first")
        wait_for(
            lambda: all(owner[p].committed().get(p) == 5 for p in everything),
            "every member to commit the first records of its partitions",
            members,
        )

        leaving = members[0]
        leaving.close()
        remaining = members[1:]
        owner = wait_for_split(remaining, everything)
        assert sorted(len(member.assignment) for member in remaining) == [3, 3]

        produce_values(bootstrap, unique_topic, everything, 5, "second")
        wait_for(
            lambda: all(owner[p].committed().get(p) == 10 for p in everything),
            "the two remaining members to commit everything produced",
            remaining,
        )

        victim, survivor = remaining
        orphaned = victim.assignment
        victim.kill()
        wait_for(lambda: survivor.assignment == frozenset(everything), "the survivor to own every partition")

        produce_values(bootstrap, unique_topic, everything, 5, "third")
        wait_for(
            lambda: all(14 in survivor.offsets_read(p) for p in everything),
            "the survivor to read every partition to its end",
            [survivor],
        )
        for partition in orphaned:
            taken_over = survivor.offsets_read(partition)
            assert min(taken_over) == 10, f"partition {partition} was resumed at {min(taken_over)}, not at 10"
        for partition in everything:
            read = {offset for member in members for offset in member.offsets_read(partition)}
            assert read == set(range(15)), f"partition {partition}: offsets read {sorted(read)}"
        assert committed_offsets(bootstrap, group) == dict.fromkeys(everything, 15)


def test_broker_restart_keeps_the_group_and_its_offsets(own_next_gen_broker, unique_topic):
    broker_restart_keeps_group_and_offsets(spawn, own_next_gen_broker, unique_topic)


def assert_described_as_consumer_group(bootstrap: str, group: str, members: int) -> None:
    """Admin clients see a consumer-protocol group, with its members (ConsumerGroupDescribe)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group], request_timeout=CLIENT_TIMEOUT_S)[group].result(
        timeout=CLIENT_TIMEOUT_S
    )
    assert description.type.name == "CONSUMER"
    assert description.state.name == "STABLE"
    assert len(description.members) == members
    assigned = sorted(tp.partition for m in description.members for tp in m.assignment.topic_partitions)
    assert assigned == list(range(PARTITIONS))


# ------------------------------------------------------------------------------------ the member program


def run_member(config: MemberConfig) -> None:
    """Consume as one next-generation group member until asked to close, reporting through MemberOutput."""
    out = MemberOutput()
    settings: dict[str, str | int | bool] = {
        "bootstrap.servers": config.bootstrap,
        "group.id": config.group_id,
        "group.protocol": "consumer",
        "client.id": config.client_id,
        "auto.offset.reset": config.auto_offset_reset,
        "enable.auto.commit": config.enable_auto_commit,
    }
    if config.group_instance_id is not None:
        settings["group.instance.id"] = config.group_instance_id
    consumer = Consumer(settings)
    consumer.subscribe(
        [config.topic],
        on_assign=lambda _consumer, partitions: out.assigned(tp.partition for tp in partitions),
        on_revoke=lambda _consumer, partitions: out.revoked(tp.partition for tp in partitions),
        on_lost=lambda _consumer, partitions: out.revoked((tp.partition for tp in partitions), lost=True),
    )
    commits = CommitTracker(config)
    while not out.close_requested.is_set():
        message = consumer.poll(POLL_S)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            out.emit("error", message=str(error))
            continue
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        out.record(partition, offset, message.value())
        target = commits.due(partition, offset)
        if target is None:
            continue
        try:
            consumer.commit(offsets=[TopicPartition(config.topic, partition, target)], asynchronous=False)
        except KafkaException as exc:
            out.emit("commit_failed", partition=partition, offset=target, error=str(exc))
        else:
            commits.record_commit(partition, target)
            out.emit("committed", partition=partition, offset=target)
    consumer.close()
    out.emit("closed")


if __name__ == "__main__":
    run_member(member_config_from_argv())
