"""All partition logs of a broker, spread over its log directories (log.dirs), with the directory-level state
Kafka keeps next to them in each: ``recovery-point-offset-checkpoint``, ``log-start-offset-checkpoint``, the
``.kafka_cleanshutdown`` marker and a ``.lock`` file that keeps a second broker process out.

A new partition goes to the directory holding the fewest partitions (Kafka's rule), skipping directories whose
last write failed; an existing one is opened wherever it is. fsyncs run on the `Flusher`'s background thread.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from strom.log.checkpoint import TopicPartition, read_checkpoint_or_empty, write_checkpoint
from strom.log.config import LogConfig
from strom.log.files import DELETE_DIR_SUFFIX, fsync_dir, log_dir_name, parse_log_dir_name, write_atomically
from strom.log.flusher import Flusher
from strom.log.partition_log import PartitionLog
from strom.log.partition_metadata import read_topic_id, write_topic_id

logger = logging.getLogger(__name__)

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
LOCK_FILE = ".lock"
CLUSTER_METADATA_TOPIC = "__cluster_metadata"  # the KRaft metadata log lives alongside, but is not ours


class LogDirectoryLockedError(RuntimeError):
    pass


class DuplicateLogError(RuntimeError):
    """The same partition has a log in two log directories: which one is right is unknown (Kafka refuses to
    start as well)."""


#: Kafka's log.retention.check.interval.ms default, and the delay before the first retention pass.
RETENTION_CHECK_INTERVAL_MS = 300_000
INITIAL_TASK_DELAY_MS = 30_000


class LogDir:
    """One log directory: its lock, its checkpoints, and whether its last checkpoint write failed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.error: str | None = None  # why the last write failed; None while writes succeed
        self._lock_fd: int | None = None
        self._checkpointed: tuple[dict[TopicPartition, int], dict[TopicPartition, int]] | None = None

    def lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise LogDirectoryLockedError(f"{self.path} is in use by another broker process") from exc
        self._lock_fd = fd

    def checkpoint_writer(self, logs: Iterable[PartitionLog]) -> Callable[[], None] | None:
        """The write of both checkpoint files for ``logs`` (to run on any thread), or None when their
        content has not changed since the last write. A failed write marks the directory failing until one
        succeeds."""
        recovery_points = {(log.topic, log.partition): log.recovery_point for log in logs}
        log_start_offsets = {(log.topic, log.partition): log.log_start_offset for log in logs}
        content = (recovery_points, log_start_offsets)
        if self._checkpointed == content:
            return None
        self._checkpointed = content

        def write() -> None:
            try:
                write_checkpoint(self.path / RECOVERY_POINT_CHECKPOINT, recovery_points)
                write_checkpoint(self.path / LOG_START_OFFSET_CHECKPOINT, log_start_offsets)
            except OSError as exc:
                logger.error("cannot write the checkpoints of %s: %s", self.path, exc)
                self.error = str(exc)
                self._checkpointed = None  # written again at the next tick
                return
            self.error = None

        return write

    def close(self) -> None:
        """Write the clean-shutdown marker (the logs are flushed and checkpointed) and release the lock; a
        directory whose checkpoints could not be written gets no marker, so the next start recovers it."""
        if self._lock_fd is None:
            return
        try:
            if self.error is None:
                write_atomically(self.path / CLEAN_SHUTDOWN_FILE, b"")
        except OSError as exc:
            logger.error("cannot mark %s cleanly shut down (the next start recovers it): %s", self.path, exc)
        os.close(self._lock_fd)
        self._lock_fd = None


