"""Failure handling: in-process retries, delayed retry topics and the dead-letter topic, on a real broker."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pydantic
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from confluent_kafka.admin import AdminClient
from pydantic import BaseModel

from strom.toolkit import retry
from strom.toolkit.consumer import ConsumerApp, consumer
from strom.toolkit.consumer import Message as Received
from strom.toolkit.publisher import Publisher
from strom.toolkit.retry import DLT_HEADERS, FailedRecord, NonRetryableError, RetryPolicy
from strom.toolkit.serialization import bytes_serializer

WAIT_S = 30.0
FAST = RetryPolicy(attempts=3, backoff_s=0.01, retry_topic_delays_s=())


class Payment(BaseModel):
    order_id: int
    amount: float


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait for ``condition``; the timeout only bounds a broken test, it is not what is tested."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def publish(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, Any]]) -> None:
    """Publish (key, value, headers) triples as raw bytes, to partition 0 unless the topic has one only."""
    with Publisher({"bootstrap.servers": bootstrap}, value_serializer=bytes_serializer) as publisher:
        for key, value, headers in records:
            publisher.publish(topic, value, key=key, headers=headers, partition=0)


@contextmanager
def running(app: ConsumerApp) -> Iterator[ConsumerApp]:
    app.start()
    try:
        yield app
    finally:
        app.stop()


def headers_of(record: Message) -> dict[str, bytes]:
    return {name: value for name, value in record.headers() or [] if value is not None}


def test_transient_failures_are_retried_in_process_then_succeed(
    bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    publish(bootstrap, topic, [(b"k", b'{"order_id": 1, "amount": 9.5}', None)])
    calls: list[int] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}", model=Payment)
    def flaky(message: Received[Payment]) -> None:
        calls.append(message.value.order_id)
        if len(calls) < 3:
            raise ConnectionError("payment API unavailable")

    with running(ConsumerApp(bootstrap, [flaky], FAST)):
        wait_until(lambda: len(calls) == 3, "three tries")
    assert calls == [1, 1, 1]
    assert read_topic(FAST.dlt_topic(topic)) == []


def test_poison_costs_one_retry_cycle_and_the_records_after_it_are_handled(
    bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    values = [b'{"order_id": 1, "amount": 1}', b'{"order_id": 666, "amount": 1}']
    values += [b'{"order_id": %d, "amount": 1}' % i for i in (2, 3)]
    publish(bootstrap, topic, [(None, value, None) for value in values])
    calls: list[int] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}", model=Payment)
    def pay(message: Received[Payment]) -> None:
        calls.append(message.value.order_id)
        if message.value.order_id == 666:
            raise RuntimeError("card declined by a bug")

    with running(ConsumerApp(bootstrap, [pay], FAST)):
        wait_until(lambda: 3 in calls, "the records after the poison")
    assert calls == [1, 666, 666, 666, 2, 3]  # three tries (one cycle), then it moved on
    [dead] = read_topic(FAST.dlt_topic(topic))
    assert dead.value() == values[1]
    assert headers_of(dead)[retry.DLT_EXCEPTION_FQCN] == b"RuntimeError"


def test_dead_letters_keep_the_original_bytes_and_carry_springs_headers(
    bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic, group = new_topic(), f"g-{uuid.uuid4().hex}"
    value = b'{"order_id": 7, "amount": 70}'
    publish(
        bootstrap,
        topic,
        [(None, b'{"order_id": 6, "amount": 1}', None), (b"order-7", value, {"trace": b"t-1"})],
    )
    calls: list[int] = []

    @consumer(topic, group_id=group, model=Payment)
    def refuse(message: Received[Payment]) -> None:
        calls.append(message.offset)
        if message.value.order_id == 7:
            try:
                raise KeyError("no such customer")
            except KeyError as cause:
                raise NonRetryableError("order 7 cannot be paid") from cause

    with running(ConsumerApp(bootstrap, [refuse], RetryPolicy(backoff_s=0.01))):
        wait_until(lambda: len(read_topic(retry.RetryPolicy().dlt_topic(topic))) == 1, "the dead letter")
    assert calls == [0, 1]  # non-retryable: no second try, no retry topic
    [dead] = read_topic(f"{topic}.DLT")
    headers = headers_of(dead)
    assert (dead.key(), dead.value(), headers["trace"]) == (b"order-7", value, b"t-1")
    assert set(DLT_HEADERS) <= set(headers)
    assert headers[retry.DLT_ORIGINAL_TOPIC] == topic.encode()
    assert headers[retry.DLT_ORIGINAL_PARTITION] == b"\x00\x00\x00\x00"
    assert headers[retry.DLT_ORIGINAL_OFFSET] == (1).to_bytes(8, "big")
    timestamp_type, timestamp = dead.timestamp()
    assert timestamp_type == TIMESTAMP_CREATE_TIME
    original_timestamp = int.from_bytes(headers[retry.DLT_ORIGINAL_TIMESTAMP], "big")
    assert len(headers[retry.DLT_ORIGINAL_TIMESTAMP]) == 8 and 0 < original_timestamp <= timestamp
    assert headers[retry.DLT_ORIGINAL_TIMESTAMP_TYPE] == b"CreateTime"
    assert headers[retry.DLT_ORIGINAL_CONSUMER_GROUP] == group.encode()
    assert headers[retry.DLT_EXCEPTION_FQCN] == b"strom.toolkit.retry.NonRetryableError"
    assert headers[retry.DLT_EXCEPTION_CAUSE_FQCN] == b"KeyError"
    assert headers[retry.DLT_EXCEPTION_MESSAGE] == b"order 7 cannot be paid"
    assert b"raise NonRetryableError" in headers[retry.DLT_EXCEPTION_STACKTRACE]


def test_broken_json_and_invalid_payloads_go_straight_to_the_dlt(
    bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    broken, invalid, good = (
        b'{"order_id": 1, "amount":',
        b'{"order_id": "x"}',
        b'{"order_id": 3, "amount": 3}',
    )
    publish(bootstrap, topic, [(None, broken, None), (None, invalid, None), (None, good, None)])
    calls: list[int] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}", model=Payment)
    def pay(message: Received[Payment]) -> None:
        calls.append(message.value.order_id)

    with running(ConsumerApp(bootstrap, [pay], RetryPolicy(backoff_s=0.01, dlt_suffix="-dlt"))):
        wait_until(lambda: calls == [3], "the good record")
        wait_until(lambda: len(read_topic(f"{topic}-dlt")) == 2, "two dead letters")
    dead = read_topic(f"{topic}-dlt")
    assert [record.value() for record in dead] == [broken, invalid]
    assert {headers_of(record)[retry.DLT_EXCEPTION_FQCN] for record in dead} == {
        b"pydantic_core._pydantic_core.ValidationError"
    }
    assert all(
        retry.RETRY_ATTEMPTS not in headers_of(record) for record in dead
    )  # never went to a retry topic


def test_retry_topics_redeliver_no_sooner_than_due_then_dead_letter(
    bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic(partitions=2)
    policy = RetryPolicy(attempts=1, retry_topic_delays_s=(1.0, 2.0))
    publish(bootstrap, topic, [(b"recovers", b"1", None), (b"never", b"2", None), (b"fine", b"3", None)])
    seen: list[tuple[bytes | None, str, int, float, int | None]] = []
    lock = threading.Lock()

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}")
    def flaky(message: Received[bytes]) -> None:
        with lock:
            due = retry.due_time_ms(message.headers)
            seen.append((message.key, message.topic, message.attempt, time.time() * 1000, due))
        if message.key == b"never" or (message.key == b"recovers" and message.attempt < 3):
            raise TimeoutError("downstream timed out")

    with running(ConsumerApp(bootstrap, [flaky], policy)):
        wait_until(lambda: len(read_topic(policy.dlt_topic(topic))) == 1, "the dead letter", timeout_s=45)
        wait_until(lambda: len(seen) == 7, "every delivery")

    by_key: dict[bytes | None, list[tuple[str, int, float, int | None]]] = {}
    for key, where, attempt, handled_ms, due in seen:
        by_key.setdefault(key, []).append((where, attempt, handled_ms, due))
    assert [d[:2] for d in by_key[b"fine"]] == [(topic, 1)]
    for key in (b"recovers", b"never"):
        deliveries = by_key[key]
        assert [d[:2] for d in deliveries] == [(topic, 1), (f"{topic}-retry-1", 2), (f"{topic}-retry-2", 3)]
        for _, _, handled_ms, due in deliveries[1:]:
            assert due is not None and handled_ms >= due  # never before it was due
    [dead] = read_topic(policy.dlt_topic(topic))
    headers = headers_of(dead)
    assert (dead.key(), dead.value(), dead.partition()) == (b"never", b"2", 0)
    assert headers[retry.DLT_ORIGINAL_TOPIC] == topic.encode()  # the true origin, not the last retry topic
    assert headers[retry.DLT_ORIGINAL_OFFSET] == (1).to_bytes(8, "big")
    assert retry.decode_int(headers[retry.RETRY_ATTEMPTS]) == 3
    assert headers[retry.DLT_EXCEPTION_FQCN] == b"TimeoutError"
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
    assert [len(metadata[name].partitions) for name in policy.topics_to_create(topic)] == [2, 2, 2]
    [moved] = [r for r in read_topic(f"{topic}-retry-1") if r.key() == b"never"]
    assert moved.partition() == 0  # kept its partition
    assert retry.decode_int(headers_of(moved)[retry.RETRY_ATTEMPTS]) == 2


# -- without a broker ----------------------------------------------------------------------------------------


def test_header_encodings_match_java() -> None:
    assert retry.encode_int32(3) == b"\x00\x00\x00\x03"
    assert retry.encode_int64(258) == b"\x00\x00\x00\x00\x00\x00\x01\x02"
    # BigInteger.toByteArray: minimal two's complement, a leading zero byte when the top bit would be set.
    assert retry.encode_big_integer(1) == b"\x01"
    assert retry.encode_big_integer(127) == b"\x7f"
    assert retry.encode_big_integer(128) == b"\x00\x80"
    assert retry.encode_big_integer(1_700_000_000_000) == bytes.fromhex("018bcfe56800")
    assert retry.decode_int(bytes.fromhex("018bcfe56800")) == 1_700_000_000_000
    # Spring Kafka 2.x wrote the attempt as a one-byte BigInteger, 3.x as a 4-byte int: both read.
    assert retry.delivery_attempt([(retry.RETRY_ATTEMPTS, b"\x02")]) == 2
    assert retry.delivery_attempt([(retry.RETRY_ATTEMPTS, b"\x00\x00\x00\x04")]) == 4
    assert retry.delivery_attempt([]) == 1


def test_dlt_header_names_are_springs() -> None:
    assert DLT_HEADERS == (
        "kafka_dlt-original-topic",
        "kafka_dlt-original-partition",
        "kafka_dlt-original-offset",
        "kafka_dlt-original-timestamp",
        "kafka_dlt-original-timestamp-type",
        "kafka_dlt-original-consumer-group",
        "kafka_dlt-exception-fqcn",
        "kafka_dlt-exception-cause-fqcn",
        "kafka_dlt-exception-message",
        "kafka_dlt-exception-stacktrace",
    )
    assert (retry.RETRY_ATTEMPTS, retry.RETRY_BACKOFF_TIMESTAMP, retry.RETRY_ORIGINAL_TIMESTAMP) == (
        "retry_topic-attempts",
        "retry_topic-backoff-timestamp",
        "retry_topic-original-timestamp",
    )


def test_policy_names_backoff_and_classification() -> None:
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=1.5, retry_topic_delays_s=[1, 5, 30])
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 1.5, 1.5]
    assert policy.topics_to_create("order.created") == [
        "order.created-retry-1",
        "order.created-retry-2",
        "order.created-retry-3",
        "order.created.DLT",
    ]
    custom = RetryPolicy(
        retry_topic_pattern="{topic}.retry.{n}", dlt_suffix="-dlt", non_retryable=(KeyError,)
    )
    assert custom.topics_to_create("t") == ["t.retry.1", "t.retry.2", "t-dlt"]
    with pytest.raises(pydantic.ValidationError) as invalid:
        Payment.model_validate_json(b"{}")
    for error in (NonRetryableError("x"), invalid.value, json.JSONDecodeError("x", "", 0), KeyError("k")):
        assert not custom.is_retryable(error)
    assert custom.is_retryable(TimeoutError()) and not RetryPolicy().is_retryable(NonRetryableError())
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(retry_topic_pattern="{topic}-again")


def test_a_dead_letter_replayed_and_failing_again_has_one_set_of_dlt_headers() -> None:
    first = retry.dead_letter_headers(_failed([("trace", b"t")]), RuntimeError("boom"))
    again = retry.dead_letter_headers(_failed(first), ValueError("still"))
    names = [name for name, _ in again]
    assert names.count(retry.DLT_EXCEPTION_FQCN) == 1 and ("trace", b"t") in again
    assert dict(again)[retry.DLT_EXCEPTION_FQCN] == b"ValueError"


def _failed(headers: list[tuple[str, bytes]]) -> FailedRecord:
    return FailedRecord("t", 0, 5, TIMESTAMP_CREATE_TIME, 1000, b"k", b"v", headers, "g", "t", 0)


def test_a_replayed_record_is_tracked_afresh_from_its_own_topic() -> None:
    stale = retry.retry_headers(_failed([]), RuntimeError("old"), delay_s=1.0)
    stale = [(name, value) for name, value in stale if name != retry.ORIGINAL_OFFSET]
    stale.append((retry.ORIGINAL_OFFSET, retry.encode_int64(99)))
    stale.append((retry.RETRY_ATTEMPTS, retry.encode_int32(3)))
    replayed = retry.retry_headers(_failed(stale), RuntimeError("new"), delay_s=1.0)
    assert [name for name, _ in replayed].count(retry.ORIGINAL_OFFSET) == 1
    assert dict(replayed)[retry.ORIGINAL_OFFSET] == retry.encode_int64(5)
    assert retry.decode_int(dict(replayed)[retry.RETRY_ATTEMPTS]) == 2
    assert dict(retry.dead_letter_headers(_failed(stale), RuntimeError()))[retry.DLT_ORIGINAL_OFFSET] == (
        retry.encode_int64(5)
    )
