"""The records the transaction coordinator keeps in ``__transaction_state``, in Kafka's binary layouts.

Key (version 0): the transactional id. Value: version 0, or version 1 (the flexible form, with the previous
and next producer ids and the client's transaction version as tagged fields): producer id, producer epoch,
transaction timeout, state (as Kafka numbers it), the partitions in the transaction (null when there are
none), and the last-update and start timestamps. Strom writes version 0, which every Kafka since 0.11 reads,
and reads both, so a log written by Kafka replays here. A null value (a tombstone) forgets the id.
"""

from __future__ import annotations

from dataclasses import dataclass

from strom.protocol.primitives import (
    Buffer,
    DecodeError,
    Writer,
    read_compact_string,
    read_int8,
    read_int16,
    read_int32,
    read_int64,
    read_string,
    read_tagged_fields,
    read_unsigned_varint,
    skip_tagged_fields,
    write_int8,
    write_int16,
    write_int32,
    write_int64,
    write_string,
)

KEY_VERSION = 0
VALUE_VERSION = 0
_FLEXIBLE_VALUE_VERSION = 1
_PREVIOUS_PRODUCER_ID_TAG = 0


@dataclass(frozen=True, slots=True)
class TransactionLogValue:
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: int
    partitions: dict[str, list[int]]
    last_update_timestamp: int
    start_timestamp: int
    previous_producer_id: int = -1


def encode_key(transactional_id: str) -> bytes:
    w = Writer()
    write_int16(w, KEY_VERSION)
    write_string(w, transactional_id)
    return w.getvalue()


def decode_key(data: Buffer) -> str:
    version, pos = read_int16(data, 0)
    if version != KEY_VERSION:
        raise DecodeError(f"unknown transaction log key version {version}")
    transactional_id, _ = read_string(data, pos)
    return transactional_id


def encode_value(value: TransactionLogValue) -> bytes:
    w = Writer()
    write_int16(w, VALUE_VERSION)
    write_int64(w, value.producer_id)
    write_int16(w, value.producer_epoch)
    write_int32(w, value.timeout_ms)
    write_int8(w, value.state)
    if not value.partitions:
        write_int32(w, -1)
    else:
        write_int32(w, len(value.partitions))
        for topic, partitions in sorted(value.partitions.items()):
            write_string(w, topic)
            write_int32(w, len(partitions))
            for partition in sorted(partitions):
                write_int32(w, partition)
    write_int64(w, value.last_update_timestamp)
    write_int64(w, value.start_timestamp)
    return w.getvalue()


def decode_value(data: Buffer) -> TransactionLogValue:
    """A value of version 0 or 1; DecodeError when malformed or of a newer version."""
    version, pos = read_int16(data, 0)
    if version not in (VALUE_VERSION, _FLEXIBLE_VALUE_VERSION):
        raise DecodeError(f"unknown transaction log value version {version}")
    flexible = version == _FLEXIBLE_VALUE_VERSION
    producer_id, pos = read_int64(data, pos)
    producer_epoch, pos = read_int16(data, pos)
    timeout_ms, pos = read_int32(data, pos)
    state, pos = read_int8(data, pos)
    partitions: dict[str, list[int]] = {}
    count, pos = _read_length(data, pos, flexible)
    for _ in range(max(count, 0)):
        topic, pos = read_compact_string(data, pos) if flexible else read_string(data, pos)
        n, pos = _read_length(data, pos, flexible)
        indexes = []
        for _ in range(max(n, 0)):
            index, pos = read_int32(data, pos)
            indexes.append(index)
        if flexible:
            pos = skip_tagged_fields(data, pos)
        partitions.setdefault(topic, []).extend(indexes)
    last_update, pos = read_int64(data, pos)
    start, pos = read_int64(data, pos)
    previous_producer_id = -1
    if flexible:
        tags, _ = read_tagged_fields(data, pos)
        if len(tags.get(_PREVIOUS_PRODUCER_ID_TAG, b"")) == 8:
            previous_producer_id, _ = read_int64(tags[_PREVIOUS_PRODUCER_ID_TAG], 0)
    return TransactionLogValue(
        producer_id, producer_epoch, timeout_ms, state, partitions, last_update, start, previous_producer_id
    )


def _read_length(data: Buffer, pos: int, flexible: bool) -> tuple[int, int]:
    """An array length: int32 (-1 null), or compact (unsigned varint of length + 1, 0 null)."""
    if not flexible:
        return read_int32(data, pos)
    length_plus_one, pos = read_unsigned_varint(data, pos)
    return length_plus_one - 1, pos