class LogManager:
    def __init__(
        self,
        log_dirs: Path | Sequence[Path],
        *,
        default_config: LogConfig,
        clock: Callable[[], float] = time.time,
        retention_check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS,
    ) -> None:
        paths = [Path(log_dirs)] if isinstance(log_dirs, (str, Path)) else [Path(p) for p in log_dirs]
        if not paths:
            raise ValueError("at least one log directory is needed")
        self.dirs = [LogDir(path) for path in paths]
        self.default_config = default_config
        self._clock = clock
        self.retention_check_interval_ms = retention_check_interval_ms
        self._next_retention_ms = int(clock() * 1000) + min(
            INITIAL_TASK_DELAY_MS, retention_check_interval_ms
        )
        self._logs: dict[TopicPartition, PartitionLog] = {}
        self._topic_ids: dict[TopicPartition, uuid.UUID | None] = {}  # partition.metadata, once read
        self._dir_of: dict[TopicPartition, LogDir] = {}
        self.flusher = Flusher()

    def load(self, topic_configs: Mapping[str, LogConfig] | None = None) -> None:
        """Lock every directory and open every "<topic>-<partition>" log in them, recovering those a crash
        left unflushed; finish removing "*-delete" directories. ``topic_configs`` overrides defaults by topic.
        DuplicateLogError when a partition has a log in two directories."""
        for log_dir in self.dirs:
            log_dir.path.mkdir(parents=True, exist_ok=True)
            log_dir.lock()
        for log_dir in self.dirs:
            self._load_dir(log_dir, topic_configs or {})
        self._write_checkpoints(sync=True)

    def _load_dir(self, log_dir: LogDir, topic_configs: Mapping[str, LogConfig]) -> None:
        marker = log_dir.path / CLEAN_SHUTDOWN_FILE
        clean_shutdown = marker.exists()
        recovery_points = read_checkpoint_or_empty(log_dir.path / RECOVERY_POINT_CHECKPOINT)
        log_start_offsets = read_checkpoint_or_empty(log_dir.path / LOG_START_OFFSET_CHECKPOINT)
        loaded = 0
        for child in sorted(log_dir.path.iterdir()):
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
            if key in self._logs:
                raise DuplicateLogError(
                    f"{key[0]}-{key[1]} has a log in both {self._dir_of[key].path} and {log_dir.path}"
                )
            started = time.monotonic()
            log = PartitionLog(
                child,
                topic_configs.get(key[0], self.default_config),
                clock=self._clock,
                recovery_point=recovery_points.get(key, 0),
                log_start_offset=log_start_offsets.get(key, 0),
                clean_shutdown=clean_shutdown,
            )
            self._add(key, log, log_dir)
            loaded += 1
            logger.debug("loaded %s in %.3fs", log, time.monotonic() - started)
        # From here on a crash must trigger recovery again.
        marker.unlink(missing_ok=True)
        logger.info("loaded %d logs from %s (clean shutdown: %s)", loaded, log_dir.path, clean_shutdown)

    def _add(self, key: TopicPartition, log: PartitionLog, log_dir: LogDir) -> None:
        log.flusher = self.flusher
        self._logs[key] = log
        self._dir_of[key] = log_dir

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        return self._logs.get((topic, partition))

    def create(
        self, topic: str, partition: int, config: LogConfig, topic_id: uuid.UUID | None = None
    ) -> PartitionLog:
        """Open the partition's log, creating its directory if needed (in the directory with the fewest
        partitions); an already open log gets ``config``. With ``topic_id``, the log records it
        (partition.metadata), and a log recording another id, left by a deleted topic of the same name, is
        deleted first: the new topic starts empty."""
        key = (topic, partition)
        existing = self._logs.get(key)
        if existing is not None and topic_id is not None:
            if key not in self._topic_ids:  # read once per open log
                self._topic_ids[key] = read_topic_id(existing.directory)
            recorded = self._topic_ids[key]
            if recorded is None:
                write_topic_id(existing.directory, topic_id)
                self._topic_ids[key] = topic_id
            elif recorded != topic_id:
                logger.warning(
                    "%s belongs to an earlier topic %s (id %s, not %s): deleting it",
                    existing,
                    topic,
                    recorded,
                    topic_id,
                )
                self.delete(topic, partition)
                existing = None
        if existing is not None:
            if existing.config != config:
                existing.update_config(config)
            return existing
        log_dir = self._placement()
        log = PartitionLog(log_dir.path / log_dir_name(topic, partition), config, clock=self._clock)
        if topic_id is not None:
            write_topic_id(log.directory, topic_id)
            self._topic_ids[key] = topic_id
        fsync_dir(log_dir.path)
        self._add(key, log, log_dir)
        return log

    def _placement(self) -> LogDir:
        """Kafka's rule: the directory holding the fewest partitions (the first of equals), preferring those
        whose writes succeed."""
        counts = {id(log_dir): 0 for log_dir in self.dirs}
        for log_dir in self._dir_of.values():
            counts[id(log_dir)] += 1
        healthy = [log_dir for log_dir in self.dirs if log_dir.error is None] or self.dirs
        return min(healthy, key=lambda log_dir: counts[id(log_dir)])

    def delete(self, topic: str, partition: int) -> None:
        """Close the log, rename its directory to "<topic>-<partition>.<id>-delete", then remove it (a crash
        in between leaves a "-delete" directory that load() finishes removing)."""
        key = (topic, partition)
        log = self._logs.pop(key, None)
        log_dir = self._dir_of.pop(key, None)
        self._topic_ids.pop(key, None)
        if log is not None:
            log.close(flush=False)
        if log_dir is None:
            return
        directory = log_dir.path / log_dir_name(topic, partition)
        if not directory.exists():
            return
        doomed = directory.with_name(f"{directory.name}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}")
        os.rename(directory, doomed)
        fsync_dir(log_dir.path)
        shutil.rmtree(doomed, ignore_errors=True)
        self._write_checkpoints()

    def logs(self) -> Iterable[PartitionLog]:
        return list(self._logs.values())

    def logs_by_dir(self) -> list[tuple[LogDir, list[PartitionLog]]]:
        """Every log directory with the logs in it (DescribeLogDirs)."""
        grouped: dict[int, list[PartitionLog]] = {id(log_dir): [] for log_dir in self.dirs}
        for key, log in self._logs.items():
            grouped[id(self._dir_of[key])].append(log)
        return [(log_dir, grouped[id(log_dir)]) for log_dir in self.dirs]

    def dir_of(self, log: PartitionLog) -> LogDir:
        return self._dir_of[(log.topic, log.partition)]

    def tick(self, now_ms: int) -> None:
        """Periodic housekeeping: segment.ms rolls, retention (every log.retention.check.interval.ms, as in
        Kafka), flush.ms and rolled-segment flushes (handed to the flusher), delayed file deletion, then
        checkpoints. One failing log does not stop the others."""
        check_retention = now_ms >= self._next_retention_ms
        if check_retention:
            self._next_retention_ms = now_ms + self.retention_check_interval_ms
        for log in list(self._logs.values()):
            try:
                log.maybe_roll(now_ms)
                if check_retention:
                    log.enforce_retention(now_ms)
                due = log.flush_due(now_ms)
                if due is not None:
                    self.flusher.request(log, due)
                log.delete_expired_files(now_ms)
            except OSError:
                logger.exception("housekeeping of %s failed", log)
        self._write_checkpoints()

    def flush_all(self) -> None:
        for log in self._logs.values():
            log.flush()
        self._write_checkpoints(sync=True)

    def close(self) -> None:
        """Let the flusher finish, flush and close every log, write the checkpoints, then the clean-shutdown
        markers that let the next start skip recovery."""
        self.flusher.close()
        logger.info("flusher: %d fsync passes, %d fsyncs", self.flusher.passes, self.flusher.fsyncs)
        for log in self._logs.values():
            log.close()
        self._write_checkpoints(sync=True)
        for log_dir in self.dirs:
            log_dir.close()
        self._logs.clear()
        self._dir_of.clear()

    def _write_checkpoints(self, *, sync: bool = False) -> None:
        """Write each directory's checkpoint files when their content changed since the last write: on the
        flusher thread, or here with ``sync``."""
        for log_dir, logs in self.logs_by_dir():
            write = log_dir.checkpoint_writer(logs)
            if write is None:
                continue
            if sync:
                write()
            else:
                self.flusher.submit(write)
