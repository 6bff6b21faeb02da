"""aiokafka against a real Strom broker process.

Reads go through ``assign`` + ``seek`` with no group_id: consumer groups are a later feature. The admin
client hands back raw protocol responses, so the tests read the wire fields (error codes, config sources)
directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2
from scenario import (
    ALTERED_RETENTION_MS,
    CLIENT_TIMEOUT_S,
    COMPRESSED_MESSAGE_COUNT,
    COMPRESSION_TYPES,
    CREATED_RETENTION_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
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

# DescribeConfigs config_source values on the wire.
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5

TOPIC_ALREADY_EXISTS = 36


def java_partition(key: bytes) -> int:
    """aiokafka's default partitioner, the Java client's murmur2 of the key."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITION_COUNT


class Admin:
    """An admin client session whose calls return plain values and fail on any error code."""

    def __init__(self, bootstrap: str) -> None:
        self.client = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)

    async def __aenter__(self) -> Admin:
        await self.client.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.client.close()

    async def create_topic(self, topic: str, configs: Mapping[str, str] | None = None) -> int:
        """Returns the CreateTopics error code, 0 on success."""
        response = await self.client.create_topics(
            [NewTopic(topic, PARTITION_COUNT, 1, topic_configs=dict(configs or {}))], timeout_ms=TIMEOUT_MS
        )
        ((name, error_code, *_),) = response.topic_errors
        assert name == topic
        return int(error_code)

    async def topic_configs(self, topic: str) -> dict[str, tuple[str, int]]:
        """Config name → (value, config_source) for every config of ``topic``."""
        (response,) = await self.client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        ((error_code, error_message, _, name, entries),) = response.resources
        assert (error_code, name) == (0, topic), error_message
        return {entry[0]: (entry[1], entry[3]) for entry in entries}

    async def alter_topic_configs(self, topic: str, configs: Mapping[str, str]) -> None:
        responses = await self.client.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=dict(configs))]
        )
        results = [resource for response in responses for resource in response.resources]
        assert [(result[0], result[3]) for result in results] == [(0, topic)], results

    async def partitions_of(self, topic: str) -> list[int]:
        (description,) = await self.client.describe_topics([topic])
        assert description["error_code"] == 0
        return sorted(partition["partition"] for partition in description["partitions"])


async def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[Message],
    *,
    partition: int | None = None,
    **producer_config: Any,
) -> list[Delivery]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_config)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic,
                key=message.key,
                value=message.value,
                headers=list(message.headers),
                partition=partition,
                timestamp_ms=message.timestamp_ms,
            )
            for message in messages
        ]
        acknowledged = await asyncio.wait_for(asyncio.gather(*futures), CLIENT_TIMEOUT_S)
    finally:
        await producer.stop()
    return [
        Delivery(message, metadata.partition, metadata.offset)
        for message, metadata in zip(messages, acknowledged, strict=True)
    ]


async def read_all(bootstrap: str, topic: str) -> list[Record]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)]
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        for tp, offset in beginnings.items():
            consumer.seek(tp, offset)
        progress = ReadProgress(
            {tp.partition: offset for tp, offset in ends.items()},
            start_offsets={tp.partition: offset for tp, offset in beginnings.items()},
        )
        while progress.keep_reading():
            for batch in (await consumer.getmany(timeout_ms=1000)).values():
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
        await consumer.stop()


def test_create_topic_with_three_partitions(strom_broker, unique_topic):
    async def scenario() -> tuple[int, list[int], int]:
        async with Admin(strom_broker.bootstrap) as admin:
            created = await admin.create_topic(unique_topic)
            partitions = await admin.partitions_of(unique_topic)
            created_again = await admin.create_topic(unique_topic)
            return created, partitions, created_again

    created, partitions, created_again = asyncio.run(scenario())

    assert created == 0
    assert partitions == list(range(PARTITION_COUNT))
    assert created_again == TOPIC_ALREADY_EXISTS


def test_keyed_messages_with_headers_round_trip(strom_broker, unique_topic):
    messages = keyed_messages()

    async def scenario() -> tuple[list[Delivery], list[Record]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic) == 0
        deliveries = await produce(strom_broker.bootstrap, unique_topic, messages)
        return deliveries, await read_all(strom_broker.bootstrap, unique_topic)

    deliveries, consumed = asyncio.run(scenario())

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


@pytest.mark.parametrize("compression", COMPRESSION_TYPES)
def test_compressed_batches_round_trip(strom_broker, unique_topic, compression):
    messages = keyed_messages(COMPRESSED_MESSAGE_COUNT)

    async def scenario() -> tuple[list[Delivery], list[Record]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic) == 0
        deliveries = await produce(
            strom_broker.bootstrap, unique_topic, messages, compression_type=compression, linger_ms=50
        )
        return deliveries, await read_all(strom_broker.bootstrap, unique_topic)

    deliveries, consumed = asyncio.run(scenario())

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


