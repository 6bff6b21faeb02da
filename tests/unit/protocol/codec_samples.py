"""Deterministic sample messages for the codec tests, built from the schema model the generator uses.

Values are pseudo-random per (message, version) and deliberately awkward: non-default numbers at the
edges of their ranges, non-ASCII and >127-byte strings (multi-byte varint lengths), nulls where a
version allows them, non-empty arrays and nested structs, and tagged fields set.  Fields a version
lacks keep their defaults.  Needs Kafka's JSON schemas (the folder beside the repository).
"""

from __future__ import annotations

import functools
import random
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import APIS
from tools.codegen.schema import (
    NO_DEFAULT,
    ApiSchema,
    FieldSpec,
    MessageSpec,
    StructSpec,
    load_apis,
    load_data_modules,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
SCHEMA_DIR = REPO_ROOT.parent / "shared" / "kafka-schemas"

SCHEMAS_MISSING = "Kafka's JSON schemas are not beside the repository (../shared/kafka-schemas)"

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
}
_STRINGS = ["topic-1", "héllo wörld", "日本語のトピック", "emoji 🎉", "x" * 130, "", "a"]
_ERROR_CODES = sorted(code.value for code in ErrorCode)


def schemas_available() -> bool:
    return SCHEMA_DIR.is_dir()


@functools.cache
def api_schemas() -> dict[int, ApiSchema]:
    return {api.api_key: api for api in load_apis(SCHEMA_DIR)}


@functools.cache
def data_schemas() -> dict[str, MessageSpec]:
    return {suffix: message for module in load_data_modules(SCHEMA_DIR) for suffix, message in module.members}


def resolve_class(module: ModuleType, qualname: str) -> type:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target  # type: ignore[no-any-return]


class SampleBuilder:
    """Builds one message instance of one version."""

    def __init__(self, module: ModuleType, message: MessageSpec, version: int, seed: str) -> None:
        self.module = module
        self.message = message
        self.version = version
        self.flexible = message.is_flexible(version)
        self.rng = random.Random(f"{seed}:{message.name}:v{version}")

    def build(self) -> Any:
        return self.struct(self.message.root, depth=0)

    def struct(self, spec: StructSpec, depth: int) -> Any:
        cls = resolve_class(self.module, spec.qualname)
        values: dict[str, Any] = {}
        for f in spec.fields:
            if not f.present(self.version):
                continue
            if f.tagged_in(self.version) and self.rng.random() < 0.25:
                continue  # leave some tagged fields at their default (not written at all)
            values[f.attr] = self.field(f, depth)
        return cls(**values)

    def field(self, f: FieldSpec, depth: int) -> Any:
        if f.nullable_in(self.version) and self.rng.random() < 0.25:
            return None
        if f.is_array:
            count = 1 if depth >= 3 else self.rng.choice([0, 1, 2, 3, 3])
            return [self.value(f, depth + 1) for _ in range(count)]
        return self.value(f, depth + 1)

    def value(self, f: FieldSpec, depth: int) -> Any:
        if f.struct is not None:
            return self.struct(f.struct, depth)
        rng = self.rng
        t = f.type_name
        if t in _INT_RANGES:
            if t == "int16" and f.name.endswith("ErrorCode"):
                return rng.choice(_ERROR_CODES)
            if t == "int64" and (f.name.endswith("Ms") or "Timestamp" in f.name):
                # Times stay within a few decades: kio reads them as datetimes and timedeltas.
                return rng.choice([0, 1, rng.randint(0, 2**41)])
            low, high = _INT_RANGES[t]
            return rng.choice(
                [low, high, -1 if low < 0 else 1, rng.randint(low, high), rng.randint(0, min(high, 1000))]
            )
        if t == "float64":
            return rng.choice([0.5, -1e300, 3.25, rng.uniform(-1e6, 1e6)])
        if t == "bool":
            default_true = f.default is not NO_DEFAULT and f.default is True
            return not default_true if rng.random() < 0.8 else default_true
        if t == "string":
            return rng.choice(_STRINGS)
        if t == "uuid":
            return uuid.UUID(int=rng.getrandbits(128))
        if t in ("bytes", "records"):
            return bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 3, 17, 200])))
        raise AssertionError(f"no sample for type {t}")


def sample(api_key: int, side: str, version: int, seed: str = "sample") -> Any:
    """A sample request or response (`side`) of an API at `version`."""
    api = api_schemas()[api_key]
    message = api.request if side == "request" else api.response
    return SampleBuilder(APIS[api_key].module, message, version, seed).build()


def sample_data(module: ModuleType, suffix: str, version: int, seed: str = "sample") -> Any:
    return SampleBuilder(module, data_schemas()[suffix], version, seed).build()


def api_versions() -> list[tuple[int, int]]:
    """Every (api_key, version) the generated codec implements."""
    return [
        (key, v) for key, spec in sorted(APIS.items()) for v in range(spec.min_version, spec.max_version + 1)
    ]
