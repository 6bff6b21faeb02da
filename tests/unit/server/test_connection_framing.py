"""The connection's framing and response ordering, over a real loopback TCP pair (no broker, no codec).

The handler here is a stand-in that records each frame it is given and answers with chunks the test chooses,
so these tests pin down only what `Connection` itself promises: whole frames in arrival order whatever the
segmentation, the size-prefix limits of Kafka's `socket.request.max.bytes`, responses in request order
(including sendfile ranges), and a clean end when the peer vanishes or a frame is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from strom.server import connection as connection_module
from strom.server.connection import Chunk, Connection, ConnectionClosed

MAX_REQUEST_BYTES = 64 * 1024
TEST_TIMEOUT_S = 5.0


@dataclass
class FileRange:
    """A `FileChunk`: a range of an open file for the connection to sendfile."""

    file: Any
    position: int
    size: int


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


@contextlib.contextmanager
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected (client, server) pair on 127.0.0.1; the server side is what `Connection` gets."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"connection closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def recv_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", recv_exactly(sock, 4))
    return recv_exactly(sock, size)


def recv_until_eof(sock: socket.socket) -> bytes:
    """Everything until the server closes; a reset counts as a close (unread request bytes cause one)."""
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


class Recorder:
    """A frame handler that keeps every frame and answers each with `answer(frame)`."""

    def __init__(self, answer: Callable[[bytes], Sequence[Chunk] | None] | None = None) -> None:
        self.frames: list[bytes] = []
        self._answer = answer or (lambda payload: [frame(b"re:" + payload)])

    async def __call__(self, conn: Connection, payload: bytearray) -> Sequence[Chunk] | None:
        self.frames.append(bytes(payload))
        return self._answer(bytes(payload))


ClientScript = Callable[[socket.socket], Any]


def run_connection(
    handler: Callable[[Connection, bytearray], Awaitable[Sequence[Chunk] | None]],
    client_script: ClientScript,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> Any:
    """Serve one connection in an event loop while `client_script` drives the blocking client in a thread.

    Returns what the client script returned, after `serve()` finished (it must finish on its own).
    """

    async def main() -> Any:
        with tcp_pair() as (client, server):
            client.settimeout(TEST_TIMEOUT_S)
            conn = Connection(server, handler, max_request_bytes=max_request_bytes)
            serve = asyncio.create_task(conn.serve())
            result = await asyncio.to_thread(client_script, client)
            client.close()
            await asyncio.wait_for(serve, TEST_TIMEOUT_S)
            return result

    return asyncio.run(main())


def test_frames_split_byte_by_byte_arrive_whole_and_in_order() -> None:
    payloads = [b"first", b"", b"x" * 1000, b"last"]
    stream = b"".join(frame(p) for p in payloads)
    recorder = Recorder()

    def client(sock: socket.socket) -> list[bytes]:
        for i in range(len(stream)):
            sock.sendall(stream[i : i + 1])
        return [recv_frame(sock) for _ in payloads]

    responses = run_connection(recorder, client)

    assert recorder.frames == payloads
    assert responses == [b"re:" + p for p in payloads]


def test_many_frames_in_one_write_are_separated() -> None:
    payloads = [bytes([i]) * i for i in range(50)]
    recorder = Recorder()

    def client(sock: socket.socket) -> list[bytes]:
        sock.sendall(b"".join(frame(p) for p in payloads))
        return [recv_frame(sock) for _ in payloads]

    responses = run_connection(recorder, client)

    assert recorder.frames == payloads
    assert responses == [b"re:" + p for p in payloads]


def test_frame_larger_than_the_receive_buffer_arrives_intact() -> None:
    big = bytes(range(256)) * (3 * connection_module.RECV_BUFFER_BYTES // 256 + 7)
    recorder = Recorder(lambda payload: [frame(struct.pack(">i", len(payload)))])

    def client(sock: socket.socket) -> bytes:
        sock.sendall(frame(b"small") + frame(big) + frame(b"after"))
        return b"".join(recv_frame(sock) for _ in range(3))

    responses = run_connection(recorder, client, max_request_bytes=len(big))

    assert recorder.frames == [b"small", big, b"after"]
    assert responses == struct.pack(">iii", 5, len(big), 5)


def test_frame_of_exactly_the_maximum_size_is_accepted() -> None:
    payload = b"m" * MAX_REQUEST_BYTES
    recorder = Recorder(lambda p: [frame(b"ok")])

    def client(sock: socket.socket) -> bytes:
        sock.sendall(frame(payload))
        return recv_frame(sock)

    assert run_connection(recorder, client) == b"ok"
    assert recorder.frames == [payload]


@pytest.mark.parametrize("size", [-1, -(2**31), MAX_REQUEST_BYTES + 1, 2**31 - 1])
def test_size_prefix_outside_the_limit_closes_the_connection_after_earlier_answers(size: int) -> None:
    recorder = Recorder()

    def client(sock: socket.socket) -> bytes:
        sock.sendall(frame(b"fine") + struct.pack(">i", size) + b"junk that must never reach a handler")
        return recv_until_eof(sock)

    received = run_connection(recorder, client)

    assert recorder.frames == [b"fine"]
    assert received == frame(b"re:fine")


def test_peer_disconnecting_mid_frame_ends_serve_without_calling_the_handler() -> None:
    recorder = Recorder()

    def client(sock: socket.socket) -> None:
        sock.sendall(struct.pack(">i", 100) + b"only part of the body")

    run_connection(recorder, client)

    assert recorder.frames == []


def test_peer_disconnecting_inside_the_size_prefix_ends_serve() -> None:
    recorder = Recorder()

    def client(sock: socket.socket) -> None:
        sock.sendall(frame(b"whole") + b"\x00\x00")

    run_connection(recorder, client)

    assert recorder.frames == [b"whole"]


def test_handler_refusing_a_frame_closes_after_sending_earlier_responses() -> None:
    def answer(payload: bytes) -> Sequence[Chunk] | None:
        if payload == b"bad":
            raise ConnectionClosed("refused by the test")
        return [frame(b"re:" + payload)]

    recorder = Recorder(answer)

    def client(sock: socket.socket) -> bytes:
        sock.sendall(frame(b"one") + frame(b"two") + frame(b"bad") + frame(b"never"))
        return recv_until_eof(sock)

    received = run_connection(recorder, client)

    assert recorder.frames == [b"one", b"two", b"bad"]
    assert received == frame(b"re:one") + frame(b"re:two")


def test_unanswered_frames_send_nothing_and_later_answers_keep_their_order() -> None:
    recorder = Recorder(lambda p: None if p.startswith(b"silent") else [frame(b"re:" + p)])

    def client(sock: socket.socket) -> list[bytes]:
        sock.sendall(frame(b"a") + frame(b"silent-1") + frame(b"b") + frame(b"silent-2") + frame(b"c"))
        return [recv_frame(sock) for _ in range(3)]

    assert run_connection(recorder, client) == [b"re:a", b"re:b", b"re:c"]


def test_byte_and_file_chunks_go_out_in_order() -> None:
    with tempfile.TemporaryFile() as segment:
        segment.write(b"0123456789abcdefghij")
        segment.flush()

        def answer(payload: bytes) -> Sequence[Chunk]:
            body: list[Chunk] = [
                b"head:",
                FileRange(segment, 2, 5),
                b"|",
                bytearray(b""),
                FileRange(segment, 10, 6),
            ]
            return [struct.pack(">i", 5 + 5 + 1 + 6), *body]

        def client(sock: socket.socket) -> list[bytes]:
            sock.sendall(frame(b"r1") + frame(b"r2"))
            return [recv_frame(sock), recv_frame(sock)]

        responses = run_connection(Recorder(answer), client)

    assert responses == [b"head:23456|abcdef", b"head:23456|abcdef"]


def test_file_range_past_the_end_of_the_file_closes_the_connection() -> None:
    with tempfile.TemporaryFile() as segment:
        segment.write(b"short")
        segment.flush()

        def answer(payload: bytes) -> Sequence[Chunk]:
            if payload == b"ok":
                return [frame(b"fine")]
            return [struct.pack(">i", 100), FileRange(segment, 0, 100)]

        def client(sock: socket.socket) -> bytes:
            sock.sendall(frame(b"ok"))
            first = recv_frame(sock)
            sock.sendall(frame(b"truncated"))
            rest = recv_until_eof(sock)
            return first + b"/" + rest

        received = run_connection(Recorder(answer), client)

    # The peer gets the first answer, then the truncated one's prefix and the bytes that existed, then EOF.
    assert received == b"fine/" + struct.pack(">i", 100) + b"short"


def test_a_client_that_stops_reading_stops_having_its_requests_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-pressure: responses queued beyond the limit pause the reader until the client reads again."""
    monkeypatch.setattr(connection_module, "MAX_QUEUED_RESPONSE_BYTES", 64 * 1024)
    response_body = b"r" * (4 * 1024 * 1024)  # far more than the socket buffers hold
    request_count = 8
    recorder = Recorder(lambda p: [frame(response_body)])
    calls_while_not_reading: list[int] = []

    async def main() -> list[int]:
        with tcp_pair() as (client, server):
            client.settimeout(TEST_TIMEOUT_S)
            conn = Connection(server, recorder, max_request_bytes=MAX_REQUEST_BYTES)
            serve = asyncio.create_task(conn.serve())
            client.sendall(b"".join(frame(str(i).encode()) for i in range(request_count)))
            while not recorder.frames:
                await asyncio.sleep(0.01)
            for _ in range(20):  # give a reader that ignores back-pressure every chance to run ahead
                await asyncio.sleep(0.01)
            calls_while_not_reading.append(len(recorder.frames))
            sizes = await asyncio.to_thread(lambda: [len(recv_frame(client)) for _ in range(request_count)])
            client.close()
            await asyncio.wait_for(serve, TEST_TIMEOUT_S)
            return sizes

    sizes = asyncio.run(main())

    assert calls_while_not_reading[0] < request_count
    assert sizes == [len(response_body)] * request_count
    assert recorder.frames == [str(i).encode() for i in range(request_count)]
