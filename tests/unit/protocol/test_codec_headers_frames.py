"""Request/response headers (their version follows the API and version) and whole frames."""

from __future__ import annotations

import struct

import pytest

from strom.protocol.frames import decode_response_frame_body, encode_request_frame, encode_response_frame
from strom.protocol.headers import (
    RequestHeader,
    decode_request_header,
    decode_response_header,
    encode_request_header,
    request_header_version,
)
from strom.protocol.messages import APIS, api_versions, controlled_shutdown, fetch, metadata, produce
from strom.protocol.primitives import DecodeError, UnsupportedVersionError, Writer


def header_bytes(api_key: int, version: int, correlation_id: int, tail: bytes) -> memoryview:
    return memoryview(struct.pack(">hhi", api_key, version, correlation_id) + tail)


def test_request_header_v1_for_classic_versions() -> None:
    buf = header_bytes(produce.API_KEY, 8, 42, b"\x00\x03cli" + b"BODY")
    header, body = decode_request_header(buf)
    assert header == RequestHeader(produce.API_KEY, 8, 42, "cli")
    assert bytes(buf[body:]) == b"BODY"


def test_request_header_v2_skips_tagged_fields_but_keeps_a_classic_client_id() -> None:
    buf = header_bytes(produce.API_KEY, 9, 7, b"\xff\xff" + b"\x01\x05\x02hi" + b"BODY")
    header, body = decode_request_header(buf)
    assert header == RequestHeader(produce.API_KEY, 9, 7, None)
    assert bytes(buf[body:]) == b"BODY"


def test_request_header_v0_for_controlled_shutdown_v0() -> None:
    buf = header_bytes(controlled_shutdown.API_KEY, 0, 3, b"BODY")
    header, body = decode_request_header(buf)
    assert (header.client_id, bytes(buf[body:])) == (None, b"BODY")
    assert request_header_version(controlled_shutdown.API_KEY, 1) == 1


def test_unknown_api_key_is_read_as_header_v1() -> None:
    buf = header_bytes(9999, 3, 11, b"\x00\x01xBODY")
    header, body = decode_request_header(buf)
    assert header == RequestHeader(9999, 3, 11, "x")
    assert bytes(buf[body:]) == b"BODY"


def test_too_new_api_versions_request_still_parses_its_header() -> None:
    """KIP-511: the broker must read the header to answer with ApiVersions v0 and its ranges."""
    too_new = api_versions.MAX_VERSION + 1
    buf = header_bytes(api_versions.API_KEY, too_new, 5, b"\x00\x02me" + b"\x00" + b"BODY")
    header, body = decode_request_header(buf)
    assert header == RequestHeader(api_versions.API_KEY, too_new, 5, "me")
    assert bytes(buf[body:]) == b"BODY"  # flexible ranges are open-ended, so header v2


def test_truncated_request_headers() -> None:
    with pytest.raises(DecodeError):
        decode_request_header(memoryview(b"\x00\x00\x00"))
    with pytest.raises(DecodeError):
        decode_request_header(header_bytes(produce.API_KEY, 8, 1, b"\x00\x09abc"))


@pytest.mark.parametrize(
    ("version", "client_id"), [(0, None), (8, "producer-1"), (9, "producer-1"), (11, None)]
)
def test_request_header_round_trip(version: int, client_id: str | None) -> None:
    header = RequestHeader(produce.API_KEY, version, 99, client_id)
    w = Writer()
    encode_request_header(header, w)
    w.write(b"BODY")
    data = memoryview(w.getvalue())
    decoded, body = decode_request_header(data)
    assert decoded == header
    assert bytes(data[body:]) == b"BODY"


def test_response_header_versions() -> None:
    assert decode_response_header(memoryview(b"\x00\x00\x00\x05BODY"), 0) == (5, 4)
    assert decode_response_header(memoryview(b"\x00\x00\x00\x05\x01\x00\x00BODY"), 1) == (5, 7)
    api_versions_spec = APIS[api_versions.API_KEY]
    assert [api_versions_spec.response_header_version(v) for v in range(5)] == [0, 0, 0, 0, 0]
    assert APIS[metadata.API_KEY].response_header_version(9) == 1
    assert APIS[metadata.API_KEY].response_header_version(8) == 0
    assert APIS[produce.API_KEY].request_header_version(9) == 2


def test_api_versions_response_frame_uses_header_v0_even_when_flexible() -> None:
    response = api_versions.ApiVersionsResponse(
        api_keys=[api_versions.ApiVersionsResponse.ApiVersion(0, 0, 11)]
    )
    frame = b"".join(bytes(c) for c in encode_response_frame(api_versions.API_KEY, 3, 77, response))  # type: ignore[arg-type]
    size, correlation_id = struct.unpack_from(">ii", frame)
    assert size == len(frame) - 4
    assert correlation_id == 77
    assert frame[8:10] == b"\x00\x00"  # the body's error code follows at once: no tagged-field byte
    assert decode_response_frame_body(api_versions.API_KEY, 3, memoryview(frame)[4:]) == (77, response)


def test_request_frame_round_trip() -> None:
    request = metadata.MetadataRequest(topics=None, allow_auto_topic_creation=False)
    frame = b"".join(bytes(c) for c in encode_request_frame(metadata.API_KEY, 12, 1, "admin", request))  # type: ignore[arg-type]
    assert struct.unpack_from(">i", frame)[0] == len(frame) - 4
    body = memoryview(frame)[4:]
    header, pos = decode_request_header(body)
    assert header == RequestHeader(metadata.API_KEY, 12, 1, "admin")
    assert metadata.decode_request(body, pos, 12) == (request, len(body))


class FileRange:
    def __init__(self, size: int) -> None:
        self.size = size


def test_response_frame_size_counts_opaque_records() -> None:
    records = FileRange(1 << 20)
    partition = fetch.FetchResponse.PartitionData(partition_index=0, records=records)
    response = fetch.FetchResponse(
        responses=[fetch.FetchResponse.FetchableTopicResponse("t", partitions=[partition])]
    )
    chunks = encode_response_frame(fetch.API_KEY, 11, 5, response)
    assert chunks[1] is records
    buffers = [bytes(c) for c in chunks if c is not records]  # type: ignore[arg-type]
    assert struct.unpack_from(">i", buffers[0])[0] == sum(map(len, buffers)) + records.size - 4


def test_frames_for_unknown_api_keys_are_refused() -> None:
    with pytest.raises(UnsupportedVersionError):
        encode_response_frame(9999, 0, 1, object())
