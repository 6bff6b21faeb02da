"""LogManager: loading a log directory, creating and deleting logs, checkpoints, the clean-shutdown marker."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from log_helpers import BASE_TIMESTAMP, FakeClock, append_batches, make_batch, record_offsets

from strom.log import LogConfig, LogDirectoryLockedError, LogManager
from strom.log.checkpoint import read_checkpoint
from strom.log.manager import CLEAN_SHUTDOWN_FILE, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT
from strom.log.partition_metadata import PARTITION_METADATA_FILE, read_topic_id

BATCH_SIZE = len(make_batch())


@pytest.fixture
def config() -> LogConfig:
    return LogConfig(segment_bytes=10 * BATCH_SIZE, file_delete_delay_ms=0)


def _manager(
    path: Path, config: LogConfig, clock: FakeClock | None = None, *, retention_check_interval_ms: int = 1
) -> LogManager:
    manager = LogManager(
        path,
        default_config=config,
        clock=clock or FakeClock(),
        retention_check_interval_ms=retention_check_interval_ms,
    )
    manager.load()
    return manager


def test_create_get_and_reload(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    orders = manager.create("orders", 0, config)
    assert manager.create("orders", 0, config) is orders
    manager.create("orders", 1, config)
    manager.create("my.topic-with-dash", 3, config)
    append_batches(orders, 25)
    assert manager.get("orders", 0) is orders and manager.get("orders", 2) is None
    manager.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT) == {
        ("orders", 0): 75,
        ("orders", 1): 0,
        ("my.topic-with-dash", 3): 0,
    }

    reopened = _manager(tmp_path, config)
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists(), "a later crash must trigger recovery"
    assert sorted((log.topic, log.partition) for log in reopened.logs()) == [
        ("my.topic-with-dash", 3),
        ("orders", 0),
        ("orders", 1),
    ]
    log = reopened.get("orders", 0)
    assert log is not None and log.log_end_offset == 75
    assert record_offsets(log.read_bytes(60, 1 << 20))[0] == 60
    reopened.close()


def test_checkpoint_file_format(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    append_batches(manager.create("orders", 0, config), 2)
    manager.flush_all()
    assert (tmp_path / RECOVERY_POINT_CHECKPOINT).read_text() == "0\n1\norders 0 6\n"
    assert (tmp_path / LOG_START_OFFSET_CHECKPOINT).read_text() == "0\n1\norders 0 0\n"
    assert not list(tmp_path.glob("*.tmp"))
    manager.close()


def test_log_start_offset_survives_restart(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    log = manager.create("orders", 0, config)
    append_batches(log, 5)
    log.delete_records_before(7)
    manager.tick(BASE_TIMESTAMP)
    assert read_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT) == {("orders", 0): 7}
    manager.close()
    reopened = _manager(tmp_path, config)
    restored = reopened.get("orders", 0)
    assert restored is not None and restored.log_start_offset == 7
    reopened.close()


def test_unclean_restart_recovers_from_the_recovery_point(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    log = manager.create("orders", 0, config)
    append_batches(log, 25)
    manager.tick(BASE_TIMESTAMP)  # fsyncs the two rolled segments; recovery point -> 60
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT) == {("orders", 0): 60}
    append_batches(log, 2)
    segment = tmp_path / "orders-0" / f"{60:020d}.log"
    with open(segment, "ab") as tail:
        tail.write(b"\x00\x00\x00\x00\x00\x00\x00\x3b\x00\x00\x01\x00torn")
    del manager, log  # crash: no close, no marker

    reopened = _manager(tmp_path, config)
    recovered = reopened.get("orders", 0)
    assert recovered is not None and recovered.log_end_offset == 81
    assert os.path.getsize(segment) == 7 * BATCH_SIZE
    reopened.close()


def test_delete(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    append_batches(manager.create("orders", 0, config), 3)
    manager.create("orders", 1, config)
    manager.delete("orders", 0)
    assert manager.get("orders", 0) is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["orders-1"]
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT) == {("orders", 1): 0}
    manager.delete("never-existed", 0)
    manager.close()


def test_load_finishes_interrupted_deletes_and_skips_strangers(tmp_path: Path, config: LogConfig) -> None:
    (tmp_path / "orders-0.5f0d0e6a-delete").mkdir()
    (tmp_path / "orders-0.5f0d0e6a-delete" / f"{0:020d}.log").write_bytes(b"old")
    (tmp_path / "not a partition").mkdir()
    (tmp_path / "orders-3").mkdir()
    (tmp_path / "__cluster_metadata-0").mkdir()
    (tmp_path / "__cluster_metadata-0" / "metadata.log").write_bytes(b"kept as is")
    manager = _manager(tmp_path, config)
    assert os.listdir(tmp_path / "__cluster_metadata-0") == ["metadata.log"]
    assert not (tmp_path / "orders-0.5f0d0e6a-delete").exists()
    assert [(log.topic, log.partition) for log in manager.logs()] == [("orders", 3)]
    manager.close()


def test_damaged_checkpoint_means_full_recovery(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    append_batches(manager.create("orders", 0, config), 4)
    manager.close()
    (tmp_path / RECOVERY_POINT_CHECKPOINT).write_text("0\n7\ngarbage\n")
    (tmp_path / CLEAN_SHUTDOWN_FILE).unlink()
    reopened = _manager(tmp_path, config)
    log = reopened.get("orders", 0)
    assert log is not None and log.log_end_offset == 12
    reopened.close()


def test_tick_applies_retention_and_segment_ms(tmp_path: Path, config: LogConfig) -> None:
    clock = FakeClock()
    manager = _manager(tmp_path, config, clock)
    short = LogConfig(
        segment_bytes=10 * BATCH_SIZE, retention_ms=1000, segment_ms=500, file_delete_delay_ms=0
    )
    log = manager.create("events", 0, short)
    kept = manager.create("orders", 0, config)
    for _ in range(25):
        log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP)))
        kept.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP)))
    manager.tick(BASE_TIMESTAMP + 600)  # segment.ms rolls the active segment
    assert sorted(p.name for p in (tmp_path / "events-0").glob("*.log"))[-1] == f"{75:020d}.log"
    manager.tick(BASE_TIMESTAMP + 1002)  # newest record: BASE + 2
    assert log.log_start_offset == 0
    manager.tick(BASE_TIMESTAMP + 1003)
    assert (log.log_start_offset, log.size_bytes()) == (75, 0)
    assert kept.log_start_offset == 0
    assert read_checkpoint(tmp_path / LOG_START_OFFSET_CHECKPOINT)[("events", 0)] == 75
    manager.close()


def test_retention_runs_every_retention_check_interval(tmp_path: Path) -> None:
    """Like Kafka's log.retention.check.interval.ms: expired segments wait for the next retention pass."""
    clock = FakeClock()
    manager = _manager(tmp_path, LogConfig(), clock, retention_check_interval_ms=60_000)
    expiring = LogConfig(segment_bytes=10 * BATCH_SIZE, retention_ms=1000, file_delete_delay_ms=0)
    log = manager.create("events", 0, expiring)
    for _ in range(25):
        log.append(memoryview(make_batch(timestamp=BASE_TIMESTAMP)))
    manager.tick(BASE_TIMESTAMP + 29_999)  # expired, but the first pass comes 30 s after start
    assert log.log_start_offset == 0
    manager.tick(BASE_TIMESTAMP + 30_000)
    assert log.log_start_offset > 0
    manager.close()


