"""The blocking and asyncio publishers against a real broker, and the serializers they use."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pydantic
import pytest
from confluent_kafka import KafkaError, Message

from strom.testing.process import StromProcess
from strom.toolkit.events import Event
from strom.toolkit.publisher import (
    AsyncPublisher,
    Delivery,
    Publisher,
    PublishError,
    producer_config,
)
from strom.toolkit.serialization import bytes_serializer, json_deserializer, json_serializer

NewTopic = Callable[..., str]
ReadTopic = Callable[[str], list[Message]]

# Above librdkafka's default message.max.bytes (1000000) and the broker's (1048588).
TOO_LARGE = b"x" * 1_200_000
# Long enough that nothing would be sent within a test unless a flush forces it out.
LINGER_FOREVER = {"linger.ms": 120_000}
# Purged by close(): still in librdkafka's queue, or sent but unanswered.
PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}


class OrderPlaced(pydantic.BaseModel):
    order_id: str
    total_cents: int
    placed_at: datetime


@dataclasses.dataclass
class Shipment:
    order_id: str
    parcel_ids: list[int]


# -- serializers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param({"a": 1, "b": [True, None]}, b'{"a":1,"b":[true,null]}', id="dict"),
        pytest.param([1, "é"], '[1,"é"]'.encode(), id="list-utf8"),
        pytest.param(Shipment("o-1", [1, 2]), b'{"order_id":"o-1","parcel_ids":[1,2]}', id="dataclass"),
        pytest.param(
            OrderPlaced(order_id="o-1", total_cents=5, placed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
            b'{"order_id":"o-1","total_cents":5,"placed_at":"2026-01-02T03:04:05Z"}',
            id="pydantic",
        ),
        pytest.param(uuid.UUID(int=1), b'"00000000-0000-0000-0000-000000000001"', id="uuid"),
        pytest.param(b"\x00raw", b"\x00raw", id="bytes-pass-through"),
    ],
)
def test_json_serializer(value: object, expected: bytes) -> None:
    assert json_serializer(value) == expected


def test_json_deserializer_inverts_the_serializer_and_keeps_tombstones() -> None:
    assert json_deserializer(json_serializer({"a": [1, "é"]})) == {"a": [1, "é"]}
    assert json_deserializer(None) is None


def test_bytes_serializer() -> None:
    assert bytes_serializer(b"k") == b"k"
    assert bytes_serializer(bytearray(b"k")) == b"k"
    assert bytes_serializer("clé") == "clé".encode()
    assert bytes_serializer(None) is None
    with pytest.raises(TypeError, match="int"):
        bytes_serializer(7)  # type: ignore[arg-type]


# -- configuration -------------------------------------------------------------------------------------------


def test_defaults_sit_under_the_users_config() -> None:
    config = producer_config({"linger.ms": 50, "bootstrap.servers": "a:1"}, None)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["client.id"] == "strom-publisher"
    assert config["linger.ms"] == 50
    assert config["bootstrap.servers"] == "a:1"
    assert producer_config({"acks": 1, "bootstrap.servers": "a:1"}, "b:2")["acks"] == 1
    assert producer_config({"bootstrap.servers": "a:1"}, "b:2")["bootstrap.servers"] == "b:2"


def test_a_publisher_needs_bootstrap_servers() -> None:
    with pytest.raises(ValueError, match="bootstrap.servers"):
        Publisher()


# -- the blocking publisher ----------------------------------------------------------------------------------


def test_publish_waits_for_the_ack_and_says_where_the_record_is(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    placed_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        first = publisher.publish(topic, {"n": 1}, key="order-1", headers={"trace-id": "t1", "bin": b"\x00"})
        second = publisher.publish(
            topic, OrderPlaced(order_id="o", total_cents=3, placed_at=placed_at), key=b"order-2"
        )

    assert isinstance(first, Delivery)
    assert (first.topic, first.partition, first.offset) == (topic, 0, 0)
    assert (second.topic, second.partition, second.offset) == (topic, 0, 1)
    records = read_topic(topic)
    assert [(record.key(), record.value()) for record in records] == [
        (b"order-1", b'{"n":1}'),
        (b"order-2", b'{"order_id":"o","total_cents":3,"placed_at":"2026-01-02T03:04:05Z"}'),
    ]
    assert records[0].headers() == [("trace-id", b"t1"), ("bin", b"\x00")]
    assert [record.timestamp()[1] for record in records] == [first.timestamp, second.timestamp]


def test_headers_as_pairs_keep_order_repeats_and_null_values(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    headers = [("hop", "a"), ("empty", None), ("hop", b"b")]
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        publisher.publish(topic, 1, headers=headers)

    [record] = read_topic(topic)
    assert record.headers() == [("hop", b"a"), ("empty", None), ("hop", b"b")]


def test_none_is_a_tombstone_and_custom_serializers_apply(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    with Publisher(
        bootstrap_servers=bootstrap,
        value_serializer=bytes_serializer,
        key_serializer=lambda key: f"k{key}".encode(),
    ) as publisher:
        publisher.publish(topic, "plain text", key=1)
        publisher.publish(topic, None, key=2)
        publisher.publish(topic, b"unkeyed")

    assert [(record.key(), record.value()) for record in read_topic(topic)] == [
        (b"k1", b"plain text"),
        (b"k2", None),
        (None, b"unkeyed"),
    ]


def test_keys_keep_a_partition_and_partition_can_be_chosen(bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic(partitions=4)
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        by_key = {key: {publisher.publish(topic, i, key=key).partition for i in range(3)} for key in "abcdef"}
        chosen = [publisher.publish(topic, "x", partition=partition).partition for partition in (3, 1)]

    assert all(len(partitions) == 1 for partitions in by_key.values())
    assert chosen == [3, 1]


def test_publish_async_queues_many_then_each_future_gives_its_delivery(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        futures = [publisher.publish_async(topic, {"n": n}) for n in range(200)]
        assert not futures[0].cancel(), "a produced record cannot be taken back"
        deliveries = [future.result(timeout=10) for future in futures]

    assert [delivery.offset for delivery in deliveries] == list(range(200))
    assert [json_deserializer(record.value()) for record in read_topic(topic)] == [
        {"n": n} for n in range(200)
    ]


def test_one_publisher_is_shared_by_threads(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    failures: list[BaseException] = []
    with Publisher(bootstrap_servers=bootstrap) as publisher:

        def publish_some(thread: int) -> None:
            try:
                for n in range(25):
                    publisher.publish(topic, {"thread": thread, "n": n}, key=str(thread))
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=publish_some, args=(thread,)) for thread in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert failures == []
    values = [json_deserializer(record.value()) for record in read_topic(topic)]
    for thread in range(4):
        assert [value["n"] for value in values if value["thread"] == thread] == list(range(25))


@pytest.mark.parametrize(
    "config",
    [
        pytest.param({}, id="refused-by-librdkafka"),
        pytest.param({"message.max.bytes": 5_000_000}, id="refused-by-the-broker"),
    ],
)
def test_a_too_large_record_is_a_publish_error_that_will_not_pass_on_retry(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic, config: dict
) -> None:
    topic = new_topic()
    with Publisher(config, bootstrap_servers=bootstrap) as publisher:
        with pytest.raises(PublishError) as raised:
            publisher.publish(topic, TOO_LARGE)
        failed = publisher.publish_async(topic, TOO_LARGE).exception(timeout=10)
        publisher.publish(topic, b"small")

    assert raised.value.code == KafkaError.MSG_SIZE_TOO_LARGE
    assert raised.value.retriable is False
    assert isinstance(failed, PublishError)
    assert failed.code == KafkaError.MSG_SIZE_TOO_LARGE
    assert [record.value() for record in read_topic(topic)] == [b"small"]


def test_close_flushes_what_is_queued(bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic) -> None:
    topic = new_topic()
    publisher = Publisher(LINGER_FOREVER, bootstrap_servers=bootstrap).start()
    futures = [publisher.publish_async(topic, n) for n in range(20)]
    publisher.close()

    assert [future.result(timeout=0).offset for future in futures] == list(range(20))
    assert len(read_topic(topic)) == 20


def test_flush_waits_for_queued_records(bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic()
    with Publisher(LINGER_FOREVER, bootstrap_servers=bootstrap) as publisher:
        futures = [publisher.publish_async(topic, n) for n in range(5)]
        assert publisher.flush() == 0
        assert all(future.done() for future in futures)


def test_a_closed_publisher_refuses_to_publish(bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic()
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        publisher.publish(topic, 1)
    publisher.close()  # closing twice is harmless

    with pytest.raises(RuntimeError, match="closed"):
        publisher.publish(topic, 2)


def test_publish_starts_the_publisher_on_first_use(bootstrap: str, new_topic: NewTopic) -> None:
    publisher = Publisher(bootstrap_servers=bootstrap)
    try:
        assert publisher.publish(new_topic(), 1).offset == 0
    finally:
        publisher.close()


def test_a_stopped_broker_means_a_timeout_and_close_fails_what_is_left(tmp_path: Path) -> None:
    with StromProcess(tmp_path / "data") as own_broker:
        publisher = Publisher(bootstrap_servers=own_broker.bootstrap).start()
        publisher.publish("before-stop", 1)
        own_broker.stop()

        with pytest.raises(TimeoutError, match="may still be delivered"):
            publisher.publish("before-stop", 2, timeout_s=0.5)
        pending = publisher.publish_async("before-stop", 3)
        publisher.close(timeout_s=0.5)

    error = pending.exception(timeout=0)
    assert isinstance(error, PublishError)
    assert error.code in PURGED


# -- the asyncio publisher -----------------------------------------------------------------------------------


def test_async_publish_round_trip(bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic) -> None:
    topic = new_topic()
    event = Event(type="shop.order.placed", data={"order_id": "o-9"}, source="/shop", subject="o-9")

    async def publish() -> tuple[Delivery, Delivery]:
        async with AsyncPublisher(bootstrap_servers=bootstrap) as publisher:
            plain = await publisher.publish(topic, Shipment("o-9", [7]), key="o-9", headers={"h": "v"})
            evented = await publisher.publish_event(topic, event, key="o-9")
            return plain, evented

    plain, evented = asyncio.run(publish())

    assert (plain.offset, evented.offset) == (0, 1)
    first, second = read_topic(topic)
    assert (first.key(), first.value(), first.headers()) == (
        b"o-9",
        b'{"order_id":"o-9","parcel_ids":[7]}',
        [("h", b"v")],
    )
    assert Event.from_kafka(second.headers(), second.value()) == event


def test_async_publishes_concurrently_from_many_tasks(bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic()

    async def publish() -> list[Delivery]:
        async with AsyncPublisher(bootstrap_servers=bootstrap) as publisher:
            return await asyncio.gather(*(publisher.publish(topic, n) for n in range(100)))

    assert sorted(delivery.offset for delivery in asyncio.run(publish())) == list(range(100))


def test_async_too_large_record_is_a_publish_error(bootstrap: str, new_topic: NewTopic) -> None:
    topic = new_topic()

    async def publish() -> None:
        async with AsyncPublisher({"message.max.bytes": 5_000_000}, bootstrap_servers=bootstrap) as publisher:
            await publisher.publish(topic, TOO_LARGE)

    with pytest.raises(PublishError) as raised:
        asyncio.run(publish())
    assert raised.value.code == KafkaError.MSG_SIZE_TOO_LARGE


def test_async_close_flushes_what_is_queued(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()

    async def publish() -> list[Delivery]:
        publisher = await AsyncPublisher(LINGER_FOREVER, bootstrap_servers=bootstrap).start()
        tasks = [asyncio.create_task(publisher.publish(topic, n)) for n in range(10)]
        await asyncio.sleep(0)  # every task queues its record, then waits for the ack
        await publisher.close()
        return [task.result() for task in tasks]

    assert [delivery.offset for delivery in asyncio.run(publish())] == list(range(10))
    assert len(read_topic(topic)) == 10


def test_async_stopped_broker_means_a_timeout(tmp_path: Path) -> None:
    async def publish(own_broker: StromProcess) -> None:
        async with AsyncPublisher(bootstrap_servers=own_broker.bootstrap, timeout_s=0.5) as publisher:
            await publisher.publish("before-stop", 1, timeout_s=10)
            own_broker.stop()
            await publisher.publish("before-stop", 2)

    with StromProcess(tmp_path / "data") as own_broker, pytest.raises(TimeoutError, match="may still be"):
        asyncio.run(publish(own_broker))
