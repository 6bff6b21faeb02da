"""The flusher: background fsyncs in group-commit passes, flush.messages acknowledgements, failed fsyncs."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from log_helpers import FakeClock, append_batches

from strom.log import LogConfig, LogManager, PartitionLog
from strom.log.flusher import Flusher
from strom.protocol.errors import ErrorCode, KafkaError


def _manager(path: Path, config: LogConfig) -> LogManager:
    manager = LogManager(path, default_config=config, clock=FakeClock())
    manager.load()
    return manager


def test_a_log_alone_flushes_on_the_callers_thread_when_flush_messages_is_reached(log_dir: Path) -> None:
    log = PartitionLog(log_dir, LogConfig(flush_interval_messages=5))
    append_batches(log, 1)
    assert log.recovery_point == 0
    append_batches(log, 1)
    assert log.recovery_point == 6
    log.close()


def test_many_producers_share_one_fsync_pass(tmp_path: Path) -> None:
    """Appends to several partitions while a pass runs are all covered by the next: two passes in all."""

    async def run() -> tuple[Flusher, list[PartitionLog]]:
        config = LogConfig(flush_interval_messages=1)
        manager = _manager(tmp_path, config)
        logs = [manager.create("orders", p, config) for p in range(8)]
        waits = []
        for round_ in range(5):
            for log in logs:
                append_batches(log, 1)
                future = manager.flusher.wait_durable(log, log.log_end_offset - 1)
                assert future is not None, "flush.messages=1: every acknowledgement waits"
                waits.append(future)
            if round_ == 0:
                await asyncio.sleep(0)  # the first pass starts with what was appended so far
        await asyncio.wait_for(asyncio.gather(*waits), 30)
        assert all(log.recovery_point == log.log_end_offset == 15 for log in logs)
        flusher = manager.flusher
        manager.close()
        return flusher, logs

    flusher, _ = asyncio.run(run())
    assert flusher.passes <= 3, f"{flusher.passes} passes for 40 batches: no group commit"


def test_below_flush_messages_nobody_waits_and_flush_ms_runs_in_the_background(tmp_path: Path) -> None:
    async def run() -> None:
        config = LogConfig(flush_interval_messages=10, flush_interval_ms=1000)
        manager = _manager(tmp_path, config)
        log = manager.create("orders", 0, config)
        append_batches(log, 1)  # 3 messages
        assert manager.flusher.wait_durable(log, 2) is None
        now_ms = FakeClock().now_ms
        manager.tick(now_ms + 1000)  # flush.ms: a background pass is started, the tick returns at once
        for _ in range(200):
            if log.recovery_point == 3:
                break
            await asyncio.sleep(0.01)
        assert log.recovery_point == 3
        manager.close()

    asyncio.run(run())


def test_an_idle_log_asks_for_no_flush(tmp_path: Path) -> None:
    config = LogConfig(flush_interval_ms=1000)
    manager = _manager(tmp_path, config)
    log = manager.create("orders", 0, config)
    append_batches(log, 1)
    now_ms = FakeClock().now_ms + 1000
    assert log.flush_due(now_ms) == 3
    manager.tick(now_ms)
    assert log.recovery_point == 3
    assert log.flush_due(now_ms + 5000) is None
    manager.close()


def test_a_failed_fsync_moves_nothing_and_fails_the_waiters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        config = LogConfig(flush_interval_messages=1)
        manager = _manager(tmp_path, config)
        log = manager.create("orders", 0, config)
        log.flush()
        real_fsync = os.fsync

        def failing_fsync(fd: int) -> None:
            raise OSError(errno.EIO, "injected")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        append_batches(log, 1)
        future = manager.flusher.wait_durable(log, 2)
        assert future is not None
        with pytest.raises(KafkaError) as raised:
            await asyncio.wait_for(future, 30)
        assert raised.value.code is ErrorCode.KAFKA_STORAGE_ERROR
        assert log.recovery_point == 0
        monkeypatch.setattr(os, "fsync", real_fsync)
        append_batches(log, 1)  # the disk works again: the next flush covers both batches
        future = manager.flusher.wait_durable(log, 5)
        assert future is not None
        await asyncio.wait_for(future, 30)
        assert log.recovery_point == 6
        manager.close()

    asyncio.run(run())


def test_a_flush_prepared_before_a_truncation_does_not_move_the_recovery_point(log_dir: Path) -> None:
    log = PartitionLog(log_dir, LogConfig())
    append_batches(log, 3)
    job = log.begin_flush(log.log_end_offset)
    assert job is not None and job.up_to == 9
    log.truncate_to(3)
    append_batches(log, 3)  # the log end is past the job's offset again, with other data below it
    job.sync()
    log.finish_flush(job, None)
    assert log.recovery_point == 0
    log.flush()
    assert log.recovery_point == 12
    log.close()


def test_a_closed_descriptor_is_skipped(log_dir: Path) -> None:
    log = PartitionLog(log_dir, LogConfig())
    append_batches(log, 1)
    job = log.begin_flush(log.log_end_offset)
    assert job is not None
    log.close(flush=False)
    job.sync()  # the descriptors are closed: no EBADF escapes
    log.finish_flush(job, None)
    assert log.recovery_point == 0