def test_flush_ms_advances_recovery_point(tmp_path: Path) -> None:
    config = LogConfig(flush_interval_ms=1000)
    clock = FakeClock()
    manager = _manager(tmp_path, config, clock)
    log = manager.create("orders", 0, config)
    append_batches(log, 2)
    manager.tick(clock.now_ms + 999)
    assert log.recovery_point == 0
    manager.tick(clock.now_ms + 1000)
    assert log.recovery_point == 6
    assert read_checkpoint(tmp_path / RECOVERY_POINT_CHECKPOINT) == {("orders", 0): 6}
    manager.close()


def test_topic_configs_apply_on_load(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    manager.create("orders", 0, config)
    manager.close()
    special = LogConfig(retention_ms=5)
    reopened = LogManager(tmp_path, default_config=config)
    reopened.load({"orders": special})
    log = reopened.get("orders", 0)
    assert log is not None and log.config is special
    reopened.close()


def test_a_second_process_cannot_use_the_directory(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from strom.log import LogConfig, LogManager, LogDirectoryLockedError\n"
        f"try:\n    LogManager(Path({str(tmp_path)!r}), default_config=LogConfig()).load()\n"
        "except LogDirectoryLockedError:\n    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 3
    manager.close()
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 0
    assert LogDirectoryLockedError.__name__  # exported for the server's startup error handling


def test_a_log_left_by_a_deleted_topic_of_the_same_name_is_not_adopted(
    tmp_path: Path, config: LogConfig
) -> None:
    old_id, new_id = uuid.uuid4(), uuid.uuid4()
    manager = _manager(tmp_path, config)
    append_batches(manager.create("orders", 0, config, old_id), 5)
    manager.close()
    text = (tmp_path / "orders-0" / PARTITION_METADATA_FILE).read_text()
    assert text.splitlines()[0] == "version: 0"  # Kafka's format; the id in Kafka's text form
    assert read_topic_id(tmp_path / "orders-0") == old_id

    reopened = _manager(tmp_path, config)
    assert reopened.create("orders", 0, config, old_id).log_end_offset == 15  # the same topic: kept
    fresh = reopened.create("orders", 0, config, new_id)  # a new topic "orders": the old records go
    assert fresh.log_end_offset == 0
    assert read_topic_id(tmp_path / "orders-0") == new_id
    reopened.close()


def test_a_log_without_partition_metadata_is_adopted_and_gets_one(tmp_path: Path, config: LogConfig) -> None:
    manager = _manager(tmp_path, config)
    append_batches(manager.create("orders", 0, config), 2)  # as written before the file existed
    manager.close()
    assert not (tmp_path / "orders-0" / PARTITION_METADATA_FILE).exists()

    topic_id = uuid.uuid4()
    reopened = _manager(tmp_path, config)
    assert reopened.create("orders", 0, config, topic_id).log_end_offset == 6
    assert read_topic_id(tmp_path / "orders-0") == topic_id
    reopened.close()
