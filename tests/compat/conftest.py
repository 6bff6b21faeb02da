"""Real Strom broker processes for the compatibility tests.

``strom_broker`` is shared by a test module (tests keep apart by using their own topics); ``fresh_broker`` is
a broker of one's own, for tests that restart, kill or reconfigure it; ``group_broker`` and
``own_group_broker`` are the same with the consumer-group tests' settings. ``unique_topic`` is a topic name no
other test uses, and ``new_topic_name`` makes more of them.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from group_scenario import start_group_broker

from strom.testing.process import StromProcess

# Kafka topic names: at most 249 characters of [a-zA-Z0-9._-]; leave room for the suffix.
_TOPIC_NAME_PREFIX_LIMIT = 180
_NOT_TOPIC_CHARS = re.compile(r"[^a-zA-Z0-9._-]+")


def _start_broker(base: Path) -> StromProcess:
    return StromProcess(base / "data").start()


@pytest.fixture(scope="module")
def strom_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    """One broker process for the whole test module."""
    broker = _start_broker(tmp_path_factory.mktemp("strom"))
    yield broker
    broker.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[StromProcess]:
    """A broker process for this test alone, stopped afterwards even if the test killed or restarted it."""
    broker = _start_broker(tmp_path)
    yield broker
    if broker.running:
        broker.stop()


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    """One broker with the consumer-group test settings (see group_scenario) for the whole module."""
    broker = start_group_broker(tmp_path_factory.mktemp("groups"))
    yield broker
    broker.stop()


@pytest.fixture
def own_group_broker(tmp_path: Path) -> Iterator[StromProcess]:
    """A group-test broker for this test alone (it restarts or kills it)."""
    broker = start_group_broker(tmp_path)
    yield broker
    if broker.running:
        broker.stop()


@pytest.fixture
def new_topic_name(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Make topic names, named after the test, unique across tests, modules and runs on one broker."""
    prefix = _NOT_TOPIC_CHARS.sub("-", request.node.name).strip("-")[:_TOPIC_NAME_PREFIX_LIMIT] or "topic"
    counter = itertools.count(1)

    def make() -> str:
        return f"{prefix}-{next(counter)}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def unique_topic(new_topic_name: Callable[[], str]) -> str:
    """A topic name no other test uses."""
    return new_topic_name()
