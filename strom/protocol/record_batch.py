"""Kafka record batches (message format v2): the 61-byte header, validation, in-place offset assignment.

The broker treats a produced batch as opaque bytes: it reads the header, checks the CRC32C and rewrites
the base offset and partition leader epoch in place (neither is covered by the CRC), then stores and serves
the very same bytes. Record-level encoding and decoding (with compression) is here for tools and tests only;
the produce path never decodes records.

Header layout (big-endian)::

    0  baseOffset int64          27 baseTimestamp int64
    8  batchLength int32         35 maxTimestamp int64
    12 partitionLeaderEpoch      43 producerId int64
    16 magic int8                51 producerEpoch int16
    17 crc uint32                53 baseSequence int32
    21 attributes int16          57 recordsCount int32
    23 lastOffsetDelta int32     61 records...

batchLength counts the bytes after the length field; the CRC covers everything from the attributes on.
"""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

import cramjam
import crc32c

from strom.protocol.errors import ErrorCode, KafkaError

BATCH_HEADER_SIZE = 61
LOG_OVERHEAD = 12  # baseOffset + batchLength: the part of the header not counted by batchLength
MAGIC = 2

BASE_OFFSET_OFFSET = 0
LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_FLAG = 0x08
TRANSACTIONAL_FLAG = 0x10
CONTROL_FLAG = 0x20

NO_TIMESTAMP = -1

HEADER_STRUCT = struct.Struct(">qiibIhiqqqhii")  # BatchHeader fields, in order
_OFFSET_LENGTH_EPOCH = struct.Struct(">qii")
_ATTRIBUTES = struct.Struct(">h")
_MAX_TIMESTAMP = struct.Struct(">q")
_CRC = struct.Struct(">I")


class Compression(IntEnum):
    """Codec ids stored in the low three attribute bits."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


class TimestampType(IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class BatchHeader(NamedTuple):
    """The fixed 61-byte prefix of a v2 record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def timestamp_type(self) -> TimestampType:
        return (
            TimestampType.LOG_APPEND_TIME
            if self.attributes & TIMESTAMP_TYPE_FLAG
            else TimestampType.CREATE_TIME
        )

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_FLAG)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_FLAG)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def total_size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    def record_timestamp(self, timestamp_delta: int) -> int:
        """A record's timestamp: with LogAppendTime every record carries the batch's max timestamp."""
        if self.attributes & TIMESTAMP_TYPE_FLAG:
            return self.max_timestamp
        return self.base_timestamp + timestamp_delta


