"""Turns one request frame into one response frame: header, version check, decode, handler, encode.

What Kafka does with requests it can't serve, and so what we do:
- an ApiVersions request of a version newer than ours gets an ApiVersions v0 response with UNSUPPORTED_VERSION
  and our ranges (KIP-511), so the client can retry with a version we speak;
- any other unknown API key or unsupported version, or a body that does not decode, closes the connection;
- a handler failure that is not a Kafka error is logged and closes the connection (the broker stays up).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strom.protocol.errors import ErrorCode
from strom.protocol.frames import encode_response_frame
from strom.protocol.headers import RequestHeader, decode_request_header
from strom.protocol.messages import api_versions
from strom.protocol.primitives import DecodeError
from strom.server.connection import Chunk, Connection, ConnectionClosed
from strom.server.handlers import HANDLERS, Handler, supported_api_versions

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestContext:
    """What a handler knows about the request besides its body."""

    broker: Broker
    header: RequestHeader
    connection: Connection

    @property
    def api_version(self) -> int:
        return self.header.api_version


class Dispatcher:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def handle_frame(self, conn: Connection, view: memoryview) -> Sequence[Chunk] | None:
        try:
            header, body_pos = decode_request_header(view)
        except DecodeError as exc:
            raise ConnectionClosed(f"malformed request header: {exc}") from None
        handler = HANDLERS.get(header.api_key)
        if handler is None:
            raise ConnectionClosed(f"unknown API key {header.api_key}")
        version = header.api_version
        if not handler.min_version <= version <= handler.max_version:
            if header.api_key == api_versions.API_KEY:
                return _unsupported_api_versions_response(header.correlation_id)
            raise ConnectionClosed(
                f"{handler.name} v{version} is not supported (v{handler.min_version}-{handler.max_version})"
            )
        try:
            request, _ = handler.schema.decode_request(view, body_pos, version)
        except DecodeError as exc:
            raise ConnectionClosed(f"malformed {handler.name} v{version} request: {exc}") from None
        ctx = RequestContext(self.broker, header, conn)
        try:
            response = await handler.handle(ctx, request)
            if response is None:
                return None
            return encode_response_frame(header.api_key, version, header.correlation_id, response)
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("%s v%d from %s failed", handler.name, version, conn.peer)
            raise ConnectionClosed(f"{handler.name} failed") from None


def _unsupported_api_versions_response(correlation_id: int) -> Sequence[Chunk]:
    response = api_versions.ApiVersionsResponse(
        error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=supported_api_versions()
    )
    return encode_response_frame(api_versions.API_KEY, 0, correlation_id, response)


__all__ = ["Dispatcher", "Handler", "RequestContext"]
