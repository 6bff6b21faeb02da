"""What the dispatcher does with requests it can't serve, in process (no socket, no broker process).

Kafka's rules: an ApiVersions request of a version the broker doesn't speak gets a v0 response with
UNSUPPORTED_VERSION and the supported ranges (KIP-511); any other unknown API key, unsupported version or
undecodable request closes the connection, and so does a handler failure that isn't a Kafka error.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from strom.protocol.frames import decode_response_frame_body, encode_request_frame
from strom.protocol.messages import api_versions, describe_delegation_token, metadata, produce
from strom.server import handlers
from strom.server.connection import ConnectionClosed
from strom.server.dispatch import Dispatcher
from strom.server.handlers import HANDLERS, Handler, supported_api_versions

UNSUPPORTED_VERSION = 35
INVALID_REQUEST = 42


@dataclass
class StubBroker:
    """Only what the ApiVersions handler reads from the broker."""

    supported_api_versions: list[Any] = field(default_factory=supported_api_versions)


@dataclass
class StubConnection:
    peer: str = "127.0.0.1:1"


def dispatch(frame: bytes) -> Sequence[Any] | None:
    """Run one frame (without its size prefix) through a dispatcher; the response chunks or None."""
    dispatcher = Dispatcher(StubBroker())  # type: ignore[arg-type]
    return asyncio.run(dispatcher.handle_frame(StubConnection(), bytearray(frame)))  # type: ignore[arg-type]


def request_payload(api_key: int, version: int, correlation_id: int, msg: Any) -> bytes:
    """An encoded request without its size prefix, as the connection hands it to the dispatcher."""
    return join(encode_request_frame(api_key, version, correlation_id, "test", msg))[4:]


def join(chunks: Sequence[object]) -> bytes:
    assert all(isinstance(chunk, bytes | bytearray | memoryview) for chunk in chunks), chunks
    return b"".join(chunks)  # type: ignore[arg-type]  # checked just above


def relabelled(payload: bytes, version: int) -> bytes:
    """The same request claiming another version (the codec won't encode versions it doesn't know)."""
    return payload[:2] + struct.pack(">h", version) + payload[4:]


def decode(chunks: Sequence[Any], api_key: int, version: int) -> tuple[int, Any]:
    data = join(chunks)
    (size,) = struct.unpack_from(">i", data)
    assert size == len(data) - 4
    return decode_response_frame_body(api_key, version, memoryview(data)[4:])


def software(name: str = "strom-test", version: str = "1.0") -> Any:
    return api_versions.ApiVersionsRequest(client_software_name=name, client_software_version=version)


def advertised() -> dict[int, tuple[int, int]]:
    return {h.key: (h.min_version, h.max_version) for h in HANDLERS.values()}


def test_api_versions_is_answered_with_the_handlers_ranges() -> None:
    chunks = dispatch(request_payload(api_versions.API_KEY, 3, 11, software()))

    assert chunks is not None
    correlation_id, response = decode(chunks, api_versions.API_KEY, 3)
    assert correlation_id == 11
    assert response.error_code == 0
    assert {k.api_key: (k.min_version, k.max_version) for k in response.api_keys} == advertised()


@pytest.mark.parametrize("version_past_newest", [1, 2, 1000])
def test_too_new_api_versions_gets_a_v0_unsupported_version_response(version_past_newest: int) -> None:
    newest = HANDLERS[api_versions.API_KEY].max_version
    payload = relabelled(
        request_payload(api_versions.API_KEY, newest, 12, software()), newest + version_past_newest
    )

    chunks = dispatch(payload)

    assert chunks is not None
    correlation_id, response = decode(chunks, api_versions.API_KEY, 0)
    assert correlation_id == 12
    assert response.error_code == UNSUPPORTED_VERSION
    assert {k.api_key: (k.min_version, k.max_version) for k in response.api_keys} == advertised()


@pytest.mark.parametrize("name,version", [("", "1.0"), ("bad name", "1"), ("ok", "-trailing-"), ("ok", "")])
def test_api_versions_with_an_invalid_client_software_field_is_an_invalid_request(
    name: str, version: str
) -> None:
    chunks = dispatch(request_payload(api_versions.API_KEY, 3, 13, software(name, version)))

    assert chunks is not None
    _, response = decode(chunks, api_versions.API_KEY, 3)
    assert response.error_code == INVALID_REQUEST


def test_unknown_api_key_closes() -> None:
    header = struct.pack(">hhih", 32000, 0, 1, 4) + b"test"
    with pytest.raises(ConnectionClosed):
        dispatch(header + b"\x00" * 8)


def test_kafka_api_without_a_handler_closes() -> None:
    unserved = describe_delegation_token
    assert unserved.API_KEY not in HANDLERS
    with pytest.raises(ConnectionClosed):
        dispatch(request_payload(unserved.API_KEY, 0, 1, unserved.DescribeDelegationTokenRequest()))


def test_version_below_the_served_range_closes() -> None:
    oldest = HANDLERS[produce.API_KEY].min_version
    assert oldest > 0
    with pytest.raises(ConnectionClosed):
        dispatch(request_payload(produce.API_KEY, oldest - 1, 1, produce.ProduceRequest()))


def test_version_above_the_served_range_closes() -> None:
    newest = HANDLERS[metadata.API_KEY].max_version
    payload = relabelled(request_payload(metadata.API_KEY, newest, 1, metadata.MetadataRequest()), newest + 1)
    with pytest.raises(ConnectionClosed):
        dispatch(payload)


@pytest.mark.parametrize("length", [0, 1, 5, 7])
def test_truncated_header_closes(length: int) -> None:
    payload = request_payload(api_versions.API_KEY, 3, 1, software())
    with pytest.raises(ConnectionClosed):
        dispatch(payload[:length])


def test_truncated_body_closes() -> None:
    payload = request_payload(metadata.API_KEY, 12, 1, metadata.MetadataRequest(topics=None))
    with pytest.raises(ConnectionClosed):
        dispatch(payload[:-2])


def test_handler_failure_that_is_not_a_kafka_error_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(ctx: Any, request: Any) -> Any:
        raise RuntimeError("a bug in a handler")

    real = HANDLERS[metadata.API_KEY]
    monkeypatch.setitem(
        handlers.HANDLERS,
        metadata.API_KEY,
        Handler(real.key, real.name, real.min_version, real.max_version, real.schema, broken),
    )
    with pytest.raises(ConnectionClosed):
        dispatch(request_payload(metadata.API_KEY, 12, 1, metadata.MetadataRequest(topics=None)))
