"""Kafka's JSON message schemas, read into a small model that the emitters walk.

The schema files are JSON with `//` comments.  Everything here is pure data: which fields exist, in
which versions, how they are typed, nullable, tagged and defaulted.  The emitters decide how that
becomes Python.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Fixed-width primitives and their `struct` format characters (big-endian, as on the wire).
FIXED_FORMATS: dict[str, str] = {
    "int8": "b",
    "int16": "h",
    "int32": "i",
    "int64": "q",
    "uint16": "H",
    "uint32": "I",
    "float64": "d",
    "bool": "?",
    "uuid": "16s",
}
FIXED_SIZES: dict[str, int] = {
    "int8": 1,
    "int16": 2,
    "int32": 4,
    "int64": 8,
    "uint16": 2,
    "uint32": 4,
    "float64": 8,
    "bool": 1,
    "uuid": 16,
}
PRIMITIVES = frozenset(FIXED_FORMATS) | {"string", "bytes", "records"}
INT_TYPES = frozenset({"int8", "int16", "int32", "int64", "uint16", "uint32"})


class SchemaError(ValueError):
    """A schema file uses something the generator does not understand."""


def strip_comments(text: str) -> str:
    """Remove `//` line comments and `/* */` block comments, leaving string literals untouched."""
    out: list[str] = []
    i = 0
    n = len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
        elif c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise SchemaError("unterminated block comment")
            i = end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def load_schema_file(path: Path) -> dict[str, Any]:
    data = json.loads(strip_comments(path.read_text(encoding="utf-8")))
    if not isinstance(data, dict):
        raise SchemaError(f"{path.name}: top level is not an object")
    return data


_ACRONYM_BOUNDARY = re.compile(r"([A-Z]+)([A-Z][a-z])")
_WORD_BOUNDARY = re.compile(r"([a-z\d])([A-Z])")


def snake_case(name: str) -> str:
    """`TopicData` -> `topic_data`, `ISRNodes` -> `isr_nodes`, `ThrottleTimeMs` -> `throttle_time_ms`."""
    name = _ACRONYM_BOUNDARY.sub(r"\1_\2", name)
    name = _WORD_BOUNDARY.sub(r"\1_\2", name)
    name = name.lower()
    return name + "_" if keyword.iskeyword(name) else name


@dataclass(frozen=True, slots=True)
class Versions:
    """An inclusive version range; `high is None` means open-ended, `empty` means "none"."""

    low: int = 0
    high: int | None = None
    empty: bool = False

    @classmethod
    def parse(cls, text: str | None) -> Versions:
        if text is None or text.strip() == "none":
            return cls(empty=True)
        text = text.strip()
        if text.endswith("+"):
            return cls(int(text[:-1]))
        if "-" in text:
            low, high = text.split("-", 1)
            return cls(int(low), int(high))
        return cls(int(text), int(text))

    def __contains__(self, version: object) -> bool:
        if self.empty or not isinstance(version, int):
            return False
        return self.low <= version and (self.high is None or version <= self.high)

    def describe(self) -> str:
        if self.empty:
            return "none"
        if self.high is None:
            return f"v{self.low}+"
        if self.high == self.low:
            return f"v{self.low}"
        return f"v{self.low}-{self.high}"


NO_DEFAULT = object()  # a field's "default": the type's own default applies


@dataclass(slots=True)
class FieldSpec:
    """One field of a struct, with everything needed to encode, decode and default it."""

    name: str
    attr: str
    type_name: str  # a primitive name or a struct name (without the "[]" of arrays)
    is_array: bool
    versions: Versions
    nullable_versions: Versions
    tag: int | None
    tagged_versions: Versions
    flexible_override: Versions | None  # a field-level "flexibleVersions", e.g. RequestHeader.ClientId
    default: Any  # parsed default: int/float/bool/str/None, or the sentinel `NO_DEFAULT`
    ignorable: bool
    zero_copy: bool
    struct: StructSpec | None = None

    @property
    def is_fixed(self) -> bool:
        """A fixed-width scalar that can share one `struct` call with its neighbours."""
        return not self.is_array and self.type_name in FIXED_FORMATS

    @property
    def is_fixed_element(self) -> bool:
        """Values (or array elements) of a fixed-width type."""
        return self.type_name in FIXED_FORMATS

    def present(self, version: int) -> bool:
        return version in self.versions

    def tagged_in(self, version: int) -> bool:
        return self.tag is not None and version in self.tagged_versions and version in self.versions

    def nullable_in(self, version: int) -> bool:
        return version in self.nullable_versions

    @property
    def ever_nullable(self) -> bool:
        return not self.nullable_versions.empty or self.default is None

    def element(self) -> FieldSpec:
        """The field describing one element of this array: same type, never null, not tagged."""
        return dataclasses.replace(
            self, is_array=False, nullable_versions=Versions(empty=True), default=NO_DEFAULT, tag=None
        )

    def compact_in(self, version: int, message_flexible: bool) -> bool:
        if self.flexible_override is not None:
            return version in self.flexible_override
        return message_flexible


@dataclass(slots=True)
class StructSpec:
    """A struct type: the top-level message, a nested struct, or a common struct."""

    name: str
    qualname: str  # how Python code outside the class refers to it, e.g. "ProduceRequest.TopicData"
    fields: list[FieldSpec]
    common: bool = False

    def regular_fields(self, version: int) -> list[FieldSpec]:
        return [f for f in self.fields if f.present(version) and not f.tagged_in(version)]

    def tagged_fields(self, version: int) -> list[FieldSpec]:
        return sorted((f for f in self.fields if f.tagged_in(version)), key=lambda f: f.tag or 0)

    def absent_fields(self, version: int) -> list[FieldSpec]:
        return [f for f in self.fields if not f.present(version)]

    def wire_groups(self, version: int) -> list[list[FieldSpec]]:
        """The regular fields of `version` in wire order, adjacent fixed-width ones grouped together
        (so one `struct` call can handle each group); other fields come alone."""
        groups: list[list[FieldSpec]] = []
        for f in self.regular_fields(version):
            if f.is_fixed and groups and groups[-1][-1].is_fixed:
                groups[-1].append(f)
            else:
                groups.append([f])
        return groups


@dataclass(slots=True)
class MessageSpec:
    """One schema file: a request, a response, or a versioned data struct."""

    name: str  # e.g. "ProduceRequest"
    kind: str  # "request", "response" or "data"
    api_key: int | None
    valid_versions: Versions
    flexible_versions: Versions
    root: StructSpec
    nested: list[StructSpec]  # nested struct classes, inner ones first
    common: list[StructSpec]  # common structs, dependencies first
    latest_version_unstable: bool
    listeners: tuple[str, ...]

    @property
    def min_version(self) -> int:
        return self.valid_versions.low

    @property
    def max_version(self) -> int:
        if self.valid_versions.high is None:
            raise SchemaError(f"{self.name}: validVersions must be bounded")
        return self.valid_versions.high

    @property
    def flexible_min_version(self) -> int | None:
        return None if self.flexible_versions.empty else self.flexible_versions.low

    def versions(self) -> range:
        return range(self.min_version, self.max_version + 1)

    def is_flexible(self, version: int) -> bool:
        return version in self.flexible_versions


def _parse_int(text: str) -> int:
    text = text.strip()
    negative = text.startswith("-")
    digits = text[1:] if negative else text
    if digits.lower().startswith("0x"):
        value = int(digits[2:], 16)
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)
    else:
        value = int(digits)
    return -value if negative else value


def _parse_default(raw: Any, type_name: str, is_array: bool, is_struct: bool, where: str) -> Any:
    """Turn a schema "default" into a Python value; `NO_DEFAULT` when the type's own default applies."""
    if raw is None:
        return NO_DEFAULT
    text = raw if isinstance(raw, str) else json.dumps(raw)
    if text == "null":
        return None
    if is_array or is_struct:
        raise SchemaError(f"{where}: only null defaults are allowed for arrays and structs")
    if type_name in INT_TYPES:
        return _parse_int(text)
    if type_name == "float64":
        return float(text)
    if type_name == "bool":
        if text not in ("true", "false"):
            raise SchemaError(f"{where}: bad bool default {text!r}")
        return text == "true"
    if type_name == "string":
        return text
    if type_name == "uuid":
        return text
    raise SchemaError(f"{where}: defaults are not supported for {type_name}")


