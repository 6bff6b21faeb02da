"""One cleaning of one log: the pure step that rewrites old segments keeping the latest record per key.

What Kafka's LogCleaner does for a log, without scheduling or swapping: build the key -> latest offset map
over the dirty section, then rewrite the segments from the log start in groups (consecutive segments merged
up to segment.bytes) into ``<base>.log.cleaned`` files with their indexes. A record survives unless a later
record has its key, it belongs to an aborted transaction, or it is a tombstone whose batch's delete horizon
passed; transaction markers stay while their transaction has data in the log. The input files are never
modified; the caller swaps the output in. Arguments and results are plain picklable values, so this runs in a
worker process as well as in-process.
"""

from __future__ import annotations

import os
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from strom.log.cleaner.batch_filter import (
    DELETE_HORIZON_FLAG,
    RecordSpan,
    batch_records,
    delete_horizon_ms,
    empty_batch,
    filtered_batch,
    has_tombstone,
    scan_records,
)
from strom.log.cleaner.offset_map import OffsetMap, build_offset_map
from strom.log.cleaner.segment_reader import SegmentFile, read_batches
from strom.log.cleaner.transactions import CleanedTransactions, control_type
from strom.log.config import INT_MAX
from strom.log.files import CLEANED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, fsync_dir
from strom.log.files import segment_file_stem as _stem
from strom.log.index import OffsetIndex, TimeIndex
from strom.protocol.record_batch import BATCH_HEADER_SIZE, MAX_TIMESTAMP_OFFSET, BatchHeader

__all__ = ["CleanResult", "CleanTask", "CleanedSegment", "SegmentFile", "clean", "group_segments"]

_OFFSET_INDEX_ENTRY = 8
_TIME_INDEX_ENTRY = 12
_WRITE_CHUNK = 4 * 1024 * 1024
_MAX_TIMESTAMP = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class CleanTask:
    """Everything one cleaning needs; picklable, sent to a worker process."""

    directory: Path  # the partition directory, where *.cleaned files are written
    segments: tuple[SegmentFile, ...]  # from the log start up to the first uncleanable offset, oldest first
    first_dirty_offset: int  # the offset map is built from here (cleaner checkpoint; log start at first)
    end_offset: int  # first uncleanable offset (exclusive), at a segment boundary
    aborted: tuple[tuple[int, int, int], ...]  # (producer id, first offset, marker offset) of aborted txns
    producer_last_offsets: dict[int, int]  # producer id -> last offset of its latest batch: always kept
    now_ms: int
    delete_retention_ms: int
    segment_bytes: int  # max size of one cleaned segment
    index_interval_bytes: int
    segment_index_bytes: int
    max_map_entries: int


@dataclass(frozen=True, slots=True)
class CleanedSegment:
    """``<base>.log.cleaned`` with ``<base>.index.cleaned`` and ``<base>.timeindex.cleaned``, written and
    fsynced, to replace the (consecutive) segments at the ``replaces`` base offsets."""

    base_offset: int  # = the base offset of the first segment it replaces
    replaces: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CleanResult:
    cleaned: tuple[CleanedSegment, ...]  # in order; every task segment below next_dirty_offset
    next_dirty_offset: int  # where the offset map ended (end_offset unless the map filled up)
    bytes_read: int
    bytes_written: int
    records_read: int
    records_kept: int
    earliest_delete_horizon_ms: int | None  # smallest horizon of tombstones or markers left in the output


def clean(task: CleanTask) -> CleanResult:
    """Clean the log ``task`` describes; see the module docstring. When the offset map fills up, only the
    segments starting below the point the map reached are rewritten (Kafka does the same)."""
    offset_map = build_offset_map(
        task.segments, task.first_dirty_offset, task.end_offset, task.aborted, task.max_map_entries
    )
    next_dirty = offset_map.latest_offset + 1 if offset_map.full else task.end_offset
    segments = [segment for segment in task.segments if segment.base_offset < next_dirty]
    cleaner = _Cleaner(task, offset_map)
    cleaned = []
    for group in group_segments(segments, task.segment_bytes, task.segment_index_bytes, task.end_offset):
        cleaner.clean_group(group)
        cleaned.append(CleanedSegment(group[0].base_offset, tuple(s.base_offset for s in group)))
    if cleaned:
        fsync_dir(task.directory)
    return CleanResult(
        cleaned=tuple(cleaned),
        next_dirty_offset=next_dirty,
        bytes_read=cleaner.bytes_read,
        bytes_written=cleaner.bytes_written,
        records_read=cleaner.records_read,
        records_kept=cleaner.records_kept,
        earliest_delete_horizon_ms=cleaner.earliest_horizon,
    )


