"""How consumed messages are printed in each --format."""

from __future__ import annotations

import base64
import json

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    TIMESTAMP_NOT_AVAILABLE,
    Message,
)

from strom.cli.message_format import format_message


def message(
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    headers: list[tuple[str, bytes | None]] | None = None,
    timestamp: tuple[int, int] = (TIMESTAMP_CREATE_TIME, 1_700_000_000_123),
) -> Message:
    return Message(
        topic="orders", partition=2, offset=41, key=key, value=value, headers=headers, timestamp=timestamp
    )


def test_value_format_prints_raw_bytes() -> None:
    assert format_message(message(value=b"\xffraw"), "value") == b"\xffraw\n"


def test_null_prints_as_null_like_kafkas_console_consumer() -> None:
    assert format_message(message(key=None, value=None), "value") == b"null\n"
    assert format_message(message(key=None, value=None), "kv") == b"null\tnull\n"


def test_kv_format_uses_the_separator() -> None:
    assert format_message(message(), "kv", b" => ") == b"k => v\n"


def test_json_format_has_every_field() -> None:
    line = format_message(message(headers=[("source", b"web"), ("empty", None)]), "json")
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "topic": "orders",
        "partition": 2,
        "offset": 41,
        "timestamp": 1_700_000_000_123,
        "timestamp_type": "CreateTime",
        "key": "k",
        "value": "v",
        "headers": [["source", "web"], ["empty", None]],
    }


def test_json_marks_bytes_that_are_not_utf8_as_base64() -> None:
    binary = b"\x00\xff\xfe"
    document = json.loads(format_message(message(key=binary, value=binary, headers=[("h", binary)]), "json"))
    encoded = base64.b64encode(binary).decode()
    assert document["key_b64"] == encoded and "key" not in document
    assert document["value_b64"] == encoded and "value" not in document
    assert document["headers"] == [["h", {"b64": encoded}]]


def test_json_keeps_unicode_text_readable() -> None:
    line = format_message(message(value="주문 완료".encode()), "json")
    assert "주문 완료".encode() in line
    assert json.loads(line)["value"] == "주문 완료"


def test_json_null_key_and_value_stay_null() -> None:
    document = json.loads(format_message(message(key=None, value=None), "json"))
    assert (document["key"], document["value"], document["headers"]) == (None, None, [])


def test_json_timestamp_types() -> None:
    appended = json.loads(format_message(message(timestamp=(TIMESTAMP_LOG_APPEND_TIME, 5)), "json"))
    assert (appended["timestamp"], appended["timestamp_type"]) == (5, "LogAppendTime")
    missing = json.loads(format_message(message(timestamp=(TIMESTAMP_NOT_AVAILABLE, 0)), "json"))
    assert (missing["timestamp"], missing["timestamp_type"]) == (None, None)
