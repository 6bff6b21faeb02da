"""How ``strom consume`` turns a message into one output line.

``value``
    The value bytes as stored, then a newline; a null value prints as ``null`` (as Kafka's console consumer).
``kv``
    Key, the key separator, value; null keys and values print as ``null``.
``json``
    One JSON object per line (JSON Lines)::

        {"topic": "orders", "partition": 0, "offset": 5, "timestamp": 1700000000000,
         "timestamp_type": "CreateTime", "key": "k1", "value": "v1", "headers": [["source", "web"]]}

    ``timestamp`` is in milliseconds since the epoch and ``timestamp_type`` is ``CreateTime`` or
    ``LogAppendTime`` (both null when the record has none). Keys, values and header values that are valid
    UTF-8 appear as strings and null stays null. Any other bytes are base64-encoded under a marked name:
    ``key_b64`` takes the place of ``key``, ``value_b64`` the place of ``value``, and a binary header value is
    written as ``{"b64": "..."}``.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Message

OutputFormat = Literal["value", "kv", "json"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("value", "kv", "json")
NULL_TEXT = b"null"

_TIMESTAMP_TYPE_NAMES = {TIMESTAMP_CREATE_TIME: "CreateTime", TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}


def format_message(message: Message, output_format: OutputFormat, key_separator: bytes = b"\t") -> bytes:
    """One output line, newline included."""
    if output_format == "json":
        return json.dumps(message_document(message), ensure_ascii=False).encode() + b"\n"
    value = _or_null(message.value())
    if output_format == "kv":
        return _or_null(message.key()) + key_separator + value + b"\n"
    return value + b"\n"


def message_document(message: Message) -> dict[str, Any]:
    """The JSON object for a message, with the field order documented above."""
    timestamp_type, timestamp = message.timestamp()
    type_name = _TIMESTAMP_TYPE_NAMES.get(timestamp_type)
    document: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": timestamp if type_name is not None else None,
        "timestamp_type": type_name,
    }
    document.update(bytes_field("key", message.key()))
    document.update(bytes_field("value", message.value()))
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    document["headers"] = [[name, header_value(value)] for name, value in pairs]
    return document


def bytes_field(name: str, data: bytes | None) -> dict[str, str | None]:
    """``{name: text}`` for null or UTF-8 data, ``{name + "_b64": base64}`` for anything else."""
    if data is None:
        return {name: None}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(data).decode("ascii")}


def header_value(data: bytes | str | None) -> str | dict[str, str] | None:
    if data is None or isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def _or_null(data: bytes | None) -> bytes:
    return NULL_TEXT if data is None else data
