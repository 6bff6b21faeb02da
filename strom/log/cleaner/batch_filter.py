"""Record-level scanning and filtering of one v2 record batch, for the log cleaner.

The cleaner looks at every record of the log it rewrites, so the scan is a tight loop over the raw bytes:
varints are read inline and each record is reported as a tuple with its raw byte span, never as an object.
A filtered batch is assembled from the retained spans, so the records themselves are not re-encoded unless
their timestamp deltas must change (when a delete horizon is first set, see below).

KIP-534 delete horizon: attribute bit 0x40 marks a batch whose base timestamp holds the time after which its
tombstones (or, for a transaction marker, the marker itself) may be removed; the records' timestamp deltas are
then relative to that horizon, so every record keeps its absolute timestamp.
"""

from __future__ import annotations

import struct

import crc32c

from strom.protocol.errors import KafkaError
from strom.protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    COMPRESSION_MASK,
    CRC_OFFSET,
    HEADER_STRUCT,
    LOG_OVERHEAD,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_FLAG,
    BatchHeader,
    compress,
    decompress,
    read_varint,
    write_varint,
)

DELETE_HORIZON_FLAG = 0x40

_CRC = struct.Struct(">I")

# One scanned record: (offset delta, timestamp delta, key or None, value is null, span start, span end).
# The span covers the whole record, its length varint included, in the buffer that was scanned.
RecordSpan = tuple[int, int, bytes | None, bool, int, int]


class CorruptRecordsError(Exception):
    """A batch whose records do not parse: the storage under the log is damaged."""


def delete_horizon_ms(header: BatchHeader) -> int | None:
    """The batch's delete horizon (ms), or None when the horizon bit is not set."""
    return header.base_timestamp if header.attributes & DELETE_HORIZON_FLAG else None


def batch_records(batch: bytes | memoryview, header: BatchHeader) -> bytes:
    """The records section of ``batch`` (which starts at its header), decompressed."""
    return decompress(header.compression, batch[BATCH_HEADER_SIZE : header.total_size])


def scan_records(buf: bytes, pos: int, end: int, count: int) -> list[RecordSpan]:
    """Every record in ``buf[pos:end]``, which must hold exactly ``count`` records.

    Only what compaction decides on is parsed: offset and timestamp deltas, the key, and whether the value is
    null; headers are skipped by the record length. One-byte varints (the common case) take a fast path.
    """
    out: list[RecordSpan] = []
    append = out.append
    try:
        for _ in range(count):
            start = pos
            b = buf[pos]
            if b < 0x80:
                length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                length, pos = read_varint(buf, pos)
            record_end = pos + length
            pos += 1  # record attributes
            b = buf[pos]
            if b < 0x80:
                timestamp_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                timestamp_delta, pos = read_varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                offset_delta = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                offset_delta, pos = read_varint(buf, pos)
            b = buf[pos]
            if b < 0x80:
                key_length = (b >> 1) ^ -(b & 1)
                pos += 1
            else:
                key_length, pos = read_varint(buf, pos)
            if key_length < 0:
                key = None
            else:
                key = buf[pos : pos + key_length]
                pos += key_length
            # A null value is the varint -1, zig-zag encoded as the single byte 0x01; a length >= 0 encodes
            # to an even first byte or one with the continuation bit set.
            append((offset_delta, timestamp_delta, key, buf[pos] == 1, start, record_end))
            if length < 6 or record_end > end:
                raise CorruptRecordsError(f"invalid record length {length} at byte {start}")
            pos = record_end
    except IndexError as exc:
        raise CorruptRecordsError(f"record runs past the end of its batch: {exc}") from exc
    except KafkaError as exc:  # a varint longer than 10 bytes
        raise CorruptRecordsError(exc.message or exc.code.name) from exc
    if pos != end:
        raise CorruptRecordsError(f"{end - pos} bytes after the last of {count} records")
    return out


def filtered_batch(
    header: BatchHeader,
    records: bytes,
    retained: list[RecordSpan],
    delete_horizon: int | None,
) -> bytes:
    """A copy of the batch ``header`` describes holding only the ``retained`` spans of ``records`` (its
    decompressed records section), recompressed with the batch's codec and with a fresh CRC.

    Base offset, last offset delta (so the producer's last sequence survives), producer id, epoch, base
    sequence, leader epoch and attributes stay; record count and max timestamp follow the retained records.
    ``delete_horizon`` sets the horizon bit and base timestamp; when the batch had no horizon before, the
    retained records' timestamp deltas are rewritten to stay relative to the new base timestamp.
    """
    base_timestamp = header.base_timestamp
    attributes = header.attributes
    if header.attributes & TIMESTAMP_TYPE_FLAG:
        max_timestamp = header.max_timestamp
    else:
        max_timestamp = max((base_timestamp + span[1] for span in retained), default=NO_TIMESTAMP)
    if delete_horizon is not None and not attributes & DELETE_HORIZON_FLAG:
        body = bytearray()
        shift = base_timestamp - delete_horizon
        for span in retained:
            _rebase_record(body, records, span, span[1] + shift)
        attributes |= DELETE_HORIZON_FLAG
        base_timestamp = delete_horizon
    else:
        body = bytearray().join(records[span[4] : span[5]] for span in retained)
    payload = compress(header.compression, bytes(body))
    return _assemble(header, attributes, base_timestamp, max_timestamp, len(retained), payload)


def empty_batch(header: BatchHeader) -> bytes:
    """The header-only batch Kafka keeps when every record of a producer's latest batch is removed: same
    offsets, producer id, epoch and base sequence, no compression, no base timestamp, record count 0."""
    attributes = header.attributes & ~(COMPRESSION_MASK | DELETE_HORIZON_FLAG)
    return _assemble(header, attributes, NO_TIMESTAMP, header.max_timestamp, 0, b"")


def has_tombstone(records: list[RecordSpan]) -> bool:
    return any(span[3] for span in records)


def _assemble(
    header: BatchHeader,
    attributes: int,
    base_timestamp: int,
    max_timestamp: int,
    count: int,
    payload: bytes,
) -> bytes:
    out = bytearray(BATCH_HEADER_SIZE + len(payload))
    HEADER_STRUCT.pack_into(
        out,
        0,
        header.base_offset,
        len(out) - LOG_OVERHEAD,
        header.partition_leader_epoch,
        header.magic,
        0,
        attributes,
        header.last_offset_delta,
        base_timestamp,
        max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        count,
    )
    out[BATCH_HEADER_SIZE:] = payload
    _CRC.pack_into(out, CRC_OFFSET, crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


def _rebase_record(out: bytearray, records: bytes, span: RecordSpan, timestamp_delta: int) -> None:
    """Append the record at ``span`` to ``out`` with a new timestamp delta (and so a new length)."""
    _, body_start = read_varint(records, span[4])
    _, after_timestamp = read_varint(records, body_start + 1)
    body = bytearray(records[body_start : body_start + 1])  # record attributes
    write_varint(body, timestamp_delta)
    body += records[after_timestamp : span[5]]
    write_varint(out, len(body))
    out += body
