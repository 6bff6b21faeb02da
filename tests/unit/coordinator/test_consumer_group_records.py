"""Consumer group records in Kafka's layouts: keys and values survive encoding, foreign ones are skipped."""

from __future__ import annotations

import uuid

import pytest

from strom.coordinator.group.consumer_records import (
    ConsumerGroupCurrentMemberAssignmentKey,
    ConsumerGroupCurrentMemberAssignmentValue,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataKey,
    ConsumerGroupMetadataValue,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMetadataValue,
)
from strom.coordinator.group.records import (
    RecordKey,
    RecordValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from strom.protocol.primitives import DecodeError

TOPIC = uuid.UUID("6b1d3c52-4f0a-4d3e-9a55-0d7c1c7c2f10")

CASES: list[tuple[RecordKey, RecordValue]] = [
    (ConsumerGroupMetadataKey("g"), ConsumerGroupMetadataValue(7)),
    (
        ConsumerGroupMemberMetadataKey("g", "m"),
        ConsumerGroupMemberMetadataValue(
            "i", None, "client", "/127.0.0.1", ("a", "b"), None, 30_000, "range"
        ),
    ),
    (ConsumerGroupTargetAssignmentMetadataKey("g"), ConsumerGroupTargetAssignmentMetadataValue(7)),
    (
        ConsumerGroupTargetAssignmentMemberKey("g", "m"),
        ConsumerGroupTargetAssignmentMemberValue({TOPIC: frozenset({0, 2})}),
    ),
    (
        ConsumerGroupCurrentMemberAssignmentKey("g", "m"),
        ConsumerGroupCurrentMemberAssignmentValue(7, 6, 1, {TOPIC: frozenset({0})}, {TOPIC: frozenset({2})}),
    ),
]


@pytest.mark.parametrize(("key", "value"), CASES)
def test_round_trip(key: RecordKey, value: RecordValue) -> None:
    decoded_key = decode_key(encode_key(key))
    assert decoded_key == key
    assert decode_value(key, encode_value(value)) == value


def test_key_layout_is_kafkas() -> None:
    assert encode_key(ConsumerGroupMetadataKey("g")) == b"\x00\x03\x00\x01g"
    assert encode_key(ConsumerGroupCurrentMemberAssignmentKey("g", "m")) == b"\x00\x08\x00\x01g\x00\x01m"
    assert encode_value(ConsumerGroupMetadataValue(7)) == b"\x00\x00\x00\x00\x00\x07\x00"


def test_partition_metadata_and_unknown_types_are_skipped() -> None:
    assert decode_key(b"\x00\x04\x00\x01g") is None
    assert decode_key(b"\x00\x0b\x00\x01g") is None


def test_unknown_value_version_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_value(ConsumerGroupMetadataKey("g"), b"\x00\x01\x00\x00\x00\x07\x00")


def test_tagged_fields_written_by_newer_kafka_are_skipped() -> None:
    # ConsumerGroupMetadataValue with KIP-1101's MetadataHash as tagged field 0.
    data = b"\x00\x00\x00\x00\x00\x07" + b"\x01\x00\x08" + bytes(8)
    assert decode_value(ConsumerGroupMetadataKey("g"), data) == ConsumerGroupMetadataValue(7)
