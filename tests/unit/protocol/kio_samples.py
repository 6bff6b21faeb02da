"""Sample messages built from kio's entity classes, and their translation into Strom's dataclasses.

kio (`kio.schema.<api>.v<N>.request/response`) generates one frozen dataclass per message and version
from its own copy of Kafka's schemas; every field's metadata carries its Kafka type and tag, which is
all a sample needs.  kio names fields as we do (snake_case of the schema name) except that time fields
lose their `_ms` suffix and become timedeltas or datetimes, error codes are an enum, arrays are tuples
and the zero UUID is None; `to_ours` bridges those.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import importlib
import io
import types
import typing
from typing import Any

from codec_support import SIDES, Values, our_message_class, our_versions, struct_fields
from kio.schema.errors import ErrorCode as KioErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
)
from kio.serial.readers import tz_aware_from_i64
from kio.static.constants import EntityType

from strom.protocol.messages import APIS
from strom.protocol.primitives import UUID_ZERO

# Fields Kafka renamed after the schemas Strom's codec was generated from (same wire format):
# kio's name -> ours.
RENAMED = {
    "id_": "id",  # kio avoids shadowing the builtin
    "replica_epoch": "candidate_epoch",  # Vote
    "replica_id": "candidate_id",  # Vote
    "replica_directory_id": "candidate_directory_id",  # Vote
    "config_resources": "client_metrics_resources",  # ListConfigResources, once ListClientMetricsResources
    "resource_name": "name",  # ListConfigResources
}

# (API name, side, version) kio cannot express the way Strom's schemas define it.
NOT_COMPARABLE = {
    ("ReadShareGroupStateSummary", "response", 0): "kio's schema adds LeaderEpoch to this (then unstable) v0",
}

_TIME_TYPES = ("timedelta_i32", "timedelta_i64", "datetime_i64")
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MILLISECOND = datetime.timedelta(milliseconds=1)
# A few decades either way: timedeltas and datetimes hold these exactly, to the millisecond.
_MAX_TIME_MS = 2**41
_ERROR_CODES = tuple(KioErrorCode)


def kio_class(api_key: int, side: str, version: int) -> type | None:
    """kio's entity class for one message version, or None when kio lacks that API or version."""
    versions = schema_name_map.get(api_key_map.get(api_key, ""), {})
    entities = versions.get(version)
    if entities is None:
        return None
    path = entities[EntityType.request] if side == "request" else entities[EntityType.response]
    module_name, class_name = path.split(":")
    return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]


def kio_consumer_protocol_class(kind: str, version: int) -> type:
    """kio's ConsumerProtocolSubscription or ...Assignment (`kind`) class of one version."""
    module = importlib.import_module(f"kio.schema.consumer_protocol_{kind}.v{version}.data")
    return getattr(module, f"ConsumerProtocol{kind.capitalize()}")  # type: ignore[no-any-return]


def kio_versions() -> list[tuple[int, str, int]]:
    """Every (api_key, side, version) both Strom's codec and kio implement."""
    return [
        (key, side, version)
        for key, version in our_versions()
        for side in SIDES
        if kio_class(key, side, version) is not None
    ]


def comparable(api_key: int, side: str, version: int) -> bool:
    return (APIS[api_key].name, side, version) not in NOT_COMPARABLE


