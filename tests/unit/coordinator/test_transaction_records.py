"""The __transaction_state records in Kafka's byte layouts (TransactionLogKey and TransactionLogValue).

The expected bytes are built here field by field from Kafka's JSON schemas, not with the project's writer, so
a log written by Kafka replays here and one written here replays in Kafka. Version 1 of the value is the
flexible form: compact lengths, and tagged fields PreviousProducerId (tag 0), NextProducerId (tag 1) and
ClientTransactionVersion (tag 2) at the end.
"""

from __future__ import annotations

import struct

import pytest

from strom.coordinator.transaction import TransactionMetadata, TxnState
from strom.coordinator.transaction.records import (
    TransactionLogValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from strom.protocol.primitives import DecodeError

VALUE = TransactionLogValue(
    producer_id=4_000_000_001,
    producer_epoch=17,
    timeout_ms=60_000,
    state=int(TxnState.ONGOING),
    partitions={"orders": [0, 2], "audit": [5]},
    last_update_timestamp=1_700_000_000_500,
    start_timestamp=1_700_000_000_000,
)


def string(text: str) -> bytes:
    """A non-flexible string: int16 length, UTF-8."""
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def compact_string(text: str) -> bytes:
    """A flexible string: unsigned varint length + 1 (one byte for these short strings), UTF-8."""
    data = text.encode()
    return bytes([len(data) + 1]) + data


def fixed_fields(value: TransactionLogValue) -> bytes:
    """ProducerId, ProducerEpoch, TransactionTimeoutMs, TransactionStatus: the same in every version."""
    return struct.pack(">qhib", value.producer_id, value.producer_epoch, value.timeout_ms, value.state)


def tagged(tag: int, data: bytes) -> bytes:
    return bytes([tag, len(data)]) + data


def flexible_value(
    value: TransactionLogValue,
    *,
    tags: list[bytes],
    partition_tags: bytes = b"\x00",
    null_partitions: bool = False,
) -> bytes:
    """A version 1 value, partitions in the given order; ``tags`` are whole tagged fields, in tag order."""
    out = struct.pack(">h", 1) + fixed_fields(value)
    if null_partitions:
        out += b"\x00"
    else:
        out += bytes([len(value.partitions) + 1])
        for topic, indexes in value.partitions.items():
            out += compact_string(topic) + bytes([len(indexes) + 1])
            out += b"".join(struct.pack(">i", index) for index in indexes)
            out += partition_tags
    out += struct.pack(">qq", value.last_update_timestamp, value.start_timestamp)
    return out + bytes([len(tags)]) + b"".join(tags)


# ------------------------------------------------------------------------------------------ key
@pytest.mark.parametrize("transactional_id", ["payments", "", "zahlungsverkehr-ü-✓"])
def test_key_is_version_zero_and_the_id_as_a_string(transactional_id: str) -> None:
    encoded = encode_key(transactional_id)
    assert encoded == struct.pack(">h", 0) + string(transactional_id)
    assert decode_key(encoded) == transactional_id


def test_a_key_of_another_version_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_key(struct.pack(">h", 1) + string("payments"))


# ------------------------------------------------------------------------------------------ value, version 0
def test_value_is_written_as_version_zero_in_kafkas_layout() -> None:
    expected = struct.pack(">h", 0) + fixed_fields(VALUE)
    expected += struct.pack(">i", 2)
    expected += string("audit") + struct.pack(">ii", 1, 5)  # topics in name order
    expected += string("orders") + struct.pack(">iii", 2, 0, 2)
    expected += struct.pack(">qq", VALUE.last_update_timestamp, VALUE.start_timestamp)
    assert encode_value(VALUE) == expected


def test_no_partitions_are_written_as_a_null_array() -> None:
    empty = TransactionLogValue(1, 0, 1000, int(TxnState.EMPTY), {}, 10, -1)
    encoded = encode_value(empty)
    assert encoded[2 + 15 : 2 + 15 + 4] == struct.pack(">i", -1)
    assert decode_value(encoded) == empty


@pytest.mark.parametrize("state", list(TxnState))
def test_every_state_round_trips(state: TxnState) -> None:
    value = TransactionLogValue(9, 3, 1000, int(state), {"t": [1]}, 20, 10)
    assert decode_value(encode_value(value)) == value


def test_version_zero_round_trips() -> None:
    decoded = decode_value(encode_value(VALUE))
    assert decoded == TransactionLogValue(
        VALUE.producer_id,
        VALUE.producer_epoch,
        VALUE.timeout_ms,
        VALUE.state,
        {"audit": [5], "orders": [0, 2]},
        VALUE.last_update_timestamp,
        VALUE.start_timestamp,
    )


# ------------------------------------------------------------------------------------------ value, version 1
def test_a_flexible_value_with_all_three_tagged_fields_is_read() -> None:
    encoded = flexible_value(
        VALUE,
        tags=[
            tagged(0, struct.pack(">q", 3_999_999_999)),  # PreviousProducerId
            tagged(1, struct.pack(">q", 4_000_000_002)),  # NextProducerId
            tagged(2, struct.pack(">h", 2)),  # ClientTransactionVersion
        ],
    )
    decoded = decode_value(encoded)
    assert (decoded.producer_id, decoded.producer_epoch, decoded.timeout_ms, decoded.state) == (
        VALUE.producer_id,
        VALUE.producer_epoch,
        VALUE.timeout_ms,
        VALUE.state,
    )
    assert decoded.partitions == VALUE.partitions
    assert (decoded.last_update_timestamp, decoded.start_timestamp) == (
        VALUE.last_update_timestamp,
        VALUE.start_timestamp,
    )
    assert decoded.previous_producer_id == 3_999_999_999


def test_a_flexible_value_without_tagged_fields_takes_the_defaults() -> None:
    decoded = decode_value(flexible_value(VALUE, tags=[]))
    assert decoded.previous_producer_id == -1
    assert decoded.partitions == VALUE.partitions


def test_a_flexible_value_with_null_partitions_has_none() -> None:
    empty = TransactionLogValue(1, 0, 1000, int(TxnState.COMPLETE_COMMIT), {}, 10, 5)
    decoded = decode_value(
        flexible_value(empty, tags=[tagged(2, struct.pack(">h", 1))], null_partitions=True)
    )
    assert decoded == empty


def test_unknown_tagged_fields_are_skipped_at_both_levels() -> None:
    unknown_in_partition = b"\x01" + tagged(7, b"\xde\xad\xbe")
    encoded = flexible_value(
        VALUE,
        tags=[tagged(0, struct.pack(">q", 12)), tagged(9, b"future")],
        partition_tags=unknown_in_partition,
    )
    decoded = decode_value(encoded)
    assert (decoded.partitions, decoded.previous_producer_id) == (VALUE.partitions, 12)
    assert decoded.start_timestamp == VALUE.start_timestamp


def test_a_value_of_an_unknown_version_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_value(struct.pack(">h", 2) + encode_value(VALUE)[2:])


@pytest.mark.parametrize("cut", [1, 10, 30, -1])
def test_a_truncated_value_is_refused(cut: int) -> None:
    with pytest.raises(DecodeError):
        decode_value(encode_value(VALUE)[:cut])


# ------------------------------------------------------------------------------------------ metadata
def test_metadata_round_trips_through_a_record_value() -> None:
    metadata = TransactionMetadata(
        transactional_id="payments",
        producer_id=42,
        producer_epoch=7,
        timeout_ms=30_000,
        state=TxnState.PREPARE_COMMIT,
        partitions={("orders", 0), ("orders", 3), ("audit", 1)},
        start_timestamp=100,
        last_update_timestamp=250,
    )
    value = metadata.to_record_value()
    assert sorted((topic, sorted(indexes)) for topic, indexes in value.partitions.items()) == [
        ("audit", [1]),
        ("orders", [0, 3]),
    ]
    assert TransactionMetadata.from_record_value("payments", decode_value(encode_value(value))) == metadata
