"""The event envelope: CloudEvents 1.0 carried in Kafka's binary content mode.

In binary mode the record value is the event's data alone and the CloudEvents attributes travel as record
headers (``ce_id``, ``ce_type``, ...; ``content-type`` for ``datacontenttype``). Consumers that know nothing
of CloudEvents still read a plain JSON value, while those that do can recover the envelope from the
headers — which is why the toolkit uses binary rather than structured mode.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from strom.toolkit.serialization import json_deserializer, json_serializer

SPEC_VERSION = "1.0"
HEADER_PREFIX = "ce_"
SPECVERSION_HEADER = "ce_specversion"
ID_HEADER = "ce_id"
SOURCE_HEADER = "ce_source"
TYPE_HEADER = "ce_type"
TIME_HEADER = "ce_time"
SUBJECT_HEADER = "ce_subject"
CONTENT_TYPE_HEADER = "content-type"
JSON_CONTENT_TYPE = "application/json"

RecordHeaders = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Event:
    """A CloudEvent: what happened (``type``), where (``source``), to what (``subject``) and its ``data``.

    ``id`` is unique per ``source``; consumers deduplicate on it, so a re-published event keeps its id.
    """

    type: str
    data: Any
    source: str
    id: str = field(default_factory=_new_id)
    time: datetime = field(default_factory=_now)
    subject: str | None = None
    content_type: str = JSON_CONTENT_TYPE

    def to_headers(self) -> list[tuple[str, bytes]]:
        """The CloudEvents attributes as Kafka headers (binary content mode)."""
        headers = [
            (SPECVERSION_HEADER, SPEC_VERSION.encode()),
            (ID_HEADER, self.id.encode()),
            (SOURCE_HEADER, self.source.encode()),
            (TYPE_HEADER, self.type.encode()),
            (TIME_HEADER, format_time(self.time).encode()),
        ]
        if self.subject is not None:
            headers.append((SUBJECT_HEADER, self.subject.encode()))
        headers.append((CONTENT_TYPE_HEADER, self.content_type.encode()))
        return headers

    def encode_data(self) -> bytes | None:
        """The record value: ``data`` encoded as ``content_type`` says (JSON, text, or bytes as they are)."""
        if self.data is None:
            return None
        if _is_json(self.content_type):
            return json_serializer(self.data)
        if isinstance(self.data, str):
            return self.data.encode("utf-8")
        if isinstance(self.data, bytes | bytearray | memoryview):
            return bytes(self.data)
        raise TypeError(
            f"event data of type {type(self.data).__name__} cannot be sent as {self.content_type!r}; "
            "give bytes or str, or a JSON content type"
        )

    @classmethod
    def from_kafka(cls, headers: RecordHeaders | None, value: bytes | None) -> Event | None:
        """Rebuild the event from a record's headers and value; ``None`` if it is not a CloudEvent.

        JSON data is decoded (``ValueError`` if malformed), ``text/*`` becomes ``str``, anything else stays
        bytes. A missing ``ce_time`` (optional in CloudEvents) reads as the time of decoding.
        """
        attributes = _header_texts(headers)
        event_id = attributes.get(ID_HEADER)
        event_type = attributes.get(TYPE_HEADER)
        if not event_id or not event_type:
            return None
        content_type = attributes.get(CONTENT_TYPE_HEADER) or JSON_CONTENT_TYPE
        time_text = attributes.get(TIME_HEADER)
        return cls(
            type=event_type,
            data=_decode_data(content_type, value),
            source=attributes.get(SOURCE_HEADER) or "",
            id=event_id,
            time=parse_time(time_text) if time_text else _now(),
            subject=attributes.get(SUBJECT_HEADER),
            content_type=content_type,
        )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp into an aware UTC datetime (other writers may use offsets or ``z``)."""
    moment = datetime.fromisoformat(text.strip().upper())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == JSON_CONTENT_TYPE or media_type.endswith("+json")


def _decode_data(content_type: str, value: bytes | None) -> Any:
    if value is None:
        return None
    if _is_json(content_type):
        return json_deserializer(value)
    if content_type.lower().startswith("text/"):
        return value.decode("utf-8")
    return value


def _header_texts(headers: RecordHeaders | None) -> dict[str, str]:
    """Header values as text, keyed by lower-cased name (CloudEvents names are case-insensitive)."""
    if headers is None:
        return {}
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    texts: dict[str, str] = {}
    for name, raw in pairs:
        if raw is None:
            continue
        texts[name.lower()] = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")
    return texts