class KioSampler:
    """Builds kio entities with every field set: nulls now and then, tagged fields mostly non-default."""

    def __init__(self, seed: str) -> None:
        self.values = Values(seed)

    def entity(self, cls: type, depth: int = 0) -> Any:
        kwargs = {}
        for field in dataclasses.fields(cls):
            has_default = field.default is not dataclasses.MISSING
            if has_default and get_field_tag(field) is not None and self.values.chance(0.2):
                continue  # leave this tagged field at its default: not written at all
            kwargs[field.name] = self.field(field, depth)
        return cls(**kwargs)

    def field(self, field: dataclasses.Field[Any], depth: int) -> Any:
        if _nullable(field) and self.values.chance(0.2):
            return None
        kind = classify_field(field)
        if isinstance(kind, EntityField):
            return self.entity(kind.type_, depth + 1)
        if isinstance(kind, EntityTupleField):
            return tuple(self.entity(kind.type_, depth + 1) for _ in range(self.values.count(depth)))
        kafka_type = get_schema_field_type(field)
        if isinstance(kind, PrimitiveTupleField):
            return tuple(self.primitive(kafka_type) for _ in range(self.values.count(depth)))
        return self.primitive(kafka_type)

    def primitive(self, kafka_type: str) -> Any:
        values = self.values
        if kafka_type == "error_code":
            return values.pick(_ERROR_CODES)
        if kafka_type == "timedelta_i32":
            return datetime.timedelta(milliseconds=values.integer("int32"))
        if kafka_type == "timedelta_i64":
            return datetime.timedelta(milliseconds=values.rng.randint(-_MAX_TIME_MS, _MAX_TIME_MS))
        if kafka_type == "datetime_i64":
            return tz_aware_from_i64(values.pick((0, 1, values.rng.randint(0, _MAX_TIME_MS))))
        return values.primitive(kafka_type)


def _nullable(field: dataclasses.Field[Any]) -> bool:
    """Whether the field itself may be None.  (kio's own `is_optional` also answers yes for an array
    whose elements may be None, as UUIDs may: the zero UUID.)"""
    return isinstance(field.type, types.UnionType) and types.NoneType in typing.get_args(field.type)


def kio_sample(api_key: int, side: str, version: int, seed: str) -> Any:
    cls = kio_class(api_key, side, version)
    assert cls is not None, f"kio has no {side} v{version} of API {api_key}"
    return KioSampler(f"{seed}:{api_key}:{side}:v{version}").entity(cls)


def kio_encode(entity: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def kio_decode(cls: type, data: bytes) -> tuple[Any, int]:
    return entity_reader(cls)(data, 0)  # type: ignore[no-any-return]


def to_ours(entity: Any, our_class: type) -> Any:
    """The instance of one of Strom's dataclasses holding the same values as a kio entity; fields the
    kio version lacks keep their defaults."""
    nested = struct_fields(our_class)
    kwargs = {}
    for field in dataclasses.fields(entity):
        name = our_field_name(field, our_class)
        value = getattr(entity, field.name)
        kind = classify_field(field)
        if isinstance(kind, EntityField):
            kwargs[name] = None if value is None else to_ours(value, _struct(nested, name))
        elif isinstance(kind, EntityTupleField):
            kwargs[name] = None if value is None else [to_ours(item, _struct(nested, name)) for item in value]
        elif isinstance(kind, PrimitiveTupleField):
            kafka_type = get_schema_field_type(field)
            kwargs[name] = None if value is None else [_primitive_to_ours(item, kafka_type) for item in value]
        else:
            kwargs[name] = _primitive_to_ours(value, get_schema_field_type(field))
    return our_class(**kwargs)


@functools.cache
def _our_field_names(our_class: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(our_class))


def our_field_name(field: dataclasses.Field[Any], our_class: type) -> str:
    """Our name for a kio field: the same snake_case, bar the documented exceptions."""
    ours = _our_field_names(our_class)
    candidates = [field.name, RENAMED.get(field.name, "")]
    if field.metadata.get("kafka_type") in _TIME_TYPES:
        candidates.append(field.name + "_ms")
    found = next((name for name in candidates if name in ours), None)
    assert found is not None, f"kio field {field.name} has no counterpart in {our_class.__qualname__}"
    return found


def _struct(nested: dict[str, type | None], name: str) -> type:
    cls = nested[name]
    assert cls is not None, f"field {name} holds no struct in our dataclass"
    return cls


def _primitive_to_ours(value: Any, kafka_type: str) -> Any:
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return value // _MILLISECOND
    if kafka_type == "datetime_i64":
        return -1 if value is None else (value - _EPOCH) // _MILLISECOND
    if kafka_type == "uuid":
        return UUID_ZERO if value is None else value
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return int(value)  # kio's error code enum and range-checked int subclasses
    if isinstance(value, str):
        return str(value)
    return bytes(value)


def kio_to_ours(entity: Any, api_key: int, side: str) -> Any:
    return to_ours(entity, our_message_class(api_key, side))
