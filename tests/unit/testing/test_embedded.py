"""EmbeddedBroker in both modes, and the pytest plugin's fixtures run through pytester."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing.embedded import EmbeddedBroker, EmbeddedBrokerError
from strom.testing.pytest_plugin import create_topic

pytest_plugins = ["pytester"]

CLIENT_TIMEOUT_S = 15.0


def round_trip(bootstrap: str, topic: str, value: bytes) -> bytes | None:
    """Write one record to partition 0 and read it back."""
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=value, partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        message = consumer.poll(CLIENT_TIMEOUT_S)
        assert message is not None and message.error() is None
        return message.value()
    finally:
        consumer.close()


def partition_count(bootstrap: str, topic: str) -> int:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=CLIENT_TIMEOUT_S)
    return len(metadata.topics[topic].partitions)


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_serves_clients_and_removes_its_temporary_data_dir(mode: str) -> None:
    with EmbeddedBroker(mode=mode) as broker:  # type: ignore[arg-type]
        assert broker.running
        assert broker.bootstrap == f"127.0.0.1:{broker.port}"
        create_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), "greetings", partitions=2)
        assert round_trip(broker.bootstrap, "greetings", b"hello") == b"hello"
        assert partition_count(broker.bootstrap, "greetings") == 2
        data_dir = broker.data_dir
        assert (data_dir / "meta.properties").exists()
    assert not broker.running
    assert not data_dir.exists()


def test_a_given_data_dir_is_kept_and_reopened(tmp_path: Path) -> None:
    with EmbeddedBroker(tmp_path / "data") as broker:
        create_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), "kept")
        assert round_trip(broker.bootstrap, "kept", b"first") == b"first"
    assert broker.data_dir == (tmp_path / "data").resolve()
    assert (tmp_path / "data" / "meta.properties").exists()
    with EmbeddedBroker(tmp_path / "data") as reopened:
        assert round_trip(reopened.bootstrap, "kept", b"second") == b"first"


def test_overrides_are_broker_configs() -> None:
    with EmbeddedBroker(overrides={"num.partitions": "3"}) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("auto-created", value=b"x")
        assert producer.flush(CLIENT_TIMEOUT_S) == 0
        assert partition_count(broker.bootstrap, "auto-created") == 3


def test_two_thread_brokers_in_one_process_are_independent() -> None:
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.port != second.port
        for broker in (first, second):
            create_topic(AdminClient({"bootstrap.servers": broker.bootstrap}), "shared-name")
        assert round_trip(first.bootstrap, "shared-name", b"one") == b"one"
        assert round_trip(second.bootstrap, "shared-name", b"two") == b"two"


def test_a_bad_config_fails_start_and_leaves_no_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    broker = EmbeddedBroker(overrides={"num.partitions": "not a number"})
    with pytest.raises(EmbeddedBrokerError, match="failed to start"):
        broker.start()
    assert not broker.running
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EmbeddedBrokerError):
        _ = broker.port


def test_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        EmbeddedBroker(mode="cluster")  # type: ignore[arg-type]


def test_only_process_mode_has_a_process() -> None:
    with EmbeddedBroker(mode="process") as broker:
        assert broker.process.running
        broker.process.kill()
        broker.process.restart()
        assert round_trip(broker.bootstrap, "after-restart", b"back") == b"back"
    with EmbeddedBroker() as broker, pytest.raises(EmbeddedBrokerError):
        _ = broker.process


PLUGIN_TESTS = """
from confluent_kafka.admin import AdminClient

NAMES = []


def test_topics_are_created_with_partitions(strom_server, strom_bootstrap, strom_topic):
    assert strom_bootstrap == strom_server.bootstrap
    topic = strom_topic(partitions=4)
    other = strom_topic()
    metadata = AdminClient({"bootstrap.servers": strom_bootstrap}).list_topics(timeout=15)
    assert len(metadata.topics[topic].partitions) == 4
    assert len(metadata.topics[other].partitions) == 1
    assert topic.startswith("test_topics_are_created_with_partitions-")
    NAMES.extend([topic, other])


def test_the_server_is_shared_by_the_session(strom_bootstrap, strom_topic):
    metadata = AdminClient({"bootstrap.servers": strom_bootstrap}).list_topics(timeout=15)
    assert set(NAMES) <= set(metadata.topics)
    assert strom_topic() not in NAMES
"""


def test_plugin_fixtures(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # Load the plugin explicitly, whether or not its entry point is installed.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(PLUGIN_TESTS)
    result = pytester.runpytest_inprocess("-p", "strom.testing.pytest_plugin", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_plugin_mode_option(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile("def test_mode(strom_server):\n    assert strom_server.process.running\n")
    result = pytester.runpytest_inprocess(
        "-p", "strom.testing.pytest_plugin", "-p", "no:cacheprovider", "--strom-mode=process"
    )
    result.assert_outcomes(passed=1)
