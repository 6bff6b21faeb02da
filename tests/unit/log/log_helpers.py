"""Helpers shared by the log tests: building batches and reading back what a log returns."""

from __future__ import annotations

import os

from strom.log import PartitionLog, ReadResult
from strom.protocol.record_batch import Record, build_batch, decode_batch, validate_record_set

BASE_TIMESTAMP = 1_700_000_000_000


class FakeClock:
    """A ``clock`` for logs: seconds since the epoch, moved by hand."""

    def __init__(self, now_ms: int = BASE_TIMESTAMP) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms / 1000

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def make_batch(
    count: int = 3, *, value_size: int = 20, timestamp: int = BASE_TIMESTAMP, **kwargs: object
) -> bytearray:
    """A writable produced batch: ``count`` records of ``value_size`` bytes, timestamps ``timestamp + i``."""
    records = [Record(i, i, b"key-%d" % i, bytes([65 + i % 26]) * value_size) for i in range(count)]
    return bytearray(build_batch(records, base_timestamp=timestamp, **kwargs))  # type: ignore[arg-type]


def append_batches(log: PartitionLog, count: int, **kwargs: object) -> None:
    for _ in range(count):
        log.append(memoryview(make_batch(**kwargs)))  # type: ignore[arg-type]


def range_bytes(result: ReadResult) -> bytes:
    """The bytes a fetch response would carry for ``result``."""
    if result.records is None:
        return b""
    return os.pread(result.records.file.fileno(), result.size, result.records.position)


def batch_offsets(data: bytes) -> list[tuple[int, int]]:
    """(base offset, last offset) of each batch; validates sizes and CRCs on the way."""
    if not data:
        return []
    return [(h.base_offset, h.last_offset) for h in validate_record_set(memoryview(bytearray(data)))]


def record_offsets(data: bytes) -> list[int]:
    return [offset for base, last in batch_offsets(data) for offset in range(base, last + 1)]


def decode_records(data: bytes) -> list[tuple[int, int, bytes | None]]:
    """(offset, timestamp, value) of every record in a run of batches."""
    out: list[tuple[int, int, bytes | None]] = []
    position = 0
    while position < len(data):
        header, records = decode_batch(memoryview(data)[position:])
        for record in records:
            timestamp = header.record_timestamp(record.timestamp_delta)
            out.append((header.base_offset + record.offset_delta, timestamp, record.value))
        position += header.total_size
    return out
