"""All partition logs in one log directory, with the directory-level state Kafka keeps next to them:
``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``, the ``.kafka_cleanshutdown`` marker
and a ``.lock`` file that keeps a second broker process out.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from strom.log.checkpoint import TopicPartition, read_checkpoint_or_empty, write_checkpoint
from strom.log.config import LogConfig
from strom.log.files import DELETE_DIR_SUFFIX, fsync_dir, log_dir_name, parse_log_dir_name, write_atomically
from strom.log.partition_log import PartitionLog

logger = logging.getLogger(__name__)

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
LOCK_FILE = ".lock"
CLUSTER_METADATA_TOPIC = "__cluster_metadata"  # the KRaft metadata log lives alongside, but is not ours


class LogDirectoryLockedError(RuntimeError):
    pass


#: Kafka's log.retention.check.interval.ms default, and the delay before the first retention pass.
RETENTION_CHECK_INTERVAL_MS = 300_000
INITIAL_TASK_DELAY_MS = 30_000


class LogManager:
    def __init__(
        self,
        log_dir: Path,
        *,
        default_config: LogConfig,
        clock: Callable[[], float] = time.time,
        retention_check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.default_config = default_config
        self._clock = clock
        self.retention_check_interval_ms = retention_check_interval_ms
        self._next_retention_ms = int(clock() * 1000) + min(
            INITIAL_TASK_DELAY_MS, retention_check_interval_ms
        )
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._lock_fd: int | None = None
        self._checkpointed: tuple[dict[TopicPartition, int], dict[TopicPartition, int]] | None = None

    def load(self, topic_configs: Mapping[str, LogConfig] | None = None) -> None:
        """Lock the directory and open every "<topic>-<partition>" log in it, recovering those a crash left
        unflushed; finish removing "*-delete" directories. ``topic_configs`` overrides defaults by topic."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        marker = self.log_dir / CLEAN_SHUTDOWN_FILE
        clean_shutdown = marker.exists()
        recovery_points = read_checkpoint_or_empty(self.log_dir / RECOVERY_POINT_CHECKPOINT)
        log_start_offsets = read_checkpoint_or_empty(self.log_dir / LOG_START_OFFSET_CHECKPOINT)
        for child in sorted(self.log_dir.iterdir()):
            if not child.is_dir():
                continue
            if child.name.endswith(DELETE_DIR_SUFFIX):
                shutil.rmtree(child, ignore_errors=True)
                continue
            try:
                key = parse_log_dir_name(child.name)
            except ValueError:
                logger.warning("skipping %s: not a partition directory", child)
                continue
            if key[0] == CLUSTER_METADATA_TOPIC:
                continue
            config = (topic_configs or {}).get(key[0], self.default_config)
            started = time.monotonic()
            self._logs[key] = PartitionLog(
                child,
                config,
                clock=self._clock,
                recovery_point=recovery_points.get(key, 0),
                log_start_offset=log_start_offsets.get(key, 0),
                clean_shutdown=clean_shutdown,
            )
            logger.debug("loaded %s in %.3fs", self._logs[key], time.monotonic() - started)
        # From here on a crash must trigger recovery again.
        marker.unlink(missing_ok=True)
        self._write_checkpoints()
        logger.info(
            "loaded %d logs from %s (clean shutdown: %s)", len(self._logs), self.log_dir, clean_shutdown
        )

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig) -> PartitionLog:
        """Open the partition's log, creating its directory if needed; an already open log gets ``config``."""
        existing = self._logs.get((topic, partition))
        if existing is not None:
            existing.update_config(config)
            return existing
        log = PartitionLog(self.log_dir / log_dir_name(topic, partition), config, clock=self._clock)
        fsync_dir(self.log_dir)
        self._logs[(topic, partition)] = log
        return log

    def delete(self, topic: str, partition: int) -> None:
        """Close the log, rename its directory to "<topic>-<partition>.<id>-delete", then remove it (a crash
        in between leaves a "-delete" directory that load() finishes removing)."""
        log = self._logs.pop((topic, partition), None)
        directory = self.log_dir / log_dir_name(topic, partition)
        if log is not None:
            log.close(flush=False)
        if not directory.exists():
            return
        doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}")
        os.rename(directory, doomed)
        fsync_dir(self.log_dir)
        shutil.rmtree(doomed, ignore_errors=True)
        self._write_checkpoints()

    def logs(self) -> Iterable[PartitionLog]:
        return list(self._logs.values())

    def tick(self, now_ms: int) -> None:
        """Periodic housekeeping: segment.ms rolls, retention (every log.retention.check.interval.ms, as in
        Kafka), flush.ms and rolled-segment flushes, delayed file deletion, then checkpoints. One failing log
        does not stop the others."""
        check_retention = now_ms >= self._next_retention_ms
        if check_retention:
            self._next_retention_ms = now_ms + self.retention_check_interval_ms
        for log in list(self._logs.values()):
            try:
                log.maybe_roll(now_ms)
                if check_retention:
                    log.enforce_retention(now_ms)
                log.maybe_flush(now_ms)
                log.delete_expired_files(now_ms)
            except OSError:
                logger.exception("housekeeping of %s failed", log)
        self._write_checkpoints()

    def flush_all(self) -> None:
        for log in self._logs.values():
            log.flush()
        self._write_checkpoints()

    def close(self) -> None:
        """Flush and close every log, write the checkpoints, then the clean-shutdown marker that lets the next
        start skip recovery."""
        for log in self._logs.values():
            log.close()
        self._write_checkpoints()
        if self._lock_fd is not None:
            write_atomically(self.log_dir / CLEAN_SHUTDOWN_FILE, b"")
            os.close(self._lock_fd)
            self._lock_fd = None
        self._logs.clear()

    def _write_checkpoints(self) -> None:
        """Write both checkpoint files when their content changed since the last write."""
        recovery_points = {key: log.recovery_point for key, log in self._logs.items()}
        log_start_offsets = {key: log.log_start_offset for key, log in self._logs.items()}
        if self._checkpointed == (recovery_points, log_start_offsets):
            return
        write_checkpoint(self.log_dir / RECOVERY_POINT_CHECKPOINT, recovery_points)
        write_checkpoint(self.log_dir / LOG_START_OFFSET_CHECKPOINT, log_start_offsets)
        self._checkpointed = (recovery_points, log_start_offsets)

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.log_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise LogDirectoryLockedError(f"{self.log_dir} is in use by another broker process") from exc
        self._lock_fd = fd