class _Builder:
    """Builds the struct graph of one schema file."""

    def __init__(self, data: dict[str, Any], message_name: str) -> None:
        self.message_name = message_name
        self.nested: list[StructSpec] = []
        self.nested_names: set[str] = set()
        self.common_raw = {c["name"]: c for c in data.get("commonStructs", [])}
        self.common_built: dict[str, StructSpec] = {}
        self.common_order: list[StructSpec] = []

    def common_struct(self, name: str) -> StructSpec:
        built = self.common_built.get(name)
        if built is not None:
            return built
        raw = self.common_raw[name]
        spec = StructSpec(name=name, qualname=name, fields=[], common=True)
        self.common_built[name] = spec
        spec.fields = self.fields(raw["fields"], inside_common=True)
        self.common_order.append(spec)  # after its own dependencies
        return spec

    def fields(self, raw_fields: list[dict[str, Any]], inside_common: bool = False) -> list[FieldSpec]:
        specs = [self.field(raw, inside_common) for raw in raw_fields]
        attrs = [f.attr for f in specs]
        if len(set(attrs)) != len(attrs):
            raise SchemaError(f"{self.message_name}: two fields map to the same attribute name in {attrs}")
        return specs

    def field(self, raw: dict[str, Any], inside_common: bool) -> FieldSpec:
        name = raw["name"]
        where = f"{self.message_name}.{name}"
        type_text: str = raw["type"].strip()
        is_array = type_text.startswith("[]")
        type_name = type_text[2:] if is_array else type_text
        struct: StructSpec | None = None
        if type_name not in PRIMITIVES:
            if "fields" in raw:
                struct = self.inline_struct(type_name, raw["fields"], inside_common)
            elif type_name in self.common_raw:
                struct = self.common_struct(type_name)
            else:
                raise SchemaError(f"{where}: unknown type {type_name}")
        elif "fields" in raw:
            raise SchemaError(f"{where}: primitive type with fields")
        tag_raw = raw.get("tag")
        tag = None if tag_raw is None else int(tag_raw)
        if tag is not None and "taggedVersions" not in raw:
            raise SchemaError(f"{where}: tag without taggedVersions")
        flexible_override = raw.get("flexibleVersions")
        return FieldSpec(
            name=name,
            attr=snake_case(name),
            type_name=type_name,
            is_array=is_array,
            versions=Versions.parse(raw.get("versions")),
            nullable_versions=Versions.parse(raw.get("nullableVersions")),
            tag=tag,
            tagged_versions=Versions.parse(raw.get("taggedVersions")),
            flexible_override=None if flexible_override is None else Versions.parse(flexible_override),
            default=_parse_default(raw.get("default"), type_name, is_array, struct is not None, where),
            ignorable=bool(raw.get("ignorable", False)),
            zero_copy=bool(raw.get("zeroCopy", False)),
            struct=struct,
        )

    def inline_struct(self, name: str, raw_fields: list[dict[str, Any]], inside_common: bool) -> StructSpec:
        if inside_common:
            # A struct declared inside a common struct is shared the same way: module level.
            if name in self.common_built:
                raise SchemaError(f"{self.message_name}: duplicate struct {name}")
            spec = StructSpec(name=name, qualname=name, fields=[], common=True)
            self.common_built[name] = spec
            spec.fields = self.fields(raw_fields, inside_common=True)
            self.common_order.append(spec)
            return spec
        if name in self.nested_names or name in self.common_raw:
            raise SchemaError(f"{self.message_name}: duplicate struct {name}")
        self.nested_names.add(name)
        spec = StructSpec(name=name, qualname=f"{self.message_name}.{name}", fields=[])
        spec.fields = self.fields(raw_fields)
        self.nested.append(spec)  # after the structs it contains
        return spec