def group_segments(
    segments: Sequence[SegmentFile], max_size: int, max_index_size: int, end_offset: int
) -> list[list[SegmentFile]]:
    """Kafka's groupSegmentsBySize: merge consecutive segments while the log and index sizes fit and every
    offset stays within 32-bit reach of the group's base offset (what the index entries can hold)."""
    groups: list[list[SegmentFile]] = []
    position = 0
    while position < len(segments):
        first = segments[position]
        group = [first]
        log_size = first.size
        index_size, time_index_size = _index_sizes(first)
        position += 1
        while position < len(segments):
            candidate = segments[position]
            candidate_index, candidate_time_index = _index_sizes(candidate)
            last_offset = min(candidate.next_offset, end_offset) - 1
            if (
                log_size + candidate.size > max_size
                or index_size + candidate_index > max_index_size
                or time_index_size + candidate_time_index > max_index_size
                or (candidate.size and last_offset - first.base_offset > INT_MAX)
            ):
                break
            group.append(candidate)
            log_size += candidate.size
            index_size += candidate_index
            time_index_size += candidate_time_index
            position += 1
        groups.append(group)
    return groups


def _index_sizes(segment: SegmentFile) -> tuple[int, int]:
    """On-disk sizes of the segment's two indexes (0 for a missing file)."""
    sizes = []
    for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
        try:
            sizes.append(os.stat(segment.path.with_suffix(suffix)).st_size)
        except FileNotFoundError:
            sizes.append(0)
    return sizes[0], sizes[1]


