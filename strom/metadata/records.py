"""Metadata records: the facts the metadata log is made of, modelled on KRaft's metadata records.

Every piece of cluster metadata (topics, partitions, configs, brokers, producer-id blocks, feature levels)
is the result of replaying these records in log order, so they are immutable values. Each record serialises
to a compact JSON object carrying its type name and a schema version, so a newer Strom can still read an
older log and an older Strom refuses a log it cannot understand instead of silently misreading it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from dataclasses import dataclass
from typing import Any

# ConfigResource type ids, as Kafka's ConfigResource.Type defines them.
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A topic was created; its partitions follow as PartitionRecords."""

    name: str
    topic_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """The full state of one new partition."""

    topic_id: uuid.UUID
    partition: int
    replicas: list[int]
    isr: list[int]
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0


@dataclass(frozen=True, slots=True)
class PartitionChangeRecord:
    """A change to an existing partition; None means "unchanged" for each field."""

    topic_id: uuid.UUID
    partition: int
    leader: int | None = None
    isr: list[int] | None = None
    replicas: list[int] | None = None


@dataclass(frozen=True, slots=True)
class RemoveTopicRecord:
    """A topic was deleted, together with its partitions and config overrides."""

    topic_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """A dynamic config override was set (value) or removed (value None).

    resource_type is TOPIC_RESOURCE (resource_name = topic name) or BROKER_RESOURCE (resource_name = the
    broker id as a string, or "" for the cluster-wide default).
    """

    resource_type: int
    resource_name: str
    name: str
    value: str | None


@dataclass(frozen=True, slots=True)
class RegisterBrokerRecord:
    """A broker (re)registered with the controller; the record's offset becomes its broker epoch."""

    broker_id: int
    host: str
    port: int
    rack: str | None = None
    listener_name: str = "PLAINTEXT"
    security_protocol: int = 0


@dataclass(frozen=True, slots=True)
class ProducerIdsRecord:
    """A block of producer ids was handed out; next_producer_id is the first id not yet given to anyone."""

    broker_id: int
    next_producer_id: int


@dataclass(frozen=True, slots=True)
class FeatureLevelRecord:
    """A cluster-wide feature was finalised at a level (level 0 removes it)."""

    name: str
    level: int


MetadataRecord = (
    TopicRecord
    | PartitionRecord
    | PartitionChangeRecord
    | RemoveTopicRecord
    | ConfigRecord
    | RegisterBrokerRecord
    | ProducerIdsRecord
    | FeatureLevelRecord
)


class RecordFormatError(ValueError):
    """A serialised record could not be understood (unknown type, newer version, missing or bad fields)."""


@dataclass(frozen=True, slots=True)
class _RecordSchema:
    cls: type
    version: int
    uuid_fields: frozenset[str]


def _schema(cls: type, version: int) -> _RecordSchema:
    hints = typing.get_type_hints(cls)
    return _RecordSchema(cls, version, frozenset(name for name, hint in hints.items() if hint is uuid.UUID))


#: Current schema version of each record type. Bump a version when a record's fields change, and teach
#: decode_record to read the older versions.
_SCHEMAS: dict[str, _RecordSchema] = {
    schema.cls.__name__: schema
    for schema in (
        _schema(TopicRecord, 0),
        _schema(PartitionRecord, 0),
        _schema(PartitionChangeRecord, 0),
        _schema(RemoveTopicRecord, 0),
        _schema(ConfigRecord, 0),
        _schema(RegisterBrokerRecord, 0),
        _schema(ProducerIdsRecord, 0),
        _schema(FeatureLevelRecord, 0),
    )
}


def encode_record(record: MetadataRecord) -> dict[str, Any]:
    """The JSON-ready form of a record: its fields plus "type" and "version"."""
    type_name = type(record).__name__
    schema = _SCHEMAS.get(type_name)
    if schema is None or type(record) is not schema.cls:
        raise TypeError(f"not a metadata record: {record!r}")
    fields: dict[str, Any] = {"type": type_name, "version": schema.version}
    for field in dataclasses.fields(record):
        value = getattr(record, field.name)
        fields[field.name] = str(value) if field.name in schema.uuid_fields else value
    return fields


def decode_record(fields: dict[str, Any]) -> MetadataRecord:
    """The record a JSON object produced by encode_record stands for."""
    try:
        type_name = fields["type"]
        version = fields["version"]
    except (KeyError, TypeError) as exc:
        raise RecordFormatError(f"record without type or version: {fields!r}") from exc
    schema = _SCHEMAS.get(type_name)
    if schema is None:
        raise RecordFormatError(f"unknown metadata record type {type_name!r}")
    if not isinstance(version, int) or not 0 <= version <= schema.version:
        raise RecordFormatError(
            f"{type_name} version {version!r} is not supported (newest: {schema.version})"
        )
    kwargs = {key: value for key, value in fields.items() if key not in ("type", "version")}
    try:
        for name in schema.uuid_fields:
            kwargs[name] = uuid.UUID(kwargs[name])
        record: MetadataRecord = schema.cls(**kwargs)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordFormatError(f"malformed {type_name}: {fields!r}") from exc
    return record


def encode_batch(records: list[MetadataRecord], base_offset: int) -> bytes:
    """One log frame's payload: the batch's first offset and its records, as compact JSON."""
    payload = {"base_offset": base_offset, "records": [encode_record(record) for record in records]}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_batch(payload: bytes) -> tuple[int, list[MetadataRecord]]:
    """(base offset, records) of a payload produced by encode_batch."""
    try:
        batch = json.loads(payload)
        base_offset = batch["base_offset"]
        raw_records = batch["records"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordFormatError("metadata batch is not valid JSON of the expected shape") from exc
    if not isinstance(base_offset, int) or not isinstance(raw_records, list) or not raw_records:
        raise RecordFormatError("metadata batch has a bad base offset or no records")
    return base_offset, [decode_record(fields) for fields in raw_records]