def test_900_kb_message_round_trip(strom_broker, unique_topic):
    message = large_message()

    async def scenario() -> tuple[list[Delivery], list[Record]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic) == 0
        deliveries = await produce(strom_broker.bootstrap, unique_topic, [message])
        return deliveries, await read_all(strom_broker.bootstrap, unique_topic)

    deliveries, consumed = asyncio.run(scenario())

    verify_round_trip([message], consumed, deliveries=deliveries)


def test_watermarks_and_offsets_for_times(strom_broker, unique_topic):
    messages = timestamped_messages()
    cases = offset_for_timestamp_cases()
    partitions = [TopicPartition(unique_topic, partition) for partition in range(PARTITION_COUNT)]

    async def scenario() -> tuple[dict[Any, int], dict[Any, int], dict[int, Any], list[Record]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic) == 0
        await produce(strom_broker.bootstrap, unique_topic, messages, partition=0)
        consumer = AIOKafkaConsumer(bootstrap_servers=strom_broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
        await consumer.start()
        try:
            beginnings = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            found = {
                timestamp: (await consumer.offsets_for_times({partitions[0]: timestamp}))[partitions[0]]
                for timestamp in cases
            }
        finally:
            await consumer.stop()
        return beginnings, ends, found, await read_all(strom_broker.bootstrap, unique_topic)

    beginnings, ends, found, consumed = asyncio.run(scenario())

    assert [beginnings[tp] for tp in partitions] == [0, 0, 0]
    assert [ends[tp] for tp in partitions] == [TIMESTAMPED_COUNT, 0, 0]
    # aiokafka answers None where Kafka has no offset at or after the timestamp.
    assert {ts: None if answer is None else answer.offset for ts, answer in found.items()} == cases
    first = found[TIMESTAMP_BASE_MS]
    assert first is not None and first.timestamp == messages[0].timestamp_ms
    verify_round_trip(messages, consumed, check_timestamps=True)


def test_describe_and_alter_topic_configs(strom_broker, unique_topic):
    async def scenario() -> tuple[dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic, {"retention.ms": CREATED_RETENTION_MS}) == 0
            created = await admin.topic_configs(unique_topic)
            await admin.alter_topic_configs(unique_topic, {"retention.ms": ALTERED_RETENTION_MS})
            return created, await admin.topic_configs(unique_topic)

    created, altered = asyncio.run(scenario())

    assert created["retention.ms"] == (CREATED_RETENTION_MS, DYNAMIC_TOPIC_CONFIG)
    assert created["max.message.bytes"] == (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_CONFIG)
    assert altered["retention.ms"] == (ALTERED_RETENTION_MS, DYNAMIC_TOPIC_CONFIG)
    assert altered["max.message.bytes"] == (DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_CONFIG)


def test_deleted_topic_disappears_from_metadata(strom_broker, unique_topic):
    async def scenario() -> tuple[list[str], Any, list[str]]:
        async with Admin(strom_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic) == 0
            await produce(strom_broker.bootstrap, unique_topic, keyed_messages(10))
            before = await admin.client.list_topics()
            deleted = await admin.client.delete_topics([unique_topic], timeout_ms=TIMEOUT_MS)
            return before, deleted, await admin.client.list_topics()

    before, deleted, after = asyncio.run(scenario())

    assert unique_topic in before
    assert [(name, error_code) for name, error_code, *_ in deleted.topic_error_codes] == [(unique_topic, 0)]
    assert unique_topic not in after


def test_restart_keeps_topics_configs_and_messages(fresh_broker, unique_topic):
    messages = keyed_messages()

    async def before_restart() -> list[Delivery]:
        async with Admin(fresh_broker.bootstrap) as admin:
            assert await admin.create_topic(unique_topic, {"retention.ms": CREATED_RETENTION_MS}) == 0
        return await produce(fresh_broker.bootstrap, unique_topic, messages)

    async def after_restart() -> tuple[list[int], dict[str, tuple[str, int]], list[Record]]:
        async with Admin(fresh_broker.bootstrap) as admin:
            partitions = await admin.partitions_of(unique_topic)
            configs = await admin.topic_configs(unique_topic)
        return partitions, configs, await read_all(fresh_broker.bootstrap, unique_topic)

    deliveries = asyncio.run(before_restart())
    fresh_broker.restart()
    partitions, configs, consumed = asyncio.run(after_restart())

    assert partitions == list(range(PARTITION_COUNT))
    assert configs["retention.ms"] == (CREATED_RETENTION_MS, DYNAMIC_TOPIC_CONFIG)
    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)
