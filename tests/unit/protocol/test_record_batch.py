"""Record batch v2: header parsing, produce-side validation, in-place rewrites, record codecs."""

from __future__ import annotations

import struct

import cramjam
import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BATCH_HEADER_SIZE,
    CRC_OFFSET,
    Compression,
    Record,
    TimestampType,
    assign_offsets,
    build_batch,
    compress,
    decode_batch,
    decompress,
    parse_batch_header,
    set_max_timestamp,
    validate_record_set,
)


def _records(count: int = 3) -> list[Record]:
    return [
        Record(i, i * 5, f"key-{i}".encode(), f"value-{i}".encode() * 3, [("h", b"x")]) for i in range(count)
    ]


def _batch(count: int = 3, **kwargs: object) -> bytearray:
    kwargs.setdefault("base_timestamp", 1_700_000_000_000)
    return bytearray(build_batch(_records(count), **kwargs))  # type: ignore[arg-type]


def _raises(code: ErrorCode, data: bytes | bytearray) -> KafkaError:
    with pytest.raises(KafkaError) as info:
        validate_record_set(memoryview(bytearray(data)))
    assert info.value.code == code
    return info.value


def _recrc(data: bytearray, pos: int = 0) -> None:
    size = struct.unpack_from(">i", data, pos + 8)[0] + 12
    struct.pack_into(
        ">I", data, pos + CRC_OFFSET, crc32c.crc32c(bytes(data[pos + ATTRIBUTES_OFFSET : pos + size]))
    )


class TestHeader:
    def test_fields_and_properties(self) -> None:
        data = build_batch(
            _records(4),
            base_offset=7,
            base_timestamp=1000,
            compression=Compression.GZIP,
            producer_id=42,
            producer_epoch=3,
            base_sequence=9,
            transactional=True,
            partition_leader_epoch=5,
        )
        header = parse_batch_header(data)
        assert header.base_offset == 7
        assert header.total_size == len(data) == header.batch_length + 12
        assert header.partition_leader_epoch == 5
        assert header.magic == 2
        assert header.compression == Compression.GZIP
        assert header.timestamp_type is TimestampType.CREATE_TIME
        assert header.is_transactional and not header.is_control
        assert header.last_offset_delta == 3 and header.last_offset == 10 and header.next_offset == 11
        assert header.base_timestamp == 1000 and header.max_timestamp == 1015
        assert (header.producer_id, header.producer_epoch, header.base_sequence) == (42, 3, 9)
        assert header.records_count == 4
        assert header.crc == crc32c.crc32c(data[ATTRIBUTES_OFFSET:])

    def test_control_and_log_append_time_flags(self) -> None:
        header = parse_batch_header(
            build_batch(_records(1), is_control=True, timestamp_type=TimestampType.LOG_APPEND_TIME)
        )
        assert header.is_control and not header.is_transactional
        assert header.timestamp_type is TimestampType.LOG_APPEND_TIME
        assert header.record_timestamp(123) == header.max_timestamp

    def test_header_at_position(self) -> None:
        data = _batch() + _batch(base_offset=3)
        second = parse_batch_header(data, parse_batch_header(data).total_size)
        assert second.base_offset == 3

    def test_short_buffer_is_corrupt(self) -> None:
        with pytest.raises(KafkaError) as info:
            parse_batch_header(bytes(BATCH_HEADER_SIZE - 1))
        assert info.value.code == ErrorCode.CORRUPT_MESSAGE


