"""Wire primitives: the Writer and its chunks, varints, strings, bytes, records, tagged fields."""

from __future__ import annotations

import uuid

import pytest

from strom.protocol import primitives as p
from strom.protocol.primitives import DecodeError, EncodeError, Writer


class FileRange:
    """An opaque records object as the log hands it out: a file range sent with sendfile."""

    def __init__(self, size: int) -> None:
        self.size = size


def written(fn, *args) -> bytes:  # type: ignore[no-untyped-def]
    w = Writer()
    fn(w, *args)
    return w.getvalue()


# -- Writer -------------------------------------------------------------------------------------------


def test_writer_without_splices_is_one_chunk() -> None:
    w = Writer()
    w.write(b"abc")
    w.buf += b"de"
    assert [bytes(c) for c in w.chunks()] == [b"abcde"]  # type: ignore[arg-type]
    assert w.nbytes == 5


def test_opaque_records_stay_separate_chunks_and_count_in_nbytes() -> None:
    w = Writer()
    w.write(b"head")
    first = FileRange(1000)
    second = FileRange(7)
    p.write_records(w, first, compact=False, nullable=True)
    p.write_records(w, second, compact=True, nullable=True)
    w.write(b"tail")
    chunks = w.chunks()
    assert chunks[1] is first and chunks[3] is second
    assert bytes(chunks[0]) == b"head" + (1000).to_bytes(4, "big")  # type: ignore[arg-type]
    assert bytes(chunks[2]) == bytes([8])  # type: ignore[arg-type]  # compact: size + 1
    assert bytes(chunks[4]) == b"tail"  # type: ignore[arg-type]
    assert w.nbytes == 4 + 4 + 1000 + 1 + 7 + 4


def test_getvalue_refuses_opaque_chunks() -> None:
    w = Writer()
    p.write_records(w, FileRange(3), compact=False, nullable=False)
    with pytest.raises(EncodeError):
        w.getvalue()


def test_small_buffers_are_copied_large_ones_spliced_without_copy() -> None:
    small = b"x" * 10
    large = memoryview(bytearray(p.SPLICE_THRESHOLD))
    w = Writer()
    p.write_records(w, small, compact=True, nullable=True)
    p.write_records(w, large, compact=True, nullable=True)
    chunks = w.chunks()
    assert len(chunks) == 2
    assert chunks[1] is large
    assert w.nbytes == 1 + 10 + 3 + p.SPLICE_THRESHOLD


def test_null_records() -> None:
    assert written(p.write_records, None, False, True) == b"\xff\xff\xff\xff"
    assert written(p.write_records, None, True, True) == b"\x00"
    with pytest.raises(EncodeError):
        written(p.write_records, None, True, False)


# -- varints ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
    ],
)
def test_unsigned_varint(value: int, encoded: bytes) -> None:
    assert p.encode_unsigned_varint(value) == encoded
    assert p.read_unsigned_varint(encoded, 0) == (value, len(encoded))


@pytest.mark.parametrize(
    ("value", "encoded"), [(0, b"\x00"), (-1, b"\x01"), (1, b"\x02"), (-64, b"\x7f"), (64, b"\x80\x01")]
)
def test_zigzag_varint(value: int, encoded: bytes) -> None:
    assert p.encode_varint(value) == encoded
    assert p.read_varint(encoded, 0) == (value, len(encoded))
    assert p.encode_varlong(value) == encoded
    assert p.read_varlong(encoded, 0) == (value, len(encoded))


def test_varint_extremes() -> None:
    for value in (-(2**31), 2**31 - 1):
        assert p.read_varint(p.encode_varint(value), 0)[0] == value
    for value in (-(2**63), 2**63 - 1):
        assert p.read_varlong(p.encode_varlong(value), 0)[0] == value
    with pytest.raises(EncodeError):
        p.encode_varint(2**31)


def test_bad_varints() -> None:
    with pytest.raises(DecodeError):
        p.read_unsigned_varint(b"\x80\x80", 0)  # truncated
    with pytest.raises(DecodeError):
        p.read_unsigned_varint(b"\xff\xff\xff\xff\xff\x01", 0)  # longer than 5 bytes
    with pytest.raises(DecodeError):
        p.read_unsigned_varlong(b"\xff" * 10 + b"\x01", 0)


