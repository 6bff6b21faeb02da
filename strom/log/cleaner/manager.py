"""The log cleaner's scheduling (Kafka's LogCleaner threads and LogCleanerManager).

Each tick, on the event loop: swap in what finished, then give every free worker the filthiest cleanable log.
A log is cleanable when its cleanup.policy includes "compact" and its dirty section (from the first dirty
offset to the first uncleanable offset) is large enough (min.cleanable.dirty.ratio), old enough
(max.compaction.lag.ms), or when tombstones or markers an earlier cleaning kept have reached their delete
horizon. Only whole segments below the first uncleanable offset are cleaned: the active segment, anything at
or past the last stable offset (undecided transactions) and the high watermark, and segments with records
newer than min.compaction.lag.ms stay as they are.

The cleaning itself (`clean.clean`) reads immutable segment files and writes new ones, so it runs in a worker
process with a lower CPU priority; the broker only renames files when it swaps the result in. The first dirty
offset of every cleaned log is kept in ``cleaner-offset-checkpoint`` in its log directory (Kafka's file and
format), so a restart does not clean the whole log again. Delete horizons are kept in memory only, as Kafka
does: after a restart the next cleaning learns them again.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strom.log.checkpoint import TopicPartition, read_checkpoint_or_empty, write_checkpoint
from strom.log.cleaner.clean import CleanResult, CleanTask, SegmentFile, clean
from strom.log.config import INT_MAX, LogConfig
from strom.log.partition_log import CleanerView, SegmentSummary, remove_cleaned_files

if TYPE_CHECKING:
    from strom.log.partition_log import PartitionLog
    from strom.metadata.properties import BrokerConfig

logger = logging.getLogger(__name__)

CLEANER_OFFSET_CHECKPOINT = "cleaner-offset-checkpoint"
#: Kafka's default log.cleaner.dedupe.buffer.size: memory for the key -> offset maps of all workers.
DEFAULT_DEDUPE_BUFFER_SIZE = 128 * 1024 * 1024
#: Kafka's offset map spends 24 bytes per key (an MD5 of the key and an offset) and fills up to
#: log.cleaner.io.buffer.load.factor; the map's capacity in keys follows the same rule here.
_MAP_ENTRY_BYTES = 24
_MAP_LOAD_FACTOR = 0.9
#: The workers' nice level where SCHED_IDLE is not available: cleaning must not slow produce down.
WORKER_NICENESS = 19
_PR_SET_PDEATHSIG = 1  # prctl option from <linux/prctl.h>


@dataclass(frozen=True, slots=True)
class CleanerConfig:
    """log.cleaner.enable, log.cleaner.threads and log.cleaner.dedupe.buffer.size."""

    enable: bool = True
    threads: int = 1
    dedupe_buffer_size: int = DEFAULT_DEDUPE_BUFFER_SIZE

    @property
    def enabled(self) -> bool:
        return self.enable and self.threads > 0

    @property
    def max_map_entries(self) -> int:
        """Keys one worker's offset map holds: its share of the dedupe buffer, as Kafka sizes it."""
        per_worker = min(self.dedupe_buffer_size // max(self.threads, 1), INT_MAX)
        return max(int(per_worker * _MAP_LOAD_FACTOR) // _MAP_ENTRY_BYTES, 1)

    @classmethod
    def from_broker_config(cls, config: BrokerConfig) -> CleanerConfig:
        return cls(
            enable=config.get_bool("log.cleaner.enable"),
            threads=config.get_int("log.cleaner.threads"),
            dedupe_buffer_size=config.get_int("log.cleaner.dedupe.buffer.size"),
        )


@dataclass(frozen=True, slots=True)
class Cleanable:
    """The part of a log a cleaning may rewrite (Kafka's LogToClean)."""

    segments: tuple[SegmentSummary, ...]  # from the first segment up to the first uncleanable offset
    first_dirty_offset: int  # at most end_offset
    end_offset: int  # where the last segment's offset range ends
    clean_bytes: int
    dirty_bytes: int
    max_lag_exceeded: bool  # a dirty segment waited longer than max.compaction.lag.ms

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def first_dirty_offset(checkpointed: int | None, view: CleanerView) -> int:
    """Where the dirty section starts: the checkpointed offset, or the log start when there is none or it lies
    outside the log (retention or DeleteRecords moved the start past it, or the log was truncated)."""
    if checkpointed is None or not view.log_start_offset <= checkpointed <= view.log_end_offset:
        return view.log_start_offset
    return checkpointed


def cleanable_section(view: CleanerView, config: LogConfig, first_dirty: int, now_ms: int) -> Cleanable:
    """The whole segments below the first uncleanable offset, with the byte counts the dirty ratio uses."""
    uncleanable = min(view.active_base_offset, view.last_stable_offset)
    dirty = [segment for segment in view.segments if segment.end_offset > first_dirty]
    if config.min_compaction_lag_ms > 0:
        newest_allowed = now_ms - config.min_compaction_lag_ms
        too_new = next((s for s in dirty if s.largest_timestamp > newest_allowed), None)
        if too_new is not None:
            uncleanable = min(uncleanable, too_new.base_offset)
    segments = tuple(segment for segment in view.segments if segment.end_offset <= uncleanable)
    end_offset = segments[-1].end_offset if segments else view.log_start_offset
    first_batch_timestamps = [s.first_batch_timestamp for s in dirty if s.first_batch_timestamp > 0]
    return Cleanable(
        segments=segments,
        first_dirty_offset=min(first_dirty, end_offset),
        end_offset=end_offset,
        clean_bytes=sum(s.size for s in segments if s.end_offset <= first_dirty),
        dirty_bytes=sum(s.size for s in segments if s.end_offset > first_dirty),
        max_lag_exceeded=bool(first_batch_timestamps)
        and min(first_batch_timestamps) < now_ms - config.max_compaction_lag_ms,
    )


def needs_cleaning(section: Cleanable, config: LogConfig) -> bool:
    """Kafka's rule: a dirty ratio above min.cleanable.dirty.ratio, or any dirty bytes past
    max.compaction.lag.ms."""
    return section.dirty_bytes > 0 and (
        section.max_lag_exceeded or section.dirty_ratio > config.min_cleanable_dirty_ratio
    )


@dataclass(slots=True)
class _Job:
    log: PartitionLog
    task: CleanTask
    generation: int
    future: Future[CleanResult]


def _lower_priority() -> None:
    """Run only on CPU time the broker leaves idle: Linux's SCHED_IDLE policy (a waking broker thread takes
    the CPU back at once), else the lowest nice level."""
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError:
            pass
    os.nice(WORKER_NICENESS)


def _init_worker(broker_pid: int) -> None:
    """Worker initializer: let the broker's own work win the CPU, and die with the broker. A worker that
    outlived a killed broker would hold its stdout open and could write *.cleaned files into a log the next
    broker is recovering; Linux's parent-death signal ends it with its parent."""
    _lower_priority()
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != broker_pid:  # the broker died before the signal was asked for
        os._exit(1)


class LogCleaner:
    """Compacts the logs whose cleanup.policy includes "compact", internal topics included."""

    def __init__(
        self,
        logs: Callable[[], Iterable[PartitionLog]],
        log_dirs: Iterable[Path],
        config: CleanerConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``logs`` lists the broker's open logs (each call); ``log_dirs`` hold the checkpoints."""
        self.config = config
        self._logs = logs
        self._clock = clock
        self._log_dirs = [Path(directory) for directory in log_dirs]
        self._first_dirty: dict[TopicPartition, int] = {}
        for directory in self._log_dirs:
            self._first_dirty.update(read_checkpoint_or_empty(directory / CLEANER_OFFSET_CHECKPOINT))
        self._written: dict[Path, dict[TopicPartition, int]] = {}
        self._horizons: dict[TopicPartition, int] = {}
        self._uncleanable: set[TopicPartition] = set()
        self._jobs: dict[TopicPartition, _Job] = {}
        self._executor: ProcessPoolExecutor | None = None

    @property
    def running(self) -> int:
        """Cleanings in progress."""
        return len(self._jobs)

    def first_dirty_offsets(self) -> dict[TopicPartition, int]:
        """The checkpointed first dirty offset of every cleaned log."""
        return dict(self._first_dirty)

    def tick(self, now_ms: int) -> None:
        """Swap in finished cleanings, start new ones on free workers, write the checkpoints."""
        logs = {(log.topic, log.partition): log for log in self._logs()}
        self._collect(logs, now_ms)
        if self.config.enabled:
            while len(self._jobs) < self.config.threads:
                chosen = self._grab_filthiest(logs, now_ms)
                if chosen is None:
                    break
                self._start(*chosen, now_ms)
        self._write_checkpoints(logs)

    def clean_now(self, log: PartitionLog, now_ms: int | None = None) -> CleanResult | None:
        """Clean ``log`` in this process, whatever its dirty ratio (for tests and tools). None when it has no
        cleanable segment or a worker is cleaning it already."""
        key = (log.topic, log.partition)
        if key in self._jobs:
            return None
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        view = log.cleaner_view()
        section = cleanable_section(
            view, log.config, first_dirty_offset(self._first_dirty.get(key), view), now_ms
        )
        if not section.segments:
            return None
        task = self._task(log, section, now_ms)
        result = clean(task)
        self._finish(log, task, view.generation, result, now_ms)
        self._write_checkpoints({(entry.topic, entry.partition): entry for entry in self._logs()})
        return result

    def close(self) -> None:
        """Stop at once: a running cleaning is abandoned (its *.cleaned files are leftovers the next load
        removes) rather than waited for."""
        executor, self._executor = self._executor, None
        self._jobs.clear()
        if executor is None:
            return
        # The pool has no public way to stop a running job before Python 3.14 (terminate_workers).
        for process in list(getattr(executor, "_processes", {}).values()):
            process.terminate()
        executor.shutdown(wait=False, cancel_futures=True)

    # -- scheduling ------------------------------------------------------------------------------------------

    def _grab_filthiest(
        self, logs: Mapping[TopicPartition, PartitionLog], now_ms: int
    ) -> tuple[PartitionLog, Cleanable, int] | None:
        """The cleanable log with the highest dirty ratio; else one whose delete horizon has passed."""
        best: tuple[float, PartitionLog, Cleanable, int] | None = None
        expired: tuple[PartitionLog, Cleanable, int] | None = None
        for key, log in logs.items():
            if not log.config.compacts or key in self._jobs or key in self._uncleanable:
                continue
            view = log.cleaner_view()
            section = cleanable_section(
                view, log.config, first_dirty_offset(self._first_dirty.get(key), view), now_ms
            )
            if needs_cleaning(section, log.config):
                if best is None or section.dirty_ratio > best[0]:
                    best = (section.dirty_ratio, log, section, view.generation)
            elif expired is None and section.segments and self._horizons.get(key, now_ms + 1) <= now_ms:
                expired = (log, section, view.generation)
        return best[1:] if best is not None else expired

    def _task(self, log: PartitionLog, section: Cleanable, now_ms: int) -> CleanTask:
        config = log.config
        return CleanTask(
            directory=log.directory,
            segments=tuple(
                SegmentFile(s.base_offset, s.path, s.size, s.next_offset) for s in section.segments
            ),
            first_dirty_offset=section.first_dirty_offset,
            end_offset=section.end_offset,
            aborted=log.aborted_txns_between(section.segments[0].base_offset, section.end_offset),
            producer_last_offsets=log.producer_last_offsets(),
            now_ms=now_ms,
            delete_retention_ms=config.delete_retention_ms,
            segment_bytes=config.segment_bytes,
            index_interval_bytes=config.index_interval_bytes,
            segment_index_bytes=config.segment_index_bytes,
            max_map_entries=self.config.max_map_entries,
        )

    def _start(self, log: PartitionLog, section: Cleanable, generation: int, now_ms: int) -> None:
        task = self._task(log, section, now_ms)
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.config.threads,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(os.getpid(),),
            )
        logger.info(
            "cleaning %s: %d segments up to offset %d, dirty from %d (dirty ratio %.2f)",
            log,
            len(task.segments),
            task.end_offset,
            task.first_dirty_offset,
            section.dirty_ratio,
        )
        self._jobs[(log.topic, log.partition)] = _Job(
            log, task, generation, self._executor.submit(clean, task)
        )

    def _collect(self, logs: Mapping[TopicPartition, PartitionLog], now_ms: int) -> None:
        """Swap in the cleanings that finished; drop those of logs deleted or reopened meanwhile."""
        for key, job in list(self._jobs.items()):
            if not job.future.done():
                continue
            del self._jobs[key]
            try:
                result = job.future.result()
            except BrokenProcessPool:
                logger.error("the cleaner worker died while cleaning %s; starting a new one", job.log)
                self._executor = None
                continue
            except Exception:
                # Kafka marks such a partition uncleanable until the broker restarts.
                logger.exception("cleaning %s failed; it will not be cleaned again until restart", job.log)
                self._uncleanable.add(key)
                continue
            if logs.get(key) is not job.log:
                remove_cleaned_files(job.task.directory, (group.base_offset for group in result.cleaned))
                continue
            try:
                self._finish(job.log, job.task, job.generation, result, now_ms)
            except OSError:
                logger.exception("swapping the cleaned segments of %s in failed", job.log)
                self._uncleanable.add(key)

    def _finish(
        self, log: PartitionLog, task: CleanTask, generation: int, result: CleanResult, now_ms: int
    ) -> None:
        key = (log.topic, log.partition)
        if not log.swap_cleaned(result.cleaned, task.segments, generation, now_ms):
            logger.info("discarded the cleaning of %s: its segments changed meanwhile", log)
            return
        self._first_dirty[key] = max(result.next_dirty_offset, task.first_dirty_offset)
        if result.earliest_delete_horizon_ms is None:
            self._horizons.pop(key, None)
        else:
            self._horizons[key] = result.earliest_delete_horizon_ms
        logger.info(
            "cleaned %s: %d of %d records kept, %d -> %d bytes",
            log,
            result.records_kept,
            result.records_read,
            result.bytes_read,
            result.bytes_written,
        )

    # -- checkpoint ------------------------------------------------------------------------------------------

    def _write_checkpoints(self, logs: Mapping[TopicPartition, PartitionLog]) -> None:
        """Keep one entry per cleaned log that still exists, never below its log start; write each log
        directory's file when its entries changed."""
        for key in list(self._first_dirty):
            log = logs.get(key)
            if log is None:
                del self._first_dirty[key]
                self._horizons.pop(key, None)
                self._uncleanable.discard(key)
            elif self._first_dirty[key] < log.log_start_offset:
                self._first_dirty[key] = log.log_start_offset
        by_dir: dict[Path, dict[TopicPartition, int]] = {directory: {} for directory in self._log_dirs}
        for key, offset in self._first_dirty.items():
            by_dir.setdefault(logs[key].directory.parent, {})[key] = offset
        for directory, entries in by_dir.items():
            if self._written.get(directory) == entries:
                continue
            try:
                write_checkpoint(directory / CLEANER_OFFSET_CHECKPOINT, entries)
            except OSError as exc:
                logger.warning("could not write the cleaner checkpoint in %s: %s", directory, exc)
                continue
            self._written[directory] = entries
