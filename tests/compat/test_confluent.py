"""confluent-kafka (librdkafka) against a real Strom broker process."""

from __future__ import annotations

import zlib

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)
from scenario import (
    ALTERED_RETENTION_MS,
    CLIENT_TIMEOUT_S,
    COMPRESSED_MESSAGE_COUNT,
    COMPRESSION_TYPES,
    CREATED_RETENTION_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETENTION_MS,
    PARTITION_COUNT,
    TIMESTAMPED_COUNT,
    confluent_admin,
    create_topic_with_confluent,
    delete_topic_with_confluent,
    keyed_messages,
    large_message,
    offset_for_timestamp_cases,
    produce_with_confluent,
    read_with_confluent,
    timestamped_messages,
    verify_round_trip,
)


def librdkafka_partition(key: bytes) -> int:
    """librdkafka's default ``consistent_random`` partitioner: CRC32 of the key."""
    return zlib.crc32(key) % PARTITION_COUNT


def describe_topic_configs(bootstrap: str, topic: str) -> dict[str, ConfigEntry]:
    admin = confluent_admin(bootstrap)
    futures = admin.describe_configs(
        [ConfigResource(ResourceType.TOPIC, topic)], request_timeout=CLIENT_TIMEOUT_S
    )
    (future,) = futures.values()
    entries: dict[str, ConfigEntry] = future.result(timeout=CLIENT_TIMEOUT_S)
    return entries


def value_and_source(entry: ConfigEntry) -> tuple[str | None, ConfigSource]:
    return entry.value, ConfigSource(entry.source)