def parse_batch_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Read the header at ``pos``; CORRUPT_MESSAGE if fewer than 61 bytes remain."""
    if len(buf) - pos < BATCH_HEADER_SIZE:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"record batch header truncated at byte {pos}")
    return BatchHeader._make(HEADER_STRUCT.unpack_from(buf, pos))


def validate_record_set(buf: memoryview) -> list[BatchHeader]:
    """Check every batch of a produced record set without decoding records.

    Sizes must be consistent and inside the buffer with no trailing bytes, and the CRC32C must match
    (CORRUPT_MESSAGE); magic must be 2 and recordsCount positive and equal to lastOffsetDelta + 1
    (INVALID_RECORD, like Kafka's ProduceRequest and LogValidator checks); an empty set is INVALID_RECORD.
    """
    headers: list[BatchHeader] = []
    end = len(buf)
    pos = 0
    while pos < end:
        if end - pos < LOG_OVERHEAD:
            raise KafkaError(
                ErrorCode.CORRUPT_MESSAGE, f"{end - pos} trailing bytes after the last record batch"
            )
        header = parse_batch_header(buf, pos)
        size = header.total_size
        if size < BATCH_HEADER_SIZE:
            raise KafkaError(
                ErrorCode.CORRUPT_MESSAGE,
                f"record batch size {size} is smaller than the minimum batch overhead {BATCH_HEADER_SIZE}",
            )
        if size > end - pos:
            raise KafkaError(
                ErrorCode.CORRUPT_MESSAGE, f"record batch of {size} bytes truncated to {end - pos} bytes"
            )
        if header.magic != MAGIC:
            raise KafkaError(ErrorCode.INVALID_RECORD, f"record batch magic {header.magic} is not {MAGIC}")
        if crc32c.crc32c(buf[pos + ATTRIBUTES_OFFSET : pos + size]) != header.crc:
            raise KafkaError(
                ErrorCode.CORRUPT_MESSAGE, f"record batch is corrupt (stored crc = {header.crc})"
            )
        if header.records_count <= 0:
            raise KafkaError(
                ErrorCode.INVALID_RECORD, f"invalid reported record count {header.records_count}"
            )
        if header.last_offset_delta + 1 != header.records_count:
            raise KafkaError(
                ErrorCode.INVALID_RECORD,
                f"inconsistent last offset delta {header.last_offset_delta} "
                f"and record count {header.records_count}",
            )
        if header.compression > Compression.ZSTD:
            raise KafkaError(
                ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"unknown compression type id {header.compression}"
            )
        headers.append(header)
        pos += size
    if not headers:
        raise KafkaError(ErrorCode.INVALID_RECORD, "record set has no record batch")
    return headers


def assign_offsets(
    buf: memoryview, headers: Sequence[BatchHeader], first_offset: int, leader_epoch: int
) -> None:
    """Write consecutive base offsets and the leader epoch into each batch in place (outside the CRC)."""
    pos = 0
    offset = first_offset
    for header in headers:
        _OFFSET_LENGTH_EPOCH.pack_into(buf, pos, offset, header.batch_length, leader_epoch)
        offset += header.last_offset_delta + 1
        pos += header.total_size


def set_max_timestamp(
    buf: memoryview, pos: int, header: BatchHeader, timestamp_type: TimestampType, timestamp: int
) -> None:
    """Rewrite the timestamp type bit and max timestamp of the batch at ``pos``, then its CRC (Kafka does this
    for LogAppendTime topics). Both fields are CRC-covered, so the CRC is recomputed over the batch."""
    attributes = header.attributes & ~TIMESTAMP_TYPE_FLAG
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_FLAG
    _ATTRIBUTES.pack_into(buf, pos + ATTRIBUTES_OFFSET, attributes)
    _MAX_TIMESTAMP.pack_into(buf, pos + MAX_TIMESTAMP_OFFSET, timestamp)
    crc = crc32c.crc32c(buf[pos + ATTRIBUTES_OFFSET : pos + header.total_size])
    _CRC.pack_into(buf, pos + CRC_OFFSET, crc)


# ------------------------------------------------------------------------------------------------------------
# Record encoding and decoding: tools and tests only.
# ------------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Record:
    """One record inside a v2 batch; offsets and timestamps are deltas from the batch header."""

    offset_delta: int
    timestamp_delta: int = 0
    key: bytes | None = None
    value: bytes | None = None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


def build_batch(
    records: Iterable[Record],
    *,
    base_offset: int = 0,
    base_timestamp: int | None = None,
    compression: int = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    is_control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
) -> bytes:
    """Encode a v2 batch the way a producer would. ``base_timestamp`` defaults to now (ms)."""
    records = list(records)
    if not records:
        raise ValueError("a record batch needs at least one record")
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    body = bytearray()
    for record in records:
        _encode_record(body, record)
    payload = compress(compression, bytes(body))
    attributes = compression & COMPRESSION_MASK
    if timestamp_type == TimestampType.LOG_APPEND_TIME:
        attributes |= TIMESTAMP_TYPE_FLAG
    if transactional:
        attributes |= TRANSACTIONAL_FLAG
    if is_control:
        attributes |= CONTROL_FLAG
    max_timestamp = base_timestamp + max(record.timestamp_delta for record in records)
    out = bytearray(BATCH_HEADER_SIZE + len(payload))
    HEADER_STRUCT.pack_into(
        out,
        0,
        base_offset,
        len(out) - LOG_OVERHEAD,
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        records[-1].offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out[BATCH_HEADER_SIZE:] = payload
    _CRC.pack_into(out, CRC_OFFSET, crc32c.crc32c(memoryview(out)[ATTRIBUTES_OFFSET:]))
    return bytes(out)


class ControlType(IntEnum):
    """The type in a control record's key: the transaction marker a coordinator writes."""

    ABORT = 0
    COMMIT = 1


_CONTROL_KEY = struct.Struct(">hh")  # version 0, type
_CONTROL_VALUE = struct.Struct(">hi")  # version 0, coordinator epoch


def build_control_batch(
    producer_id: int, producer_epoch: int, control_type: ControlType, coordinator_epoch: int, timestamp: int
) -> bytes:
    """A transaction marker: one control record, transactional and control flags set, never compressed."""
    record = Record(0, 0, _CONTROL_KEY.pack(0, control_type), _CONTROL_VALUE.pack(0, coordinator_epoch))
    return build_batch(
        [record],
        base_timestamp=timestamp,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        transactional=True,
        is_control=True,
    )


def parse_control_batch(batch: bytes | bytearray | memoryview) -> tuple[ControlType, int]:
    """(type, coordinator epoch) of a control batch's record; INVALID_RECORD when it is not a marker."""
    header, records = decode_batch(batch)
    if not header.is_control or len(records) != 1:
        raise KafkaError(ErrorCode.INVALID_RECORD, "a control batch holds exactly one control record")
    key, value = records[0].key, records[0].value
    if key is None or len(key) < _CONTROL_KEY.size:
        raise KafkaError(ErrorCode.INVALID_RECORD, "a control record needs a 4-byte key")
    _, raw_type = _CONTROL_KEY.unpack_from(key)
    if raw_type not in (ControlType.ABORT, ControlType.COMMIT):
        raise KafkaError(ErrorCode.INVALID_RECORD, f"unknown control record type {raw_type}")
    coordinator_epoch = -1
    if value is not None and len(value) >= _CONTROL_VALUE.size:
        coordinator_epoch = _CONTROL_VALUE.unpack_from(value)[1]
    return ControlType(raw_type), coordinator_epoch


def decode_batch(buf: bytes | bytearray | memoryview) -> tuple[BatchHeader, list[Record]]:
    """Decode the batch at the start of ``buf``: verify its CRC, decompress, and parse every record."""
    view = memoryview(buf)
    header = parse_batch_header(view)
    if header.magic != MAGIC:
        raise KafkaError(ErrorCode.INVALID_RECORD, f"record batch magic {header.magic} is not {MAGIC}")
    if header.total_size < BATCH_HEADER_SIZE or header.total_size > len(view):
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"record batch size {header.total_size} is invalid")
    if crc32c.crc32c(view[ATTRIBUTES_OFFSET : header.total_size]) != header.crc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"record batch is corrupt (stored crc = {header.crc})")
    body = decompress(header.compression, view[BATCH_HEADER_SIZE : header.total_size])
    records: list[Record] = []
    pos = 0
    for _ in range(header.records_count):
        record, pos = _decode_record(body, pos)
        records.append(record)
    if pos != len(body):
        raise KafkaError(ErrorCode.INVALID_RECORD, f"{len(body) - pos} bytes left after the last record")
    return header, records


