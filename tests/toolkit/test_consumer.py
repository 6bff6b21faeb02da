"""The consumer framework against a real broker: typed messages, order, commits, rebalances, slow handlers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import TopicPartition
from pydantic import BaseModel

from strom.toolkit.consumer import CONSUMER_DEFAULTS, Consumer, ConsumerApp, Message, consumer
from strom.toolkit.events import Event
from strom.toolkit.publisher import Publisher
from strom.toolkit.retry import RetryPolicy
from strom.toolkit.serialization import bytes_serializer

WAIT_S = 30.0
# Plain in-process retries only: these tests are about consuming, not about retry topics.
NO_RETRY_TOPICS = RetryPolicy(backoff_s=0.01, retry_topic_delays_s=(), create_topics=False)


class OrderCreated(BaseModel):
    order_id: int
    amount: float


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Wait for ``condition``; the timeout only bounds a broken test, it is not what is tested."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def publish(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes, int | None]], **kw: Any
) -> None:
    """Publish (key, value, partition) triples as raw bytes."""
    with Publisher({"bootstrap.servers": bootstrap}, value_serializer=bytes_serializer) as publisher:
        for key, value, partition in records:
            publisher.publish(topic, value, key=key, partition=partition, **kw)


def committed(bootstrap: str, group_id: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets of ``topic`` (-1001 where none)."""
    reader = KafkaConsumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        offsets = reader.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in offsets]
    finally:
        reader.close()


@contextmanager
def running(app: ConsumerApp) -> Iterator[ConsumerApp]:
    app.start()
    try:
        yield app
    finally:
        app.stop()


def test_decorated_handler_gets_validated_events_in_partition_order(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic(partitions=3)
    events = [
        Event(type="order.created", data={"order_id": i, "amount": i * 1.5}, source="/orders")
        for i in range(30)
    ]
    with Publisher({"bootstrap.servers": bootstrap}) as publisher:
        for index, event in enumerate(events):
            publisher.publish_event(topic, event, key=f"order-{index % 7}".encode())
    seen: list[Message[OrderCreated]] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}", model=OrderCreated)
    def on_order(message: Message[OrderCreated]) -> None:
        seen.append(message)

    with running(ConsumerApp(bootstrap, [on_order], NO_RETRY_TOPICS)):
        wait_until(lambda: len(seen) == 30, "30 records")

    by_partition: dict[int, list[int]] = defaultdict(list)
    for message in seen:
        by_partition[message.partition].append(message.offset)
        assert isinstance(message.value, OrderCreated)
        assert message.event is not None and message.event.type == "order.created"
        assert message.event.data["order_id"] == message.value.order_id
        assert message.raw_value is not None and message.attempt == 1
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))
    assert sorted(m.value.order_id for m in seen) == list(range(30))
    assert {m.event.id for m in seen if m.event} == {e.id for e in events}