class _CleanedSegmentWriter:
    """Writes one cleaned segment and its indexes under the *.cleaned names, indexing as LogSegment does."""

    def __init__(
        self, directory: Path, base_offset: int, index_interval_bytes: int, index_bytes: int
    ) -> None:
        stem = _stem(base_offset)
        self.path = directory / f"{stem}{LOG_SUFFIX}{CLEANED_SUFFIX}"
        index_path = directory / f"{stem}{INDEX_SUFFIX}{CLEANED_SUFFIX}"
        time_index_path = directory / f"{stem}{TIME_INDEX_SUFFIX}{CLEANED_SUFFIX}"
        for stale in (self.path, index_path, time_index_path):
            stale.unlink(missing_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset_index = OffsetIndex(index_path, base_offset, index_bytes)
        self.time_index = TimeIndex(time_index_path, base_offset, index_bytes)
        self._interval = index_interval_bytes
        self._buffer = bytearray()
        self.size = 0
        self._since_entry = 0
        self._max_timestamp = -1
        self._offset_of_max_timestamp = base_offset

    def append(self, batch: bytes | memoryview, last_offset: int, max_timestamp: int) -> None:
        if max_timestamp > self._max_timestamp:
            self._max_timestamp, self._offset_of_max_timestamp = max_timestamp, last_offset
        if self._since_entry > self._interval:
            self.offset_index.append(last_offset, self.size)
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
            self._since_entry = 0
        self._since_entry += len(batch)
        self.size += len(batch)
        self._buffer += batch
        if len(self._buffer) >= _WRITE_CHUNK:
            self._write_buffer()

    def _write_buffer(self) -> None:
        view = memoryview(self._buffer)
        while view:
            view = view[os.write(self._fd, view) :]
        view.release()
        self._buffer.clear()

    def finish(self, mtime_ns: int) -> None:
        """Write out the rest, the final time index entry and both indexes; fsync all three; close."""
        try:
            self._write_buffer()
            os.utime(self._fd, ns=(mtime_ns, mtime_ns))
            os.fsync(self._fd)
            self.time_index.maybe_append(self._max_timestamp, self._offset_of_max_timestamp)
            for index in (self.offset_index, self.time_index):
                index.persist()
                index.fsync()
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.offset_index.close()
            self.time_index.close()


class _Cleaner:
    """The rewrite pass: decides each batch of each group, in offset order, and writes what survives."""

    def __init__(self, task: CleanTask, offset_map: OffsetMap) -> None:
        self.task = task
        self.map = offset_map
        self.winners = offset_map.winners()
        self.txns = CleanedTransactions(task.aborted)
        self.new_horizon = task.now_ms + task.delete_retention_ms
        self.bytes_read = 0
        self.bytes_written = 0
        self.records_read = 0
        self.records_kept = 0
        self.earliest_horizon: int | None = None
        self._out: _CleanedSegmentWriter | None = None

    def clean_group(self, group: list[SegmentFile]) -> None:
        task = self.task
        out = self._out = _CleanedSegmentWriter(
            task.directory, group[0].base_offset, task.index_interval_bytes, task.segment_index_bytes
        )
        try:
            for segment in group:
                for header, window, position in read_batches(segment):
                    self.bytes_read += header.total_size
                    self.records_read += header.records_count
                    if header.is_control:
                        self._control_batch(header, window, position)
                    else:
                        self._data_batch(header, window, position)
            mtime_ns = max(os.stat(segment.path).st_mtime_ns for segment in group)
            out.finish(mtime_ns)
        finally:
            out.close()
        self.bytes_written += out.size

    # -- decisions -------------------------------------------------------------------------------------------

    def _is_producer_last(self, header: BatchHeader) -> bool:
        """A producer's latest batch stays (if only as an empty batch) so its sequence state survives."""
        return (
            header.producer_id >= 0
            and self.task.producer_last_offsets.get(header.producer_id) == header.last_offset
        )

    def _control_batch(self, header: BatchHeader, window: bytes, position: int) -> None:
        """A marker stays while its transaction has data here; once it has none it gets a delete horizon and
        goes when that passes. A producer's latest batch always stays as it is."""
        no_data_left = self.txns.on_marker(header, control_type(window, position, header))
        if not no_data_left or self._is_producer_last(header):
            self._copy(header, window, position)
            return
        horizon = delete_horizon_ms(header)
        if horizon is None:
            records = batch_records(memoryview(window)[position:], header)
            spans = scan_records(records, 0, len(records), header.records_count)
            self._write_filtered(header, records, spans, self.new_horizon)
            self._note_horizon(self.new_horizon)
        elif self.task.now_ms < horizon:
            self._copy(header, window, position)
            self._note_horizon(horizon)

    def _data_batch(self, header: BatchHeader, window: bytes, position: int) -> None:
        if self.txns.on_batch(header):  # aborted data always goes
            self._drop(header)
            return
        offset_map = self.map
        base, last = header.base_offset, header.last_offset
        if base > offset_map.latest_offset:  # beyond what the map covers: kept as it is
            self._copy(header, window, position)
            if header.attributes & DELETE_HORIZON_FLAG and self._has_tombstone(header, window, position):
                self._note_horizon(header.base_timestamp)
            return
        horizon = delete_horizon_ms(header)
        drop_tombstones = horizon is not None and self.task.now_ms >= horizon
        if base >= self.task.first_dirty_offset:
            # Every record here was mapped: it survives iff it is the latest of its key, so the decision
            # needs no parsing and only partly kept batches are read record by record.
            kept = self._mapped_survivors(base, last)
            tombstones = offset_map.tombstones
            has_tombstones = bool(tombstones) and not tombstones.isdisjoint(kept)
            if has_tombstones and drop_tombstones:
                kept = [offset for offset in kept if offset not in tombstones]
                has_tombstones = False
            if not kept:
                self._drop(header)
                return
            if len(kept) == header.records_count and (not has_tombstones or horizon is not None):
                self._copy(header, window, position)
                if has_tombstones and horizon is not None:
                    self._note_horizon(horizon)
                return
            records, spans = self._records(header, window, position)
            keep = set(kept)
            retained = [span for span in spans if base + span[0] in keep]
        else:
            records, spans = self._records(header, window, position)
            get = offset_map.offsets.get
            retained = [
                span
                for span in spans
                if (span[2] is None or base + span[0] >= get(span[2], -1))
                and not (span[3] and drop_tombstones)
            ]
            has_tombstones = has_tombstone(retained)
            if not retained:
                self._drop(header)
                return
            if len(retained) == header.records_count and (not has_tombstones or horizon is not None):
                self._copy(header, window, position)
                if has_tombstones and horizon is not None:
                    self._note_horizon(horizon)
                return
        if has_tombstones:
            if horizon is None:
                horizon = self.new_horizon
            self._note_horizon(horizon)
        self._write_filtered(header, records, retained, horizon)

    def _mapped_survivors(self, base: int, last: int) -> list[int]:
        """Offsets in [base, last] that are the latest of their key, plus null-key records (kept)."""
        winners = self.winners
        kept = list(winners[bisect_left(winners, base) : bisect_right(winners, last)])
        null_keys = self.map.null_keys
        if null_keys:
            extra = null_keys[bisect_left(null_keys, base) : bisect_right(null_keys, last)]
            if extra:
                kept = sorted(kept + extra)
        return kept

    def _has_tombstone(self, header: BatchHeader, window: bytes, position: int) -> bool:
        return has_tombstone(self._records(header, window, position)[1])

    # -- output ----------------------------------------------------------------------------------------------

    @staticmethod
    def _records(header: BatchHeader, window: bytes, position: int) -> tuple[bytes, list[RecordSpan]]:
        """The batch's records section (decompressed when needed) and its scanned records."""
        if header.compression:
            records = batch_records(memoryview(window)[position:], header)
            return records, scan_records(records, 0, len(records), header.records_count)
        end = position + header.total_size
        return window, scan_records(window, position + BATCH_HEADER_SIZE, end, header.records_count)

    def _copy(self, header: BatchHeader, window: bytes, position: int) -> None:
        assert self._out is not None
        self._out.append(
            memoryview(window)[position : position + header.total_size],
            header.last_offset,
            header.max_timestamp,
        )
        self.records_kept += header.records_count

    def _drop(self, header: BatchHeader) -> None:
        """A batch with no record left: gone, unless it is its producer's latest (then kept empty)."""
        if self._is_producer_last(header):
            assert self._out is not None
            self._out.append(empty_batch(header), header.last_offset, header.max_timestamp)

    def _write_filtered(
        self, header: BatchHeader, records: bytes, retained: list[RecordSpan], horizon: int | None
    ) -> None:
        assert self._out is not None
        batch = filtered_batch(header, records, retained, horizon)
        (max_timestamp,) = _MAX_TIMESTAMP.unpack_from(batch, MAX_TIMESTAMP_OFFSET)
        self._out.append(batch, header.last_offset, max_timestamp)
        self.records_kept += len(retained)

    def _note_horizon(self, horizon: int) -> None:
        if self.earliest_horizon is None or horizon < self.earliest_horizon:
            self.earliest_horizon = horizon
