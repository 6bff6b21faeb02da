"""Whole frames: int32 size, header, body.  Used by the server, the small admin client and benchmarks.

Encoders return the frame as a list of chunks ready for the socket: buffers, plus any opaque records
objects (file ranges for sendfile) left in place.  The size prefix is in the first chunk and counts
the opaque objects by their `size`.
"""

from __future__ import annotations

from typing import Any

from strom.protocol.headers import (
    RequestHeader,
    decode_response_header,
    encode_request_header,
    encode_response_header,
)
from strom.protocol.messages import APIS, ApiSpec
from strom.protocol.primitives import INT32, Chunk, UnsupportedVersionError, Writer

_SIZE_PLACEHOLDER = bytes(4)


def _spec(api_key: int) -> ApiSpec:
    spec = APIS.get(api_key)
    if spec is None:
        raise UnsupportedVersionError(f"unknown API key {api_key}")
    return spec


def _finish(w: Writer) -> list[Chunk]:
    INT32.pack_into(w.buf, 0, w.nbytes - INT32.size)
    return w.chunks()


def encode_request_frame(
    api_key: int, version: int, correlation_id: int, client_id: str | None, msg: Any
) -> list[Chunk]:
    spec = _spec(api_key)
    w = Writer()
    w.buf += _SIZE_PLACEHOLDER
    encode_request_header(RequestHeader(api_key, version, correlation_id, client_id), w)
    spec.module.encode_request(msg, version, w)
    return _finish(w)


def encode_response_frame(api_key: int, version: int, correlation_id: int, msg: Any) -> list[Chunk]:
    spec = _spec(api_key)
    w = Writer()
    w.buf += _SIZE_PLACEHOLDER
    encode_response_header(correlation_id, spec.response_header_version(version), w)
    spec.module.encode_response(msg, version, w)
    return _finish(w)


def decode_response_frame_body(api_key: int, version: int, buf: memoryview) -> tuple[int, Any]:
    """A response frame without its size prefix: its correlation id and decoded response."""
    spec = _spec(api_key)
    correlation_id, pos = decode_response_header(buf, spec.response_header_version(version))
    response, _end = spec.module.decode_response(buf, pos, version)
    return correlation_id, response
