"""Turning application values into Kafka record bytes and back.

A serializer is any ``Callable[[Any], bytes | None]``; the publisher calls one for values and one for keys.
JSON is the default for values because every client in every language can read it; keys default to plain
bytes/UTF-8 so that the partitioner hashes exactly what the application wrote (an aggregate id, say), as
Kafka's ``StringSerializer`` would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

Serializer = Callable[[Any], bytes | None]


def json_serializer(value: Any) -> bytes:
    """Encode ``value`` as compact UTF-8 JSON.

    Pydantic models go through ``model_dump_json`` so their own field serializers and aliases apply.
    Dataclasses, dicts, lists and scalars go through pydantic-core, which also knows datetimes, UUIDs,
    decimals and enums that ``json.dumps`` rejects. Bytes are taken as already encoded and pass unchanged, so
    a relay or retry path can republish a record's original bytes with the default serializer.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump_json().encode("utf-8")
    return pydantic_core.to_json(value)


def bytes_serializer(value: bytes | bytearray | memoryview | str | None) -> bytes | None:
    """Pass bytes through, encode text as UTF-8, keep ``None`` as ``None`` (a null key or a tombstone)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"bytes_serializer takes bytes, str or None, not {type(value).__name__}")


def json_deserializer(data: bytes | None) -> Any:
    """Decode UTF-8 JSON; ``None`` (a tombstone) stays ``None``. Raises ``ValueError`` on malformed input."""
    if data is None:
        return None
    return json.loads(data)
