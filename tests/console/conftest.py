"""A real Strom broker for the console's tests, and topics of one's own on it.

``broker`` is one ``strom serve`` process per test module (tests keep apart by using their own topics and
groups); ``bootstrap`` is its address; ``new_topic(partitions=1)`` creates a topic named after the test and
returns its name, once every partition has a leader.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.process import StromProcess

CLIENT_TIMEOUT_S = 10.0
# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-]; leave room for the suffix.
_TOPIC_NAME_PREFIX_LIMIT = 100
_NOT_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")

NewTopicFactory = Callable[..., str]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    """One broker process for the whole test module."""
    process = StromProcess(tmp_path_factory.mktemp("strom") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def bootstrap(broker: StromProcess) -> str:
    return broker.bootstrap


@pytest.fixture
def new_topic(request: pytest.FixtureRequest, bootstrap: str) -> NewTopicFactory:
    """``new_topic(partitions=1, name=None, configs=None)``: create a topic no other test uses; its name."""
    prefix = _NOT_TOPIC_CHARS.sub("-", request.node.name).strip("-")[:_TOPIC_NAME_PREFIX_LIMIT] or "topic"
    counter = itertools.count(1)
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(partitions: int = 1, *, name: str | None = None, configs: dict[str, str] | None = None) -> str:
        topic = name or f"{prefix}-{next(counter)}-{uuid.uuid4().hex[:8]}"
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs or {})],
            request_timeout=CLIENT_TIMEOUT_S,
        )
        futures[topic].result(timeout=CLIENT_TIMEOUT_S)
        _await_leaders(admin, topic, partitions)
        return topic

    return create


def _await_leaders(admin: AdminClient, topic: str, partitions: int) -> None:
    """Wait until the metadata names a leader for each partition, so producing right away succeeds."""
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while True:
        try:
            metadata = admin.list_topics(topic, timeout=CLIENT_TIMEOUT_S).topics.get(topic)
        except KafkaException:
            metadata = None
        if (
            metadata is not None
            and len(metadata.partitions) == partitions
            and all(partition.leader >= 0 for partition in metadata.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic '{topic}' has no leader for every partition")
        time.sleep(0.05)
