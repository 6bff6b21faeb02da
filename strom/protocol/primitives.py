"""Wire primitives of the Kafka protocol: the output buffer, readers and writers, and codec errors.

Readers take `(buf, pos)` and return `(value, new_pos)`; writers append to a `Writer`.  The generated
message codecs inline the common cases (fixed-width runs, one-byte varints) and call into this module
for the rest, so everything here sits on hot paths and stays deliberately plain.

Zero copy: decoded `records` fields are `memoryview` slices of the input buffer, and a records field
being encoded may be an *opaque records object* (anything with an integer `size`, e.g. a file range
sent with `sendfile`), which `Writer.chunks()` hands back untouched between the encoded bytes.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Chunk",
    "DecodeError",
    "EncodeError",
    "OpaqueRecords",
    "Records",
    "UnsupportedVersionError",
    "Writer",
]


class DecodeError(ValueError):
    """Input bytes are truncated or malformed; the connection that sent them cannot be trusted."""


class UnsupportedVersionError(DecodeError):
    """The API version is outside the range this codec implements."""


class EncodeError(ValueError):
    """A message cannot be written at the requested version (bad value, or data the version lacks)."""


@runtime_checkable
class OpaqueRecords(Protocol):
    """A record set the writer does not look into: only its size is needed to frame it."""

    @property
    def size(self) -> int: ...


Records: TypeAlias = bytes | bytearray | memoryview | OpaqueRecords | None
Buffer: TypeAlias = bytes | bytearray | memoryview
# One piece of an encoded message: a buffer, or an opaque records object exactly as it was given to the
# writer.  `Any` because the object's type is the caller's (e.g. the log's file ranges), not ours.
Chunk: TypeAlias = Any

# Bytes-like record sets at least this large become their own chunk instead of being copied.
SPLICE_THRESHOLD = 64 * 1024

INT8 = struct.Struct(">b")
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
INT64 = struct.Struct(">q")
UINT16 = struct.Struct(">H")
UINT32 = struct.Struct(">I")
FLOAT64 = struct.Struct(">d")

UUID_ZERO = uuid.UUID(int=0)
_NULL_INT16 = b"\xff\xff"
_NULL_INT32 = b"\xff\xff\xff\xff"
MAX_STRING_LENGTH = 0x7FFF  # Kafka refuses longer strings, compact or not


class Writer:
    """Accumulates an encoded message: a bytearray plus opaque chunks spliced in at recorded offsets.

    Generated encoders append to `buf` directly.  Splicing only records the current offset, so `buf`
    stays one growing bytearray and `chunks()` cuts it at the splice points afterwards.
    """

    __slots__ = ("buf", "_splices", "_spliced_size")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._splices: list[tuple[int, Chunk]] = []
        self._spliced_size = 0

    @property
    def nbytes(self) -> int:
        """Total encoded size, including the sizes of spliced chunks."""
        return len(self.buf) + self._spliced_size

    def write(self, data: Buffer) -> None:
        self.buf += data

    def splice(self, chunk: Chunk, size: int) -> None:
        """Insert `chunk` (a buffer or an opaque records object of `size` bytes) at the current end."""
        self._splices.append((len(self.buf), chunk))
        self._spliced_size += size

    def chunks(self) -> list[Chunk]:
        """The encoded message in order: slices of `buf` (no copies) and spliced chunks.

        Takes a view of `buf`, so nothing more may be written to this writer afterwards.
        """
        view = memoryview(self.buf)
        if not self._splices:
            return [view]
        out: list[Chunk] = []
        start = 0
        for offset, chunk in self._splices:
            if offset > start:
                out.append(view[start:offset])
            out.append(chunk)
            start = offset
        if start < len(view):
            out.append(view[start:])
        return out

    def getvalue(self) -> bytes:
        """The whole message as one bytes object; only valid when nothing opaque was spliced in."""
        parts = []
        for chunk in self.chunks():
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise EncodeError("message contains an opaque records object; use chunks()")
            parts.append(chunk)
        return b"".join(parts)


# -- errors raised by readers and by generated decoders ---------------------------------------------


def truncated(what: str) -> DecodeError:
    return DecodeError(f"{what} runs past the end of the buffer")


def bad_length(what: str, length: int) -> DecodeError:
    return DecodeError(f"{what} has invalid length {length}")


def null_not_allowed(what: str) -> DecodeError:
    return DecodeError(f"non-nullable {what} was encoded as null")


# -- varints ----------------------------------------------------------------------------------------


def read_unsigned_varint(buf: Buffer, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes (Kafka's int32 varints)."""
    value = 0
    shift = 0
    try:
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
            if shift > 28:
                raise DecodeError("unsigned varint is longer than 5 bytes")
    except IndexError:
        raise truncated("varint") from None


