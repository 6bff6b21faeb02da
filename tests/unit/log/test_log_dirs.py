"""Several log directories: placement, per-directory state, finding logs again, and write failures."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from log_helpers import FakeClock, append_batches, make_batch, range_bytes, record_offsets

from strom.log import LogConfig, LogManager, PartitionLog
from strom.log.checkpoint import read_checkpoint
from strom.log.files import write_atomically
from strom.log.manager import CLEAN_SHUTDOWN_FILE, LOCK_FILE, RECOVERY_POINT_CHECKPOINT, DuplicateLogError
from strom.protocol.errors import ErrorCode, KafkaError


def _manager(dirs: list[Path], config: LogConfig | None = None) -> LogManager:
    manager = LogManager(dirs, default_config=config or LogConfig(), clock=FakeClock())
    manager.load()
    return manager


def test_new_partitions_go_to_the_directory_with_the_fewest(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    manager = _manager(dirs)
    config = LogConfig()
    for partition in range(6):
        manager.create("orders", partition, config)
    placed = {log.partition: manager.dir_of(log).path for log in manager.logs()}
    assert [placed[p] for p in range(6)] == [dirs[0], dirs[1], dirs[2], dirs[0], dirs[1], dirs[2]]
    manager.delete("orders", 1)
    assert manager.dir_of(manager.create("payments", 0, config)).path == dirs[1]
    assert all((d / LOCK_FILE).exists() for d in dirs)
    manager.close()


def test_each_directory_keeps_its_own_checkpoints_and_logs_are_found_again(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    config = LogConfig()
    manager = _manager(dirs, config)
    first, second = manager.create("orders", 0, config), manager.create("orders", 1, config)
    append_batches(first, 2)
    append_batches(second, 3)
    manager.close()
    assert read_checkpoint(dirs[0] / RECOVERY_POINT_CHECKPOINT) == {("orders", 0): 6}
    assert read_checkpoint(dirs[1] / RECOVERY_POINT_CHECKPOINT) == {("orders", 1): 9}
    assert all((d / CLEAN_SHUTDOWN_FILE).exists() for d in dirs)

    reopened = _manager(list(reversed(dirs)), config)  # order does not matter for finding logs
    found = {(log.partition, reopened.dir_of(log).path) for log in reopened.logs()}
    assert found == {(0, dirs[0]), (1, dirs[1])}
    log = reopened.get("orders", 1)
    assert log is not None and record_offsets(range_bytes(log.read(0, 1 << 20))) == list(range(9))
    reopened.close()


def test_a_partition_in_two_directories_refuses_to_load(tmp_path: Path) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        PartitionLog(d / "orders-0", LogConfig()).close()
    manager = LogManager(dirs, default_config=LogConfig())
    with pytest.raises(DuplicateLogError):
        manager.load()


def test_a_failing_directory_gets_no_new_partitions_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = [tmp_path / "a", tmp_path / "b"]
    config = LogConfig()
    manager = _manager(dirs, config)
    log = manager.create("orders", 0, config)  # in a
    real_write = write_atomically

    def full_disk(path: Path, data: bytes) -> None:
        if path.parent == dirs[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr("strom.log.checkpoint.write_atomically", full_disk)
    append_batches(log, 1)
    manager.flush_all()
    assert manager.dirs[0].error is not None and manager.dirs[1].error is None
    # a is failing: new partitions go to b, even though a no longer has fewer partitions
    assert manager.dir_of(manager.create("orders", 1, config)).path == dirs[1]
    assert manager.dir_of(manager.create("orders", 2, config)).path == dirs[1]
    monkeypatch.setattr("strom.log.checkpoint.write_atomically", real_write)
    append_batches(log, 1)
    manager.flush_all()
    assert manager.dirs[0].error is None
    assert read_checkpoint(dirs[0] / RECOVERY_POINT_CHECKPOINT) == {("orders", 0): 6}
    assert not list(dirs[0].glob("*.tmp"))
    manager.close()


class _FullDisk:
    """Makes os.pwrite write only part of its data, then fail with ENOSPC, for files under ``root``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.full = False
        self._real = os.pwrite
        self._root = str(root)
        monkeypatch.setattr(os, "pwrite", self._pwrite)

    def _pwrite(self, fd: int, data: bytes, position: int) -> int:
        if self.full and os.readlink(f"/proc/self/fd/{fd}").startswith(self._root):
            if len(data) > 1:
                return self._real(fd, memoryview(data)[: len(data) // 2], position)
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._real(fd, data, position)


def test_a_full_disk_fails_the_append_leaves_a_batch_boundary_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = LogConfig(segment_bytes=4 * len(make_batch()), file_delete_delay_ms=0)
    manager = _manager([tmp_path], config)
    log = manager.create("orders", 0, config)
    append_batches(log, 3)
    disk = _FullDisk(monkeypatch, tmp_path)
    disk.full = True
    expected = 9
    for _ in range(3):  # failing appends into the segment and on a roll; each time space returns in between
        with pytest.raises(KafkaError) as raised:
            append_batches(log, 1)
        assert raised.value.code is ErrorCode.KAFKA_STORAGE_ERROR
        assert log.log_end_offset == expected
        assert record_offsets(range_bytes(log.read(expected - 3, 1 << 20))) == [
            expected - 3,
            expected - 2,
            expected - 1,
        ]
        disk.full = False
        append_batches(log, 1)
        expected += 3
        disk.full = True
    disk.full = False
    append_batches(log, 3)  # space is back: appends just work
    assert log.log_end_offset == 27
    manager.close()
    reopened = _manager([tmp_path], config)
    again = reopened.get("orders", 0)
    assert again is not None
    offsets: list[int] = []
    position = 0
    while position < again.log_end_offset:
        read = again.read(position, 1 << 20)
        got = record_offsets(range_bytes(read))
        offsets += got
        position = got[-1] + 1
    assert offsets == list(range(27))
    reopened.close()
