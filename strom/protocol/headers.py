"""Request and response headers, whose version depends on the API and version of the message.

Request header v0 is api_key, api_version, correlation_id (only ControlledShutdown v0 uses it); v1 adds
the nullable client_id; v2 (flexible versions) adds a tagged-field section.  Even in v2 the client id
keeps its classic int16 length, so that any broker can read who is asking.  Response header v0 is the
correlation id; v1 adds a tagged-field section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from strom.protocol.messages import APIS
from strom.protocol.primitives import (
    INT32,
    DecodeError,
    Writer,
    read_nullable_string,
    skip_tagged_fields,
    write_nullable_string,
)

_REQUEST_PREFIX = struct.Struct(">hhi")


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None = None


def request_header_version(api_key: int, api_version: int) -> int:
    """The header version a request of this API and version is sent with.

    Like Kafka, a version newer than we implement counts as flexible when the API has flexible versions
    (flexible ranges are open-ended), so the header of a too-new ApiVersions request still parses and can
    be answered (KIP-511).  Unknown API keys are read as v1: enough to answer or log them.
    """
    spec = APIS.get(api_key)
    if spec is None:
        return 1
    if spec.supports(api_version):
        return spec.request_header_version(api_version)
    return 2 if spec.is_flexible(api_version) else 1


def decode_request_header(buf: memoryview) -> tuple[RequestHeader, int]:
    """The header at the start of a request frame (after its size prefix), and where the body starts."""
    try:
        api_key, api_version, correlation_id = _REQUEST_PREFIX.unpack_from(buf, 0)
    except struct.error:
        raise DecodeError("request header is truncated") from None
    version = request_header_version(api_key, api_version)
    if version == 0:
        return RequestHeader(api_key, api_version, correlation_id, None), _REQUEST_PREFIX.size
    client_id, pos = read_nullable_string(buf, _REQUEST_PREFIX.size)
    if version >= 2:
        pos = skip_tagged_fields(buf, pos)
    return RequestHeader(api_key, api_version, correlation_id, client_id), pos


def encode_request_header(header: RequestHeader, w: Writer) -> None:
    version = request_header_version(header.api_key, header.api_version)
    w.buf += _REQUEST_PREFIX.pack(header.api_key, header.api_version, header.correlation_id)
    if version >= 1:
        write_nullable_string(w, header.client_id)
    if version >= 2:
        w.buf.append(0)  # no tagged fields


def decode_response_header(buf: memoryview, header_version: int) -> tuple[int, int]:
    """The correlation id of a response frame (after its size prefix), and where the body starts."""
    try:
        (correlation_id,) = INT32.unpack_from(buf, 0)
    except struct.error:
        raise DecodeError("response header is truncated") from None
    pos = INT32.size
    if header_version >= 1:
        pos = skip_tagged_fields(buf, pos)
    return correlation_id, pos


def encode_response_header(correlation_id: int, header_version: int, w: Writer) -> None:
    w.buf += INT32.pack(correlation_id)
    if header_version >= 1:
        w.buf.append(0)  # no tagged fields
