"""The metadata log: an append-only, fsynced file of record batches, the single source of truth for metadata.

File format: a sequence of frames, each

    length   int32, big-endian: size of the payload in bytes
    crc      uint32, big-endian: CRC32C of the payload
    payload  a batch (see records.encode_batch): its base offset and one or more records

A frame is the unit of atomicity: a change that needs several records (a topic with its partitions and
configs) is one frame, so after a crash it is either wholly there or wholly absent. Every record has an
offset, counted from the first record of the log; the image is a pure function of the (offset, record)
sequence, which is what a later Raft layer will replicate.

Opening the log scans it and truncates at the first frame that is torn or fails its checksum (what a crash
in the middle of an append leaves behind), so appends always continue from a clean tail.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import crc32c

from strom.metadata.records import MetadataRecord, RecordFormatError, decode_batch, encode_batch
from strom.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

METADATA_PARTITION_DIR = "__cluster_metadata-0"
METADATA_LOG_FILE = "metadata.log"

_HEADER = struct.Struct(">iI")


def metadata_log_path(data_dir: Path) -> Path:
    """Where a broker with this log directory keeps its metadata log."""
    return data_dir / METADATA_PARTITION_DIR / METADATA_LOG_FILE


class MetadataLogError(Exception):
    """The metadata log cannot be used (e.g. it was closed)."""


class MetadataStorageError(KafkaError):
    """An append failed to reach the disk (full, failing): the change was not made, the client may retry."""


class MetadataLog:
    """Append-only, crash-safe storage of metadata record batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        directory_created = not path.parent.exists()
        file_created = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered, so a failed append leaves nothing in a buffer to be written later.
        self._file: BinaryIO = open(path, "a+b", buffering=0)  # noqa: SIM115 - owned until close()
        try:
            if directory_created:
                _fsync_dir(path.parent.parent)
            if file_created:
                _fsync_dir(path.parent)
            self._start_offset, self._next_offset, self._size = self._recover()
        except BaseException:
            self._file.close()
            raise

    @property
    def start_offset(self) -> int:
        """Offset of the first record in the log (0 until logs can start from a snapshot)."""
        return self._start_offset

    @property
    def next_offset(self) -> int:
        """The offset the next appended record will get."""
        return self._next_offset

    def append(self, records: list[MetadataRecord]) -> int:
        """Durably append records as one atomic batch; returns the offset of the last one.

        MetadataStorageError (KAFKA_STORAGE_ERROR) when the write or fsync fails, e.g. on a full disk: the
        partial frame is cut off again: the log stays valid and the next append works once space returns."""
        if not records:
            raise ValueError("cannot append an empty batch")
        file = self._open_file()
        payload = encode_batch(records, self._next_offset)
        frame = _HEADER.pack(len(payload), crc32c.crc32c(payload)) + payload
        try:
            written = 0
            while written < len(frame):
                written += file.write(frame[written:])
            os.fsync(file.fileno())
        except OSError as exc:
            # Leave no torn frame behind for the next append to build on.
            file.truncate(self._size)
            raise MetadataStorageError(
                ErrorCode.KAFKA_STORAGE_ERROR, f"cannot append to {self.path}: {exc}"
            ) from exc
        except BaseException:
            file.truncate(self._size)
            raise
        self._size += len(frame)
        self._next_offset += len(records)
        return self._next_offset - 1

    def replay(self) -> Iterator[tuple[int, MetadataRecord]]:
        """Every record in the log, in order, with its offset."""
        for base_offset, records, _end in self._frames(self._open_file()):
            for index, record in enumerate(records):
                yield base_offset + index, record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> MetadataLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _open_file(self) -> BinaryIO:
        if self._file.closed:
            raise MetadataLogError(f"metadata log {self.path} is closed")
        return self._file

    def _recover(self) -> tuple[int, int, int]:
        """Scan the whole log; truncate a bad tail. Returns (start offset, next offset, valid size)."""
        start_offset: int | None = None
        next_offset = 0
        valid_size = 0
        for base_offset, records, end in self._frames(self._file, stop_on_error=True):
            if start_offset is None:
                start_offset = base_offset
            elif base_offset != next_offset:
                log.warning(
                    "metadata log %s: batch at byte %d has base offset %d, expected %d; truncating",
                    self.path,
                    valid_size,
                    base_offset,
                    next_offset,
                )
                break
            next_offset = base_offset + len(records)
            valid_size = end
        file_size = self._file.seek(0, os.SEEK_END)
        if file_size > valid_size:
            log.warning(
                "metadata log %s: discarding %d bytes of torn or corrupt data at byte %d",
                self.path,
                file_size - valid_size,
                valid_size,
            )
            self._file.truncate(valid_size)
            os.fsync(self._file.fileno())
        if start_offset is None:
            return 0, 0, valid_size
        return start_offset, next_offset, valid_size

    def _frames(
        self, file: BinaryIO, stop_on_error: bool = False
    ) -> Iterator[tuple[int, list[MetadataRecord], int]]:
        """(base offset, records, byte position after the frame) of each frame, up to the first bad one."""
        file_size = os.fstat(file.fileno()).st_size
        position = 0
        while position < file_size:
            file.seek(position)
            header = _read_exactly(file, _HEADER.size)
            if len(header) < _HEADER.size:
                self._bad_frame(position, "torn frame header", stop_on_error)
                return
            length, checksum = _HEADER.unpack(header)
            if length <= 0:
                self._bad_frame(position, "non-positive length", stop_on_error)
                return
            if position + _HEADER.size + length > file_size:
                self._bad_frame(position, "torn frame", stop_on_error)
                return
            payload = _read_exactly(file, length)
            if crc32c.crc32c(payload) != checksum:
                self._bad_frame(position, "checksum mismatch", stop_on_error)
                return
            try:
                base_offset, records = decode_batch(payload)
            except RecordFormatError as exc:
                if stop_on_error:
                    # A frame that checksums but cannot be decoded was written by a newer Strom or a bug;
                    # truncating it would destroy metadata, so refuse to start instead.
                    raise MetadataLogError(
                        f"metadata log {self.path}: unreadable batch at byte {position}"
                    ) from exc
                raise
            position += _HEADER.size + length
            yield base_offset, records, position

    def _bad_frame(self, position: int, reason: str, stop_on_error: bool) -> None:
        if not stop_on_error:
            raise MetadataLogError(f"metadata log {self.path}: {reason} at byte {position}")


def _read_exactly(file: BinaryIO, size: int) -> bytes:
    """size bytes, or fewer only at end of file (raw reads may return short)."""
    chunks = []
    while size > 0:
        chunk = file.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
