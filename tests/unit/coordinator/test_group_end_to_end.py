"""The coordinator's wiring, proven with a real client against a real ``strom serve`` process.

Two confluent-kafka consumers of one group split a six-partition topic, consume it and commit; after a
broker restart a new member of the group resumes exactly after the commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.process import StromProcess

TOPIC = "pay.completed"
GROUP = "notify-service"
PARTITIONS = 6
PER_PARTITION = 5
#: Bounds on waiting for the client, not expectations of speed.
WAIT_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[StromProcess]:
    process = StromProcess(tmp_path / "data").start()
    yield process
    if process.running:
        process.stop()


def consumer(bootstrap: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 300,
        }
    )


def produce_round(bootstrap: str, label: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(PARTITIONS):
        for n in range(PER_PARTITION):
            producer.produce(TOPIC, value=f"{label}-{partition}-{n}".encode(), partition=partition)
    assert producer.flush(WAIT_S) == 0


def poll_until(consumers: list[Consumer], done: Callable[[], bool], sink: list[tuple[int, Message]]) -> None:
    """Poll every consumer in turn, collecting (consumer index, message), until `done()` holds."""
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, "the group did not get there in time"
        for index, c in enumerate(consumers):
            message = c.poll(0.1)
            if message is not None:
                assert message.error() is None, message.error()
                sink.append((index, message))


def assigned(c: Consumer) -> set[int]:
    return {tp.partition for tp in c.assignment()}


def test_group_splits_commits_and_resumes_after_restart(broker: StromProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])[TOPIC].result(WAIT_S)
    members = [consumer(broker.bootstrap), consumer(broker.bootstrap)]
    for member in members:
        member.subscribe([TOPIC])
    consumed: list[tuple[int, Message]] = []
    poll_until(members, lambda: all(assigned(m) for m in members), consumed)
    first, second = (assigned(m) for m in members)
    assert first.isdisjoint(second) and first | second == set(range(PARTITIONS))

    produce_round(broker.bootstrap, "before")
    poll_until(members, lambda: len(consumed) == PARTITIONS * PER_PARTITION, consumed)
    for index, message in consumed:
        assert message.partition() in assigned(members[index])  # each reads only its own partitions
    for member in members:
        member.commit(asynchronous=False)
        member.close()

    broker.restart()
    produce_round(broker.bootstrap, "after")
    successor = consumer(broker.bootstrap)
    try:
        committed = successor.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=WAIT_S)
        assert {tp.partition: tp.offset for tp in committed} == dict.fromkeys(
            range(PARTITIONS), PER_PARTITION
        )
        successor.subscribe([TOPIC])
        resumed: list[tuple[int, Message]] = []
        poll_until([successor], lambda: len(resumed) == PARTITIONS * PER_PARTITION, resumed)
        assert {message.value().decode().split("-")[0] for _, message in resumed} == {"after"}
        assert min(message.offset() for _, message in resumed) == PER_PARTITION
    finally:
        successor.close()
