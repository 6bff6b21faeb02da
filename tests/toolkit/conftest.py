"""A real Strom broker for the toolkit's tests, and topics of their own on it.

``broker`` is the embedded test broker (`strom.testing.embedded`, the one the pytest plugin's ``strom_server``
fixture offers to services) as a child process, one per test module, so modules never share groups; tests
keep apart by creating their own topics with ``new_topic``. ``read_topic`` reads a topic back from the
beginning, without a consumer group, so a test can check exactly what was written.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator, Mapping

import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.embedded import EmbeddedBroker

# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-]; leave room for the suffix.
_TOPIC_NAME_PREFIX_LIMIT = 180
_NOT_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")
_ADMIN_TIMEOUT_S = 15.0
_READ_TIMEOUT_S = 15.0

NewTopicFactory = Callable[..., str]
ReadTopic = Callable[[str], list[Message]]


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One broker for the whole test module, stopped (and its data removed) at its end."""
    with EmbeddedBroker(mode="process") as embedded:
        yield embedded


@pytest.fixture(scope="module")
def bootstrap(broker: EmbeddedBroker) -> str:
    """``bootstrap.servers`` for the module's broker."""
    return broker.bootstrap


@pytest.fixture
def new_topic(bootstrap: str, request: pytest.FixtureRequest) -> NewTopicFactory:
    """Create topics named after the test and unique across runs: ``new_topic(partitions=1, config=None)``.

    Topics are created through confluent-kafka's AdminClient, as an application would, and exist (with all
    their partitions) when the call returns.
    """
    prefix = _NOT_TOPIC_CHARS.sub("-", request.node.name).strip("-")[:_TOPIC_NAME_PREFIX_LIMIT] or "topic"
    counter = itertools.count(1)

    def create(partitions: int = 1, *, config: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{next(counter)}-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))],
            operation_timeout=_ADMIN_TIMEOUT_S,
            request_timeout=_ADMIN_TIMEOUT_S,
        )
        futures[name].result(timeout=_ADMIN_TIMEOUT_S)
        return name

    return create


@pytest.fixture
def read_topic(bootstrap: str) -> ReadTopic:
    """Read every record of a topic, from each partition's start to its high watermark, in offset order."""

    def read(topic: str) -> list[Message]:
        consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"toolkit-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=_READ_TIMEOUT_S)
            ends: dict[int, int] = {}
            starts: list[TopicPartition] = []
            for partition in metadata.topics[topic].partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=_READ_TIMEOUT_S
                )
                if high > low:
                    ends[partition] = high
                    starts.append(TopicPartition(topic, partition, low))
            consumer.assign(starts)
            records: list[Message] = []
            pending = set(ends)
            while pending:
                message = consumer.poll(_READ_TIMEOUT_S)
                if message is None:
                    raise TimeoutError(f"{topic}: no record within {_READ_TIMEOUT_S:g} s, still {pending}")
                if message.error() is not None:
                    raise RuntimeError(f"reading {topic}: {message.error()}")
                records.append(message)
                if message.offset() + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
            return sorted(records, key=lambda record: (record.partition(), record.offset()))
        finally:
            consumer.close()

    return read
