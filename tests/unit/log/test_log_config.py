"""LogConfig: Kafka's topic-config names, defaults and validation; offset checkpoint files."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.log import LogConfig
from strom.log.checkpoint import (
    MalformedCheckpointError,
    read_checkpoint,
    read_checkpoint_or_empty,
    write_checkpoint,
)
from strom.protocol.errors import ErrorCode, KafkaError


def test_defaults_are_kafkas() -> None:
    config = LogConfig()
    assert config.segment_bytes == 1 << 30
    assert config.segment_ms == config.retention_ms == 7 * 24 * 3600 * 1000
    assert config.retention_bytes == -1
    assert (config.index_interval_bytes, config.segment_index_bytes) == (4096, 10 << 20)
    assert config.max_message_bytes == 1048588
    assert config.message_timestamp_type == "CreateTime" and not config.log_append_time
    assert config.flush_interval_messages == config.flush_interval_ms == 2**63 - 1
    assert config.file_delete_delay_ms == 60000
    assert config.cleanup_policy == "delete" and config.deletes_old_segments


def test_from_properties() -> None:
    config = LogConfig.from_properties(
        {
            "segment.bytes": "2097152",
            "segment.ms": "1000",
            "retention.ms": "-1",
            "retention.bytes": "123456",
            "index.interval.bytes": "0",
            "segment.index.bytes": "4096",
            "max.message.bytes": "500",
            "message.timestamp.type": "LogAppendTime",
            "flush.messages": "1",
            "flush.ms": "0",
            "file.delete.delay.ms": "5",
            "cleanup.policy": "compact, delete",
            "compression.type": "zstd",  # not a log setting: ignored
        }
    )
    assert config == LogConfig(
        segment_bytes=2097152,
        segment_ms=1000,
        retention_ms=-1,
        retention_bytes=123456,
        index_interval_bytes=0,
        segment_index_bytes=4096,
        max_message_bytes=500,
        message_timestamp_type="LogAppendTime",
        flush_interval_messages=1,
        flush_interval_ms=0,
        file_delete_delay_ms=5,
        cleanup_policy="compact,delete",
    )
    assert config.log_append_time and config.deletes_old_segments
    assert LogConfig.from_properties(config.to_properties()) == config


def test_from_properties_on_a_base() -> None:
    base = LogConfig(retention_ms=5)
    assert LogConfig.from_properties({"segment.ms": "9"}, base) == LogConfig(retention_ms=5, segment_ms=9)


def test_internal_segment_bytes_bypasses_the_minimum() -> None:
    assert LogConfig.from_properties({"internal.segment.bytes": "4096"}).segment_bytes == 4096


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("segment.bytes", "1000"),
        ("segment.ms", "0"),
        ("retention.ms", "-2"),
        ("segment.index.bytes", "3"),
        ("flush.messages", "0"),
        ("max.message.bytes", "ten"),
        ("message.timestamp.type", "WallClock"),
        ("cleanup.policy", "shred"),
        ("cleanup.policy", ""),
    ],
)
def test_invalid_values(name: str, value: str) -> None:
    with pytest.raises(KafkaError) as info:
        LogConfig.from_properties({name: value})
    assert info.value.code == ErrorCode.INVALID_CONFIG
    assert name in str(info.value)


class TestCheckpoint:
    def test_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "recovery-point-offset-checkpoint"
        write_checkpoint(path, {("b", 1): 5, ("a", 0): 10**12})
        assert path.read_text() == "0\n2\na 0 1000000000000\nb 1 5\n"
        assert read_checkpoint(path) == {("a", 0): 10**12, ("b", 1): 5}

    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        assert read_checkpoint(tmp_path / "nope") == {}

    @pytest.mark.parametrize("text", ["", "1\n0\n", "0\n2\na 0 1\n", "0\n1\na 0\n", "0\n1\na x 1\n"])
    def test_malformed(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "checkpoint"
        path.write_text(text)
        with pytest.raises(MalformedCheckpointError):
            read_checkpoint(path)
        assert read_checkpoint_or_empty(path) == {}