def topic_partition_counts(bootstrap: str) -> dict[str, int]:
    metadata = confluent_admin(bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def test_create_topic_with_three_partitions(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    metadata = confluent_admin(strom_broker.bootstrap).list_topics(timeout=CLIENT_TIMEOUT_S)
    topic = metadata.topics[unique_topic]
    assert topic.error is None
    assert sorted(topic.partitions) == list(range(PARTITION_COUNT))
    assert all(partition.leader in metadata.brokers for partition in topic.partitions.values())


def test_create_existing_topic_fails_with_topic_already_exists(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    admin = confluent_admin(strom_broker.bootstrap)
    futures = admin.create_topics(
        [NewTopic(unique_topic, num_partitions=PARTITION_COUNT, replication_factor=1)],
        request_timeout=CLIENT_TIMEOUT_S,
    )
    with pytest.raises(KafkaException) as raised:
        futures[unique_topic].result(timeout=CLIENT_TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_keyed_messages_with_headers_round_trip(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = keyed_messages()

    deliveries = produce_with_confluent(strom_broker.bootstrap, unique_topic, messages)
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=librdkafka_partition)


@pytest.mark.parametrize("compression", COMPRESSION_TYPES)
def test_compressed_batches_round_trip(strom_broker, unique_topic, compression):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = keyed_messages(COMPRESSED_MESSAGE_COUNT)

    deliveries = produce_with_confluent(
        strom_broker.bootstrap,
        unique_topic,
        messages,
        config={"compression.type": compression, "linger.ms": 50},
    )
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=librdkafka_partition)


def test_900_kb_message_round_trip(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    message = large_message()

    deliveries = produce_with_confluent(strom_broker.bootstrap, unique_topic, [message])
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip([message], consumed, deliveries=deliveries)


def test_message_over_max_message_bytes_is_rejected_by_broker(strom_broker, unique_topic):
    """The client's own limit is raised so the batch reaches the broker, which must refuse it."""
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    with pytest.raises(AssertionError, match="MSG_SIZE_TOO_LARGE"):
        produce_with_confluent(
            strom_broker.bootstrap,
            unique_topic,
            [large_message(int(DEFAULT_MAX_MESSAGE_BYTES) + 1024)],
            config={"message.max.bytes": 2_000_000, "retries": 0},
        )


def test_watermarks_and_offsets_for_times(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = timestamped_messages()
    produce_with_confluent(strom_broker.bootstrap, unique_topic, messages, partition=0)

    consumer = Consumer(
        {
            "bootstrap.servers": strom_broker.bootstrap,
            "group.id": "compat-offsets",
            "enable.auto.commit": False,
        }
    )
    try:
        watermarks = [
            consumer.get_watermark_offsets(
                TopicPartition(unique_topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False
            )
            for partition in range(PARTITION_COUNT)
        ]
        cases = offset_for_timestamp_cases()
        # One query per timestamp: a partition may appear only once in a request.
        found = [
            consumer.offsets_for_times(
                [TopicPartition(unique_topic, 0, timestamp)], timeout=CLIENT_TIMEOUT_S
            )[0]
            for timestamp in cases
        ]
    finally:
        consumer.close()

    assert watermarks == [(0, TIMESTAMPED_COUNT), (0, 0), (0, 0)]
    # librdkafka reports "no such offset" as OFFSET_END (-1).
    assert [tp.offset for tp in found] == [-1 if offset is None else offset for offset in cases.values()]

    admin = confluent_admin(strom_broker.bootstrap)
    partition0 = TopicPartition(unique_topic, 0)
    specs = {
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "third": OffsetSpec.for_timestamp(timestamped_messages()[3].timestamp_ms or 0),
    }
    answers = {
        name: admin.list_offsets({partition0: spec}, request_timeout=CLIENT_TIMEOUT_S)[partition0].result(
            timeout=CLIENT_TIMEOUT_S
        )
        for name, spec in specs.items()
    }
    assert answers["earliest"].offset == 0
    assert answers["latest"].offset == TIMESTAMPED_COUNT
    assert answers["third"].offset == 3
    assert answers["third"].timestamp == messages[3].timestamp_ms

    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)
    verify_round_trip(messages, consumed, check_timestamps=True)


def test_describe_and_alter_topic_configs(strom_broker, unique_topic):
    create_topic_with_confluent(
        strom_broker.bootstrap, unique_topic, config={"retention.ms": CREATED_RETENTION_MS}
    )

    created = describe_topic_configs(strom_broker.bootstrap, unique_topic)
    assert value_and_source(created["retention.ms"]) == (
        CREATED_RETENTION_MS,
        ConfigSource.DYNAMIC_TOPIC_CONFIG,
    )
    assert value_and_source(created["max.message.bytes"]) == (
        DEFAULT_MAX_MESSAGE_BYTES,
        ConfigSource.DEFAULT_CONFIG,
    )
    assert created["cleanup.policy"].value == "delete"

    admin = confluent_admin(strom_broker.bootstrap)

    def alter(operation: AlterConfigOpType, value: str | None) -> None:
        resource = ConfigResource(
            ResourceType.TOPIC,
            unique_topic,
            incremental_configs=[ConfigEntry("retention.ms", value, incremental_operation=operation)],
        )
        (future,) = admin.incremental_alter_configs([resource], request_timeout=CLIENT_TIMEOUT_S).values()
        future.result(timeout=CLIENT_TIMEOUT_S)

    alter(AlterConfigOpType.SET, ALTERED_RETENTION_MS)
    altered = describe_topic_configs(strom_broker.bootstrap, unique_topic)["retention.ms"]
    assert value_and_source(altered) == (ALTERED_RETENTION_MS, ConfigSource.DYNAMIC_TOPIC_CONFIG)

    alter(AlterConfigOpType.DELETE, None)
    reverted = describe_topic_configs(strom_broker.bootstrap, unique_topic)["retention.ms"]
    assert value_and_source(reverted) == (DEFAULT_RETENTION_MS, ConfigSource.DEFAULT_CONFIG)


def test_deleted_topic_disappears_from_metadata(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    produce_with_confluent(strom_broker.bootstrap, unique_topic, keyed_messages(10))
    assert unique_topic in topic_partition_counts(strom_broker.bootstrap)

    delete_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    assert unique_topic not in topic_partition_counts(strom_broker.bootstrap)


def test_restart_keeps_topics_configs_and_messages(fresh_broker, unique_topic):
    create_topic_with_confluent(
        fresh_broker.bootstrap, unique_topic, config={"retention.ms": CREATED_RETENTION_MS}
    )
    messages = keyed_messages()
    deliveries = produce_with_confluent(fresh_broker.bootstrap, unique_topic, messages)

    fresh_broker.restart()

    assert topic_partition_counts(fresh_broker.bootstrap)[unique_topic] == PARTITION_COUNT
    retention = describe_topic_configs(fresh_broker.bootstrap, unique_topic)["retention.ms"]
    assert value_and_source(retention) == (CREATED_RETENTION_MS, ConfigSource.DYNAMIC_TOPIC_CONFIG)
    verify_round_trip(
        messages, read_with_confluent(fresh_broker.bootstrap, unique_topic), deliveries=deliveries
    )

    # Appends after recovery continue each partition's offsets where the old log ended.
    more = keyed_messages(1100)[1000:]
    more_deliveries = produce_with_confluent(fresh_broker.bootstrap, unique_topic, more)
    verify_round_trip(
        messages + more,
        read_with_confluent(fresh_broker.bootstrap, unique_topic),
        deliveries=deliveries + more_deliveries,
        partition_for_key=librdkafka_partition,
    )
