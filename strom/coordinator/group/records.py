"""The records the group coordinator keeps in ``__consumer_offsets``, in Kafka's own binary layouts.

Every record key starts with an int16 saying what it is: 0 and 1 are offset commits (group, topic,
partition), 2 is a group's metadata (group), 3-8 are the records of consumer-protocol groups (KIP-848, see
`consumer_records`). Kafka stores other kinds of coordinator records under higher key versions (share and
streams groups); they are recognised and skipped. Every value starts with its own int16 version:

- offset commit values v0-v4: offset, leader epoch (v3+), metadata, commit timestamp, expire timestamp (v1
  only); v4 is the flexible (compact, tagged) form of v3.
- group metadata values v0-v4: protocol type, generation, protocol, leader, current-state timestamp (v2+),
  then the members: member id, group instance id (v3+), client id, client host, rebalance timeout (v1+),
  session timeout, subscription, assignment; v4 is the flexible form of v3.

Strom writes offset commit values v3 (v1 when the commit carries an expire timestamp, as Kafka does) and
group metadata values v3, which every Kafka release since 2.3 reads; it reads all of the versions above, so a
log written by Kafka replays here. A null value (a tombstone) deletes the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from strom.coordinator.group.consumer_records import (
    CONSUMER_KEY_TYPES,
    ConsumerRecordKey,
    ConsumerRecordValue,
    decode_consumer_key,
    decode_consumer_value,
    encode_consumer_key,
    encode_consumer_value,
)
from strom.protocol.primitives import (
    Buffer,
    DecodeError,
    Writer,
    read_bytes,
    read_compact_bytes,
    read_compact_nullable_string,
    read_compact_string,
    read_int16,
    read_int32,
    read_int64,
    read_nullable_string,
    read_string,
    read_unsigned_varint,
    skip_tagged_fields,
    write_bytes,
    write_int16,
    write_int32,
    write_int64,
    write_nullable_string,
    write_string,
)

OFFSET_COMMIT_KEY_VERSIONS = (0, 1)
GROUP_METADATA_KEY_VERSION = 2
OFFSET_COMMIT_VALUE_VERSION = 3
OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY = 1
GROUP_METADATA_VALUE_VERSION = 3
_FLEXIBLE_VERSION = 4
_MAX_VALUE_VERSION = 4


@dataclass(frozen=True, slots=True)
class OffsetCommitKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupMetadataKey:
    group: str


RecordKey = OffsetCommitKey | GroupMetadataKey | ConsumerRecordKey


@dataclass(frozen=True, slots=True)
class OffsetCommitValue:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp: int = -1
    expire_timestamp: int = -1  # only from OffsetCommit v2-v4 requests that set a retention time


@dataclass(frozen=True, slots=True)
class MemberMetadata:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout: int
    session_timeout: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    current_state_timestamp: int = -1
    members: list[MemberMetadata] = field(default_factory=list)


RecordValue = OffsetCommitValue | GroupMetadataValue | ConsumerRecordValue


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record of ``__consumer_offsets``: a key and its value, or None for a tombstone."""

    key: RecordKey
    value: RecordValue | None


# ---------------------------------------------------------------------------------------------- keys
def encode_key(key: RecordKey) -> bytes:
    w = Writer()
    if isinstance(key, CONSUMER_KEY_TYPES):
        encode_consumer_key(w, key)
    elif isinstance(key, OffsetCommitKey):
        write_int16(w, OFFSET_COMMIT_KEY_VERSIONS[1])
        write_string(w, key.group)
        write_string(w, key.topic)
        write_int32(w, key.partition)
    else:
        write_int16(w, GROUP_METADATA_KEY_VERSION)
        write_string(w, key.group)
    return bytes(w.buf)


def decode_key(data: Buffer) -> RecordKey | None:
    """The key, or None for a kind of coordinator record this coordinator does not keep."""
    version, pos = read_int16(data, 0)
    if version in OFFSET_COMMIT_KEY_VERSIONS:
        group, pos = read_string(data, pos)
        topic, pos = read_string(data, pos)
        partition, pos = read_int32(data, pos)
        return OffsetCommitKey(group, topic, partition)
    if version == GROUP_METADATA_KEY_VERSION:
        group, pos = read_string(data, pos)
        return GroupMetadataKey(group)
    if version < 0:
        raise DecodeError(f"invalid record key version {version}")
    return decode_consumer_key(version, data, pos)


# ---------------------------------------------------------------------------------------------- values
def encode_value(value: RecordValue) -> bytes:
    w = Writer()
    if isinstance(value, OffsetCommitValue):
        _write_offset_commit_value(w, value)
    elif not isinstance(value, GroupMetadataValue):
        encode_consumer_value(w, value)
    else:
        _write_group_metadata_value(w, value)
    return bytes(w.buf)