def parse_message(data: dict[str, Any]) -> MessageSpec:
    name = data["name"]
    kind = data["type"]
    if kind not in ("request", "response", "data"):
        raise SchemaError(f"{name}: unsupported message type {kind}")
    builder = _Builder(data, name)
    for common_name in builder.common_raw:
        builder.common_struct(common_name)
    root_fields = builder.fields(data.get("fields", []))
    root = StructSpec(name=name, qualname=name, fields=root_fields)
    return MessageSpec(
        name=name,
        kind=kind,
        api_key=data.get("apiKey"),
        valid_versions=Versions.parse(data["validVersions"]),
        flexible_versions=Versions.parse(data.get("flexibleVersions", "none")),
        root=root,
        nested=builder.nested,
        common=builder.common_order,
        latest_version_unstable=bool(data.get("latestVersionUnstable", False)),
        listeners=tuple(data.get("listeners", ())),
    )


@dataclass(slots=True)
class ApiSchema:
    """A request/response pair sharing one API key."""

    api_name: str  # e.g. "Produce"
    module_name: str  # e.g. "produce"
    request: MessageSpec
    response: MessageSpec

    @property
    def api_key(self) -> int:
        assert self.request.api_key is not None
        return self.request.api_key


@dataclass(slots=True)
class DataModule:
    """A module of versioned data structs (no header, no API key), e.g. the consumer protocol."""

    module_name: str
    note: str  # what a user of the module must know, for its docstring
    members: list[tuple[str, MessageSpec]] = field(default_factory=list)  # (function suffix, message)


