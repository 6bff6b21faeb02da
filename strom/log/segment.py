"""One log segment: ``<base offset>.log`` holding whole record batches, plus its offset and time indexes.

Batches are stored exactly as produced (offsets already assigned). Everything here works from batch headers:
reads find batch boundaries with an index lookup and a short header scan, never by decoding records.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import BinaryIO

import crc32c

from strom.log.config import INT_MAX, LogConfig
from strom.log.files import DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, segment_file_stem
from strom.log.index import CorruptIndexError, OffsetIndex, TimeIndex
from strom.protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    HEADER_STRUCT,
    MAGIC,
    BatchHeader,
    decode_batch,
)

logger = logging.getLogger(__name__)

_SCAN_CHUNK = 16 * 1024  # one pread covers the headers between two index entries at the default interval
_RECOVERY_WINDOW = 8 * 1024 * 1024
_BASE_OFFSET = struct.Struct(">q")


class CorruptSegmentError(Exception):
    """A segment that validated on the way in no longer parses: the storage under it is damaged."""


@dataclass(slots=True)
class FileRange:
    """Opaque records: ``size`` bytes of ``file`` starting at ``position``, sent as-is (os.sendfile)."""

    file: BinaryIO
    position: int
    size: int


class LogSegment:
    """A segment file and its indexes; the last segment of a log is the active one and takes appends."""

    def __init__(
        self, directory: Path, base_offset: int, config: LogConfig, now_ms: int, *, fresh: bool
    ) -> None:
        """Open (``fresh=False``) or create empty (``fresh=True``) the segment files at ``base_offset``."""
        stem = directory / segment_file_stem(base_offset)
        if fresh:
            os.close(os.open(stem.with_suffix(LOG_SUFFIX), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
            for suffix in (INDEX_SUFFIX, TIME_INDEX_SUFFIX):
                stem.with_suffix(suffix).unlink(missing_ok=True)
        self._indexes_found = (
            stem.with_suffix(INDEX_SUFFIX).exists() and stem.with_suffix(TIME_INDEX_SUFFIX).exists()
        )
        self.base_offset = base_offset
        self.path = stem.with_suffix(LOG_SUFFIX)
        self.file: FileIO = open(self.path, "r+b", buffering=0)  # noqa: SIM115 - lives as long as the segment
        self._fd = self.file.fileno()
        self.offset_index = OffsetIndex(
            stem.with_suffix(INDEX_SUFFIX), base_offset, config.segment_index_bytes
        )
        self.time_index = TimeIndex(
            stem.with_suffix(TIME_INDEX_SUFFIX), base_offset, config.segment_index_bytes
        )
        self.index_interval_bytes = config.index_interval_bytes
        self.size = os.fstat(self._fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1  # largest batch max timestamp so far, and the last offset of that batch
        self.offset_of_max_timestamp = base_offset
        self.first_batch_timestamp = -1  # what segment.ms counts from (Kafka's rollingBasedTimestamp)
        self.created_ms = now_ms
        self._changes = int(fresh)  # appends, truncations and rebuilds so far; fsynced up to _synced_changes
        self._synced_changes = 0
        self._bytes_since_index_entry = 0

    @property
    def dirty(self) -> bool:
        """Holds bytes, truncations or index changes not yet fsynced."""
        return self._changes != self._synced_changes

    # -- loading ---------------------------------------------------------------------------------------------

    def load(self) -> None:
        """Trust a cleanly written segment: read its indexes and scan only the batches after the last entry.

        Raises CorruptIndexError when the index files do not fit the data; the caller then runs recover().
        """
        if not self._indexes_found and self.size:
            raise CorruptIndexError(f"index files missing for {self.path}")
        self.offset_index.load(self.size)
        self._load_tail()
        self.time_index.load(self.next_offset)
        timestamp, offset = self.time_index.last_entry()
        if timestamp > self.max_timestamp:
            self.max_timestamp, self.offset_of_max_timestamp = timestamp, offset

    def _load_tail(self) -> None:
        """Derive the next offset, max timestamp and first timestamp from the headers after the index."""
        _, end = self.offset_index.last_entry()
        self.next_offset = self.base_offset
        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry()
        for position, header in self.batches_from(end):
            self.next_offset = header.next_offset
            if header.max_timestamp > self.max_timestamp:
                self.max_timestamp, self.offset_of_max_timestamp = header.max_timestamp, header.last_offset
            end = position + header.total_size
        if end != self.size:
            raise CorruptIndexError(f"{self.path} does not end on a batch boundary its index knows of")
        first = self.first_header()
        self.first_batch_timestamp = first.max_timestamp if first else -1

    def recover(self, flushed_to: int = -1) -> int:
        """Re-validate the batches (sizes, magic, CRC, offsets), rebuild both indexes, and cut the file at the
        first invalid batch. Returns the number of bytes truncated.

        ``flushed_to`` is the recovery point: a flush fsyncs the batches below it together with their index
        entries (written out before the fsync), so validation resumes after the last indexed batch below it
        instead of reading the whole segment; without such an entry, or when the indexes do not fit the
        data, every batch is validated."""
        file_size = os.fstat(self._fd).st_size
        valid, next_offset = self._resume_point(flushed_to, file_size)
        window, window_start = b"", 0
        while file_size - valid >= BATCH_HEADER_SIZE:
            if valid + BATCH_HEADER_SIZE > window_start + len(window):
                window, window_start = os.pread(self._fd, _RECOVERY_WINDOW, valid), valid
            header = BatchHeader._make(HEADER_STRUCT.unpack_from(window, valid - window_start))
            size = header.total_size
            if size < BATCH_HEADER_SIZE or size > file_size - valid or header.magic != MAGIC:
                break
            if valid + size > window_start + len(window):
                window, window_start = os.pread(self._fd, max(_RECOVERY_WINDOW, size), valid), valid
            start = valid - window_start
            if crc32c.crc32c(memoryview(window)[start + ATTRIBUTES_OFFSET : start + size]) != header.crc:
                break
            if (
                header.base_offset < next_offset
                or header.last_offset_delta < 0
                or header.last_offset - self.base_offset > INT_MAX
            ):
                break
            self._index_batch(valid, header)
            next_offset = header.next_offset
            valid += size
        truncated = file_size - valid
        if truncated:
            logger.warning("truncating %d invalid bytes at position %d of %s", truncated, valid, self.path)
            os.ftruncate(self._fd, valid)
        self.size = valid
        self.next_offset = next_offset
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        first = self.first_header()
        self.first_batch_timestamp = first.max_timestamp if first else -1
        self._changes += 1
        return truncated

    def _resume_point(self, flushed_to: int, file_size: int) -> tuple[int, int]:
        """(position, next offset) where recover() starts validating, with the indexes and the running max
        timestamp set up to there: after the last batch indexed below ``flushed_to`` (that batch's header and
        CRC are checked), else at the start with both indexes emptied."""
        try:
            if self._indexes_found and flushed_to > self.base_offset:
                self.offset_index.load(file_size)
                self.time_index.load(self.base_offset + INT_MAX)
                self.offset_index.truncate_to(flushed_to)
                indexed_offset, position = self.offset_index.last_entry()
                if position:
                    header = BatchHeader._make(
                        HEADER_STRUCT.unpack(os.pread(self._fd, BATCH_HEADER_SIZE, position))
                    )
                    size = header.total_size
                    if (
                        header.magic == MAGIC
                        and header.last_offset == indexed_offset
                        and BATCH_HEADER_SIZE <= size <= file_size - position
                        and crc32c.crc32c(
                            os.pread(self._fd, size - ATTRIBUTES_OFFSET, position + ATTRIBUTES_OFFSET)
                        )
                        == header.crc
                    ):
                        self.time_index.truncate_to(indexed_offset + 1)
                        self.max_timestamp, self.offset_of_max_timestamp = self.time_index.last_entry()
                        self._bytes_since_index_entry = size
                        return position + size, header.next_offset
        except (CorruptIndexError, struct.error, ValueError) as exc:
            logger.warning("validating all of %s: its indexes do not fit the data: %s", self.path, exc)
        self.offset_index.reset()
        self.time_index.reset()
        self.max_timestamp, self.offset_of_max_timestamp = -1, self.base_offset
        self._bytes_since_index_entry = 0
        return 0, self.base_offset

    # -- appending -------------------------------------------------------------------------------------------

    def should_roll(
        self, config: LogConfig, batch_size: int, batch_timestamp: int, last_offset: int, now_ms: int
    ) -> bool:
        """Kafka's roll rule: segment.bytes would be exceeded, segment.ms (for a compacted log also
        max.compaction.lag.ms) has elapsed since the first batch, an index is full, or the last offset no
        longer fits the indexes' 32-bit relative offsets."""
        if self.size == 0:
            return False
        return (
            self.size > config.segment_bytes - batch_size
            or self.time_waited_for_roll(now_ms, batch_timestamp) > config.max_segment_ms
            or self.offset_index.is_full
            or self.time_index.is_full
            or last_offset - self.base_offset > INT_MAX
        )

    def time_waited_for_roll(self, now_ms: int, batch_timestamp: int) -> int:
        """Age against segment.ms: by record time when the first batch has a timestamp, else by wall clock."""
        if self.first_batch_timestamp >= 0:
            return batch_timestamp - self.first_batch_timestamp
        return now_ms - self.created_ms

    def append(self, data: memoryview, headers: Sequence[BatchHeader]) -> None:
        """Write validated, offset-assigned batches at the end with one positional write, then index them."""
        position = self.size
        written = os.pwrite(self._fd, data, position)
        while written < len(data):  # regular files only write short when the disk is full or on a signal
            written += os.pwrite(self._fd, data[written:], position + written)
        self._changes += 1
        if position == 0:
            self.first_batch_timestamp = headers[0].max_timestamp
        for header in headers:
            self._index_batch(position, header)
            position += header.total_size
        self.size = position
        self.next_offset = headers[-1].next_offset

    def _index_batch(self, position: int, header: BatchHeader) -> None:
        """Track the max timestamp and add index entries every index.interval.bytes, as Kafka does."""
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp, self.offset_of_max_timestamp = header.max_timestamp, header.last_offset
        if self._bytes_since_index_entry > self.index_interval_bytes:
            self.offset_index.append(header.last_offset, position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_index_entry = 0
        self._bytes_since_index_entry += header.total_size

    # -- reading ---------------------------------------------------------------------------------------------

    def batches_from(self, position: int, end: int | None = None) -> Iterator[tuple[int, BatchHeader]]:
        """(position, header) of each whole batch from ``position`` (a batch boundary) up to ``end``.

        Headers come from chunked preads, so a scan between two index entries costs about one system call.
        """
        end = self.size if end is None else end
        chunk, chunk_start = b"", position
        while end - position >= BATCH_HEADER_SIZE:
            offset_in_chunk = position - chunk_start
            if offset_in_chunk + BATCH_HEADER_SIZE > len(chunk):
                chunk, chunk_start, offset_in_chunk = os.pread(self._fd, _SCAN_CHUNK, position), position, 0
                if len(chunk) < BATCH_HEADER_SIZE:
                    return
            header = BatchHeader._make(HEADER_STRUCT.unpack_from(chunk, offset_in_chunk))
            if header.total_size < BATCH_HEADER_SIZE:
                raise CorruptSegmentError(
                    f"{self.path}: invalid batch size {header.total_size} at {position}"
                )
            if position + header.total_size > end:
                return
            yield position, header
            position += header.total_size

    def offset_at(self, position: int) -> int:
        """Base offset of the batch at ``position`` (a batch boundary); the next offset at the end."""
        if position + _BASE_OFFSET.size > self.size:
            return self.next_offset
        return int(_BASE_OFFSET.unpack(os.pread(self._fd, _BASE_OFFSET.size, position))[0])

    def first_header(self) -> BatchHeader | None:
        return next((header for _, header in self.batches_from(0)), None)

    def translate_offset(self, offset: int, start_position: int = 0) -> tuple[int, BatchHeader] | None:
        """Position and header of the first batch whose last offset is >= ``offset``; None past the end."""
        _, position = self.offset_index.lookup(offset)
        for found in self.batches_from(max(position, start_position)):
            if found[1].last_offset >= offset:
                return found
        return None

    def read(
        self, offset: int, max_bytes: int, max_offset: int, min_one_batch: bool
    ) -> tuple[int, int] | None:
        """(position, size) of whole batches from the one holding ``offset``: at most ``max_bytes`` (or just
        the first batch when it alone is bigger and ``min_one_batch``), none reaching ``max_offset``.

        None means no batch here reaches ``offset`` (try the next segment); size 0 means nothing to return.
        """
        found = self.translate_offset(offset)
        if found is None:
            return None
        start, first = found
        if first.last_offset >= max_offset:
            return start, 0
        if first.total_size > max_bytes:
            return start, first.total_size if min_one_batch else 0
        visible_end = self.size
        if max_offset < self.next_offset:
            limit = self.translate_offset(max_offset, start)
            if limit is not None:
                visible_end = limit[0]
        budget_end = start + max_bytes
        if budget_end >= visible_end:
            return start, visible_end - start
        end = max(self.offset_index.floor_position(budget_end), start)
        for position, header in self.batches_from(end, visible_end):
            if position + header.total_size > budget_end:
                break
            end = position + header.total_size
        return start, end - start

    def read_bytes(self, position: int, size: int) -> bytes:
        return os.pread(self._fd, size, position)

    def find_offset_by_timestamp(self, timestamp: int, starting_offset: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record from ``starting_offset`` on with a timestamp >= the target.

        The time index narrows the scan to a few batches; only the batch that qualifies is decoded.
        """
        _, indexed_offset = self.time_index.lookup(timestamp)
        _, position = self.offset_index.lookup(max(indexed_offset, starting_offset))
        for batch_position, header in self.batches_from(position):
            if header.max_timestamp < timestamp or header.last_offset < starting_offset:
                continue
            _, records = decode_batch(self.read_bytes(batch_position, header.total_size))
            for record in records:
                record_offset = header.base_offset + record.offset_delta
                record_timestamp = header.record_timestamp(record.timestamp_delta)
                if record_timestamp >= timestamp and record_offset >= starting_offset:
                    return record_offset, record_timestamp
        return None

    def max_timestamp_record(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record carrying this segment's max timestamp."""
        if self.max_timestamp < 0:
            return None
        _, position = self.offset_index.lookup(self.offset_of_max_timestamp)
        for batch_position, header in self.batches_from(position):
            if header.max_timestamp != self.max_timestamp:
                continue
            _, records = decode_batch(self.read_bytes(batch_position, header.total_size))
            for record in records:
                if header.record_timestamp(record.timestamp_delta) == self.max_timestamp:
                    return header.base_offset + record.offset_delta, self.max_timestamp
            return header.last_offset, self.max_timestamp
        return None

    def largest_timestamp(self) -> int:
        """What retention.ms measures: the max timestamp, or the file's mtime when no batch has one."""
        if self.max_timestamp >= 0:
            return self.max_timestamp
        return int(os.fstat(self._fd).st_mtime * 1000)

    # -- changing --------------------------------------------------------------------------------------------

    def truncate_to(self, offset: int, now_ms: int) -> int:
        """Drop the batch holding ``offset`` and everything after it; returns the bytes removed."""
        found = self.translate_offset(offset)
        self.offset_index.truncate_to(offset)
        self.time_index.truncate_to(offset)
        if found is None:
            return 0
        position = found[0]
        truncated = self.size - position
        os.ftruncate(self._fd, position)
        self.size = position
        self._bytes_since_index_entry = 0
        self._load_tail()
        if self.size == 0:
            self.created_ms = now_ms
        self._changes += 1
        return truncated

    def seal(self) -> None:
        """On losing the active role: put the final max timestamp in the time index, write the indexes."""
        self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.offset_index.persist()
        self.time_index.persist()

    def flush(self) -> None:
        """fsync the data and write + fsync the indexes."""
        if not self.dirty:
            return
        changes, fds = self.prepare_sync()
        for fd in fds:
            os.fsync(fd)
        self.synced(changes)

    def prepare_sync(self) -> tuple[int, tuple[int, ...]]:
        """Write the index tails (the cheap part, on the caller's thread) and return the change count a sync
        will cover with the descriptors to fsync (data, offset index, time index), for the flusher thread."""
        self.offset_index.persist()
        self.time_index.persist()
        return self._changes, (self._fd, self.offset_index.fileno(), self.time_index.fileno())

    def synced(self, changes: int) -> None:
        """An fsync of what prepare_sync returned completed: clean unless written since."""
        if changes > self._synced_changes:
            self._synced_changes = changes

    def mark_deleted(self) -> None:
        """Rename the files to ``*.deleted``; open handles stay valid so in-flight reads still complete."""
        self.rename(self.path.with_name(self.path.name + DELETED_SUFFIX))
        self.offset_index.rename(
            self.offset_index.path.with_name(self.offset_index.path.name + DELETED_SUFFIX)
        )
        self.time_index.rename(self.time_index.path.with_name(self.time_index.path.name + DELETED_SUFFIX))

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path

    def close(self) -> None:
        """Write the final index state and release the files (the data was flushed by the caller); the files
        are released even when the index writes fail (a full disk: recovery rebuilds the indexes)."""
        try:
            self.seal()
            self.offset_index.fsync()
            self.time_index.fsync()
        finally:
            self._release()

    def delete(self) -> None:
        """Close and remove the files, whatever their current names."""
        self._release()
        for path in (self.path, self.offset_index.path, self.time_index.path):
            path.unlink(missing_ok=True)

    def _release(self) -> None:
        self.file.close()
        self.offset_index.close()
        self.time_index.close()

    def __repr__(self) -> str:
        return f"LogSegment({self.path.name}, size={self.size}, next_offset={self.next_offset})"
