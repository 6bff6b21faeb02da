"""The records of consumer-protocol groups (KIP-848) in ``__consumer_offsets``, in Kafka's binary layouts.

A key is an int16 record type followed by the key's fields in the non-flexible encoding (int16-length
strings); a value is an int16 version (0) followed by its fields in the flexible encoding (compact strings
and arrays, tagged fields at the end of every struct). The record types:

- 3 ConsumerGroupMetadata (group): the group epoch.
- 4 ConsumerGroupPartitionMetadata (group): the subscribed topics' metadata. Strom neither writes nor reads
  it: the subscription metadata is recomputed from the broker's metadata after a restart (which bumps the
  group epoch once), so `decode_consumer_key` skips it like any other record it does not keep.
- 5 ConsumerGroupMemberMetadata (group, member): the member's client and subscription.
- 6 ConsumerGroupTargetAssignmentMetadata (group): the epoch of the target assignment.
- 7 ConsumerGroupTargetAssignmentMember (group, member): the member's target partitions.
- 8 ConsumerGroupCurrentMemberAssignment (group, member): the member's epochs, reconciliation state,
  assigned partitions and partitions pending revocation.

A tombstone (null value) deletes the key.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from strom.protocol.primitives import (
    Buffer,
    DecodeError,
    Writer,
    read_compact_nullable_string,
    read_compact_string,
    read_int8,
    read_int16,
    read_int32,
    read_string,
    read_unsigned_varint,
    read_uuid,
    skip_tagged_fields,
    write_compact_nullable_string,
    write_compact_string,
    write_int8,
    write_int16,
    write_int32,
    write_string,
    write_unsigned_varint,
    write_uuid,
)

GROUP_METADATA_TYPE = 3
MEMBER_METADATA_TYPE = 5
TARGET_ASSIGNMENT_METADATA_TYPE = 6
TARGET_ASSIGNMENT_MEMBER_TYPE = 7
CURRENT_ASSIGNMENT_TYPE = 8
_VALUE_VERSION = 0

#: Partitions by topic id, as the records and the protocol carry them.
TopicPartitions = Mapping[uuid.UUID, frozenset[int]]


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataKey:
    group: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberKey:
    group: str
    member_id: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentKey:
    group: str
    member_id: str


ConsumerRecordKey = (
    ConsumerGroupMetadataKey
    | ConsumerGroupMemberMetadataKey
    | ConsumerGroupTargetAssignmentMetadataKey
    | ConsumerGroupTargetAssignmentMemberKey
    | ConsumerGroupCurrentMemberAssignmentKey
)
CONSUMER_KEY_TYPES = (
    ConsumerGroupMetadataKey,
    ConsumerGroupMemberMetadataKey,
    ConsumerGroupTargetAssignmentMetadataKey,
    ConsumerGroupTargetAssignmentMemberKey,
    ConsumerGroupCurrentMemberAssignmentKey,
)
_KEY_TYPES: dict[type, int] = {
    ConsumerGroupMetadataKey: GROUP_METADATA_TYPE,
    ConsumerGroupMemberMetadataKey: MEMBER_METADATA_TYPE,
    ConsumerGroupTargetAssignmentMetadataKey: TARGET_ASSIGNMENT_METADATA_TYPE,
    ConsumerGroupTargetAssignmentMemberKey: TARGET_ASSIGNMENT_MEMBER_TYPE,
    ConsumerGroupCurrentMemberAssignmentKey: CURRENT_ASSIGNMENT_TYPE,
}


@dataclass(frozen=True, slots=True)
class ConsumerGroupMetadataValue:
    epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupMemberMetadataValue:
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    rebalance_timeout_ms: int
    server_assignor: str | None


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMetadataValue:
    assignment_epoch: int


@dataclass(frozen=True, slots=True)
class ConsumerGroupTargetAssignmentMemberValue:
    partitions: TopicPartitions


@dataclass(frozen=True, slots=True)
class ConsumerGroupCurrentMemberAssignmentValue:
    member_epoch: int
    previous_member_epoch: int
    state: int
    assigned: TopicPartitions
    pending_revocation: TopicPartitions


ConsumerRecordValue = (
    ConsumerGroupMetadataValue
    | ConsumerGroupMemberMetadataValue
    | ConsumerGroupTargetAssignmentMetadataValue
    | ConsumerGroupTargetAssignmentMemberValue
    | ConsumerGroupCurrentMemberAssignmentValue
)


# ---------------------------------------------------------------------------------------------- keys
def encode_consumer_key(w: Writer, key: ConsumerRecordKey) -> None:
    write_int16(w, _KEY_TYPES[type(key)])
    write_string(w, key.group)
    if isinstance(
        key,
        ConsumerGroupMemberMetadataKey
        | ConsumerGroupTargetAssignmentMemberKey
        | ConsumerGroupCurrentMemberAssignmentKey,
    ):
        write_string(w, key.member_id)


def decode_consumer_key(record_type: int, data: Buffer, pos: int) -> ConsumerRecordKey | None:
    """The key of a consumer-group record type (after its int16 type), or None for another type."""
    group_keys: dict[int, Callable[[str], ConsumerRecordKey]] = {
        GROUP_METADATA_TYPE: ConsumerGroupMetadataKey,
        TARGET_ASSIGNMENT_METADATA_TYPE: ConsumerGroupTargetAssignmentMetadataKey,
    }
    member_keys: dict[int, Callable[[str, str], ConsumerRecordKey]] = {
        MEMBER_METADATA_TYPE: ConsumerGroupMemberMetadataKey,
        TARGET_ASSIGNMENT_MEMBER_TYPE: ConsumerGroupTargetAssignmentMemberKey,
        CURRENT_ASSIGNMENT_TYPE: ConsumerGroupCurrentMemberAssignmentKey,
    }
    if record_type in group_keys:
        group, pos = read_string(data, pos)
        return group_keys[record_type](group)
    if record_type in member_keys:
        group, pos = read_string(data, pos)
        member_id, pos = read_string(data, pos)
        return member_keys[record_type](group, member_id)
    return None


# ---------------------------------------------------------------------------------------------- values
def encode_consumer_value(w: Writer, value: ConsumerRecordValue) -> None:
    write_int16(w, _VALUE_VERSION)
    if isinstance(value, ConsumerGroupMetadataValue):
        write_int32(w, value.epoch)
    elif isinstance(value, ConsumerGroupMemberMetadataValue):
        write_compact_nullable_string(w, value.instance_id)
        write_compact_nullable_string(w, value.rack_id)
        write_compact_string(w, value.client_id)
        write_compact_string(w, value.client_host)
        write_unsigned_varint(w, len(value.subscribed_topic_names) + 1)
        for name in value.subscribed_topic_names:
            write_compact_string(w, name)
        write_compact_nullable_string(w, value.subscribed_topic_regex)
        write_int32(w, value.rebalance_timeout_ms)
        write_compact_nullable_string(w, value.server_assignor)
    elif isinstance(value, ConsumerGroupTargetAssignmentMetadataValue):
        write_int32(w, value.assignment_epoch)
    elif isinstance(value, ConsumerGroupTargetAssignmentMemberValue):
        _write_topic_partitions(w, value.partitions)
    else:
        write_int32(w, value.member_epoch)
        write_int32(w, value.previous_member_epoch)
        write_int8(w, value.state)
        _write_topic_partitions(w, value.assigned)
        _write_topic_partitions(w, value.pending_revocation)
    write_unsigned_varint(w, 0)  # no tagged fields


def decode_consumer_value(key: ConsumerRecordKey, data: Buffer) -> ConsumerRecordValue:
    """The value stored under ``key``; DecodeError if it is malformed or of an unknown version."""
    version, pos = read_int16(data, 0)
    if version != _VALUE_VERSION:
        raise DecodeError(f"unknown consumer group record value version {version}")
    value: ConsumerRecordValue
    if isinstance(key, ConsumerGroupMetadataKey):
        epoch, pos = read_int32(data, pos)
        value = ConsumerGroupMetadataValue(epoch)
    elif isinstance(key, ConsumerGroupMemberMetadataKey):
        instance_id, pos = read_compact_nullable_string(data, pos)
        rack_id, pos = read_compact_nullable_string(data, pos)
        client_id, pos = read_compact_string(data, pos)
        client_host, pos = read_compact_string(data, pos)
        names, pos = _read_array(data, pos, read_compact_string)
        regex, pos = read_compact_nullable_string(data, pos)
        rebalance_timeout_ms, pos = read_int32(data, pos)
        assignor, pos = read_compact_nullable_string(data, pos)
        value = ConsumerGroupMemberMetadataValue(
            instance_id, rack_id, client_id, client_host, tuple(names), regex, rebalance_timeout_ms, assignor
        )
    elif isinstance(key, ConsumerGroupTargetAssignmentMetadataKey):
        epoch, pos = read_int32(data, pos)
        value = ConsumerGroupTargetAssignmentMetadataValue(epoch)
    elif isinstance(key, ConsumerGroupTargetAssignmentMemberKey):
        partitions, pos = _read_topic_partitions(data, pos)
        value = ConsumerGroupTargetAssignmentMemberValue(partitions)
    else:
        member_epoch, pos = read_int32(data, pos)
        previous_epoch, pos = read_int32(data, pos)
        state, pos = read_int8(data, pos)
        assigned, pos = _read_topic_partitions(data, pos)
        pending, pos = _read_topic_partitions(data, pos)
        value = ConsumerGroupCurrentMemberAssignmentValue(
            member_epoch, previous_epoch, state, assigned, pending
        )
    skip_tagged_fields(data, pos)
    return value


def _write_topic_partitions(w: Writer, partitions: TopicPartitions) -> None:
    write_unsigned_varint(w, len(partitions) + 1)
    for topic_id, indexes in sorted(partitions.items()):
        write_uuid(w, topic_id)
        write_unsigned_varint(w, len(indexes) + 1)
        for index in sorted(indexes):
            write_int32(w, index)
        write_unsigned_varint(w, 0)


def _read_topic_partitions(data: Buffer, pos: int) -> tuple[dict[uuid.UUID, frozenset[int]], int]:
    count, pos = _read_count(data, pos)
    partitions: dict[uuid.UUID, frozenset[int]] = {}
    for _ in range(count):
        topic_id, pos = read_uuid(data, pos)
        indexes, pos = _read_array(data, pos, read_int32)
        pos = skip_tagged_fields(data, pos)  # e.g. KIP-1251's AssignmentEpochs
        partitions[topic_id] = frozenset(indexes)
    return partitions, pos


_T = TypeVar("_T")


def _read_array(
    data: Buffer, pos: int, read: Callable[[Buffer, int], tuple[_T, int]]
) -> tuple[list[_T], int]:
    count, pos = _read_count(data, pos)
    items = []
    for _ in range(count):
        item, pos = read(data, pos)
        items.append(item)
    return items, pos


def _read_count(data: Buffer, pos: int) -> tuple[int, int]:
    count_plus_one, pos = read_unsigned_varint(data, pos)
    count = count_plus_one - 1
    if count < 0 or count > len(data) - pos:
        raise DecodeError(f"invalid array length {count}")
    return count, pos
