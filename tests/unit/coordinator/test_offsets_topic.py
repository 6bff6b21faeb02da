"""__consumer_offsets on a real (in-process) broker: created on first use, written, replayed after restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from strom.coordinator.group import OFFSETS_TOPIC, GroupConfig
from strom.metadata.properties import BrokerConfig, with_single_node_defaults
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import offset_commit
from strom.server.broker import Broker

GROUP = "g"


def start(data_dir: Path, **overrides: str) -> Broker:
    config = BrokerConfig(
        with_single_node_defaults(
            {"log.dirs": str(data_dir), "offsets.topic.num.partitions": "3", **overrides}
        )
    )
    return Broker(config, advertised_host="127.0.0.1", advertised_port=9092)


def commit(broker: Broker, topic: str, offsets: dict[int, int]) -> dict[int, int]:
    request = offset_commit.OffsetCommitRequest(
        group_id=GROUP,
        topics=[
            offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                topic,
                [
                    offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(
                        p, o, committed_metadata="kept"
                    )
                    for p, o in offsets.items()
                ],
            )
        ],
    )
    [result] = broker.groups.commit_offsets(request, 8)
    return {p.partition_index: p.error_code for p in result.partitions}


def committed(broker: Broker, topic: str) -> dict[int, tuple[int, str]]:
    fetched = broker.groups.fetch_offsets(GROUP, None)
    assert fetched.error_code == ErrorCode.NONE
    return {p.partition_index: (p.committed_offset, p.metadata) for t in fetched.topics for p in t.partitions}


def test_created_on_first_lookup_as_a_compacted_internal_topic(tmp_path: Path) -> None:
    broker = start(tmp_path)
    try:
        assert broker.image.topic(OFFSETS_TOPIC) is None
        assert commit(broker, "t", {0: 1}) == {0: ErrorCode.NOT_COORDINATOR}  # nobody asked for it yet
        node = broker.offsets_topic.coordinator_node(GROUP)
        assert node is not None and node.node_id == broker.node_id
        topic = broker.image.topic(OFFSETS_TOPIC)
        assert topic is not None and len(topic.partitions) == 3
        assert {len(p.replicas) for p in topic.partitions.values()} == {1}
        properties = broker.controller.topic_properties(OFFSETS_TOPIC)
        assert properties["cleanup.policy"] == "compact"
        assert properties["compression.type"] == "producer"
        assert properties["segment.bytes"] == str(100 * 1024 * 1024)
        assert broker.is_internal_topic(OFFSETS_TOPIC)
    finally:
        broker.close()


def test_commits_survive_a_restart(tmp_path: Path) -> None:
    broker = start(tmp_path)
    try:
        broker.offsets_topic.coordinator_node(GROUP)
        assert commit(broker, "t", {0: 5, 1: 6}) == {0: ErrorCode.NONE, 1: ErrorCode.NONE}
        assert commit(broker, "t", {0: 7}) == {0: ErrorCode.NONE}
        partition_log = broker.logs.get(OFFSETS_TOPIC, broker.groups.partition_for(GROUP))
        assert partition_log is not None and partition_log.log_end_offset == 3
    finally:
        broker.close()

    restarted = start(tmp_path)
    try:
        assert commit(restarted, "t", {0: 8}) == {0: ErrorCode.COORDINATOR_LOAD_IN_PROGRESS}
        asyncio.run(restarted.load_coordinators())
        assert committed(restarted, "t") == {0: (7, "kept"), 1: (6, "kept")}
    finally:
        restarted.close()


def test_an_offsets_topic_a_client_created_is_taken_over(tmp_path: Path) -> None:
    broker = start(tmp_path)
    try:
        broker.controller.create_topics([broker.controller.new_topic(OFFSETS_TOPIC, 2, 1)])
        assert broker.offsets_topic.coordinator_node(GROUP) is not None
        assert broker.groups.num_partitions == 2
        assert commit(broker, "t", {0: 1}) == {0: ErrorCode.NONE}
    finally:
        broker.close()


def test_an_offsets_topic_the_cluster_cannot_host_leaves_groups_without_a_coordinator(tmp_path: Path) -> None:
    broker = start(tmp_path, **{"offsets.topic.replication.factor": "3"})
    try:
        assert broker.offsets_topic.coordinator_node(GROUP) is None
        assert broker.image.topic(OFFSETS_TOPIC) is None
    finally:
        broker.close()


@pytest.mark.parametrize(
    ("properties", "delay", "factor"),
    [
        ({}, 0, 1),
        ({"group.initial.rebalance.delay.ms": "3000", "offsets.topic.replication.factor": "2"}, 3000, 2),
        ({"controller.quorum.voters": "1@a:9093,2@b:9093,3@c:9093"}, 3000, 3),
    ],
    ids=["single-node-defaults", "explicit", "cluster"],
)
def test_single_node_defaults(properties: dict[str, str], delay: int, factor: int) -> None:
    config = GroupConfig.from_broker_config(BrokerConfig(with_single_node_defaults(properties)))
    assert (config.initial_rebalance_delay_ms, config.offsets_topic_replication_factor) == (delay, factor)
    assert config.offsets_retention_ms == 7 * 24 * 60 * 60 * 1000