# Versioned "data" schemas that other parts of the broker need, grouped by output module:
# module name -> (docstring note, [(schema name, function suffix)]).
DATA_MODULES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "consumer_protocol": (
        "The classic consumer group protocol's subscription and assignment, carried as opaque bytes in\n"
        "JoinGroup and SyncGroup.  The payload starts with an int16 version, read by the caller; like\n"
        "Kafka, read a version newer than the newest known as the newest (versions only add fields).",
        [
            ("ConsumerProtocolSubscription", "subscription"),
            ("ConsumerProtocolAssignment", "assignment"),
        ],
    ),
}


def load_apis(schema_dir: Path) -> list[ApiSchema]:
    """Every `*Request.json` with its `*Response.json`, sorted by API key."""
    apis: list[ApiSchema] = []
    for request_path in sorted(schema_dir.glob("*Request.json")):
        api_name = request_path.name[: -len("Request.json")]
        response_path = schema_dir / f"{api_name}Response.json"
        if not response_path.exists():
            raise SchemaError(f"{request_path.name} has no matching response schema")
        request = parse_message(load_schema_file(request_path))
        response = parse_message(load_schema_file(response_path))
        if request.kind != "request" or response.kind != "response":
            raise SchemaError(f"{api_name}: unexpected message types {request.kind}/{response.kind}")
        if request.api_key != response.api_key:
            raise SchemaError(f"{api_name}: request and response API keys differ")
        apis.append(ApiSchema(api_name, snake_case(api_name), request, response))
    apis.sort(key=lambda api: api.api_key)
    keys = [api.api_key for api in apis]
    if len(set(keys)) != len(keys):
        raise SchemaError("two APIs share an API key")
    return apis


def load_data_modules(schema_dir: Path) -> list[DataModule]:
    modules: list[DataModule] = []
    for module_name, (note, members) in DATA_MODULES.items():
        module = DataModule(module_name, note)
        for schema_name, suffix in members:
            message = parse_message(load_schema_file(schema_dir / f"{schema_name}.json"))
            if message.kind != "data":
                raise SchemaError(f"{schema_name}: expected a data schema")
            module.members.append((suffix, message))
        modules.append(module)
    return modules
