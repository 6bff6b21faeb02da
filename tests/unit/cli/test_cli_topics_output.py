"""Text and JSON rendering of ``strom topics`` results."""

from __future__ import annotations

from confluent_kafka.admin import ConfigEntry, ConfigSource

from strom.cli.output import format_table
from strom.cli.topics import (
    ConfigSetting,
    PartitionState,
    TopicState,
    config_setting,
    render_topic_state,
    topic_state_json,
)


def setting(
    name: str, value: str | None, source: str = "DYNAMIC_TOPIC_CONFIG", **flags: bool
) -> ConfigSetting:
    return ConfigSetting(
        name=name,
        value=value,
        source=source,
        is_default=flags.get("is_default", False),
        is_sensitive=flags.get("is_sensitive", False),
    )


ORDERS = TopicState(
    name="orders",
    partitions=[
        PartitionState(0, leader=1, replicas=[1, 2], isr=[1, 2], low_watermark=0, high_watermark=12),
        PartitionState(1, leader=2, replicas=[2, 1], isr=[2], low_watermark=None, high_watermark=None),
    ],
    configs=[
        setting("cleanup.policy", "delete", "DEFAULT_CONFIG", is_default=True),
        setting("retention.ms", "3600000"),
        setting("sasl.secret", None, is_sensitive=True),
    ],
)


def test_table_columns_line_up() -> None:
    table = format_table(("NAME", "N"), [("a", 1), ("longer", None)])
    assert table.splitlines() == ["NAME    N", "a       1", "longer  -"]


def test_text_shows_non_default_configs_and_every_partition() -> None:
    text = render_topic_state(ORDERS, all_configs=False)
    lines = text.splitlines()
    assert lines[0] == "Topic: orders"
    assert "Partitions: 2  Replication factor: 2" in lines[1]
    assert "retention.ms" in text and "(sensitive)" in text
    assert "cleanup.policy" not in text
    assert any(line.split() == ["0", "1", "1,2", "1,2", "0", "12"] for line in lines)
    assert any(line.split() == ["1", "2", "2,1", "2", "-", "-"] for line in lines)


def test_all_configs_include_defaults() -> None:
    assert "cleanup.policy" in render_topic_state(ORDERS, all_configs=True)
    assert topic_state_json(ORDERS, all_configs=True)["configs"]["cleanup.policy"] == "delete"


def test_json_document() -> None:
    document = topic_state_json(ORDERS, all_configs=False)
    assert document["name"] == "orders"
    assert (document["partition_count"], document["replication_factor"], document["internal"]) == (
        2,
        2,
        False,
    )
    assert document["configs"] == {"retention.ms": "3600000", "sasl.secret": None}
    assert document["partitions"][0] == {
        "partition": 0,
        "leader": 1,
        "replicas": [1, 2],
        "isr": [1, 2],
        "low_watermark": 0,
        "high_watermark": 12,
    }
    assert document["partitions"][1]["high_watermark"] is None


def test_unreadable_configs_are_reported_as_such() -> None:
    state = TopicState(name="__consumer_offsets", partitions=[], configs=None)
    assert "Configs: unavailable" in render_topic_state(state, all_configs=False)
    assert topic_state_json(state, all_configs=False)["configs"] is None
    assert topic_state_json(state, all_configs=False)["internal"] is True


def test_config_entry_defaults_follow_the_source() -> None:
    default = config_setting(ConfigEntry("segment.bytes", "1073741824", source=ConfigSource.DEFAULT_CONFIG))
    static = config_setting(ConfigEntry("segment.bytes", "1000", source=ConfigSource.STATIC_BROKER_CONFIG))
    assert (default.is_default, default.source) == (True, "DEFAULT_CONFIG")
    assert (static.is_default, static.source) == (False, "STATIC_BROKER_CONFIG")
