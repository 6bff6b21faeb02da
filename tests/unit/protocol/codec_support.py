"""What the codec tests' sample builders share: awkward deterministic values, Strom's codec entry points,
and a field-by-field comparison of two messages.  `codec_samples` is where tests get their samples."""

from __future__ import annotations

import dataclasses
import functools
import random
import sys
import types
import typing
import uuid
from typing import Any

from strom.protocol.messages import APIS
from strom.protocol.primitives import Writer

SIDES = ("request", "response")

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
}
# Non-ASCII text, the empty string, and one longer than 127 bytes (a two-byte compact length).
STRINGS = ("topic-1", "héllo wörld", "日本語のトピック", "emoji 🎉", "x" * 130, "", "a")
BLOB_SIZES = (0, 3, 17, 200)


class Values:
    """Pseudo-random values that sit where codecs go wrong: range edges, multi-byte lengths, non-ASCII.

    Seeded by a string, so a failing case reproduces exactly.
    """

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)

    def chance(self, probability: float) -> bool:
        return self.rng.random() < probability

    def pick(self, options: typing.Sequence[Any]) -> Any:
        return self.rng.choice(options)

    def count(self, depth: int) -> int:
        """An array length: never empty (empty arrays hide element codecs), one element when deep."""
        return 1 if depth >= 3 else self.rng.choice((1, 2, 3))

    def integer(self, kafka_type: str) -> int:
        low, high = INT_RANGES[kafka_type]
        return self.rng.choice(
            (
                low,
                high,
                -1 if low < 0 else 1,
                self.rng.randint(low, high),
                self.rng.randint(0, min(high, 1000)),
            )
        )

    def primitive(self, kafka_type: str) -> Any:
        """A value of one of Kafka's primitive schema types."""
        if kafka_type in INT_RANGES:
            return self.integer(kafka_type)
        if kafka_type == "float64":
            return self.rng.choice((0.5, -1e300, 3.25, self.rng.uniform(-1e6, 1e6)))
        if kafka_type == "bool":
            return self.chance(0.5)
        if kafka_type == "string":
            return self.rng.choice(STRINGS)
        if kafka_type == "uuid":
            return uuid.UUID(int=self.rng.getrandbits(128) | 1)  # never the zero UUID, which means "none"
        if kafka_type in ("bytes", "records"):
            return self.rng.randbytes(self.rng.choice(BLOB_SIZES))
        raise AssertionError(f"no sample for Kafka type {kafka_type!r}")


def our_versions() -> list[tuple[int, int]]:
    """Every (api_key, version) Strom's generated codec implements."""
    return [
        (key, v) for key, spec in sorted(APIS.items()) for v in range(spec.min_version, spec.max_version + 1)
    ]


def case_id(api_key: int, side: str, version: int) -> str:
    return f"{APIS[api_key].name}-{side}-v{version}"


def our_message_class(api_key: int, side: str) -> type:
    spec = APIS[api_key]
    return getattr(spec.module, spec.name + side.capitalize())  # type: ignore[no-any-return]


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Each field of one of our generated dataclasses -> its type (the annotations are strings)."""
    return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))


@functools.cache
def struct_fields(cls: type) -> dict[str, type | None]:
    """Each field of one of our generated dataclasses -> the dataclass it holds (alone, in a list, or
    nullable), or None for a primitive field."""
    return {name: _struct_in(hint) for name, hint in field_types(cls).items()}


def _struct_in(hint: Any) -> type | None:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is list:
        found = [_struct_in(arg) for arg in typing.get_args(hint)]
        return next((cls for cls in found if cls is not None), None)
    return None


def encode(api_key: int, side: str, message: Any, version: int) -> bytes:
    w = Writer()
    getattr(APIS[api_key].module, f"encode_{side}")(message, version, w)
    return w.getvalue()


def decode(api_key: int, side: str, data: bytes, version: int) -> tuple[Any, int]:
    return getattr(APIS[api_key].module, f"decode_{side}")(memoryview(data), 0, version)  # type: ignore[no-any-return]


def differences(actual: Any, expected: Any, path: str = "") -> list[str]:
    """Where two messages differ, field by field, as readable paths (empty when equal)."""
    if dataclasses.is_dataclass(actual) and type(actual) is type(expected):
        return [
            diff
            for f in dataclasses.fields(actual)
            for diff in differences(getattr(actual, f.name), getattr(expected, f.name), f"{path}.{f.name}")
        ]
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        return [
            diff
            for i, pair in enumerate(zip(actual, expected, strict=True))
            for diff in differences(*pair, f"{path}[{i}]")
        ]
    if isinstance(actual, memoryview):
        actual = actual.tobytes()
    return [] if actual == expected else [f"{path or 'message'}: {actual!r} != {expected!r}"]
