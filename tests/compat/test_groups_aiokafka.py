"""aiokafka consumers as group members of a real Strom broker.

Run as a script (``python test_groups_aiokafka.py MEMBER_CONFIG_JSON``) this module is one group member, as
group_scenario describes; the tests start members that way so that one can be killed with SIGKILL.
aiokafka has static membership but no cooperative (incremental) assignor, so that scenario does not apply.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError
from group_scenario import (
    CommitTracker,
    Member,
    MemberConfig,
    MemberOutput,
    auto_commit_commits_while_consuming,
    broker_restart_keeps_group_and_offsets,
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
POLL_MS = 100
ASSIGNORS = {"range": RangePartitionAssignor, "roundrobin": RoundRobinPartitionAssignor}


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


def test_broker_restart_keeps_groups_and_offsets(own_group_broker, unique_topic):
    broker_restart_keeps_group_and_offsets(spawn, own_group_broker, unique_topic)


# ------------------------------------------------------------------------------------ the member program


class ReportingListener(ConsumerRebalanceListener):
    """Reports every assignment change, with the generation aiokafka's coordinator keeps (private)."""

    def __init__(self, out: MemberOutput, consumer: AIOKafkaConsumer) -> None:
        self._out = out
        self._consumer = consumer

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._out.revoked((tp.partition for tp in revoked), self._generation())

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._out.assigned((tp.partition for tp in assigned), self._generation())

    def _generation(self) -> int | None:
        generation = getattr(getattr(self._consumer, "_coordinator", None), "generation", None)
        return generation if isinstance(generation, int) else None


async def run_member(config: MemberConfig) -> None:
    """Consume as one group member until asked to close, reporting through MemberOutput."""
    out = MemberOutput()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=config.bootstrap,
        group_id=config.group_id,
        client_id=config.client_id,
        session_timeout_ms=config.session_timeout_ms,
        heartbeat_interval_ms=config.heartbeat_interval_ms,
        auto_offset_reset=config.auto_offset_reset,
        enable_auto_commit=config.enable_auto_commit,
        auto_commit_interval_ms=config.auto_commit_interval_ms,
        partition_assignment_strategy=(ASSIGNORS[config.assignor],),
        group_instance_id=config.group_instance_id,
    )
    consumer.subscribe([config.topic], listener=ReportingListener(out, consumer))
    await consumer.start()
    commits = CommitTracker(config)
    try:
        while not out.close_requested.is_set():
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            for records in batches.values():
                for record in records:
                    out.record(record.partition, record.offset, record.value)
                    target = commits.due(record.partition, record.offset)
                    if target is None:
                        continue
                    try:
                        await consumer.commit({TopicPartition(config.topic, record.partition): target})
                    except KafkaError as exc:
                        out.emit("commit_failed", partition=record.partition, offset=target, error=repr(exc))
                    else:
                        commits.record_commit(record.partition, target)
                        out.emit("committed", partition=record.partition, offset=target)
    finally:
        await consumer.stop()
    out.emit("closed")


if __name__ == "__main__":
    asyncio.run(run_member(member_config_from_argv()))