# -- fixed width --------------------------------------------------------------------------------------


def test_fixed_width_round_trips() -> None:
    cases = [
        (p.write_int8, p.read_int8, -128),
        (p.write_int16, p.read_int16, -2),
        (p.write_int32, p.read_int32, 2**31 - 1),
        (p.write_int64, p.read_int64, -(2**63)),
        (p.write_uint16, p.read_uint16, 65535),
        (p.write_uint32, p.read_uint32, 2**32 - 1),
        (p.write_float64, p.read_float64, -2.5),
        (p.write_bool, p.read_bool, True),
        (p.write_uuid, p.read_uuid, uuid.UUID("0123456789abcdef0123456789abcdef")),
    ]
    for write, read, value in cases:
        data = written(write, value)
        assert read(memoryview(data), 0) == (value, len(data))
        with pytest.raises(DecodeError):
            read(memoryview(data[:-1]), 0)


# -- strings and bytes --------------------------------------------------------------------------------


def test_strings() -> None:
    assert written(p.write_string, "hé") == b"\x00\x03h\xc3\xa9"
    assert written(p.write_nullable_string, None) == b"\xff\xff"
    assert written(p.write_compact_string, "hé") == b"\x04h\xc3\xa9"
    assert written(p.write_compact_nullable_string, None) == b"\x00"
    assert p.read_string(b"\x00\x03h\xc3\xa9", 0) == ("hé", 5)
    assert p.read_compact_nullable_string(b"\x00", 0) == (None, 1)
    long = "ü" * 100  # 200 bytes: a two-byte varint length
    assert p.read_compact_string(written(p.write_compact_string, long), 0) == (long, 202)


@pytest.mark.parametrize(
    ("reader", "data"),
    [
        (p.read_string, b"\xff\xff"),  # null where not nullable
        (p.read_nullable_string, b"\xff\xfe"),  # -2
        (p.read_string, b"\x00\x05abc"),  # longer than the buffer
        (p.read_string, b"\x00\x02\xc3\x28"),  # invalid UTF-8
        (p.read_compact_string, b"\x00"),
        (p.read_compact_string, b"\x05ab"),
        (p.read_compact_string, b"\x81\x80\x02"),  # longer than Kafka's 32767-byte limit
        (p.read_bytes, b"\xff\xff\xff\xff"),
        (p.read_nullable_bytes, b"\xff\xff\xff\xfe"),
        (p.read_compact_bytes, b"\x09abc"),
    ],
)
def test_malformed_strings_and_bytes(reader, data: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DecodeError):
        reader(memoryview(data), 0)


def test_strings_longer_than_kafka_allows_are_refused() -> None:
    with pytest.raises(EncodeError):
        written(p.write_string, "x" * 32768)
    with pytest.raises(EncodeError):
        written(p.write_compact_string, "x" * 32768)


def test_bytes_are_zero_copy_views() -> None:
    buf = memoryview(bytearray(b"\x00\x00\x00\x03abc\x04xyz"))
    value, pos = p.read_bytes(buf, 0)
    assert value == b"abc" and value.obj is buf.obj
    compact, end = p.read_compact_bytes(buf, pos)
    assert compact == b"xyz" and end == len(buf)
    assert written(p.write_bytes, b"abc") == b"\x00\x00\x00\x03abc"
    assert written(p.write_compact_nullable_bytes, None) == b"\x00"


# -- tagged fields ------------------------------------------------------------------------------------


def test_tagged_fields_are_written_in_tag_order_and_read_back() -> None:
    data = written(p.write_tagged_fields, {5: b"five", 1: b"\x01"})
    assert data == b"\x02\x01\x01\x01\x05\x04five"
    fields, end = p.read_tagged_fields(memoryview(data), 0)
    assert {tag: bytes(value) for tag, value in fields.items()} == {1: b"\x01", 5: b"five"}
    assert end == len(data)
    assert p.skip_tagged_fields(memoryview(data + b"rest"), 0) == len(data)


def test_truncated_tagged_fields() -> None:
    with pytest.raises(DecodeError):
        p.skip_tagged_fields(b"\x01\x00\x05ab", 0)
    with pytest.raises(DecodeError):
        p.read_tagged_fields(b"\x02\x00\x00", 0)
