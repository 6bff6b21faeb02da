"""Sequential reads of the batches of an immutable segment file, in large windows, for the cleaner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from strom.log.segment import CorruptSegmentError
from strom.protocol.record_batch import BATCH_HEADER_SIZE, HEADER_STRUCT, MAGIC, BatchHeader

_WINDOW = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentFile:
    """One existing, immutable (non-active) segment of a log."""

    base_offset: int
    path: Path  # the <base>.log file
    size: int  # bytes to consider: read only this much
    next_offset: int  # offset after its last batch


def read_batches(segment: SegmentFile, start_offset: int = -1) -> Iterator[tuple[BatchHeader, bytes, int]]:
    """(header, window, position in window) of each batch whose last offset is >= ``start_offset``.

    The window is a bytes object holding the whole batch from the given position, so callers parse records in
    place without copying; it stays valid after the iteration moves on.
    """
    fd = os.open(segment.path, os.O_RDONLY)
    try:
        position = 0
        window, window_start = b"", 0
        while segment.size - position >= BATCH_HEADER_SIZE:
            if position + BATCH_HEADER_SIZE > window_start + len(window):
                window, window_start = _pread(fd, _WINDOW, position, segment.size), position
            header = BatchHeader._make(HEADER_STRUCT.unpack_from(window, position - window_start))
            size = header.total_size
            if size < BATCH_HEADER_SIZE or header.magic != MAGIC or position + size > segment.size:
                raise CorruptSegmentError(f"{segment.path}: invalid batch at position {position}")
            if position + size > window_start + len(window):
                window, window_start = _pread(fd, max(_WINDOW, size), position, segment.size), position
            if header.last_offset >= start_offset:
                yield header, window, position - window_start
            position += size
        if position != segment.size:
            raise CorruptSegmentError(f"{segment.path}: {segment.size - position} bytes after the last batch")
    finally:
        os.close(fd)


def _pread(fd: int, size: int, position: int, limit: int) -> bytes:
    data = os.pread(fd, min(size, limit - position), position)
    if len(data) < min(size, limit - position):
        raise CorruptSegmentError(f"segment file shorter than {limit} bytes")
    return data
