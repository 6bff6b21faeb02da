"""Sparse per-segment indexes in Kafka's on-disk formats.

``<base>.index`` maps a batch's last offset to its file position: entries of relative offset (int32) +
position (int32). ``<base>.timeindex`` maps the largest timestamp seen so far to the offset holding it:
entries of timestamp (int64) + relative offset (int32). Both are big-endian and strictly increasing.

Entries live in memory (array-backed, so lookups are C-speed binary searches) and reach the file on
``persist()`` — at flush, roll and close. That is safe because recovery rebuilds the indexes of every segment
past the recovery point, and a segment only passes the recovery point once it has been flushed.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_right
from pathlib import Path

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class CorruptIndexError(Exception):
    """An index file that cannot be trusted; the caller rebuilds it from the segment."""


class _IndexFile:
    """Append-mostly file behind an index: writes entries not yet on disk, truncates when entries drop."""

    def __init__(self, path: Path, entry_size: int) -> None:
        self.path = path
        self._entry_size = entry_size
        self._file = open(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b", buffering=0)  # noqa: SIM115
        self._fd = self._file.fileno()
        self.persisted = 0  # entries known to be in the file
        self.dirty = False

    def read_all(self) -> bytes:
        size = os.fstat(self._fd).st_size
        if size % self._entry_size:
            raise CorruptIndexError(f"{self.path} size {size} is not a multiple of {self._entry_size}")
        data = os.pread(self._fd, size, 0)
        self.persisted = size // self._entry_size
        return data

    def dropped_to(self, entries: int) -> None:
        if entries < self.persisted:
            os.ftruncate(self._fd, entries * self._entry_size)
            self.persisted = entries
            self.dirty = True

    def clear(self) -> None:
        """Empty the file, whatever it holds: an index being rebuilt was never read, so ``persisted`` does
        not know of its old entries, and a shorter rebuilt index would leave some of them behind."""
        os.ftruncate(self._fd, 0)
        self.persisted = 0
        self.dirty = True

    def write_tail(self, encoded: bytes, entries: int) -> None:
        """Write ``encoded`` (entries persisted..entries) after what the file holds. A failed write (a
        full disk) leaves ``persisted`` alone: the next persist rewrites the tail over any partial entry."""
        if encoded:
            position = self.persisted * self._entry_size
            written = os.pwrite(self._fd, encoded, position)
            while written < len(encoded):  # short only when the disk is full: the next call raises ENOSPC
                written += os.pwrite(self._fd, encoded[written:], position + written)
            self.persisted = entries
            self.dirty = True

    def fsync(self) -> None:
        if self.dirty:
            os.fsync(self._fd)
            self.dirty = False

    def fileno(self) -> int:
        return self._fd

    def rename(self, path: Path) -> None:
        os.rename(self.path, path)
        self.path = path

    def close(self) -> None:
        self._file.close()


class _SparseIndex:
    """What both indexes share: two parallel columns, one of them relative offsets, mirrored to a file."""

    ENTRY: struct.Struct
    _relative_offsets: array[int]

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        self.base_offset = base_offset
        self.max_entries = max(max_index_bytes // self.ENTRY.size, 1)
        self._file = _IndexFile(path, self.ENTRY.size)

    def _columns(self) -> tuple[array[int], array[int]]:
        """The two columns in on-disk entry order."""
        raise NotImplementedError

    @property
    def path(self) -> Path:
        return self._file.path

    def __len__(self) -> int:
        return len(self._relative_offsets)

    @property
    def is_full(self) -> bool:
        return len(self) >= self.max_entries

    def truncate_to(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset``."""
        keep = bisect_right(self._relative_offsets, offset - self.base_offset - 1)
        for column in self._columns():
            del column[keep:]
        self._file.dropped_to(keep)

    def reset(self) -> None:
        """Drop every entry, in memory and on disk (before a rebuild)."""
        self.truncate_to(self.base_offset)
        self._file.clear()

    def persist(self) -> None:
        first, second = self._columns()
        pack = self.ENTRY.pack
        encoded = b"".join(pack(first[i], second[i]) for i in range(self._file.persisted, len(self)))
        self._file.write_tail(encoded, len(self))

    def fsync(self) -> None:
        self._file.fsync()

    def fileno(self) -> int:
        """The descriptor the flusher thread fsyncs (after persist())."""
        return self._file.fileno()

    def rename(self, path: Path) -> None:
        self._file.rename(path)

    def close(self) -> None:
        self._file.close()