class TestValidateRecordSet:
    def test_accepts_every_codec(self) -> None:
        for codec in Compression:
            headers = validate_record_set(memoryview(_batch(compression=codec)))
            assert [h.compression for h in headers] == [codec]

    def test_walks_several_batches(self) -> None:
        data = _batch(2) + _batch(5)
        headers = validate_record_set(memoryview(data))
        assert [h.records_count for h in headers] == [2, 5]

    def test_flipped_payload_byte_fails_crc(self) -> None:
        data = _batch()
        data[-1] ^= 0x01
        _raises(ErrorCode.CORRUPT_MESSAGE, data)

    def test_flipped_crc_covered_header_byte_fails_crc(self) -> None:
        data = _batch()
        data[40] ^= 0x80  # inside maxTimestamp
        _raises(ErrorCode.CORRUPT_MESSAGE, data)

    def test_base_offset_and_leader_epoch_are_outside_the_crc(self) -> None:
        data = _batch()
        struct.pack_into(">qii", data, 0, 12345, len(data) - 12, 77)
        assert validate_record_set(memoryview(data))[0].base_offset == 12345

    def test_truncated_batch(self) -> None:
        _raises(ErrorCode.CORRUPT_MESSAGE, _batch()[:-1])

    def test_truncated_header(self) -> None:
        _raises(ErrorCode.CORRUPT_MESSAGE, _batch()[:40])

    @pytest.mark.parametrize("garbage", [b"\x00", bytes(11), bytes(12), bytes(70)])
    def test_trailing_garbage(self, garbage: bytes) -> None:
        _raises(ErrorCode.CORRUPT_MESSAGE, _batch() + garbage)

    def test_length_below_header_size(self) -> None:
        data = _batch()
        struct.pack_into(">i", data, 8, 20)
        _raises(ErrorCode.CORRUPT_MESSAGE, data)

    def test_length_past_buffer(self) -> None:
        data = _batch()
        struct.pack_into(">i", data, 8, len(data))
        _raises(ErrorCode.CORRUPT_MESSAGE, data)

    @pytest.mark.parametrize("magic", [0, 1, 3])
    def test_other_magic_is_invalid_record(self, magic: int) -> None:
        data = _batch()
        data[16] = magic
        _raises(ErrorCode.INVALID_RECORD, data)

    def test_count_must_match_last_offset_delta(self) -> None:
        data = _batch(3)
        struct.pack_into(">i", data, 57, 4)
        _recrc(data)
        error = _raises(ErrorCode.INVALID_RECORD, data)
        assert "inconsistent" in str(error.message)

    def test_zero_count_is_invalid(self) -> None:
        data = _batch(1)
        struct.pack_into(">i", data, 23, -1)
        struct.pack_into(">i", data, 57, 0)
        _recrc(data)
        _raises(ErrorCode.INVALID_RECORD, data)

    def test_unknown_codec(self) -> None:
        data = _batch()
        struct.pack_into(">h", data, ATTRIBUTES_OFFSET, 5)
        _recrc(data)
        _raises(ErrorCode.UNSUPPORTED_COMPRESSION_TYPE, data)

    def test_empty_record_set(self) -> None:
        _raises(ErrorCode.INVALID_RECORD, b"")


class TestInPlaceRewrites:
    def test_assign_offsets_writes_only_offset_and_epoch(self) -> None:
        first, second = _batch(2), _batch(4)
        data = first + second
        original = bytes(data)
        headers = validate_record_set(memoryview(data))
        assign_offsets(memoryview(data), headers, 100, 9)
        rewritten = validate_record_set(memoryview(data))  # CRCs still hold
        assert [(h.base_offset, h.last_offset, h.partition_leader_epoch) for h in rewritten] == [
            (100, 101, 9),
            (102, 105, 9),
        ]
        changed = {i for i, (a, b) in enumerate(zip(original, data, strict=True)) if a != b}
        allowed = set(range(0, 8)) | set(range(12, 16))
        allowed |= {len(first) + i for i in allowed}
        assert changed <= allowed

    def test_set_max_timestamp_recomputes_crc(self) -> None:
        data = _batch()
        header = parse_batch_header(data)
        set_max_timestamp(memoryview(data), 0, header, TimestampType.LOG_APPEND_TIME, 99)
        rewritten = validate_record_set(memoryview(data))[0]
        assert rewritten.max_timestamp == 99
        assert rewritten.timestamp_type is TimestampType.LOG_APPEND_TIME
        assert rewritten.compression == header.compression
        set_max_timestamp(memoryview(data), 0, rewritten, TimestampType.CREATE_TIME, 5)
        assert validate_record_set(memoryview(data))[0].timestamp_type is TimestampType.CREATE_TIME


