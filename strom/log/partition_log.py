"""The log of one partition: an ordered list of segments, the last one active.

Appends validate the batch header and CRC, assign offsets in place and hand the bytes to the OS with one write
before returning, so a killed process loses nothing acknowledged; fsync follows flush.messages / flush.ms and
always happens on close. Reads return file ranges of whole batches for os.sendfile.

Not thread-safe: one event loop owns a log.
"""

from __future__ import annotations

import logging
import os
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from strom.log.aborted_txns import AbortedTxnIndex
from strom.log.config import LogConfig
from strom.log.files import (
    CLEANED_SUFFIX,
    INDEX_SUFFIX,
    LOG_SUFFIX,
    SWAP_SUFFIX,
    TIME_INDEX_SUFFIX,
    fsync_dir,
    parse_log_dir_name,
    segment_file_stem,
)
from strom.log.flusher import Flusher, FlushJob
from strom.log.index import CorruptIndexError
from strom.log.producer_snapshot import ProducerSnapshots
from strom.log.producer_state import BatchMetadata, CompletedTxn, ProducerStateManager
from strom.log.recovery import load_log
from strom.log.retention import below_log_start, beyond_size, deletable_prefix, older_than
from strom.log.segment import CorruptSegmentError, FileRange, LogSegment
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import (
    BatchHeader,
    ControlType,
    TimestampType,
    assign_offsets,
    parse_batch_header,
    parse_control_batch,
    set_max_timestamp,
    validate_record_set,
)

if TYPE_CHECKING:
    from strom.log.cleaner.clean import CleanedSegment, SegmentFile

logger = logging.getLogger(__name__)

#: The files of one cleaned segment, renamed in this order (the .log last, so a <base>.log.swap implies its
#: indexes are there too).
_SEGMENT_SUFFIXES = (INDEX_SUFFIX, TIME_INDEX_SUFFIX, LOG_SUFFIX)


class AppendOrigin(Enum):
    """Who is appending: client batches get Kafka's producer checks; only coordinators may write control
    batches (transaction markers) and transactional batches without sequence numbers (offset commits)."""

    CLIENT = "client"
    COORDINATOR = "coordinator"


@dataclass(slots=True, frozen=True)
class AppendResult:
    base_offset: int
    last_offset: int
    max_timestamp: int
    offset_of_max_timestamp: int
    log_append_time: int  # -1 unless the topic uses LogAppendTime
    log_start_offset: int
    record_count: int


@dataclass(slots=True, frozen=True)
class SegmentSummary:
    """What the log cleaner needs to know of one non-active segment."""

    base_offset: int
    path: Path
    size: int
    next_offset: int
    end_offset: int  # the next segment's base offset: where this segment's offset range ends
    largest_timestamp: int  # what min.compaction.lag.ms measures
    first_batch_timestamp: int  # what max.compaction.lag.ms measures (-1 when unknown)


@dataclass(slots=True, frozen=True)
class CleanerView:
    """The state of a log the cleaner schedules from (Kafka's LogToClean inputs)."""

    segments: tuple[SegmentSummary, ...]  # every non-active segment, oldest first
    active_base_offset: int
    log_start_offset: int
    log_end_offset: int
    last_stable_offset: int  # at most the high watermark
    generation: int  # changes on truncation: a swap prepared before must not happen


@dataclass(slots=True, frozen=True)
class ReadResult:
    records: FileRange | None  # None when there is nothing to return
    size: int
    log_start_offset: int
    high_watermark: int
    log_end_offset: int


