"""The cleaner's batch filter: scanning records in place and rebuilding batches from retained spans."""

from __future__ import annotations

import pytest
from kafka.record.default_records import DefaultRecordBatch

from strom.log.cleaner.batch_filter import (
    DELETE_HORIZON_FLAG,
    CorruptRecordsError,
    batch_records,
    delete_horizon_ms,
    empty_batch,
    filtered_batch,
    has_tombstone,
    scan_records,
)
from strom.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    Compression,
    Record,
    TimestampType,
    build_batch,
    decode_batch,
    parse_batch_header,
)

BASE_TS = 1_700_000_000_000


def sample_records() -> list[Record]:
    """Keys and values of every shape: null, empty, long enough for multi-byte varints, with headers."""
    return [
        Record(0, 0, b"a", b"1"),
        Record(1, -5, None, b"no key"),
        Record(2, 300, b"b", None),
        Record(3, 70_000, b"k" * 200, b"v" * 5000, [("h", b"x"), ("n", None)]),
        Record(4, 1, b"", b""),
        Record(5, 2, b"c", None),
    ]


def make(compression: int = Compression.NONE, **kwargs: object) -> tuple[bytes, list[Record]]:
    records = sample_records()
    batch = build_batch(
        records,
        base_offset=1000,
        base_timestamp=BASE_TS,
        compression=compression,
        producer_id=7,
        producer_epoch=2,
        base_sequence=40,
        partition_leader_epoch=3,
        **kwargs,  # type: ignore[arg-type]
    )
    return batch, records


def test_scan_reports_every_record_like_the_decoder() -> None:
    batch, records = make()
    header = parse_batch_header(batch)
    spans = scan_records(batch, BATCH_HEADER_SIZE, header.total_size, header.records_count)
    assert [(s[0], s[1], s[2], s[3]) for s in spans] == [
        (r.offset_delta, r.timestamp_delta, r.key, r.value is None) for r in records
    ]
    assert spans[0][4] == BATCH_HEADER_SIZE
    assert all(a[5] == b[4] for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1][5] == header.total_size
    assert has_tombstone(spans)
    assert not has_tombstone(spans[:2])


def test_scan_rejects_a_wrong_record_count_or_truncation() -> None:
    batch, _ = make()
    header = parse_batch_header(batch)
    with pytest.raises(CorruptRecordsError):
        scan_records(batch, BATCH_HEADER_SIZE, header.total_size, header.records_count - 1)
    with pytest.raises(CorruptRecordsError):
        scan_records(batch[:-3], BATCH_HEADER_SIZE, header.total_size - 3, header.records_count)


@pytest.mark.parametrize("codec", list(Compression))
def test_filtered_batch_keeps_chosen_records_and_the_batch_identity(codec: Compression) -> None:
    batch, records = make(codec)
    header = parse_batch_header(batch)
    body = batch_records(batch, header)
    spans = scan_records(body, 0, len(body), header.records_count)
    retained = [spans[1], spans[3]]
    out = filtered_batch(header, body, retained, None)

    new_header, decoded = decode_batch(out)  # checks the CRC
    assert new_header.compression == codec
    assert new_header.records_count == 2
    assert new_header.base_offset == 1000
    assert new_header.last_offset_delta == header.last_offset_delta
    assert (new_header.producer_id, new_header.producer_epoch, new_header.base_sequence) == (7, 2, 40)
    assert new_header.partition_leader_epoch == 3
    assert [(r.offset_delta, r.key, r.value, r.headers) for r in decoded] == [
        (r.offset_delta, r.key, r.value, r.headers) for r in (records[1], records[3])
    ]
    assert new_header.max_timestamp == BASE_TS + 70_000
    assert delete_horizon_ms(new_header) is None

    java_like = DefaultRecordBatch(out)
    assert java_like.validate_crc()
    assert [(r.offset, r.key, r.value) for r in java_like] == [
        (1001, None, b"no key"),
        (1003, b"k" * 200, b"v" * 5000),
    ]


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.ZSTD])
def test_a_new_delete_horizon_rebases_timestamps(codec: Compression) -> None:
    batch, records = make(codec)
    header = parse_batch_header(batch)
    body = batch_records(batch, header)
    spans = scan_records(body, 0, len(body), header.records_count)
    horizon = BASE_TS + 86_400_000
    out = filtered_batch(header, body, spans[2:], horizon)

    new_header, decoded = decode_batch(out)
    assert new_header.attributes & DELETE_HORIZON_FLAG
    assert delete_horizon_ms(new_header) == horizon == new_header.base_timestamp
    assert [new_header.record_timestamp(r.timestamp_delta) for r in decoded] == [
        BASE_TS + r.timestamp_delta for r in records[2:]
    ]
    assert [(r.key, r.value) for r in decoded] == [(r.key, r.value) for r in records[2:]]

    # Filtering again keeps the horizon and the (already rebased) timestamps.
    again_body = batch_records(out, new_header)
    again_spans = scan_records(again_body, 0, len(again_body), new_header.records_count)
    again = filtered_batch(new_header, again_body, again_spans[:1], horizon)
    again_header, again_records = decode_batch(again)
    assert delete_horizon_ms(again_header) == horizon
    assert again_header.record_timestamp(again_records[0].timestamp_delta) == BASE_TS + 300


def test_log_append_time_batches_keep_their_max_timestamp() -> None:
    batch, _ = make(timestamp_type=TimestampType.LOG_APPEND_TIME)
    header = parse_batch_header(batch)
    body = batch_records(batch, header)
    spans = scan_records(body, 0, len(body), header.records_count)
    out_header, _ = decode_batch(filtered_batch(header, body, spans[:1], None))
    assert out_header.max_timestamp == header.max_timestamp
    assert out_header.timestamp_type is TimestampType.LOG_APPEND_TIME


def test_empty_batch_keeps_offsets_and_producer_sequence() -> None:
    batch, _ = make(Compression.GZIP, transactional=True)
    header = parse_batch_header(batch)
    out = empty_batch(header)
    assert len(out) == BATCH_HEADER_SIZE
    new_header, decoded = decode_batch(out)
    assert decoded == []
    assert new_header.records_count == 0
    assert new_header.compression == Compression.NONE
    assert new_header.is_transactional
    assert new_header.last_offset == header.last_offset
    assert new_header.base_sequence == 40
    assert new_header.max_timestamp == header.max_timestamp
    assert DefaultRecordBatch(out).validate_crc()
