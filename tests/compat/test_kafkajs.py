"""kafkajs against a real Strom broker process, driven through tests/compat/js/driver.js.

kafkajs only consumes as a member of a consumer group, which Strom does not implement yet; everything it
produces is read back with confluent-kafka instead, and the group consumer is an expected failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka.partitioner.default import murmur2
from scenario import (
    ALTERED_RETENTION_MS,
    COMPRESSED_MESSAGE_COUNT,
    COMPRESSION_TYPES,
    CREATED_RETENTION_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    PARTITION_COUNT,
    TIMESTAMPED_COUNT,
    Delivery,
    Message,
    Record,
    keyed_messages,
    large_message,
    offset_for_timestamp_cases,
    read_with_confluent,
    timestamped_messages,
    verify_round_trip,
)

JS_DIR = Path(__file__).parent / "js"
DRIVER_TIMEOUT_S = 120

# DescribeConfigs config_source values on the wire.
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5


class KafkajsFailed(Exception):
    """The kafkajs driver exited with an error; carries what kafkajs said."""


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    """Install the pinned kafkajs and codec packages on first use (node_modules is not committed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run kafkajs")
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True, timeout=300
        )


def kafkajs(operation: str, broker: Any, **arguments: Any) -> Any:
    completed = subprocess.run(
        ["node", "driver.js", operation],
        cwd=JS_DIR,
        input=json.dumps({"brokers": [broker.bootstrap], **arguments}),
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    if completed.returncode != 0:
        raise KafkajsFailed(f"kafkajs {operation} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout)


def java_partition(key: bytes) -> int:
    """kafkajs's default partitioner, the Java client's murmur2 of the key."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITION_COUNT


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def create_topic(broker: Any, topic: str, configs: dict[str, str] | None = None) -> bool:
    result = kafkajs("createTopic", broker, topic=topic, partitions=PARTITION_COUNT, configs=configs or {})
    return bool(result["created"])


def produce(
    broker: Any,
    topic: str,
    messages: Sequence[Message],
    *,
    compression: str = "none",
    partition: int | None = None,
) -> list[Delivery]:
    request: dict[str, Any] = {
        "topic": topic,
        "compression": compression,
        "messages": [
            {
                "key": b64(message.key),
                "value": b64(message.value),
                "headers": [[name, b64(value)] for name, value in message.headers],
                "timestamp": message.timestamp_ms,
            }
            for message in messages
        ],
    }
    if partition is not None:
        request["partition"] = partition
    result = kafkajs("produce", broker, **request)
    return [
        Delivery(message, delivery["partition"], delivery["offset"])
        for message, delivery in zip(messages, result["deliveries"], strict=True)
    ]


def test_create_topic_with_three_partitions(strom_broker, unique_topic):
    assert create_topic(strom_broker, unique_topic) is True
    assert kafkajs("partitions", strom_broker, topic=unique_topic) == list(range(PARTITION_COUNT))
    # kafkajs reports TOPIC_ALREADY_EXISTS as "not created" rather than an error.
    assert create_topic(strom_broker, unique_topic) is False


def test_keyed_messages_with_headers_round_trip(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    messages = keyed_messages()

    deliveries = produce(strom_broker, unique_topic, messages)
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


@pytest.mark.parametrize("compression", COMPRESSION_TYPES)
def test_compressed_batches_round_trip(strom_broker, unique_topic, compression):
    create_topic(strom_broker, unique_topic)
    messages = keyed_messages(COMPRESSED_MESSAGE_COUNT)

    deliveries = produce(strom_broker, unique_topic, messages, compression=compression)
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)


def test_900_kb_message_round_trip(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    message = large_message()

    deliveries = produce(strom_broker, unique_topic, [message])
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    verify_round_trip([message], consumed, deliveries=deliveries)


def test_watermarks_and_offsets_for_times(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    messages = timestamped_messages()
    produce(strom_broker, unique_topic, messages, partition=0)
    cases = offset_for_timestamp_cases()

    offsets = kafkajs("offsets", strom_broker, topic=unique_topic)
    by_time = kafkajs("offsetsForTimes", strom_broker, topic=unique_topic, timestamps=list(cases))

    assert offsets == [
        {"partition": 0, "low": 0, "high": TIMESTAMPED_COUNT},
        {"partition": 1, "low": 0, "high": 0},
        {"partition": 2, "low": 0, "high": 0},
    ]
    # kafkajs replaces Kafka's "no such offset" (-1) with the partition's high watermark.
    assert {int(ts): answer["0"] for ts, answer in by_time.items()} == {
        ts: TIMESTAMPED_COUNT if offset is None else offset for ts, offset in cases.items()
    }
    verify_round_trip(
        messages, read_with_confluent(strom_broker.bootstrap, unique_topic), check_timestamps=True
    )


def test_describe_and_alter_topic_configs(strom_broker, unique_topic):
    create_topic(
        strom_broker, unique_topic, {"retention.ms": CREATED_RETENTION_MS, "max.message.bytes": "2000000"}
    )
    created = kafkajs("describeConfigs", strom_broker, topic=unique_topic)

    # kafkajs uses the original AlterConfigs, which replaces a topic's whole set of overrides: the
    # max.message.bytes override it does not mention goes back to its default.
    kafkajs("alterConfigs", strom_broker, topic=unique_topic, configs={"retention.ms": ALTERED_RETENTION_MS})
    altered = kafkajs("describeConfigs", strom_broker, topic=unique_topic)

    assert created["retention.ms"] == {"value": CREATED_RETENTION_MS, "source": DYNAMIC_TOPIC_CONFIG}
    assert created["max.message.bytes"] == {"value": "2000000", "source": DYNAMIC_TOPIC_CONFIG}
    assert altered["retention.ms"] == {"value": ALTERED_RETENTION_MS, "source": DYNAMIC_TOPIC_CONFIG}
    assert altered["max.message.bytes"] == {"value": DEFAULT_MAX_MESSAGE_BYTES, "source": DEFAULT_CONFIG}


def test_deleted_topic_disappears_from_metadata(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    produce(strom_broker, unique_topic, keyed_messages(10))
    assert unique_topic in kafkajs("listTopics", strom_broker)

    kafkajs("deleteTopic", strom_broker, topic=unique_topic)

    assert unique_topic not in kafkajs("listTopics", strom_broker)


def test_restart_keeps_topics_configs_and_messages(fresh_broker, unique_topic):
    create_topic(fresh_broker, unique_topic, {"retention.ms": CREATED_RETENTION_MS})
    messages = keyed_messages()
    deliveries = produce(fresh_broker, unique_topic, messages)

    fresh_broker.restart()

    assert kafkajs("partitions", fresh_broker, topic=unique_topic) == list(range(PARTITION_COUNT))
    configs = kafkajs("describeConfigs", fresh_broker, topic=unique_topic)
    assert configs["retention.ms"] == {"value": CREATED_RETENTION_MS, "source": DYNAMIC_TOPIC_CONFIG}
    verify_round_trip(
        messages,
        read_with_confluent(fresh_broker.bootstrap, unique_topic),
        deliveries=deliveries,
        partition_for_key=java_partition,
    )


def order_events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "orderId": f"order-{index:04d}",
            "customerId": f"customer-{index % 7}",
            "items": [{"sku": f"sku-{index % 11}", "quantity": 1 + index % 3}],
            "total": round(9.99 * (1 + index % 5), 2),
        }
        for index in range(count)
    ]


def test_ecommerce_server_publishes_keyed_json_orders(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    orders = order_events(40)

    acknowledged = kafkajs("publishOrders", strom_broker, topic=unique_topic, orders=orders)
    consumed = read_with_confluent(strom_broker.bootstrap, unique_topic)

    by_position = {(record.partition, record.offset): record for record in consumed}
    assert len(consumed) == len(orders)
    for order, ack in zip(orders, acknowledged, strict=True):
        record = by_position[(ack["partition"], ack["offset"])]
        assert record.key == order["customerId"].encode()
        assert record.value is not None and json.loads(record.value) == order
        assert record.partition == java_partition(order["customerId"].encode())


def test_ecommerce_consumer_group_reads_all_messages(strom_broker, unique_topic):
    create_topic(strom_broker, unique_topic)
    messages = keyed_messages(100)
    deliveries = produce(strom_broker, unique_topic, messages)

    result = kafkajs(
        "consumeInGroup",
        strom_broker,
        topic=unique_topic,
        groupId=f"{unique_topic}-orders",
        count=len(messages),
        giveUpAfterMs=45_000,
    )
    consumed = [
        Record(
            partition=record["partition"],
            offset=record["offset"],
            key=unb64(record["key"]),
            value=unb64(record["value"]),
            headers=tuple((name, unb64(value) or b"") for name, value in record["headers"]),
            timestamp_ms=record["timestamp"],
        )
        for record in result["records"]
    ]

    verify_round_trip(messages, consumed, deliveries=deliveries, partition_for_key=java_partition)