def read_unsigned_varlong(buf: Buffer, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 10 bytes (Kafka's int64 varints)."""
    value = 0
    shift = 0
    try:
        while True:
            byte = buf[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
            if shift > 63:
                raise DecodeError("unsigned varlong is longer than 10 bytes")
    except IndexError:
        raise truncated("varlong") from None


def read_varint(buf: Buffer, pos: int) -> tuple[int, int]:
    """A zigzag-encoded signed 32-bit varint (record fields)."""
    raw, pos = read_unsigned_varint(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def read_varlong(buf: Buffer, pos: int) -> tuple[int, int]:
    """A zigzag-encoded signed 64-bit varint (record fields)."""
    raw, pos = read_unsigned_varlong(buf, pos)
    return (raw >> 1) ^ -(raw & 1), pos


def encode_unsigned_varint(value: int) -> bytes:
    if value < 0:
        raise EncodeError(f"unsigned varint cannot hold {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_varint(value: int) -> bytes:
    """Zigzag encoding of a signed 32-bit value."""
    if not -0x80000000 <= value <= 0x7FFFFFFF:
        raise EncodeError(f"varint out of range: {value}")
    return encode_unsigned_varint(((value << 1) ^ (value >> 31)) & 0xFFFFFFFF)


def encode_varlong(value: int) -> bytes:
    """Zigzag encoding of a signed 64-bit value."""
    if not -0x8000000000000000 <= value <= 0x7FFFFFFFFFFFFFFF:
        raise EncodeError(f"varlong out of range: {value}")
    return encode_unsigned_varint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)


def write_unsigned_varint(w: Writer, value: int) -> None:
    w.buf += encode_unsigned_varint(value)


def write_varint(w: Writer, value: int) -> None:
    w.buf += encode_varint(value)


def write_varlong(w: Writer, value: int) -> None:
    w.buf += encode_varlong(value)


def compact_length(length_plus_one: int, what: str) -> bytes:
    """The varint length prefix of a compact string, refusing strings Kafka would refuse."""
    if length_plus_one > MAX_STRING_LENGTH + 1:
        raise EncodeError(f"{what} is longer than {MAX_STRING_LENGTH} bytes")
    return encode_unsigned_varint(length_plus_one)


# -- fixed-width values -----------------------------------------------------------------------------


def _read_fixed(codec: struct.Struct, buf: Buffer, pos: int) -> tuple[int, int]:
    try:
        return codec.unpack_from(buf, pos)[0], pos + codec.size
    except struct.error:
        raise truncated("fixed-width value") from None


def read_int8(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(INT8, buf, pos)


def read_int16(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(INT16, buf, pos)


def read_int32(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(INT32, buf, pos)


def read_int64(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(INT64, buf, pos)


def read_uint16(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(UINT16, buf, pos)


def read_uint32(buf: Buffer, pos: int) -> tuple[int, int]:
    return _read_fixed(UINT32, buf, pos)


def read_float64(buf: Buffer, pos: int) -> tuple[float, int]:
    try:
        return FLOAT64.unpack_from(buf, pos)[0], pos + 8
    except struct.error:
        raise truncated("float64") from None


def read_bool(buf: Buffer, pos: int) -> tuple[bool, int]:
    try:
        return buf[pos] != 0, pos + 1
    except IndexError:
        raise truncated("bool") from None


def read_uuid(buf: Buffer, pos: int) -> tuple[uuid.UUID, int]:
    end = pos + 16
    if end > len(buf):
        raise truncated("uuid")
    return uuid.UUID(bytes=bytes(buf[pos:end])), end


def write_int8(w: Writer, value: int) -> None:
    w.buf += INT8.pack(value)


def write_int16(w: Writer, value: int) -> None:
    w.buf += INT16.pack(value)


def write_int32(w: Writer, value: int) -> None:
    w.buf += INT32.pack(value)


def write_int64(w: Writer, value: int) -> None:
    w.buf += INT64.pack(value)


def write_uint16(w: Writer, value: int) -> None:
    w.buf += UINT16.pack(value)


def write_uint32(w: Writer, value: int) -> None:
    w.buf += UINT32.pack(value)


def write_float64(w: Writer, value: float) -> None:
    w.buf += FLOAT64.pack(value)


def write_bool(w: Writer, value: bool) -> None:
    w.buf.append(1 if value else 0)


def write_uuid(w: Writer, value: uuid.UUID) -> None:
    w.buf += value.bytes


# -- strings and bytes ------------------------------------------------------------------------------


def _read_utf8(buf: Buffer, pos: int, length: int, what: str) -> tuple[str, int]:
    end = pos + length
    if end > len(buf):
        raise truncated(what)
    try:
        return bytes(buf[pos:end]).decode(), end
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{what} is not valid UTF-8: {exc}") from None


def read_nullable_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    length, pos = read_int16(buf, pos)
    if length == -1:
        return None, pos
    if length < 0:
        raise bad_length("string", length)
    return _read_utf8(buf, pos, length, "string")


def read_string(buf: Buffer, pos: int) -> tuple[str, int]:
    value, pos = read_nullable_string(buf, pos)
    if value is None:
        raise null_not_allowed("string")
    return value, pos


def read_compact_nullable_string(buf: Buffer, pos: int) -> tuple[str | None, int]:
    length_plus_one, pos = read_unsigned_varint(buf, pos)
    if length_plus_one == 0:
        return None, pos
    if length_plus_one > MAX_STRING_LENGTH + 1:
        raise bad_length("compact string", length_plus_one - 1)
    return _read_utf8(buf, pos, length_plus_one - 1, "compact string")


def read_compact_string(buf: Buffer, pos: int) -> tuple[str, int]:
    value, pos = read_compact_nullable_string(buf, pos)
    if value is None:
        raise null_not_allowed("compact string")
    return value, pos


def _read_slice(buf: Buffer, pos: int, length: int, what: str) -> tuple[memoryview, int]:
    end = pos + length
    if end > len(buf):
        raise truncated(what)
    return memoryview(buf)[pos:end], end


def read_nullable_bytes(buf: Buffer, pos: int) -> tuple[memoryview | None, int]:
    """Nullable bytes as a zero-copy slice of `buf`."""
    length, pos = read_int32(buf, pos)
    if length == -1:
        return None, pos
    if length < 0:
        raise bad_length("bytes", length)
    return _read_slice(buf, pos, length, "bytes")


def read_bytes(buf: Buffer, pos: int) -> tuple[memoryview, int]:
    value, pos = read_nullable_bytes(buf, pos)
    if value is None:
        raise null_not_allowed("bytes")
    return value, pos


def read_compact_nullable_bytes(buf: Buffer, pos: int) -> tuple[memoryview | None, int]:
    length_plus_one, pos = read_unsigned_varint(buf, pos)
    if length_plus_one == 0:
        return None, pos
    return _read_slice(buf, pos, length_plus_one - 1, "compact bytes")


def read_compact_bytes(buf: Buffer, pos: int) -> tuple[memoryview, int]:
    value, pos = read_compact_nullable_bytes(buf, pos)
    if value is None:
        raise null_not_allowed("compact bytes")
    return value, pos


def write_nullable_string(w: Writer, value: str | None) -> None:
    if value is None:
        w.buf += _NULL_INT16
        return
    data = value.encode()
    if len(data) > MAX_STRING_LENGTH:
        raise EncodeError(f"string is longer than {MAX_STRING_LENGTH} bytes")
    w.buf += INT16.pack(len(data))
    w.buf += data


def write_string(w: Writer, value: str) -> None:
    if value is None:
        raise EncodeError("non-nullable string is None")
    write_nullable_string(w, value)


def write_compact_nullable_string(w: Writer, value: str | None) -> None:
    if value is None:
        w.buf.append(0)
        return
    data = value.encode()
    w.buf += compact_length(len(data) + 1, "compact string")
    w.buf += data


def write_compact_string(w: Writer, value: str) -> None:
    if value is None:
        raise EncodeError("non-nullable compact string is None")
    write_compact_nullable_string(w, value)


def write_nullable_bytes(w: Writer, value: Buffer | None) -> None:
    if value is None:
        w.buf += _NULL_INT32
        return
    w.buf += INT32.pack(memoryview(value).nbytes)
    w.buf += value


def write_bytes(w: Writer, value: Buffer) -> None:
    if value is None:
        raise EncodeError("non-nullable bytes is None")
    write_nullable_bytes(w, value)


def write_compact_nullable_bytes(w: Writer, value: Buffer | None) -> None:
    if value is None:
        w.buf.append(0)
        return
    w.buf += encode_unsigned_varint(memoryview(value).nbytes + 1)
    w.buf += value


def write_compact_bytes(w: Writer, value: Buffer) -> None:
    if value is None:
        raise EncodeError("non-nullable compact bytes is None")
    write_compact_nullable_bytes(w, value)


# -- records ----------------------------------------------------------------------------------------


def write_records(w: Writer, records: Records, compact: bool, nullable: bool) -> None:
    """Length prefix plus record set; big buffers and opaque objects are spliced in, not copied."""
    if records is None:
        if not nullable:
            raise EncodeError("non-nullable records field is None")
        if compact:
            w.buf.append(0)
        else:
            w.buf += _NULL_INT32
        return
    if isinstance(records, (bytes, bytearray, memoryview)):
        size = memoryview(records).nbytes
        w.buf += encode_unsigned_varint(size + 1) if compact else INT32.pack(size)
        if size < SPLICE_THRESHOLD:
            w.buf += records
        else:
            w.splice(records, size)
        return
    size = records.size
    w.buf += encode_unsigned_varint(size + 1) if compact else INT32.pack(size)
    w.splice(records, size)


# -- tagged fields ----------------------------------------------------------------------------------


def skip_tagged_fields(buf: Buffer, pos: int) -> int:
    """Skip a tagged-field section whose fields are all unknown to the reader (KIP-482)."""
    count, pos = read_unsigned_varint(buf, pos)
    for _ in range(count):
        _tag, pos = read_unsigned_varint(buf, pos)
        size, pos = read_unsigned_varint(buf, pos)
        pos += size
        if pos > len(buf):
            raise truncated("tagged field")
    return pos


def read_tagged_fields(buf: Buffer, pos: int) -> tuple[dict[int, memoryview], int]:
    """A tagged-field section as raw values by tag, for callers that interpret tags themselves."""
    count, pos = read_unsigned_varint(buf, pos)
    fields: dict[int, memoryview] = {}
    view = memoryview(buf)
    for _ in range(count):
        tag, pos = read_unsigned_varint(buf, pos)
        size, pos = read_unsigned_varint(buf, pos)
        end = pos + size
        if end > len(buf):
            raise truncated("tagged field")
        fields[tag] = view[pos:end]
        pos = end
    return fields, pos


def write_tagged_fields(w: Writer, fields: dict[int, Buffer]) -> None:
    """A tagged-field section from raw values, written in ascending tag order as the protocol requires."""
    w.buf += encode_unsigned_varint(len(fields))
    for tag in sorted(fields):
        value = fields[tag]
        w.buf += encode_unsigned_varint(tag)
        w.buf += encode_unsigned_varint(memoryview(value).nbytes)
        w.buf += value
