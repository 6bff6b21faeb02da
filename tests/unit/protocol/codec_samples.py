"""Sample messages for every API, version and direction Strom's codec implements, without Kafka's schemas.

A sample comes from the first source that models that message version:

1. kio's entity classes (`kio_samples`): every field, with Kafka's own time and error-code types;
2. kafka-python's message classes (`kafka_python_samples`), which also reach versions Kafka 4 dropped;
3. for what neither models (the ZooKeeper-era inter-broker APIs, a few early versions), Strom's own
   dataclasses filled by trial (`ProbingSampler`).

Samples are deterministic for a seed: a failing case reproduces exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
import uuid
from typing import Any

from codec_support import Values, encode, field_types, our_message_class, struct_fields
from kafka_python_samples import kafka_python_sample, kafka_python_to_ours, kafka_python_versions
from kio_samples import comparable, kio_sample, kio_to_ours, kio_versions

from strom.protocol.primitives import EncodeError

KIO = "kio"
KAFKA_PYTHON = "kafka-python"
PROBED = "probed"

_INT_WIDTHS = ("int64", "int32", "int16", "int8")


def sample_source(api_key: int, side: str, version: int) -> str:
    """Which source builds samples of this message version: KIO, KAFKA_PYTHON or PROBED."""
    case = (api_key, side, version)
    if case in _kio_cases():
        return KIO
    if case in _kafka_python_cases():
        return KAFKA_PYTHON
    return PROBED


def sample(api_key: int, side: str, version: int, seed: str = "sample") -> Any:
    """A sample request or response (`side`) of one API version, as one of Strom's dataclasses."""
    source = sample_source(api_key, side, version)
    if source == KIO:
        return kio_to_ours(kio_sample(api_key, side, version, seed), api_key, side)
    if source == KAFKA_PYTHON:
        message = kafka_python_sample(api_key, side, version, seed)
        return kafka_python_to_ours(message, api_key, side, version)
    return ProbingSampler(api_key, side, version, seed).build()


@functools.cache
def _kio_cases() -> frozenset[tuple[int, str, int]]:
    return frozenset(case for case in kio_versions() if comparable(*case))


@functools.cache
def _kafka_python_cases() -> frozenset[tuple[int, str, int]]:
    return frozenset(kafka_python_versions())


class ProbingSampler:
    """Fills one of Strom's dataclasses for a message version no reference codec models.

    With no schema at hand, a value is kept when the whole message still encodes at the version: a
    field the version lacks refuses anything but its default, an integer too wide for its field
    overflows.  (An ignorable field the version lacks accepts anything and is dropped on the wire,
    so a probed sample need not decode to itself: tests compare what it encodes to.)
    """

    def __init__(self, api_key: int, side: str, version: int, seed: str) -> None:
        self.api_key, self.side, self.version = api_key, side, version
        self.values = Values(f"{seed}:{api_key}:{side}:v{version}")
        self.message = our_message_class(api_key, side)()

    def build(self) -> Any:
        self.fill(self.message, depth=0)
        return self.message

    def encodes(self) -> bool:
        try:
            encode(self.api_key, self.side, self.message, self.version)
        except EncodeError:
            return False
        return True

    def fill(self, struct: Any, depth: int) -> None:
        cls: type = type(struct)
        for name, hint in field_types(cls).items():
            default = getattr(struct, name)
            for candidate in self.candidates(hint, depth):
                setattr(struct, name, candidate)
                if self.encodes():
                    break
                setattr(struct, name, default)  # nothing encodes: the version lacks this field
            if struct_fields(cls)[name] is not None:
                value = getattr(struct, name)
                for item in value if isinstance(value, list) else [value]:
                    if item is not None:
                        self.fill(item, depth + 1)

    def candidates(self, hint: Any, depth: int) -> list[Any]:
        """Values to try, in order, for a field of this type: integers from the widest range down."""
        if isinstance(hint, types.UnionType):
            options = [arg for arg in typing.get_args(hint) if arg is not types.NoneType]
            inner = bytes if bytes in options else options[0]  # records: bytes | memoryview | ...
            null = [None] if types.NoneType in typing.get_args(hint) and self.values.chance(0.2) else []
            return null + self.candidates(inner, depth)
        if typing.get_origin(hint) is list:
            (element,) = typing.get_args(hint)
            count = self.values.count(depth)
            if _is_struct(element):
                return [[element() for _ in range(count)]]
            if element is int:
                return [[self.values.integer(width) for _ in range(count)] for width in _INT_WIDTHS]
            return [[self.candidates(element, depth)[0] for _ in range(count)]]
        if _is_struct(hint):
            return [hint()]
        if hint is bool:
            return [True, False]
        if hint is int:
            return [self.values.integer(width) for width in (*_INT_WIDTHS, "uint16")]
        kafka_type = {float: "float64", str: "string", bytes: "bytes", uuid.UUID: "uuid"}[hint]
        return [self.values.primitive(kafka_type)]


def _is_struct(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)
