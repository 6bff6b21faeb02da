"""Group-commit fsync: one background thread makes partition logs durable without blocking the event loop.

What each setting promises
--------------------------
Every append hands its bytes to the operating system (one ``pwrite``) before the produce response is sent,
whatever the flush settings. So:

* **Process crash (kill -9, OOM kill, a bug):** nothing acknowledged is lost, with any setting. The data is in
  the OS page cache and reaches the disk without the broker.
* **Power loss or OS crash:** what was not fsynced is lost. With ``flush.ms`` (broker:
  ``log.flush.interval.ms``, Strom's default 1000) a background fsync runs every flush.ms, and
  acknowledgements do not wait for it: up to about flush.ms of acknowledged writes can be lost. With
  ``flush.messages=N`` (``log.flush.interval.messages``) the produce response of a batch that brings a
  partition's unflushed messages to N waits until an fsync covering it has completed: with
  ``flush.messages=1`` nothing acknowledged is lost (the cost is fsync latency, shared through group commit).

Apache Kafka's defaults never fsync and rely on replicas; a single Strom node has no replica to fall back on,
so it fsyncs in the background every second by default. That also keeps each log's recovery point (the offset
below which a restart trusts the log without re-validating it) at most about a second behind, so recovery
after a crash rescans only the last second or so of writes.

How
---
The event loop prepares a `FlushJob` per log (``PartitionLog.begin_flush``: index tails written,
descriptors of dirty segments and whether the directory needs an fsync collected, and the offset the job
covers); this module's single thread runs the fsyncs; the loop completes each job
(``PartitionLog.finish_flush``: the recovery point moves to the covered offset unless the log was truncated
meanwhile, and a failed fsync moves nothing). Requests that arrive while a pass is running are queued and
share the next pass: many producers' batches, many partitions, one round of fsyncs (group commit). A
descriptor closed meanwhile (a deleted log) is skipped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode, KafkaError

if TYPE_CHECKING:
    from strom.log.partition_log import PartitionLog
    from strom.log.segment import LogSegment

logger = logging.getLogger(__name__)

#: What an fsync of a descriptor closed since the job was prepared fails with (or, reused, by a socket).
_CLOSED_MEANWHILE = (errno.EBADF, errno.EINVAL)


@dataclass(slots=True)
class FlushJob:
    """What one log needs fsynced so that everything below ``up_to`` is durable."""

    log: PartitionLog
    up_to: int
    segments: list[tuple[LogSegment, int]]  # each dirty segment with the change count the sync covers
    fds: list[int]
    directory: Path | None  # set when creations, renames or deletions in it are not yet durable
    generation: int  # the log's truncation count when prepared
    rolled: bool  # the job covers segments rolled since the last flush

    def sync(self) -> None:
        """The blocking part, for any thread: fsync the files, then the directory."""
        for fd in self.fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                if exc.errno not in _CLOSED_MEANWHILE:
                    raise
        if self.directory is not None:
            try:
                fd = os.open(self.directory, os.O_RDONLY)
            except FileNotFoundError:  # the log was deleted meanwhile
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _sync_all(jobs: list[FlushJob]) -> list[OSError | None]:
    errors: list[OSError | None] = []
    for job in jobs:
        try:
            job.sync()
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


class Flusher:
    """Background fsyncs for the logs of a LogManager, in passes on one thread.

    Outside a running event loop (tools, unit tests) requests are served synchronously on the caller's thread.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._queued: dict[PartitionLog, int] = {}  # log -> the offset the next pass must cover
        self._acks: dict[PartitionLog, int] = {}  # flush.messages requests not yet durable: log -> up_to
        self._waiters: dict[PartitionLog, list[tuple[int, asyncio.Future[None]]]] = {}
        self._running: asyncio.Future[list[OSError | None]] | None = None
        self.passes = 0  # rounds of fsyncs run, for benchmarks and logs
        self.fsyncs = 0  # descriptors fsynced (files and directories)

    # -- requests --------------------------------------------------------------------------------------------

    def request(self, log: PartitionLog, up_to: int) -> None:
        """Make everything of ``log`` below ``up_to`` durable soon (flush.ms, rolls): nobody waits."""
        if not _loop_running():
            self._flush_now(log, up_to)
            return
        self._queued[log] = max(up_to, self._queued.get(log, 0))
        self._start_pass()

    def flush_messages_due(self, log: PartitionLog) -> None:
        """flush.messages was reached: flush up to the log end; produce responses up to it wait for that."""
        up_to = log.log_end_offset
        if _loop_running():
            self._acks[log] = max(up_to, self._acks.get(log, 0))
        self.request(log, up_to)

    def wait_durable(self, log: PartitionLog, offset: int) -> asyncio.Future[None] | None:
        """A future done when ``offset`` of ``log`` is durable, if an acknowledgement must wait for that (a
        flush.messages flush covering it is pending); else None. Fails with KAFKA_STORAGE_ERROR when the
        fsync failed."""
        if log.recovery_point > offset or self._acks.get(log, 0) <= offset:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(log, []).append((offset, future))
        return future

    def submit(self, work: Callable[[], None]) -> None:
        """Run blocking file work (checkpoint writes) on the flusher thread, in submission order; errors are
        logged. Synchronous outside an event loop."""
        if not _loop_running():
            work()
            return
        self._thread().submit(_logged, work)

    # -- passes ----------------------------------------------------------------------------------------------

    def _flush_now(self, log: PartitionLog, up_to: int) -> None:
        job = log.flush(up_to)
        if job is None:
            return
        self.passes += 1
        self.fsyncs += len(job.fds) + (job.directory is not None)

    def _start_pass(self) -> None:
        if self._running is not None or not self._queued:
            return
        queued, self._queued = self._queued, {}
        jobs: list[FlushJob] = []
        failed: set[PartitionLog] = set()
        for log, up_to in queued.items():
            try:
                job = log.begin_flush(up_to)
            except OSError as exc:  # writing an index tail failed: the disk is full or failing
                logger.error("cannot flush %s: %s", log, exc)
                failed.add(log)
                continue
            if job is not None:
                jobs.append(job)
        if not jobs:
            self._settle(queued, failed)
            return
        self.passes += 1
        self.fsyncs += sum(len(job.fds) + (job.directory is not None) for job in jobs)
        running = asyncio.get_running_loop().run_in_executor(self._thread(), _sync_all, jobs)
        self._running = running
        running.add_done_callback(lambda done: self._finish_pass(jobs, queued, failed, done))

    def _finish_pass(
        self,
        jobs: list[FlushJob],
        queued: dict[PartitionLog, int],
        failed: set[PartitionLog],
        done: asyncio.Future[list[OSError | None]],
    ) -> None:
        self._running = None
        try:
            errors = done.result()
        except BaseException as exc:  # the executor was shut down under a running pass
            errors = [OSError(errno.EIO, str(exc))] * len(jobs)
        for job, error in zip(jobs, errors, strict=True):
            job.log.finish_flush(job, error)
            if error is not None:
                failed.add(job.log)
        self._settle(queued, failed)
        self._start_pass()

    def _settle(self, logs: dict[PartitionLog, int], failed: set[PartitionLog]) -> None:
        """Answer the waiters of the logs a pass covered: done when durable, failed when the fsync was."""
        for log in logs:
            if self._acks.get(log, 0) <= log.recovery_point:
                self._acks.pop(log, None)
            waiters = self._waiters.pop(log, [])
            if log in failed:
                self._acks.pop(log, None)
            keep = []
            for offset, future in waiters:
                if future.done():
                    continue
                if log.recovery_point > offset:
                    future.set_result(None)
                elif log in failed:
                    future.set_exception(
                        KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"cannot make {log} durable")
                    )
                else:
                    keep.append((offset, future))
            if keep:
                self._waiters[log] = keep
                self._queued[log] = max(self._queued.get(log, 0), max(offset for offset, _ in keep) + 1)

    def forget(self, log: PartitionLog) -> None:
        """A log being closed or deleted: its waiters fail, nothing more is queued for it."""
        self._queued.pop(log, None)
        self._acks.pop(log, None)
        for _, future in self._waiters.pop(log, []):
            if not future.done():
                future.set_exception(KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER, f"{log} was closed"))

    def close(self) -> None:
        """Wait for the running pass and submitted work to end (the caller then flushes synchronously)."""
        for log in list(self._waiters):
            self.forget(log)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _thread(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strom-flusher")
        return self._executor


def _logged(work: Callable[[], None]) -> None:
    try:
        work()
    except Exception:
        logger.exception("background file work failed")


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
