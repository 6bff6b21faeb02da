"""confluent-kafka (librdkafka) consumers as group members of a real Strom broker.

Run as a script (``python test_groups_confluent.py MEMBER_CONFIG_JSON``) this module is one group member, as
group_scenario describes; the tests start members that way so that one can be killed with SIGKILL.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition
from group_scenario import (
    CommitTracker,
    Member,
    MemberConfig,
    MemberOutput,
    auto_commit_commits_while_consuming,
    broker_restart_keeps_group_and_offsets,
    cooperative_rebalance_keeps_untouched_partitions,
    member_config_from_argv,
    no_auto_commit_commits_nothing,
    python_member,
    reset_to_earliest_reads_everything,
    reset_to_latest_skips_old_records,
    restart_resumes_after_last_commit,
    split_then_survive_sigkill,
    static_member_restart_keeps_assignment,
)

MEMBER_SCRIPT = Path(__file__).resolve()
POLL_S = 0.1


def spawn(config: MemberConfig) -> Member:
    return python_member(MEMBER_SCRIPT, config)


def test_three_members_split_six_partitions_and_survive_a_sigkill(group_broker, unique_topic):
    split_then_survive_sigkill(spawn, group_broker.bootstrap, unique_topic)


def test_auto_offset_reset_earliest(group_broker, unique_topic):
    reset_to_earliest_reads_everything(spawn, group_broker.bootstrap, unique_topic)


def test_auto_offset_reset_latest(group_broker, unique_topic):
    reset_to_latest_skips_old_records(spawn, group_broker.bootstrap, unique_topic)


def test_auto_commit_on(group_broker, unique_topic):
    auto_commit_commits_while_consuming(spawn, group_broker.bootstrap, unique_topic)


def test_auto_commit_off(group_broker, unique_topic):
    no_auto_commit_commits_nothing(spawn, group_broker.bootstrap, unique_topic)


def test_restart_resumes_after_last_commit(group_broker, unique_topic):
    restart_resumes_after_last_commit(spawn, group_broker.bootstrap, unique_topic)


def test_static_member_restart_causes_no_rebalance(group_broker, unique_topic):
    static_member_restart_keeps_assignment(spawn, group_broker.bootstrap, unique_topic)


def test_cooperative_sticky_rebalance_keeps_untouched_partitions(group_broker, unique_topic):
    cooperative_rebalance_keeps_untouched_partitions(spawn, group_broker.bootstrap, unique_topic)


def test_broker_restart_keeps_groups_and_offsets(own_group_broker, unique_topic):
    broker_restart_keeps_group_and_offsets(spawn, own_group_broker, unique_topic)


# ------------------------------------------------------------------------------------ the member program


def run_member(config: MemberConfig) -> None:
    """Consume as one group member until asked to close, reporting through MemberOutput."""
    out = MemberOutput()
    settings: dict[str, str | int | bool] = {
        "bootstrap.servers": config.bootstrap,
        "group.id": config.group_id,
        "client.id": config.client_id,
        "session.timeout.ms": config.session_timeout_ms,
        "heartbeat.interval.ms": config.heartbeat_interval_ms,
        "auto.offset.reset": config.auto_offset_reset,
        "enable.auto.commit": config.enable_auto_commit,
        "auto.commit.interval.ms": config.auto_commit_interval_ms,
        "partition.assignment.strategy": config.assignor,
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
