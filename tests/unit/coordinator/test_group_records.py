"""__consumer_offsets record layouts (Kafka's), and the group-to-partition mapping (Kafka's)."""

from __future__ import annotations

import struct

import pytest

from strom.coordinator.group.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_key,
    encode_value,
)
from strom.coordinator.internal_topic import java_string_hash, partition_for
from strom.protocol.primitives import DecodeError

MEMBER = MemberMetadata("m-1", "host-1", "client", "/10.0.0.1", 60_000, 30_000, b"sub", b"assign")
GROUP_VALUE = GroupMetadataValue("consumer", 7, "range", "m-1", 1_700_000_000_000, [MEMBER])


def s(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


def compact(text: str) -> bytes:
    return bytes([len(text) + 1]) + text.encode()


def b(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


# ---------------------------------------------------------------------------------------------- keys
def test_offset_commit_key_layout() -> None:
    key = OffsetCommitKey("g", "topic", 3)
    data = encode_key(key)
    assert data == struct.pack(">h", 1) + s("g") + s("topic") + struct.pack(">i", 3)
    assert decode_key(data) == key
    assert decode_key(struct.pack(">h", 0) + data[2:]) == key  # version 0 keys are offset commits too


def test_group_metadata_key_layout() -> None:
    data = encode_key(GroupMetadataKey("orders"))
    assert data == struct.pack(">h", 2) + s("orders")
    assert decode_key(data) == GroupMetadataKey("orders")


def test_other_coordinator_records_are_skipped_and_garbage_is_refused() -> None:
    assert decode_key(struct.pack(">h", 1000) + s("some-other-group")) is None
    with pytest.raises(DecodeError):
        decode_key(b"\x00")
    with pytest.raises(DecodeError):
        decode_key(struct.pack(">h", 1) + s("g"))  # topic and partition missing


# ---------------------------------------------------------------------------------------------- offset values
def test_offset_commit_value_v3_layout_and_round_trip() -> None:
    value = OffsetCommitValue(42, 5, "meta", 1_700_000_000_000)
    data = encode_value(value)
    assert data == struct.pack(">hqi", 3, 42, 5) + s("meta") + struct.pack(">q", 1_700_000_000_000)
    assert decode_offset_commit_value(data) == value


def test_offset_commit_value_with_expiry_is_written_as_v1() -> None:
    value = OffsetCommitValue(42, -1, "", 1000, 5000)
    data = encode_value(value)
    assert data[:2] == struct.pack(">h", 1)
    assert decode_offset_commit_value(data) == value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (struct.pack(">hq", 0, 9) + s("m") + struct.pack(">q", 100), OffsetCommitValue(9, -1, "m", 100)),
        (struct.pack(">hq", 2, 9) + s("m") + struct.pack(">q", 100), OffsetCommitValue(9, -1, "m", 100)),
        (
            struct.pack(">hqi", 4, 9, 2) + compact("m") + struct.pack(">q", 100) + b"\x00",
            OffsetCommitValue(9, 2, "m", 100),
        ),
    ],
    ids=["v0", "v2", "v4-flexible"],
)
def test_older_and_flexible_offset_values_decode(data: bytes, expected: OffsetCommitValue) -> None:
    assert decode_offset_commit_value(data) == expected


def test_unknown_value_versions_are_refused() -> None:
    with pytest.raises(DecodeError):
        decode_offset_commit_value(struct.pack(">hq", 5, 1))


# ---------------------------------------------------------------------------------------------- group values
def test_group_metadata_value_v3_layout_and_round_trip() -> None:
    data = encode_value(GROUP_VALUE)
    member = (s("m-1") + s("host-1") + s("client") + s("/10.0.0.1") + struct.pack(">ii", 60_000, 30_000)) + (
        b(b"sub") + b(b"assign")
    )
    expected = (
        struct.pack(">h", 3)
        + s("consumer")
        + struct.pack(">i", 7)
        + s("range")
        + s("m-1")
        + struct.pack(">q", 1_700_000_000_000)
        + struct.pack(">i", 1)
        + member
    )
    assert data == expected
    assert decode_group_metadata_value(data) == GROUP_VALUE


def test_empty_group_with_null_protocol_and_leader() -> None:
    value = GroupMetadataValue("consumer", 3, None, None, 5, [])
    assert decode_group_metadata_value(encode_value(value)) == value


def test_group_metadata_v0_decodes_with_defaults() -> None:
    member = s("m-1") + s("client") + s("/h") + struct.pack(">i", 10_000) + b(b"s") + b(b"a")
    data = struct.pack(">h", 0) + s("consumer") + struct.pack(">i", 2) + s("range") + s("m-1")
    data += struct.pack(">i", 1) + member
    value = decode_group_metadata_value(data)
    assert value.current_state_timestamp == -1
    assert value.members == [MemberMetadata("m-1", None, "client", "/h", -1, 10_000, b"s", b"a")]


def test_group_metadata_v4_flexible_decodes() -> None:
    member = compact("m-1") + b"\x00" + compact("client") + compact("/h") + struct.pack(">ii", 20_000, 10_000)
    member += bytes([2]) + b"s" + bytes([2]) + b"a" + b"\x00"
    data = (
        struct.pack(">h", 4) + compact("consumer") + struct.pack(">i", 2) + compact("range") + compact("m-1")
    )
    data += struct.pack(">q", 99) + bytes([2]) + member + b"\x00"
    value = decode_group_metadata_value(data)
    assert value == GroupMetadataValue(
        "consumer",
        2,
        "range",
        "m-1",
        99,
        [MemberMetadata("m-1", None, "client", "/h", 20_000, 10_000, b"s", b"a")],
    )


def test_truncated_group_metadata_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_group_metadata_value(encode_value(GROUP_VALUE)[:-3])


# ---------------------------------------------------------------------------------------------- partitions
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello", 99162322),
        ("test", 3556498),
        ("\U0001f600", 1772899),
        ("polygenelubricants", -(2**31)),
    ],
)
def test_java_string_hash(text: str, expected: int) -> None:
    assert java_string_hash(text) == expected


def test_partition_for_matches_kafka() -> None:
    assert partition_for("hello", 50) == 99162322 % 50
    assert partition_for("polygenelubricants", 50) == 0  # Kafka's Utils.abs maps the minimum int to 0
    assert partition_for("console-consumer-12345", 50) == abs(java_string_hash("console-consumer-12345")) % 50
