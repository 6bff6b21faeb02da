"""pytest fixtures that give tests a real Strom broker (registered as the ``strom`` pytest11 plugin).

Fixtures:

``strom_server`` (session scope)
    An ``EmbeddedBroker`` started once for the test session and stopped at its end, with a temporary data
    directory. Tests share it and keep apart by using their own topics (``strom_topic``) and group ids.
``strom_bootstrap`` (session scope)
    Its ``bootstrap.servers`` string, ``"127.0.0.1:PORT"``.
``strom_topic`` (function scope)
    A factory: ``strom_topic(partitions=1, config=None)`` creates a topic whose name is unique to the test
    and the call, waits until the broker has created it, and returns the name.

The broker runs in a thread of the test process by default; ``--strom-mode=process`` (or the ini option
``strom_mode = process``) runs it as a ``strom serve`` child process instead. Example::

    def test_round_trip(strom_bootstrap, strom_topic):
        topic = strom_topic(partitions=3)
        producer = confluent_kafka.Producer({"bootstrap.servers": strom_bootstrap})
        ...
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Protocol, cast

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.embedded import EmbeddedBroker, Mode

#: How long creating a topic may take before the fixture gives up (a bound, not an expectation).
TOPIC_CREATE_TIMEOUT_S = 30.0
# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-]; leave room for the unique suffix.
_TOPIC_NAME_PREFIX_LIMIT = 180
_NOT_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")


class TopicFactory(Protocol):
    """The type of the ``strom_topic`` fixture."""

    def __call__(self, partitions: int = 1, config: Mapping[str, str] | None = None) -> str: ...


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strom-mode",
        choices=("thread", "process"),
        default=None,
        help="run the strom_server broker in a thread of the test process (default) or as a child process",
    )
    parser.addini("strom_mode", "default for --strom-mode: thread or process", default="thread")


@pytest.fixture(scope="session")
def strom_server(pytestconfig: pytest.Config) -> Iterator[EmbeddedBroker]:
    """A Strom broker shared by the whole test session."""
    mode = pytestconfig.getoption("--strom-mode") or pytestconfig.getini("strom_mode")
    if mode not in ("thread", "process"):
        raise pytest.UsageError(f"strom_mode must be 'thread' or 'process', not {mode!r}")
    with EmbeddedBroker(mode=cast(Mode, mode)) as broker:
        yield broker


@pytest.fixture(scope="session")
def strom_bootstrap(strom_server: EmbeddedBroker) -> str:
    """``bootstrap.servers`` of the session's broker."""
    return strom_server.bootstrap


@pytest.fixture
def strom_topic(strom_bootstrap: str, request: pytest.FixtureRequest) -> TopicFactory:
    """Create topics named after the test, unique across tests and runs; returns each new topic's name."""
    prefix = _NOT_TOPIC_CHARS.sub("-", request.node.name).strip("-")[:_TOPIC_NAME_PREFIX_LIMIT] or "topic"
    counter = itertools.count(1)
    admin = AdminClient({"bootstrap.servers": strom_bootstrap})

    def create(partitions: int = 1, config: Mapping[str, str] | None = None) -> str:
        name = f"{prefix}-{next(counter)}-{uuid.uuid4().hex[:8]}"
        create_topic(admin, name, partitions, config)
        return name

    return create


def create_topic(
    admin: AdminClient, name: str, partitions: int = 1, config: Mapping[str, str] | None = None
) -> None:
    """Create one topic and wait for the broker's answer; raises the client's KafkaException on failure."""
    new_topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))
    futures = admin.create_topics([new_topic], operation_timeout=TOPIC_CREATE_TIMEOUT_S)
    futures[name].result(TOPIC_CREATE_TIMEOUT_S)