def _encode_record(out: bytearray, record: Record) -> None:
    body = bytearray(b"\x00")  # record attributes: unused in v2
    write_varint(body, record.timestamp_delta)
    write_varint(body, record.offset_delta)
    _write_bytes(body, record.key)
    _write_bytes(body, record.value)
    write_varint(body, len(record.headers))
    for name, value in record.headers:
        _write_bytes(body, name.encode())
        _write_bytes(body, value)
    write_varint(out, len(body))
    out += body


def _decode_record(body: bytes, pos: int) -> tuple[Record, int]:
    try:
        length, pos = read_varint(body, pos)
        end = pos + length
        if length < 1 or end > len(body):
            raise KafkaError(ErrorCode.INVALID_RECORD, f"invalid record length {length}")
        pos += 1  # record attributes
        timestamp_delta, pos = read_varint(body, pos)
        offset_delta, pos = read_varint(body, pos)
        key, pos = _read_bytes(body, pos)
        value, pos = _read_bytes(body, pos)
        count, pos = read_varint(body, pos)
        if count < 0:
            raise KafkaError(ErrorCode.INVALID_RECORD, f"invalid header count {count}")
        headers: list[tuple[str, bytes | None]] = []
        for _ in range(count):
            name, pos = _read_bytes(body, pos)
            header_value, pos = _read_bytes(body, pos)
            if name is None:
                raise KafkaError(ErrorCode.INVALID_RECORD, "null record header key")
            headers.append((name.decode(), header_value))
    except (IndexError, UnicodeDecodeError) as exc:
        raise KafkaError(ErrorCode.INVALID_RECORD, f"malformed record: {exc}") from exc
    if pos != end:
        raise KafkaError(ErrorCode.INVALID_RECORD, f"record length {length} does not match its content")
    return Record(offset_delta, timestamp_delta, key, value, headers), pos