class TestRecordCodec:
    @pytest.mark.parametrize("codec", list(Compression))
    def test_round_trip(self, codec: Compression) -> None:
        records = [
            Record(0, 0, None, b"only value"),
            Record(1, 7, b"k", None, [("a", None), ("b", b"")]),
            Record(2, -3, b"", b"v" * 5000, [("unicode-\u00e9", b"\x00\xff")]),
        ]
        header, decoded = decode_batch(build_batch(records, base_timestamp=10, compression=codec))
        assert decoded == records
        assert header.max_timestamp == 17 and header.compression == codec

    @settings(max_examples=50, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(-(2**40), 2**40),
                st.none() | st.binary(max_size=40),
                st.none() | st.binary(max_size=200),
                st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=10)), max_size=3),
            ),
            min_size=1,
            max_size=20,
        ),
        st.sampled_from(list(Compression)),
    )
    def test_round_trip_property(
        self, rows: list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]], codec: int
    ) -> None:
        records = [
            Record(i, delta, key, value, headers) for i, (delta, key, value, headers) in enumerate(rows)
        ]
        _, decoded = decode_batch(build_batch(records, base_timestamp=2**41, compression=codec))
        assert decoded == records

    def test_decode_rejects_bad_crc(self) -> None:
        data = _batch()
        data[-2] ^= 0xFF
        with pytest.raises(KafkaError) as info:
            decode_batch(data)
        assert info.value.code == ErrorCode.CORRUPT_MESSAGE

    def test_decode_rejects_garbage_records(self) -> None:
        data = bytearray(build_batch([Record(0, 0, b"k", b"v")], base_timestamp=0))
        data[BATCH_HEADER_SIZE] = 0x7F  # record length far beyond the batch
        _recrc(data)
        with pytest.raises(KafkaError) as info:
            decode_batch(data)
        assert info.value.code == ErrorCode.INVALID_RECORD

    def test_build_rejects_empty(self) -> None:
        with pytest.raises(ValueError):
            build_batch([])


class TestCompressionFramings:
    payload = b"the quick brown fox " * 20000  # > 64 KiB: several LZ4 blocks and xerial chunks

    def test_raw_snappy_as_sent_by_librdkafka(self) -> None:
        assert (
            decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(self.payload))) == self.payload
        )

    def test_xerial_snappy_as_sent_by_java(self) -> None:
        framed = compress(Compression.SNAPPY, self.payload)
        assert framed.startswith(b"\x82SNAPPY\x00")
        assert struct.unpack_from(">ii", framed, 8) == (1, 1)
        assert decompress(Compression.SNAPPY, framed) == self.payload

    def test_lz4_frame_has_independent_blocks_for_java(self) -> None:
        frame = compress(Compression.LZ4, self.payload)
        assert frame[:4] == b"\x04\x22\x4d\x18"
        assert frame[4] & 0x20, "block independence flag"
        assert bytes(cramjam.lz4.decompress(frame)) == self.payload  # also checks the header checksum

    def test_lz4_frame_with_linked_blocks_decodes(self) -> None:
        assert decompress(Compression.LZ4, bytes(cramjam.lz4.compress(self.payload))) == self.payload

    def test_zstd_streaming_frame_without_content_size(self) -> None:
        compressor = cramjam.zstd.Compressor()
        compressor.compress(self.payload)
        assert decompress(Compression.ZSTD, bytes(compressor.finish())) == self.payload

    @pytest.mark.parametrize(
        "codec", [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
    )
    def test_garbage_is_corrupt(self, codec: Compression) -> None:
        with pytest.raises(KafkaError) as info:
            decompress(codec, b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01\x7f\xff\xff\xff" + bytes(10))
        assert info.value.code == ErrorCode.CORRUPT_MESSAGE


class TestInteropWithKafkaPython:
    """kafka-python's independent implementation of the v2 format must agree with ours."""

    @pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP])
    def test_kafka_python_batches_decode(self, codec: int) -> None:
        default_records = pytest.importorskip("kafka.record.default_records")
        builder = default_records.DefaultRecordBatchBuilder(
            magic=2,
            compression_type=codec,
            is_transactional=False,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 20,
        )
        for i in range(5):
            builder.append(i, timestamp=1000 + i, key=b"k%d" % i, value=b"v" * i, headers=[("h", b"%d" % i)])
        data = bytes(builder.build())
        header = validate_record_set(memoryview(bytearray(data)))[0]
        _, records = decode_batch(data)
        assert header.records_count == 5 and header.max_timestamp == 1004
        assert [(r.offset_delta, r.key, r.value, r.headers) for r in records] == [
            (i, b"k%d" % i, b"v" * i, [("h", b"%d" % i)]) for i in range(5)
        ]

    @pytest.mark.parametrize("codec", [Compression.NONE, Compression.GZIP])
    def test_our_batches_decode_in_kafka_python(self, codec: int) -> None:
        default_records = pytest.importorskip("kafka.record.default_records")
        data = build_batch(_records(4), base_offset=10, base_timestamp=5000, compression=codec)
        batch = default_records.DefaultRecordBatch(data)
        assert batch.validate_crc()
        decoded = list(batch)
        assert [r.offset for r in decoded] == [10, 11, 12, 13]
        assert [r.timestamp for r in decoded] == [5000, 5005, 5010, 5015]
        assert [r.key for r in decoded] == [r.key for r in _records(4)]
