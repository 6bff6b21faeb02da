"""The codec generator: schema reading, naming, a synthetic schema end to end, and up-to-date output."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.protocol.primitives import EncodeError, Writer
from tools.codegen.module import render_api_module
from tools.codegen.schema import (
    ApiSchema,
    SchemaError,
    Versions,
    parse_message,
    snake_case,
    strip_comments,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
# Kafka's JSON schemas live beside the repository, not in it; STROM_KAFKA_SCHEMAS points elsewhere (a
# path that does not exist shows which tests need them: only the up-to-date check at the end).
SCHEMA_DIR = Path(os.environ.get("STROM_KAFKA_SCHEMAS", REPO_ROOT.parent / "shared" / "kafka-schemas"))


def test_strip_comments_leaves_strings_alone() -> None:
    text = (
        '{ // comment\n "about": "see http://kafka.apache.org // not a comment",\n'
        ' /* block */ "x": "a\\"//b" }'
    )
    assert json.loads(strip_comments(text)) == {
        "about": "see http://kafka.apache.org // not a comment",
        "x": 'a"//b',
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("TopicData", "topic_data"),
        ("ISRNodes", "isr_nodes"),
        ("ThrottleTimeMs", "throttle_time_ms"),
        ("ProducerId", "producer_id"),
        ("isKRaftController", "is_k_raft_controller"),
        ("Sha256", "sha256"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_version_ranges() -> None:
    assert 7 in Versions.parse("3+") and 2 not in Versions.parse("3+")
    assert [v for v in range(8) if v in Versions.parse("3-5")] == [3, 4, 5]
    assert [v for v in range(8) if v in Versions.parse("none")] == []
    assert Versions.parse("4").describe() == "v4"


def test_unknown_struct_type_is_reported() -> None:
    with pytest.raises(SchemaError, match="Missing"):
        parse_message(
            {
                "type": "request",
                "name": "BadRequest",
                "apiKey": 1000,
                "validVersions": "0",
                "fields": [{"name": "X", "type": "Missing", "versions": "0+"}],
            }
        )


# -- a synthetic API exercising what the real schemas rarely use ----------------------------------------

EXAMPLE_REQUEST = {
    "apiKey": 999,
    "type": "request",
    "name": "ExampleRequest",
    "validVersions": "0-2",
    "flexibleVersions": "2+",
    "fields": [
        {"name": "Id", "type": "uint32", "versions": "0+", "default": "0x10"},
        {"name": "Ratio", "type": "float64", "versions": "1+", "default": "1.5"},
        {"name": "Mode", "type": "int8", "versions": "0+", "default": -2},
        {
            "name": "Label",
            "type": "string",
            "versions": "0+",
            "nullableVersions": "0+",
            "flexibleVersions": "none",
        },
        {
            "name": "Note",
            "type": "string",
            "versions": "2+",
            "tag": 0,
            "taggedVersions": "2+",
            "default": "hi",
        },
        {
            "name": "Blob",
            "type": "bytes",
            "versions": "2+",
            "nullableVersions": "2+",
            "tag": 1,
            "taggedVersions": "2+",
        },
        {"name": "Flags", "type": "[]bool", "versions": "0+"},
        {"name": "Ids", "type": "[]uuid", "versions": "1+", "nullableVersions": "1+", "ignorable": True},
        {
            "name": "Inner",
            "type": "Inner",
            "versions": "0+",
            "nullableVersions": "2+",
            "fields": [{"name": "Port", "type": "uint16", "versions": "0+"}],
        },
    ],
}
EXAMPLE_RESPONSE = {
    "apiKey": 999,
    "type": "response",
    "name": "ExampleResponse",
    "validVersions": "0-2",
    "flexibleVersions": "2+",
    "fields": [],
}


@pytest.fixture(scope="module")
def example() -> Iterator[Any]:
    api = ApiSchema("Example", "example", parse_message(EXAMPLE_REQUEST), parse_message(EXAMPLE_RESPONSE))
    module = types.ModuleType("example_generated")
    sys.modules[module.__name__] = module  # dataclasses looks the module up
    try:
        exec(compile(render_api_module(api), "example_generated.py", "exec"), module.__dict__)
        yield module
    finally:
        del sys.modules[module.__name__]


def encode(module: Any, message: Any, version: int) -> bytes:
    w = Writer()
    module.encode_request(message, version, w)
    return w.getvalue()


def test_example_defaults(example: Any) -> None:
    request = example.ExampleRequest()
    assert (request.id, request.ratio, request.mode, request.label) == (16, 1.5, -2, "")
    assert (request.note, request.blob, request.flags, request.ids) == ("hi", b"", [], [])
    assert request.inner == example.ExampleRequest.Inner(port=0)


def test_example_classic_and_flexible_encodings(example: Any) -> None:
    request = example.ExampleRequest(label=None, inner=example.ExampleRequest.Inner(port=65535))
    assert encode(example, request, 0) == (
        b"\x00\x00\x00\x10" + b"\xfe" + b"\xff\xff" + b"\x00\x00\x00\x00" + b"\xff\xff"
    )
    flexible = encode(example, request, 2)
    assert flexible == (
        b"\x00\x00\x00\x10"  # Id
        + struct.pack(">d", 1.5)  # Ratio
        + b"\xfe"  # Mode
        + b"\xff\xff"  # Label: flexibleVersions "none" keeps the classic null
        + b"\x01"  # Flags: empty compact array
        + b"\x01"  # Ids: empty, not null
        + b"\x01\xff\xff\x00"  # Inner: present marker, Port, its tagged fields
        + b"\x00"  # no tagged field differs from its default
    )
    assert example.decode_request(memoryview(flexible), 0, 2) == (request, len(flexible))


def test_example_tagged_and_nullable_values(example: Any) -> None:
    ids = [uuid.UUID(int=1), uuid.UUID(int=2)]
    request = example.ExampleRequest(note="x", blob=None, flags=[True, False], ids=ids, inner=None)
    data = encode(example, request, 2)
    assert data.endswith(
        b"\x03\x01\x00"  # Flags
        + b"\x03" + ids[0].bytes + ids[1].bytes  # Ids
        + b"\xff"  # Inner: null
        + b"\x02" + b"\x00\x02\x02x" + b"\x01\x01\x00"  # Note, then a null Blob (its default is empty)
    )  # fmt: skip
    assert example.decode_request(memoryview(data), 0, 2) == (request, len(data))


def test_example_version_rules(example: Any) -> None:
    with pytest.raises(EncodeError, match="inner"):
        encode(example, example.ExampleRequest(inner=None), 1)  # nullable only from v2
    with pytest.raises(EncodeError, match="ratio"):
        encode(example, example.ExampleRequest(ratio=2.0), 0)  # v0 lacks it and it is not ignorable
    assert encode(example, example.ExampleRequest(ids=[uuid.UUID(int=3)]), 0)  # ignorable: dropped


# -- the committed output --------------------------------------------------------------------------------


@pytest.mark.skipif(not SCHEMA_DIR.is_dir(), reason=f"Kafka's JSON schemas are not at {SCHEMA_DIR}")
def test_committed_output_is_what_the_generator_produces() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.codegen", "--check", "--schemas", str(SCHEMA_DIR)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