class OffsetIndex(_SparseIndex):
    """Last offset of an indexed batch -> its byte position in the segment."""

    ENTRY = _OFFSET_ENTRY

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self._relative_offsets = array("i")
        self._positions = array("i")

    def _columns(self) -> tuple[array[int], array[int]]:
        return self._relative_offsets, self._positions

    def load(self, segment_size: int) -> None:
        """Read the file; CorruptIndexError unless entries increase and point inside the segment."""
        offsets, positions = array("i"), array("i")
        for relative, position in _OFFSET_ENTRY.iter_unpack(self._file.read_all()):
            if offsets and (relative <= offsets[-1] or position <= positions[-1]):
                raise CorruptIndexError(f"{self.path}: entries are not increasing")
            if relative < 0 or not 0 <= position < segment_size:
                raise CorruptIndexError(f"{self.path}: entry ({relative}, {position}) is out of range")
            offsets.append(relative)
            positions.append(position)
        self._relative_offsets, self._positions = offsets, positions

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if self._positions and (relative <= self._relative_offsets[-1] or position <= self._positions[-1]):
            raise ValueError(f"index entry ({offset}, {position}) does not follow the last entry")
        self._relative_offsets.append(relative)
        self._positions.append(position)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or below ``offset``; (base offset, 0) if there is none."""
        slot = bisect_right(self._relative_offsets, offset - self.base_offset) - 1
        if slot < 0:
            return self.base_offset, 0
        return self.base_offset + self._relative_offsets[slot], self._positions[slot]

    def floor_position(self, position: int) -> int:
        """The largest indexed batch position at or below ``position`` (0 when none)."""
        slot = bisect_right(self._positions, position) - 1
        return self._positions[slot] if slot >= 0 else 0

    def last_entry(self) -> tuple[int, int]:
        if not self._positions:
            return self.base_offset, 0
        return self.base_offset + self._relative_offsets[-1], self._positions[-1]


class TimeIndex(_SparseIndex):
    """Largest timestamp so far -> the offset where it occurs; timestamps strictly increase."""

    ENTRY = _TIME_ENTRY

    def __init__(self, path: Path, base_offset: int, max_index_bytes: int) -> None:
        super().__init__(path, base_offset, max_index_bytes)
        self._timestamps = array("q")
        self._relative_offsets = array("i")

    def _columns(self) -> tuple[array[int], array[int]]:
        return self._timestamps, self._relative_offsets

    def load(self, next_offset: int) -> None:
        """Read the file; CorruptIndexError unless entries increase and stay below ``next_offset``."""
        timestamps, offsets = array("q"), array("i")
        limit = next_offset - self.base_offset
        for timestamp, relative in _TIME_ENTRY.iter_unpack(self._file.read_all()):
            if timestamps and (timestamp <= timestamps[-1] or relative < offsets[-1]):
                raise CorruptIndexError(f"{self.path}: entries are not increasing")
            if not 0 <= relative < limit:
                raise CorruptIndexError(f"{self.path}: entry ({timestamp}, {relative}) is out of range")
            timestamps.append(timestamp)
            offsets.append(relative)
        self._timestamps, self._relative_offsets = timestamps, offsets

    def maybe_append(self, timestamp: int, offset: int) -> None:
        """Add an entry only when ``timestamp`` beats the last one (or -1 when empty): Kafka's rule, which
        keeps timestamps strictly increasing and never indexes batches without timestamps."""
        if timestamp <= (self._timestamps[-1] if self._timestamps else -1):
            return
        relative = offset - self.base_offset
        if self._relative_offsets and relative < self._relative_offsets[-1]:
            raise ValueError(f"time index offset {offset} is below the last entry")
        self._timestamps.append(timestamp)
        self._relative_offsets.append(relative)

    def lookup(self, timestamp: int) -> tuple[int, int]:
        """(timestamp, offset) of the last entry with timestamp <= ``timestamp``; (-1, base offset) if none"""
        slot = bisect_right(self._timestamps, timestamp) - 1
        if slot < 0:
            return -1, self.base_offset
        return self._timestamps[slot], self.base_offset + self._relative_offsets[slot]

    def last_entry(self) -> tuple[int, int]:
        if not self._timestamps:
            return -1, self.base_offset
        return self._timestamps[-1], self.base_offset + self._relative_offsets[-1]