def write_varint(out: bytearray, value: int) -> None:
    """Zig-zag varint as in protobuf; 64-bit wide so it serves both varint and varlong fields."""
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint (or varlong) at ``pos``: (value, position after it); INVALID_RECORD past 10 bytes."""
    result = 0
    shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise KafkaError(ErrorCode.INVALID_RECORD, "varint longer than 10 bytes")


def _write_bytes(out: bytearray, data: bytes | None) -> None:
    if data is None:
        write_varint(out, -1)
    else:
        write_varint(out, len(data))
        out += data


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = read_varint(buf, pos)
    if length < 0:
        return None, pos
    if pos + length > len(buf):
        raise KafkaError(ErrorCode.INVALID_RECORD, "record field runs past the end of the batch")
    return buf[pos : pos + length], pos + length


# ------------------------------------------------------------------------------------------------------------
# Compression codecs, in the framings Kafka clients use.
# ------------------------------------------------------------------------------------------------------------

# Java clients (xerial snappy-java) frame snappy data: this header, then blocks of [int32 length][raw snappy].
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_SIZE = 32 * 1024

# LZ4 frame format. Kafka's Java client only reads frames with independent blocks, so frames are built here
# (FLG: version 01 + block independence; BD: 64 KiB max block size) around raw LZ4 blocks.
_LZ4_MAGIC = struct.pack("<I", 0x184D2204)
_LZ4_FLG = 0x60
_LZ4_BD = 0x40
_LZ4_BLOCK_SIZE = 64 * 1024
_LZ4_UNCOMPRESSED_BIT = 0x80000000


def compress(codec: int, data: bytes) -> bytes:
    """Compress a batch body with ``codec`` (Compression id)."""
    if codec == Compression.NONE:
        return data
    if codec == Compression.GZIP:
        return gzip.compress(data)
    if codec == Compression.SNAPPY:
        return _xerial_snappy_compress(data)
    if codec == Compression.LZ4:
        return _lz4_frame_compress(data)
    if codec == Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"unknown compression type id {codec}")


def decompress(codec: int, data: bytes | memoryview) -> bytes:
    """Decompress a batch body; accepts raw or xerial-framed snappy and any valid LZ4 frame."""
    try:
        if codec == Compression.NONE:
            return bytes(data)
        if codec == Compression.GZIP:
            return gzip.decompress(data)
        if codec == Compression.SNAPPY:
            if bytes(data[: len(_XERIAL_MAGIC)]) == _XERIAL_MAGIC:
                return _xerial_snappy_decompress(data)
            return bytes(cramjam.snappy.decompress_raw(bytes(data)))
        if codec == Compression.LZ4:
            return bytes(cramjam.lz4.decompress(bytes(data)))
        if codec == Compression.ZSTD:
            return bytes(cramjam.zstd.decompress(bytes(data)))
    except (OSError, EOFError, ValueError, zlib.error, struct.error, cramjam.DecompressionError) as exc:
        raise KafkaError(ErrorCode.CORRUPT_MESSAGE, f"cannot decompress record batch: {exc}") from exc
    raise KafkaError(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, f"unknown compression type id {codec}")


def _xerial_snappy_compress(data: bytes) -> bytes:
    out = bytearray(_XERIAL_HEADER)
    for start in range(0, len(data), _XERIAL_BLOCK_SIZE):
        block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_SIZE]))
        out += struct.pack(">i", len(block))
        out += block
    return bytes(out)


def _xerial_snappy_decompress(data: bytes | memoryview) -> bytes:
    out = bytearray()
    pos = len(_XERIAL_HEADER)
    while pos < len(data):
        (length,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if length < 0 or pos + length > len(data):
            raise ValueError(f"xerial snappy block of {length} bytes runs past the end")
        out += cramjam.snappy.decompress_raw(bytes(data[pos : pos + length]))
        pos += length
    return bytes(out)


def _lz4_frame_compress(data: bytes) -> bytes:
    descriptor = bytes((_LZ4_FLG, _LZ4_BD))
    out = bytearray(_LZ4_MAGIC)
    out += descriptor
    out.append((_xxh32(descriptor) >> 8) & 0xFF)
    for start in range(0, len(data), _LZ4_BLOCK_SIZE):
        chunk = data[start : start + _LZ4_BLOCK_SIZE]
        block = bytes(cramjam.lz4.compress_block(chunk, store_size=False))
        if len(block) >= len(chunk):
            out += struct.pack("<I", len(chunk) | _LZ4_UNCOMPRESSED_BIT)
            out += chunk
        else:
            out += struct.pack("<I", len(block))
            out += block
    out += b"\x00\x00\x00\x00"  # end mark
    return bytes(out)


_PRIME32_1 = 0x9E3779B1
_PRIME32_2 = 0x85EBCA77
_PRIME32_3 = 0xC2B2AE3D
_PRIME32_4 = 0x27D4EB2F
_PRIME32_5 = 0x165667B1
_MASK32 = 0xFFFFFFFF


def _rotl32(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK32


def _xxh32(data: bytes) -> int:
    """xxHash32 with seed 0 for inputs shorter than 16 bytes: all the LZ4 frame header checksum needs."""
    if len(data) >= 16:
        raise ValueError("only short inputs are supported")
    acc = (_PRIME32_5 + len(data)) & _MASK32
    pos = 0
    while pos + 4 <= len(data):
        (lane,) = struct.unpack_from("<I", data, pos)
        acc = (_rotl32((acc + lane * _PRIME32_3) & _MASK32, 17) * _PRIME32_4) & _MASK32
        pos += 4
    for byte in data[pos:]:
        acc = (_rotl32((acc + byte * _PRIME32_5) & _MASK32, 11) * _PRIME32_1) & _MASK32
    acc ^= acc >> 15
    acc = (acc * _PRIME32_2) & _MASK32
    acc ^= acc >> 13
    acc = (acc * _PRIME32_3) & _MASK32
    acc ^= acc >> 16
    return acc
