"""kafka-python against a real Strom broker process.

Reads go through ``assign`` + ``seek`` with no group_id: consumer groups are a later feature. The producer
keeps kafka-python's defaults, so it is idempotent (InitProducerId, then sequenced batches).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.codec import has_lz4, has_snappy, has_zstd
from kafka.errors import TopicAlreadyExistsError
from kafka.partitioner.default import murmur2
from scenario import (
    ALTERED_RETENTION_MS,
    CLIENT_TIMEOUT_S,
    COMPRESSED_MESSAGE_COUNT,
    COMPRESSION_TYPES,
    CREATED_RETENTION_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETENTION_MS,
    PARTITION_COUNT,
    TIMESTAMP_BASE_MS,
    TIMESTAMPED_COUNT,
    Delivery,
    Message,
    ReadProgress,
    Record,
    keyed_messages,
    large_message,
    offset_for_timestamp_cases,
    timestamped_messages,
    verify_round_trip,
)

TIMEOUT_MS = int(CLIENT_TIMEOUT_S * 1000)

# kafka-python compresses with optional third-party libraries; without them it refuses the codec outright.
CODEC_AVAILABLE = {"gzip": True, "snappy": has_snappy(), "lz4": has_lz4(), "zstd": has_zstd()}


def java_partition(key: bytes) -> int:
    """kafka-python's default partitioner, the Java client's murmur2 of the key."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITION_COUNT


@pytest.fixture
def admin(strom_broker) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=strom_broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    yield client
    client.close()


def create_topic(admin: KafkaAdminClient, topic: str, configs: Mapping[str, str] | None = None) -> None:
    admin.create_topics(
        {topic: {"num_partitions": PARTITION_COUNT, "replication_factor": 1, "configs": dict(configs or {})}},
        timeout_ms=TIMEOUT_MS,
        wait_for_metadata=True,
    )


def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[Message],
    *,
    partition: int | None = None,
    **producer_config: Any,
) -> list[Delivery]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_config)
    try:
        futures = [
            (
                message,
                producer.send(
                    topic,
                    key=message.key,
                    value=message.value,
                    headers=list(message.headers),
                    partition=partition,
                    timestamp_ms=message.timestamp_ms,
                ),
            )
            for message in messages
        ]
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        acknowledged = [(message, future.get(timeout=CLIENT_TIMEOUT_S)) for message, future in futures]
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    return [Delivery(message, metadata.partition, metadata.offset) for message, metadata in acknowledged]


def new_consumer(bootstrap: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS
    )


def read_all(bootstrap: str, topic: str) -> list[Record]:
    consumer = new_consumer(bootstrap)
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)]
        consumer.assign(partitions)
        beginnings = consumer.beginning_offsets(partitions, timeout_ms=TIMEOUT_MS)
        ends = consumer.end_offsets(partitions, timeout_ms=TIMEOUT_MS)
        for tp, offset in beginnings.items():
            consumer.seek(tp, offset)
        progress = ReadProgress(
            {tp.partition: offset for tp, offset in ends.items()},
            start_offsets={tp.partition: offset for tp, offset in beginnings.items()},
        )
        while progress.keep_reading():
            for batch in consumer.poll(timeout_ms=1000).values():
                progress.add(
                    Record(
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value,
                        headers=tuple(record.headers),
                        timestamp_ms=record.timestamp,
                    )
                    for record in batch
                )
        return progress.records
    finally:
        consumer.close(autocommit=False)


def describe_topic_configs(admin: KafkaAdminClient, topic: str) -> dict[str, dict[str, Any]]:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    configs: dict[str, dict[str, Any]] = described["topic"][topic]
    return configs


def value_and_source(configs: Mapping[str, Mapping[str, Any]], name: str) -> tuple[str, str]:
    return configs[name]["value"], configs[name]["config_source"]


def test_create_topic_with_three_partitions(admin, unique_topic):
    create_topic(admin, unique_topic)

    (description,) = admin.describe_topics([unique_topic])
    assert description["error_code"] == 0
    assert sorted(partition["partition_index"] for partition in description["partitions"]) == list(
        range(PARTITION_COUNT)
    )
    with pytest.raises(TopicAlreadyExistsError):
        create_topic(admin, unique_topic)


