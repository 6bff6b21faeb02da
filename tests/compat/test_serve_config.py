"""`strom serve` configured the Kafka way: a server.properties file with Kafka's names, then flags over it."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from strom.testing.process import StromProcess

TIMEOUT_S = 20


def test_server_properties_set_broker_defaults_and_flags_override_them(tmp_path: Path) -> None:
    properties = tmp_path / "server.properties"
    properties.write_text(
        "# a Kafka-style configuration file\n"
        "num.partitions=4\n"
        "log.retention.hours=2\n"
        "auto.create.topics.enable = true\n"
        "log.dirs=/nonexistent/overridden/by/the/flag\n"
    )
    with StromProcess(tmp_path / "data", config_file=properties) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        # A Metadata request for an unknown topic creates it with the file's num.partitions.
        metadata = admin.list_topics(topic="auto-created", timeout=TIMEOUT_S)
        assert len(metadata.topics["auto-created"].partitions) == 4

        (future,) = admin.describe_configs(
            [ConfigResource(ResourceType.TOPIC, "auto-created")], request_timeout=TIMEOUT_S
        ).values()
        retention = future.result(timeout=TIMEOUT_S)["retention.ms"]
        assert retention.value == str(2 * 3600 * 1000)  # log.retention.hours, reported under its synonym
        assert ConfigSource(retention.source) == ConfigSource.STATIC_BROKER_CONFIG

        # --data-dir (given by StromProcess) wins over log.dirs from the file.
        assert (tmp_path / "data" / "auto-created-0").is_dir()


def test_auto_topic_creation_can_be_turned_off(tmp_path: Path) -> None:
    overrides = {"auto.create.topics.enable": "false"}
    with StromProcess(tmp_path / "data", overrides=overrides) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        metadata = admin.list_topics(topic="not-created", timeout=TIMEOUT_S)
        assert metadata.topics["not-created"].error is not None
        assert "not-created" not in admin.list_topics(timeout=TIMEOUT_S).topics