def test_class_form_with_async_handler_and_dict_model(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic()
    publish(bootstrap, topic, [(b"k", b'{"n": %d}' % i, None) for i in range(5)])
    seen: list[dict[str, int]] = []

    class Counter(Consumer):
        model = dict[str, int]

        def get_topic(self) -> str:
            return topic

        def get_group_id(self) -> str:
            return "counter-service"

        async def handle_message(self, message: Message[dict[str, int]]) -> None:
            await asyncio.sleep(0)
            seen.append(message.value)

    with running(ConsumerApp({"bootstrap.servers": bootstrap}, [Counter], NO_RETRY_TOPICS)):
        wait_until(lambda: len(seen) == 5, "5 records")
    assert seen == [{"n": i} for i in range(5)]
    assert committed(bootstrap, "counter-service", topic, 1) == [5]


def test_handlers_of_one_group_share_it_and_one_topic_cannot_have_two(bootstrap: str, new_topic: Any) -> None:
    first, second = new_topic(), new_topic()
    publish(bootstrap, first, [(None, b"a", None)])
    publish(bootstrap, second, [(None, b"b", None)])
    seen: list[tuple[str, bytes]] = []
    handlers = [
        consumer(t, group_id="shared")(lambda m: seen.append((m.topic, m.value))) for t in (first, second)
    ]
    with running(ConsumerApp(bootstrap, handlers, NO_RETRY_TOPICS)):
        wait_until(lambda: len(seen) == 2, "both topics")
    assert sorted(seen) == sorted([(first, b"a"), (second, b"b")])

    with pytest.raises(ValueError, match="two handlers"):
        ConsumerApp(bootstrap, [consumer(first, group_id="x")(print), consumer(first, group_id="x")(print)])


def test_concurrency_runs_keys_in_parallel_and_each_key_in_order(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic()
    keys = [b"a", b"b", b"c", b"d"]
    publish(bootstrap, topic, [(key, b"%d" % seq, None) for seq in range(5) for key in keys])
    seen: dict[bytes, list[int]] = defaultdict(list)
    active: set[bytes] = set()
    most_at_once = 0
    lock = threading.Lock()

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}", concurrency=4)
    def slow(message: Message[bytes]) -> None:
        nonlocal most_at_once
        assert message.key is not None
        with lock:
            assert message.key not in active, "two records of one key at once"
            active.add(message.key)
            most_at_once = max(most_at_once, len(active))
        time.sleep(0.05)
        with lock:
            active.discard(message.key)
            seen[message.key].append(int(message.value))

    with running(ConsumerApp(bootstrap, [slow], NO_RETRY_TOPICS)):
        wait_until(lambda: sum(map(len, seen.values())) == 20, "20 records")
    assert all(seen[key] == list(range(5)) for key in keys)
    assert most_at_once > 1


def test_backlog_pauses_and_resumes_without_losing_or_repeating(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic()
    publish(bootstrap, topic, [(None, b"%d" % i, None) for i in range(60)])
    offsets: list[int] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}")
    def record(message: Message[bytes]) -> None:
        time.sleep(0.002)
        offsets.append(message.offset)

    with running(ConsumerApp(bootstrap, [record], NO_RETRY_TOPICS, max_buffered_per_partition=4)):
        wait_until(lambda: len(offsets) >= 60, "60 records")
    assert offsets == list(range(60))


_KILLED_APP = """
import sys, time
from pathlib import Path
from strom.toolkit.consumer import ConsumerApp, consumer
from strom.toolkit.retry import RetryPolicy

bootstrap, topic, group, log_path = sys.argv[1:5]
log = Path(log_path)

@consumer(topic, group_id=group)
def handle(message):
    with log.open("a") as out:
        out.write(f"start {message.offset}\\n")
    if message.offset == 3:
        time.sleep(3600)  # killed here, mid-handler

config = {"bootstrap.servers": bootstrap, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
ConsumerApp(config, [handle], RetryPolicy(retry_topic_delays_s=(), create_topics=False)).run()
"""


def test_a_record_whose_handler_was_killed_is_redelivered(
    bootstrap: str, new_topic: Any, tmp_path: Path
) -> None:
    topic, group = new_topic(), f"g-{uuid.uuid4().hex}"
    publish(bootstrap, topic, [(None, b"%d" % i, None) for i in range(6)])
    log_path = tmp_path / "handled.log"
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(_KILLED_APP))
    child = subprocess.Popen([sys.executable, str(script), bootstrap, topic, group, str(log_path)])
    try:
        wait_until(lambda: log_path.exists() and "start 3" in log_path.read_text(), "the child to reach 3")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert log_path.read_text().split("\n")[:4] == ["start 0", "start 1", "start 2", "start 3"]
    resume_from = committed(bootstrap, group, topic, 1)[0]
    assert resume_from <= 3  # the record in the killed handler was never committed

    seen: list[int] = []
    handler = consumer(topic, group_id=group)(lambda m: seen.append(m.offset))
    # The killed member holds its partition until its session expires; keep that short.
    config = {"bootstrap.servers": bootstrap, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
    with running(ConsumerApp(config, [handler], NO_RETRY_TOPICS)):
        wait_until(lambda: 5 in seen, "the rest")
    assert seen[0] == max(resume_from, 0) and 3 in seen
    assert seen == list(range(seen[0], 6))
    assert committed(bootstrap, group, topic, 1) == [6]


def test_revoked_partitions_commit_what_their_handlers_finished(bootstrap: str, new_topic: Any) -> None:
    topic, group = new_topic(partitions=4), f"g-{uuid.uuid4().hex}"
    # Enough work per partition (5 s) that the second app joins while the first is still at it.
    publish(bootstrap, topic, [(None, b"%d" % i, p) for p in range(4) for i in range(10)])
    handled: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def make(name: str) -> Consumer:
        @consumer(topic, group_id=group)
        def slow(message: Message[bytes]) -> None:
            time.sleep(0.5)
            with lock:
                handled.append((name, message.partition, message.offset))

        return slow

    first = ConsumerApp(bootstrap, [make("first")], NO_RETRY_TOPICS)
    second = ConsumerApp(bootstrap, [make("second")], NO_RETRY_TOPICS)
    with running(first):
        wait_until(lambda: len(handled) >= 4, "the first app to be busy")
        with running(second):
            wait_until(lambda: len(handled) >= 40, "all 40 records")
            names = {name for name, _, _ in handled}
    records = [(partition, offset) for _, partition, offset in handled]
    assert sorted(records) == [
        (p, i) for p in range(4) for i in range(10)
    ]  # none twice: revocation committed
    assert names == {"first", "second"}  # partitions really moved
    assert committed(bootstrap, group, topic, 4) == [10, 10, 10, 10]


def test_a_handler_slower_than_max_poll_interval_keeps_its_partitions(
    bootstrap: str, new_topic: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topic, group = new_topic(), f"g-{uuid.uuid4().hex}"
    publish(bootstrap, topic, [(None, b"0", None), (None, b"1", None)])
    seen: list[int] = []
    config = {
        "bootstrap.servers": bootstrap,
        "max.poll.interval.ms": 6000,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    }

    @consumer(topic, group_id=group)
    def slow(message: Message[bytes]) -> None:
        if message.offset == 0:
            time.sleep(8.0)  # longer than max.poll.interval.ms
        seen.append(message.offset)

    caplog.set_level(logging.INFO, logger="strom.toolkit.consumer")
    app = ConsumerApp(config, [slow], NO_RETRY_TOPICS)
    with running(app):
        wait_until(lambda: seen == [0, 1], "both records")
        rebalances = [
            r.getMessage() for r in caplog.records if "revoked" in r.getMessage() or "lost" in r.getMessage()
        ]
    assert rebalances == []
    assert seen == [0, 1]
    assert committed(bootstrap, group, topic, 1) == [2]


def test_run_async_runs_async_handlers_on_the_callers_loop(bootstrap: str, new_topic: Any) -> None:
    topic = new_topic()
    publish(bootstrap, topic, [(None, b"x", None), (None, b"y", None)])
    loops: list[asyncio.AbstractEventLoop] = []
    values: list[bytes] = []

    @consumer(topic, group_id=f"g-{uuid.uuid4().hex}")
    async def on_value(message: Message[bytes]) -> None:
        loops.append(asyncio.get_running_loop())
        values.append(message.value)

    async def main() -> asyncio.AbstractEventLoop:
        task = asyncio.create_task(ConsumerApp(bootstrap, [on_value], NO_RETRY_TOPICS).run_async())
        while len(values) < 2:
            assert not task.done()
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return asyncio.get_running_loop()

    loop = asyncio.run(main())
    assert values == [b"x", b"y"]
    assert loops == [loop, loop]


def test_defaults_are_the_documented_ones() -> None:
    assert CONSUMER_DEFAULTS["enable.auto.commit"] is False
    assert CONSUMER_DEFAULTS["auto.offset.reset"] == "earliest"
    assert CONSUMER_DEFAULTS["isolation.level"] == "read_committed"
    assert CONSUMER_DEFAULTS["partition.assignment.strategy"] == "cooperative-sticky"
    assert (CONSUMER_DEFAULTS["session.timeout.ms"], CONSUMER_DEFAULTS["heartbeat.interval.ms"]) == (
        30000,
        3000,
    )