def test_keyed_messages_with_headers_round_trip(strom_broker, admin, unique_topic):
    create_topic(admin, unique_topic)
    messages = keyed_messages()

    deliveries = produce(strom_broker.bootstrap, unique_topic, messages)
    consumed = read_all(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


@pytest.mark.parametrize("compression", COMPRESSION_TYPES)
def test_compressed_batches_round_trip(strom_broker, admin, unique_topic, compression):
    if not CODEC_AVAILABLE[compression]:
        pytest.skip(f"kafka-python has no {compression} library installed (optional dependency)")
    create_topic(admin, unique_topic)
    messages = keyed_messages(COMPRESSED_MESSAGE_COUNT)

    deliveries = produce(
        strom_broker.bootstrap, unique_topic, messages, compression_type=compression, linger_ms=50
    )
    consumed = read_all(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


def test_900_kb_message_round_trip(strom_broker, admin, unique_topic):
    create_topic(admin, unique_topic)
    message = large_message()

    deliveries = produce(strom_broker.bootstrap, unique_topic, [message])
    consumed = read_all(strom_broker.bootstrap, unique_topic)

    verify_round_trip([message], consumed, deliveries=deliveries)


def test_watermarks_and_offsets_for_times(strom_broker, admin, unique_topic):
    create_topic(admin, unique_topic)
    messages = timestamped_messages()
    produce(strom_broker.bootstrap, unique_topic, messages, partition=0)

    partitions = [TopicPartition(unique_topic, partition) for partition in range(PARTITION_COUNT)]
    cases = offset_for_timestamp_cases()
    consumer = new_consumer(strom_broker.bootstrap)
    try:
        beginnings = consumer.beginning_offsets(partitions, timeout_ms=TIMEOUT_MS)
        ends = consumer.end_offsets(partitions, timeout_ms=TIMEOUT_MS)
        found = {
            timestamp: consumer.offsets_for_times({partitions[0]: timestamp}, timeout_ms=TIMEOUT_MS)[
                partitions[0]
            ]
            for timestamp in cases
        }
    finally:
        consumer.close(autocommit=False)

    assert [beginnings[tp] for tp in partitions] == [0, 0, 0]
    assert [ends[tp] for tp in partitions] == [TIMESTAMPED_COUNT, 0, 0]
    # kafka-python answers None where Kafka has no offset at or after the timestamp.
    assert {ts: None if answer is None else answer.offset for ts, answer in found.items()} == cases
    first = found[TIMESTAMP_BASE_MS]
    assert first is not None and first.timestamp == messages[0].timestamp_ms

    verify_round_trip(messages, read_all(strom_broker.bootstrap, unique_topic), check_timestamps=True)


def test_describe_and_alter_topic_configs(admin, unique_topic):
    create_topic(admin, unique_topic, {"retention.ms": CREATED_RETENTION_MS})

    created = describe_topic_configs(admin, unique_topic)
    assert value_and_source(created, "retention.ms") == (CREATED_RETENTION_MS, "DYNAMIC_TOPIC_CONFIG")
    assert value_and_source(created, "max.message.bytes") == (DEFAULT_MAX_MESSAGE_BYTES, "DEFAULT_CONFIG")

    result = admin.alter_configs(
        [
            ConfigResource(
                ConfigResourceType.TOPIC, unique_topic, configs={"retention.ms": ALTERED_RETENTION_MS}
            )
        ]
    )
    assert result == {"topic": {unique_topic: "OK"}}
    altered = describe_topic_configs(admin, unique_topic)
    assert value_and_source(altered, "retention.ms") == (ALTERED_RETENTION_MS, "DYNAMIC_TOPIC_CONFIG")

    result = admin.reset_configs(
        [ConfigResource(ConfigResourceType.TOPIC, unique_topic, configs=["retention.ms"])]
    )
    assert result == {"topic": {unique_topic: "OK"}}
    reset = describe_topic_configs(admin, unique_topic)
    assert value_and_source(reset, "retention.ms") == (DEFAULT_RETENTION_MS, "DEFAULT_CONFIG")


def test_deleted_topic_disappears_from_metadata(strom_broker, admin, unique_topic):
    create_topic(admin, unique_topic)
    produce(strom_broker.bootstrap, unique_topic, keyed_messages(10))
    assert unique_topic in admin.list_topics()

    result = admin.delete_topics([unique_topic], timeout_ms=TIMEOUT_MS)

    assert [(topic["name"], topic["error_code"]) for topic in result["topics"]] == [(unique_topic, 0)]
    assert unique_topic not in admin.list_topics()


def test_restart_keeps_topics_configs_and_messages(fresh_broker, unique_topic):
    admin = KafkaAdminClient(bootstrap_servers=fresh_broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        create_topic(admin, unique_topic, {"retention.ms": CREATED_RETENTION_MS})
    finally:
        admin.close()
    messages = keyed_messages()
    deliveries = produce(fresh_broker.bootstrap, unique_topic, messages)

    fresh_broker.restart()

    admin = KafkaAdminClient(bootstrap_servers=fresh_broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        (description,) = admin.describe_topics([unique_topic])
        configs = describe_topic_configs(admin, unique_topic)
    finally:
        admin.close()
    assert len(description["partitions"]) == PARTITION_COUNT
    assert value_and_source(configs, "retention.ms") == (CREATED_RETENTION_MS, "DYNAMIC_TOPIC_CONFIG")
    verify_round_trip(
        messages,
        read_all(fresh_broker.bootstrap, unique_topic),
        deliveries=deliveries,
        partition_for_key=java_partition,
    )