def decode_value(key: RecordKey, data: Buffer) -> RecordValue:
    """The value stored under ``key``; DecodeError if it is malformed or of an unknown version."""
    if isinstance(key, OffsetCommitKey):
        return decode_offset_commit_value(data)
    if isinstance(key, CONSUMER_KEY_TYPES):
        return decode_consumer_value(key, data)
    return decode_group_metadata_value(data)


def _write_offset_commit_value(w: Writer, value: OffsetCommitValue) -> None:
    if value.expire_timestamp >= 0:
        write_int16(w, OFFSET_COMMIT_VALUE_VERSION_WITH_EXPIRY)
        write_int64(w, value.offset)
        write_string(w, value.metadata)
        write_int64(w, value.commit_timestamp)
        write_int64(w, value.expire_timestamp)
        return
    write_int16(w, OFFSET_COMMIT_VALUE_VERSION)
    write_int64(w, value.offset)
    write_int32(w, value.leader_epoch)
    write_string(w, value.metadata)
    write_int64(w, value.commit_timestamp)


def decode_offset_commit_value(data: Buffer) -> OffsetCommitValue:
    version, pos = _read_value_version(data)
    flexible = version >= _FLEXIBLE_VERSION
    offset, pos = read_int64(data, pos)
    leader_epoch = -1
    if version >= 3:
        leader_epoch, pos = read_int32(data, pos)
    metadata, pos = read_compact_string(data, pos) if flexible else read_string(data, pos)
    commit_timestamp, pos = read_int64(data, pos)
    expire_timestamp = -1
    if version == 1:
        expire_timestamp, pos = read_int64(data, pos)
    if flexible:
        pos = skip_tagged_fields(data, pos)
    return OffsetCommitValue(offset, leader_epoch, metadata, commit_timestamp, expire_timestamp)


def _write_group_metadata_value(w: Writer, value: GroupMetadataValue) -> None:
    write_int16(w, GROUP_METADATA_VALUE_VERSION)
    write_string(w, value.protocol_type)
    write_int32(w, value.generation)
    write_nullable_string(w, value.protocol)
    write_nullable_string(w, value.leader)
    write_int64(w, value.current_state_timestamp)
    write_int32(w, len(value.members))
    for member in value.members:
        write_string(w, member.member_id)
        write_nullable_string(w, member.group_instance_id)
        write_string(w, member.client_id)
        write_string(w, member.client_host)
        write_int32(w, member.rebalance_timeout)
        write_int32(w, member.session_timeout)
        write_bytes(w, member.subscription)
        write_bytes(w, member.assignment)


def decode_group_metadata_value(data: Buffer) -> GroupMetadataValue:
    version, pos = _read_value_version(data)
    flexible = version >= _FLEXIBLE_VERSION
    text = read_compact_string if flexible else read_string
    nullable_text = read_compact_nullable_string if flexible else read_nullable_string
    blob = read_compact_bytes if flexible else read_bytes
    protocol_type, pos = text(data, pos)
    generation, pos = read_int32(data, pos)
    protocol, pos = nullable_text(data, pos)
    leader, pos = nullable_text(data, pos)
    current_state_timestamp = -1
    if version >= 2:
        current_state_timestamp, pos = read_int64(data, pos)
    if flexible:
        count_plus_one, pos = read_unsigned_varint(data, pos)
        count = count_plus_one - 1
    else:
        count, pos = read_int32(data, pos)
    if count < 0 or count > len(data) - pos:
        raise DecodeError(f"group metadata has an invalid member count {count}")
    members = []
    for _ in range(count):
        member_id, pos = text(data, pos)
        group_instance_id = None
        if version >= 3:
            group_instance_id, pos = nullable_text(data, pos)
        client_id, pos = text(data, pos)
        client_host, pos = text(data, pos)
        rebalance_timeout = -1
        if version >= 1:
            rebalance_timeout, pos = read_int32(data, pos)
        session_timeout, pos = read_int32(data, pos)
        subscription, pos = blob(data, pos)
        assignment, pos = blob(data, pos)
        if flexible:
            pos = skip_tagged_fields(data, pos)
        members.append(
            MemberMetadata(
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout,
                session_timeout,
                bytes(subscription),
                bytes(assignment),
            )
        )
    if flexible:
        pos = skip_tagged_fields(data, pos)
    return GroupMetadataValue(protocol_type, generation, protocol, leader, current_state_timestamp, members)


def _read_value_version(data: Buffer) -> tuple[int, int]:
    version, pos = read_int16(data, 0)
    if not 0 <= version <= _MAX_VALUE_VERSION:
        raise DecodeError(f"unknown record value version {version}")
    return version, pos