class PartitionLog:
    def __init__(
        self,
        directory: Path,
        config: LogConfig,
        *,
        clock: Callable[[], float] = time.time,
        recovery_point: int = 0,
        log_start_offset: int = 0,
        clean_shutdown: bool = False,
    ) -> None:
        """Open the log in ``directory`` ("<topic>-<partition>"), creating it if needed.

        Without a clean shutdown, everything from ``recovery_point`` on is re-validated (the defaults recover
        the whole log). ``log_start_offset`` is the checkpointed value, restored after DeleteRecords. Producer
        state comes from the latest snapshot and the batch headers of the recovered log after it.
        """
        self.directory = Path(directory)
        self.topic, self.partition = parse_log_dir_name(self.directory.name)
        self.config = config
        self._clock = clock
        self.directory.mkdir(parents=True, exist_ok=True)
        now_ms = self._now_ms()
        loaded = load_log(
            self.directory,
            config,
            recovery_point=recovery_point,
            log_start_offset=log_start_offset,
            clean_shutdown=clean_shutdown,
            now_ms=now_ms,
        )
        self._segments = loaded.segments
        self._base_offsets = [segment.base_offset for segment in self._segments]
        self._log_start_offset = loaded.log_start_offset
        self._log_end_offset = self._segments[-1].next_offset
        self._high_watermark: int | None = None  # None: follows the log end offset (single replica)
        self.recovery_point = loaded.recovery_point
        self._last_flush_ms = now_ms
        self._rolled_unflushed = False
        self._dir_dirty = True
        self._pending_deletes: list[tuple[int, LogSegment]] = []
        self._closed = False
        self.flusher: Flusher | None = (
            None  # set by a LogManager; alone, a log flushes on the caller's thread
        )
        self._generation = 0
        self.producers = ProducerStateManager()
        self.aborted_txns = AbortedTxnIndex()
        self._snapshots = ProducerSnapshots(self.directory)
        self._rebuild_producer_state()

    # -- offsets ---------------------------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def high_watermark(self) -> int:
        """Until set, the log end offset: with a single replica everything written is committed."""
        return self._log_end_offset if self._high_watermark is None else self._high_watermark

    @high_watermark.setter
    def high_watermark(self, offset: int) -> None:
        self._high_watermark = min(max(offset, self._log_start_offset), self._log_end_offset)

    @property
    def last_stable_offset(self) -> int:
        """Offsets below this are decided: read_committed consumers read no further (Kafka's LSO)."""
        first_unstable = self.producers.first_unstable_offset()
        high_watermark = self.high_watermark
        if first_unstable is None:
            return high_watermark
        return min(max(first_unstable, self._log_start_offset), high_watermark)

    def update_config(self, config: LogConfig) -> None:
        """Apply new topic settings; segment sizes and index limits take effect from the next roll."""
        self.config = config
        for segment in self._segments:
            segment.index_interval_bytes = config.index_interval_bytes

    def size_bytes(self) -> int:
        return sum(segment.size for segment in self._segments)

    # -- append ----------------------------------------------------------------------------------------------

    def append(
        self, records: memoryview, *, leader_epoch: int = 0, origin: AppendOrigin = AppendOrigin.CLIENT
    ) -> AppendResult:
        """Validate one produced batch, assign its offsets in place and write it to the active segment.

        ``records`` must be writable (a view of a bytearray): offsets, the leader epoch and, for LogAppendTime
        topics, the timestamp are written into it. Errors leave the log unchanged. A retry of one of an
        idempotent producer's last five batches is not written again: the result describes the original.
        """
        if self._closed:
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"log {self.directory.name} is closed")
        if records.readonly:
            raise TypeError("records must be a writable buffer: offsets are assigned in place")
        headers = validate_record_set(records)
        if len(headers) != 1:
            raise KafkaError(
                ErrorCode.INVALID_RECORD, "a produce request must carry exactly one record batch"
            )
        batch = headers[0]
        config = self.config
        if origin is AppendOrigin.CLIENT:
            _check_client_batch(batch, config)
        size = batch.total_size
        if size > config.max_message_bytes:
            raise KafkaError(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"the record batch is {size} bytes, more than max.message.bytes ({config.max_message_bytes})",
            )
        if size > config.segment_bytes:
            raise KafkaError(
                ErrorCode.RECORD_LIST_TOO_LARGE,
                f"the record batch is {size} bytes, more than segment.bytes ({config.segment_bytes})",
            )
        marker: tuple[ControlType, int] | None = None
        if batch.is_control:
            marker = parse_control_batch(records)
            self.producers.check_marker(batch, marker[1])
        elif batch.producer_id >= 0 and origin is AppendOrigin.CLIENT:
            duplicate = self.producers.check_client_batch(batch)
            if duplicate is not None:
                return self._duplicate_result(duplicate)
        elif batch.producer_id >= 0:
            self.producers.check_coordinator_batch(batch)

        now_ms = self._now_ms()
        base_offset = self._log_end_offset
        assign_offsets(records, headers, base_offset, leader_epoch)
        if config.log_append_time:
            set_max_timestamp(records, 0, batch, TimestampType.LOG_APPEND_TIME, now_ms)
        elif batch.timestamp_type is TimestampType.LOG_APPEND_TIME:
            set_max_timestamp(records, 0, batch, TimestampType.CREATE_TIME, batch.max_timestamp)
        written = parse_batch_header(records)

        segment = self._segments[-1]
        try:
            if segment.should_roll(config, size, written.max_timestamp, written.last_offset, now_ms):
                segment = self._roll(now_ms)
            segment.append(records, (written,))
            self._log_end_offset = written.next_offset
            if marker is not None:
                self._record_marker(written, *marker)
            elif written.producer_id >= 0:
                self.producers.record(written)
            if self._log_end_offset - self.recovery_point >= config.flush_interval_messages:
                if self.flusher is None:
                    self.flush()
                else:
                    self.flusher.flush_messages_due(self)
        except OSError as exc:
            raise self._storage_error(segment, exc) from exc
        return AppendResult(
            base_offset=base_offset,
            last_offset=written.last_offset,
            max_timestamp=written.max_timestamp,
            offset_of_max_timestamp=base_offset if config.log_append_time else written.last_offset,
            log_append_time=now_ms if config.log_append_time else -1,
            log_start_offset=self._log_start_offset,
            record_count=written.records_count,
        )

    def _record_marker(self, batch: BatchHeader, control_type: ControlType, coordinator_epoch: int) -> None:
        completed: CompletedTxn = self.producers.record_marker(batch, control_type, coordinator_epoch)
        if completed.aborted:
            self.aborted_txns.add(completed)

    def _duplicate_result(self, original: BatchMetadata) -> AppendResult:
        """What Kafka answers for a retried batch: NONE with the offsets the original got."""
        return AppendResult(
            base_offset=original.first_offset,
            last_offset=original.last_offset,
            max_timestamp=original.max_timestamp,
            offset_of_max_timestamp=original.last_offset,
            log_append_time=-1,
            log_start_offset=self._log_start_offset,
            record_count=original.last_offset - original.first_offset + 1,
        )

    def _storage_error(self, segment: LogSegment, exc: OSError) -> KafkaError:
        """Undo a partial write so the segment still ends on a batch boundary, then report the failure as
        KAFKA_STORAGE_ERROR (the client may retry; Kafka would take the log directory offline)."""
        logger.error("write to %s failed: %s", segment.path, exc)
        try:
            os.ftruncate(segment.file.fileno(), segment.size)
        except OSError:
            logger.exception("could not undo the partial write to %s", segment.path)
        return KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"cannot write to {segment.path.name}: {exc}")

    def _roll(self, now_ms: int) -> LogSegment:
        """Start a new active segment at the log end offset; the next periodic flush fsyncs the old one. A
        failure (a full disk) leaves the old segment active: the next append tries to roll again."""
        active = self._segments[-1]
        if active.size == 0:
            return active
        active.seal()
        segment = LogSegment(self.directory, self._log_end_offset, self.config, now_ms, fresh=True)
        self._segments.append(segment)
        self._base_offsets.append(segment.base_offset)
        self._rolled_unflushed = True
        self._dir_dirty = True
        self._take_snapshot()
        return segment

    def maybe_roll(self, now_ms: int) -> None:
        """Roll a non-empty active segment once segment.ms (or, compacted, max.compaction.lag.ms) has passed,
        even without new appends."""
        active = self._segments[-1]
        if active.size and active.time_waited_for_roll(now_ms, now_ms) > self.config.max_segment_ms:
            self._roll(now_ms)

    # -- read ------------------------------------------------------------------------------------------------

    def read(
        self, offset: int, max_bytes: int, *, max_offset: int | None = None, min_one_batch: bool = True
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``: up to ``max_bytes`` (the first batch alone if it is
        bigger and ``min_one_batch``), none reaching ``max_offset`` (default: the log end offset).

        OFFSET_OUT_OF_RANGE when ``offset`` is below the log start offset or beyond the log end offset.
        """
        if self._closed:
            raise KafkaError(ErrorCode.KAFKA_STORAGE_ERROR, f"log {self.directory.name} is closed")
        log_end_offset = self._log_end_offset
        if offset < self._log_start_offset or offset > log_end_offset:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"offset {offset} is outside [{self._log_start_offset}, {log_end_offset}] "
                f"of {self.topic}-{self.partition}",
            )
        limit = log_end_offset if max_offset is None else min(max_offset, log_end_offset)
        if offset < limit:
            first = max(bisect_right(self._base_offsets, offset) - 1, 0)
            for segment in self._segments[first:]:
                if offset >= segment.next_offset:
                    continue
                found = segment.read(offset, max(max_bytes, 0), limit, min_one_batch)
                if found is None:
                    continue
                position, size = found
                if size:
                    return self._read_result(FileRange(segment.file, position, size), size)
                break
        return self._read_result(None, 0)

    def _read_result(self, records: FileRange | None, size: int) -> ReadResult:
        return ReadResult(records, size, self._log_start_offset, self.high_watermark, self._log_end_offset)

    def aborted_transactions(self, offset: int, read: ReadResult) -> list[CompletedTxn]:
        """The aborted transactions with data in what a read_committed ``read`` from ``offset`` returned: none
        without records, and the offset after the range is looked up only when some abort exists."""
        records = read.records
        if records is None or not len(self.aborted_txns):
            return []
        segment = next(s for s in self._segments if s.file is records.file)
        return self.aborted_txns.overlapping(offset, segment.offset_at(records.position + records.size))

    def read_bytes(self, offset: int, max_bytes: int) -> bytes:
        """The bytes read() would send, up to the log end offset: for consumers inside the broker."""
        result = self.read(offset, max_bytes)
        if result.records is None:
            return b""
        return os.pread(result.records.file.fileno(), result.size, result.records.position)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record at or after the log start whose timestamp is at least
        ``timestamp_ms`` (ListOffsets by time); None when there is none."""
        for segment in self._segments:
            if segment.max_timestamp >= timestamp_ms and segment.next_offset > self._log_start_offset:
                found = segment.find_offset_by_timestamp(timestamp_ms, self._log_start_offset)
                if found is not None:
                    return found
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the earliest record with the largest timestamp (ListOffsets -3)."""
        best: LogSegment | None = None
        for segment in self._segments:
            if segment.max_timestamp >= 0 and (best is None or segment.max_timestamp > best.max_timestamp):
                best = segment
        return best.max_timestamp_record() if best else None

    # -- removing data ---------------------------------------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        """DeleteRecords: move the log start offset up to ``offset`` (at most the high watermark) and drop the
        segments that fall entirely below it. Returns the new log start offset (the low watermark)."""
        if not 0 <= offset <= self.high_watermark:
            raise KafkaError(
                ErrorCode.OFFSET_OUT_OF_RANGE,
                f"cannot delete records before {offset}: the high watermark is {self.high_watermark}",
            )
        if offset > self._log_start_offset:
            self._log_start_offset = offset
            self._forget_producers_before(offset)
            self._delete_prefix(below_log_start(offset), self._now_ms())
        return self._log_start_offset

    def enforce_retention(self, now_ms: int) -> int:
        """Delete whole leading segments past the log start offset, retention.ms and retention.bytes (the last
        two only with cleanup.policy "delete"). Returns the bytes deleted."""
        deleted = self._delete_prefix(below_log_start(self._log_start_offset), now_ms)
        if self.config.deletes_old_segments:
            deleted += self._delete_prefix(older_than(self.config.retention_ms, now_ms), now_ms)
            deleted += self._delete_prefix(
                beyond_size(self.config.retention_bytes, self.size_bytes()), now_ms
            )
        return deleted

    def _delete_prefix(self, predicate: Callable[[LogSegment, LogSegment | None], bool], now_ms: int) -> int:
        count = deletable_prefix(
            self._segments, predicate, high_watermark=self.high_watermark, log_end_offset=self._log_end_offset
        )
        if not count:
            return 0
        if count == len(self._segments):
            self._roll(now_ms)  # a log always keeps one segment
        doomed = self._segments[:count]
        del self._segments[:count]
        del self._base_offsets[:count]
        self._log_start_offset = max(self._log_start_offset, self._segments[0].base_offset)
        self._forget_producers_before(self._log_start_offset)
        self._retire(doomed, now_ms)
        return sum(segment.size for segment in doomed)

    def _retire(self, segments: list[LogSegment], now_ms: int) -> None:
        """Take segments out of service: renamed to *.deleted now, removed after file.delete.delay.ms so reads
        already handed to the network still find their file open."""
        for segment in segments:
            segment.mark_deleted()
        self._dir_dirty = True
        self._delete_later(segments, now_ms)

    def _delete_later(self, segments: Iterable[LogSegment], now_ms: int) -> None:
        """Remove segments already renamed to *.deleted once file.delete.delay.ms has passed."""
        due_ms = now_ms + self.config.file_delete_delay_ms
        self._pending_deletes.extend((due_ms, segment) for segment in segments)
        self.delete_expired_files(now_ms)

    def delete_expired_files(self, now_ms: int) -> None:
        """Remove segment files whose file.delete.delay.ms has passed since they left the log."""
        keep: list[tuple[int, LogSegment]] = []
        for due_ms, segment in self._pending_deletes:
            if due_ms <= now_ms:
                segment.delete()
            else:
                keep.append((due_ms, segment))
        self._pending_deletes = keep

    def truncate_to(self, offset: int) -> None:
        """Remove every batch at or after ``offset`` (a batch straddling ``offset`` goes entirely)."""
        if offset < 0:
            raise ValueError(f"cannot truncate to negative offset {offset}")
        if offset >= self._log_end_offset:
            return
        now_ms = self._now_ms()
        if offset < self._segments[0].base_offset:
            self._truncate_fully_and_start_at(offset, now_ms)
            return
        cut = bisect_right(self._base_offsets, offset)
        self._retire(self._segments[cut:], now_ms)
        del self._segments[cut:]
        del self._base_offsets[cut:]
        self._segments[-1].truncate_to(offset, now_ms)
        self._log_end_offset = self._segments[-1].next_offset
        self._log_start_offset = min(self._log_start_offset, self._log_end_offset)
        self._after_truncation()

    def _truncate_fully_and_start_at(self, offset: int, now_ms: int) -> None:
        self._retire(self._segments, now_ms)
        segment = LogSegment(self.directory, offset, self.config, now_ms, fresh=True)
        self._segments = [segment]
        self._base_offsets = [offset]
        self._log_start_offset = self._log_end_offset = offset
        self._after_truncation()

    def _after_truncation(self) -> None:
        self._generation += 1
        self.recovery_point = min(self.recovery_point, self._log_end_offset)
        if self._high_watermark is not None:
            self._high_watermark = min(self._high_watermark, self._log_end_offset)
        self._dir_dirty = True
        self._rebuild_producer_state()

    def _forget_producers_before(self, offset: int) -> None:
        self.producers.forget_before(offset)
        self.aborted_txns.forget_before(offset)
        self._snapshots.delete_below(offset)

    def _rebuild_producer_state(self) -> None:
        """Restore the latest readable snapshot at or below the log end offset (after dropping those outside
        the log), then replay the producer batches and markers after it that are not wholly below the log
        start offset, oldest first; without a snapshot, the whole log. Only markers are decoded (a marker is
        one small uncompressed record)."""
        self._snapshots.delete_above(self._log_end_offset)
        self._snapshots.delete_below(self._log_start_offset)
        snapshot = self._snapshots.load_latest(self._log_end_offset)
        self.producers.clear()
        self.aborted_txns.clear()
        replay_from = self._log_start_offset
        if snapshot is not None:
            self.producers.restore_snapshot(snapshot.producers)
            self.aborted_txns.restore_snapshot(snapshot.aborted_txns)
            self.producers.forget_before(self._log_start_offset)  # the start may have moved since
            self.aborted_txns.forget_before(self._log_start_offset)
            replay_from = snapshot.offset
        first = max(bisect_right(self._base_offsets, replay_from) - 1, 0)
        for segment in self._segments[first:]:
            found = segment.translate_offset(replay_from)
            if found is None:
                continue
            for position, header in segment.batches_from(found[0]):
                if header.producer_id < 0 or header.last_offset < replay_from:
                    continue
                if not header.is_control:
                    self.producers.record(header)
                    continue
                try:
                    marker = parse_control_batch(segment.read_bytes(position, header.total_size))
                except KafkaError as exc:
                    logger.error(
                        "skipping a bad marker at offset %d of %s: %s", header.base_offset, self, exc
                    )
                    continue
                self._record_marker(header, *marker)

    def _take_snapshot(self) -> None:
        """Persist the producer state at the log end offset (at each roll and on close), so an open replays
        only what follows. A snapshot already there is current: at a given end offset only forgetting changes
        the state, and a restore forgets again. A failed write costs only a longer replay."""
        if self._snapshots.latest_offset == self._log_end_offset:
            return
        try:
            self._snapshots.write(
                self._log_end_offset, self.producers.to_snapshot(), self.aborted_txns.to_snapshot()
            )
        except OSError as exc:
            logger.warning("could not write a producer snapshot for %s: %s", self, exc)

    # -- compaction ------------------------------------------------------------------------------------------

    def cleaner_view(self) -> CleanerView:
        """The non-active segments and the offsets that bound what the cleaner may clean."""
        segments = self._segments
        summaries = tuple(
            SegmentSummary(
                segment.base_offset,
                segment.path,
                segment.size,
                segment.next_offset,
                segments[position + 1].base_offset,
                segment.largest_timestamp(),
                segment.first_batch_timestamp,
            )
            for position, segment in enumerate(segments[:-1])
        )
        return CleanerView(
            summaries,
            segments[-1].base_offset,
            self._log_start_offset,
            self._log_end_offset,
            self.last_stable_offset,
            self._generation,
        )

    def aborted_txns_between(self, start_offset: int, end_offset: int) -> tuple[tuple[int, int, int], ...]:
        """(producer id, first offset, marker offset) of the aborted transactions with data in
        [start_offset, end_offset): the cleaner removes their records."""
        return tuple(
            (txn.producer_id, txn.first_offset, txn.last_offset)
            for txn in self.aborted_txns.overlapping(start_offset, end_offset)
        )

    def producer_last_offsets(self) -> dict[int, int]:
        """Each producer's last data batch (its last offset): the cleaner keeps it, if need be empty, so the
        producer's sequence numbers survive compaction (Kafka's lastRecordsOfActiveProducers)."""
        return {entry.producer_id: entry.batches[-1].last_offset for entry in self.producers if entry.batches}

    def swap_cleaned(
        self,
        cleaned: Sequence[CleanedSegment],
        replaced: Sequence[SegmentFile],
        generation: int,
        now_ms: int,
    ) -> bool:
        """Put the cleaner's output in place of the segments it was made from.

        The old segments must still be this log's, unchanged (retention, DeleteRecords or a truncation may
        have removed or rewritten some meanwhile): otherwise the *.cleaned files are discarded and the answer
        is False. The swap is Kafka's, crash-safe at every step: *.cleaned -> *.swap, the old segments ->
        *.deleted, *.swap -> final names, with a directory fsync after each step; load_log completes a swap
        a crash interrupted (see recovery._complete_swaps).
        """
        current = {segment.base_offset: segment for segment in self._segments[:-1]}
        expected = {segment_file.base_offset: segment_file for segment_file in replaced}
        unchanged = generation == self._generation and all(
            base in current and base in expected and _is_same_segment(current[base], expected[base])
            for group in cleaned
            for base in group.replaces
        )
        if not unchanged or self._closed:
            remove_cleaned_files(self.directory, (group.base_offset for group in cleaned))
            return False
        for group in cleaned:
            for suffix in _SEGMENT_SUFFIXES:
                path = self.directory / (segment_file_stem(group.base_offset) + suffix)
                os.rename(f"{path}{CLEANED_SUFFIX}", f"{path}{SWAP_SUFFIX}")
        fsync_dir(self.directory)
        old = [current[base] for group in cleaned for base in group.replaces]
        for segment in old:
            segment.mark_deleted()
        fsync_dir(self.directory)
        for group in cleaned:
            for suffix in _SEGMENT_SUFFIXES:
                path = self.directory / (segment_file_stem(group.base_offset) + suffix)
                os.replace(f"{path}{SWAP_SUFFIX}", path)
        fsync_dir(self.directory)
        for group in cleaned:
            self._put_in_place(group.base_offset, len(group.replaces), now_ms)
        self._delete_later(old, now_ms)
        return True

    def _put_in_place(self, base_offset: int, replaced_count: int, now_ms: int) -> None:
        """Open a swapped-in segment and let it replace ``replaced_count`` segments from ``base_offset``."""
        segment = LogSegment(self.directory, base_offset, self.config, now_ms, fresh=False)
        try:
            segment.load()
        except (CorruptIndexError, CorruptSegmentError) as exc:
            logger.warning("rebuilding indexes of cleaned %s: %s", segment.path, exc)
            segment.recover()
        first = self._base_offsets.index(base_offset)
        self._segments[first : first + replaced_count] = [segment]
        self._base_offsets[first : first + replaced_count] = [base_offset]

    # -- durability ------------------------------------------------------------------------------------------

    def flush(self, up_to: int | None = None) -> FlushJob | None:
        """fsync, on the caller's thread, every segment with unsynced data below ``up_to`` (default: the log
        end) and the indexes; the recovery point moves there. Returns the job done (None: nothing to sync).
        OSError when a write or an fsync fails (nothing moves then)."""
        job = self.begin_flush(self._log_end_offset if up_to is None else up_to)
        if job is None:
            return None
        try:
            job.sync()
        except OSError as exc:
            self.finish_flush(job, exc)
            raise
        self.finish_flush(job, None)
        return job

    def flush_due(self, now_ms: int) -> int | None:
        """The offset a periodic flush should cover now: the log end once flush.ms has passed since the last
        flush and something is unflushed, else the active segment's base when segments rolled since the last
        flush (Kafka flushes a segment when it rolls); None when nothing is due (cheap for idle logs)."""
        if now_ms - self._last_flush_ms >= self.config.flush_interval_ms and (
            self.recovery_point < self._log_end_offset or self._dir_dirty or self._segments[-1].dirty
        ):
            return self._log_end_offset
        if self._rolled_unflushed:
            return self._segments[-1].base_offset
        return None

    def begin_flush(self, up_to: int) -> FlushJob | None:
        """On the log's thread: prepare making everything below ``up_to`` (at most the log end) durable.
        Writes the index tails and collects what a flusher thread must fsync (FlushJob.sync; then
        finish_flush). None when nothing below ``up_to`` is unsynced (the recovery point moves at once).
        OSError when an index write fails."""
        if self._closed:
            return None
        up_to = min(up_to, self._log_end_offset)
        if up_to == self._log_end_offset:
            self._last_flush_ms = self._now_ms()
        segments: list[tuple[LogSegment, int]] = []
        fds: list[int] = []
        for segment in self._segments:
            if segment.dirty and (segment.base_offset < up_to or segment.next_offset <= up_to):
                changes, segment_fds = segment.prepare_sync()
                segments.append((segment, changes))
                fds.extend(segment_fds)
        rolled = self._rolled_unflushed and up_to >= self._segments[-1].base_offset
        self._rolled_unflushed &= not rolled
        directory = self.directory if self._dir_dirty else None
        self._dir_dirty = False
        if not segments and directory is None:
            self.recovery_point = max(self.recovery_point, up_to)
            return None
        return FlushJob(self, up_to, segments, fds, directory, self._generation, rolled)

    def finish_flush(self, job: FlushJob, error: OSError | None) -> None:
        """On the log's thread, after job.sync(): segments are clean unless written since, and the recovery
        point moves to what the job covered, unless the log was truncated meanwhile. A failed sync moves
        nothing: what it covered is flushed again by a later job."""
        if self._closed:
            return
        if error is not None:
            logger.error("fsync of %s failed: %s", self, error)
            self._dir_dirty |= job.directory is not None
            self._rolled_unflushed |= job.rolled
            return
        for segment, changes in job.segments:
            segment.synced(changes)
        if job.generation == self._generation:
            self.recovery_point = max(self.recovery_point, min(job.up_to, self._log_end_offset))

    def close(self, *, flush: bool = True) -> None:
        """Flush (unless the log is about to be deleted) and release every file. A failing flush is logged:
        the next start recovers from the recovery point."""
        if self._closed:
            return
        if self.flusher is not None:
            self.flusher.forget(self)
        if flush:
            self._take_snapshot()
            try:
                self.flush()
            except OSError as exc:
                logger.error("could not flush %s on close: %s", self, exc)
        for segment in self._segments:
            try:
                segment.close()
            except OSError as exc:
                logger.error("could not write the indexes of %s on close: %s", segment, exc)
        for _, segment in self._pending_deletes:
            segment.delete()
        self._pending_deletes = []
        self._closed = True

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.topic}-{self.partition}, start={self._log_start_offset}, "
            f"end={self._log_end_offset}, segments={len(self._segments)})"
        )


def _is_same_segment(segment: LogSegment, segment_file: SegmentFile) -> bool:
    """Whether a live segment is still the file the cleaner read (same name, size and offsets)."""
    return (
        segment.path == segment_file.path
        and segment.size == segment_file.size
        and segment.next_offset == segment_file.next_offset
    )


def remove_cleaned_files(directory: Path, base_offsets: Iterable[int]) -> None:
    """Delete the cleaner's output for these groups: a result that will not be swapped in."""
    for base_offset in base_offsets:
        for suffix in _SEGMENT_SUFFIXES:
            (directory / (segment_file_stem(base_offset) + suffix + CLEANED_SUFFIX)).unlink(missing_ok=True)


def _check_client_batch(batch: BatchHeader, config: LogConfig) -> None:
    """The checks Kafka applies only to batches from producers."""
    if batch.base_offset != 0:
        raise KafkaError(
            ErrorCode.INVALID_RECORD, f"the batch base offset should be 0, not {batch.base_offset}"
        )
    if batch.is_control:
        raise KafkaError(ErrorCode.INVALID_RECORD, "clients are not allowed to write control records")
    if batch.producer_id >= 0 and batch.base_sequence < 0:
        raise KafkaError(
            ErrorCode.INVALID_RECORD,
            f"invalid sequence number {batch.base_sequence} in a batch from producer {batch.producer_id}",
        )
    if batch.timestamp_type is TimestampType.LOG_APPEND_TIME and (
        config.log_append_time or batch.max_timestamp < 0
    ):
        raise KafkaError(
            ErrorCode.INVALID_TIMESTAMP, "producers must not set the timestamp type to LogAppendTime"
        )
