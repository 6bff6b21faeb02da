"""Sample messages built from kafka-python's protocol classes, and their translation into Strom's dataclasses.

kafka-python (`kafka.protocol.*`) has one class per request and response, built at import time from the
copy of Kafka's JSON schemas it ships; each field object knows its type, versions, nullability and tag.
Its classes accept every version from 0 to their newest, so it also reaches versions Kafka 4 dropped
(and kio with it).  It spells names with an underscore before every capital (`i_s_r_nodes`) and models
authorized-operations bit fields as sets of operation numbers; `to_ours` bridges both.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import warnings
from typing import Any

from codec_support import SIDES, Values, our_message_class, our_versions, struct_fields

from strom.protocol.primitives import UUID_ZERO

# Fields Kafka renamed after the schemas Strom's codec was generated from (same wire format):
# kafka-python's schema name -> ours.
RENAMED = {
    "ConfigResources": "ClientMetricsResources",  # ListConfigResources, once ListClientMetricsResources
    "ResourceName": "Name",  # ListConfigResources
}

_INT32_SIGN = 2**31


@functools.cache
def kafka_python_classes() -> dict[tuple[int, str], Any]:
    """(api_key, "request" | "response") -> kafka-python's message class."""
    classes: dict[tuple[int, str], Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its schema loading uses old importlib APIs
        import kafka.protocol
        from kafka.protocol.api_message import ApiMessage

        for info in pkgutil.walk_packages(kafka.protocol.__path__, "kafka.protocol."):
            if ".old" in info.name or ".schemas" in info.name:
                continue  # the hand-written pre-schema classes, and the schema loader itself
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if (
                    inspect.isclass(value)
                    and issubclass(value, ApiMessage)
                    and value is not ApiMessage
                    and value.__module__ == module.__name__
                ):
                    message_class: Any = value
                    classes[(message_class.API_KEY, message_class.type)] = message_class
    return classes


def kafka_python_versions() -> list[tuple[int, str, int]]:
    """Every (api_key, side, version) both Strom's codec and kafka-python implement."""
    classes = kafka_python_classes()
    return [
        (key, side, version)
        for key, version in our_versions()
        for side in SIDES
        if (key, side) in classes and version <= classes[(key, side)].max_version
    ]


class KafkaPythonSampler:
    """Builds kafka-python messages with every field of a version set; nulls now and then."""

    def __init__(self, seed: str, version: int) -> None:
        self.values = Values(seed)
        self.version = version

    def message(self, cls: Any, depth: int = 0, **extra: Any) -> Any:
        kwargs = {
            field.name: self.field(field, depth)
            for field in cls.fields.values()
            if field.for_version_q(self.version)
        }
        return cls(**kwargs, **extra)

    def field(self, field: Any, depth: int) -> Any:
        if field.nullable_for_version_q(self.version) and self.values.chance(0.2):
            return None
        if field.is_struct():
            struct = self.message(field.data_class, depth + 1)
            if field.tagged_field_q(self.version) and self._all_default(struct):
                return None  # Kafka writes a tagged struct only when it differs from its default,
                # kafka-python whenever it is set: leave it unset, which both skip.
            return struct
        if field.is_struct_array():
            return [self.message(field.data_class, depth + 1) for _ in range(self.values.count(depth))]
        if field.is_array():
            return [self.primitive(field.array_of.type_str) for _ in range(self.values.count(depth))]
        return self.primitive(field.type_str)

    def _all_default(self, struct: Any) -> bool:
        return all(
            getattr(struct, field.name) == field.default
            for field in struct.fields.values()
            if field.for_version_q(self.version)
        )

    def primitive(self, kafka_type: str) -> Any:
        if kafka_type == "bitfield":
            return {bit for bit in range(32) if self.values.chance(0.3)}
        return self.values.primitive(kafka_type)


def kafka_python_sample(api_key: int, side: str, version: int, seed: str) -> Any:
    cls = kafka_python_classes()[(api_key, side)]
    return KafkaPythonSampler(f"{seed}:{api_key}:{side}:v{version}", version).message(cls, version=version)


def kafka_python_encode(message: Any, version: int) -> bytes:
    return bytes(message.encode(version=version))


def to_ours(message: Any, our_class: type, version: int) -> Any:
    """The instance of one of Strom's dataclasses holding the same values as a kafka-python message;
    fields the version lacks keep their defaults."""
    nested = struct_fields(our_class)
    kwargs: dict[str, Any] = {}
    for field in message.fields.values():
        if not field.for_version_q(version):
            continue
        name = our_field_name(field, our_class)
        value = getattr(message, field.name)
        if value is None and field.tagged_field_q(version):
            continue  # an unset tagged field: the default, on both sides
        struct = nested[name]
        if field.type_str == "bitfield":
            mask = sum(1 << bit for bit in (value if value is not None else {31}))  # None: no operations
            kwargs[name] = mask - 2 * _INT32_SIGN if mask >= _INT32_SIGN else mask
        elif field.type_str == "uuid" and value is None:
            kwargs[name] = UUID_ZERO
        elif value is None:
            kwargs[name] = None
        elif field.is_struct():
            assert struct is not None
            kwargs[name] = to_ours(value, struct, version)
        elif field.is_struct_array():
            assert struct is not None
            kwargs[name] = [to_ours(item, struct, version) for item in value]
        else:
            kwargs[name] = value
    return our_class(**kwargs)


def kafka_python_to_ours(message: Any, api_key: int, side: str, version: int) -> Any:
    return to_ours(message, our_message_class(api_key, side), version)


def our_field_name(field: Any, our_class: type) -> str:
    """Our name for a kafka-python field: the same schema name, compared without underscores or case
    (kafka-python writes ISRNodes as i_s_r_nodes, we as isr_nodes), bar the documented exceptions."""
    names = _our_names(our_class)
    if field.type_str == "bitfield":  # kafka-python renames <scope>_authorized_operations
        matches = [name for name in names.values() if name.endswith(field.name)]
        assert len(matches) == 1, f"{field.name} matches {matches} in {our_class.__qualname__}"
        return matches[0]
    for schema_name in (field._name, RENAMED.get(field._name, "")):
        if _normalized(schema_name) in names:
            return names[_normalized(schema_name)]
    raise AssertionError(f"kafka-python field {field._name} has no counterpart in {our_class.__qualname__}")


def _normalized(name: str) -> str:
    return name.replace("_", "").lower()


@functools.cache
def _our_names(our_class: type) -> dict[str, str]:
    return {_normalized(name): name for name in struct_fields(our_class)}
