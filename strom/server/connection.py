"""One client connection: framing, in-order responses, back-pressure and zero-copy sends.

The connection owns a non-blocking socket and runs two coroutines. The reader takes size-prefixed frames off
the socket and hands them, one at a time and in arrival order, to the dispatcher (Kafka processes a
connection's requests sequentially too, so a long-polling Fetch holds back the requests behind it). The writer
sends the encoded responses in the same order. Between them sits a queue bounded in bytes: a client that
stops reading makes the reader stop reading its requests, instead of making the broker buffer without end.

Responses are lists of chunks. Byte chunks go out with ``sendmsg`` (one gathered write); record ranges of
segment files go out with ``os.sendfile``, so fetched record bytes never enter Python.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Bytes read per receive call while frames are small; big frames are received straight into their buffer.
RECV_BUFFER_BYTES = 64 * 1024
#: Frames up to this size that don't fit the receive buffer are received into one buffer the connection
#: keeps and reuses; bigger ones get a buffer of their own, freed after use.
REUSED_FRAME_BYTES = 2 * 1024 * 1024
#: Encoded responses queued beyond this make the reader pause until the writer catches up.
MAX_QUEUED_RESPONSE_BYTES = 16 * 1024 * 1024
#: sendmsg accepts at most IOV_MAX buffers per call.
MAX_IOVECS = 512


class FileChunk(Protocol):
    """A range of an open file, sent with sendfile (the log's FileRange satisfies this)."""

    file: Any
    position: int
    size: int


Chunk = bytes | bytearray | memoryview | FileChunk
FrameHandler = Callable[["Connection", memoryview], Awaitable[Sequence[Chunk] | None]]


class ConnectionClosed(Exception):
    """The peer went away or the connection must be dropped (a protocol violation)."""


class Connection:
    """A client connection; `serve()` runs until the peer disconnects or misbehaves."""

    def __init__(self, sock: socket.socket, handle_frame: FrameHandler, *, max_request_bytes: int) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.peer = _peer_name(sock)
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._handle_frame = handle_frame
        self._max_request_bytes = max_request_bytes
        self._queue: collections.deque[Sequence[Chunk] | None] = collections.deque()
        self._queued_bytes = 0
        self._queue_ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    async def serve(self) -> None:
        reader = asyncio.create_task(self._read_loop())
        writer = asyncio.create_task(self._write_loop())
        try:
            await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                self._enqueue(None)  # let the writer finish what was answered, then stop
                await asyncio.wait((writer,))
            else:  # the writer failed: nobody will read our answers, so stop reading requests
                reader.cancel()
                await asyncio.wait((reader,))
            for task in (reader, writer):
                if not task.cancelled() and task.exception() is not None:
                    self._log_failure(task.exception())  # type: ignore[arg-type]
        finally:
            for task in (reader, writer):
                task.cancel()
            self.close()

    def _log_failure(self, exc: BaseException) -> None:
        if isinstance(exc, ConnectionClosed):
            if str(exc):
                log.info("closing connection from %s: %s", self.peer, exc)
        elif isinstance(exc, ConnectionError | OSError):
            log.debug("connection from %s failed: %s", self.peer, exc)
        else:
            log.error("connection from %s failed", self.peer, exc_info=exc)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()

    # ------------------------------------------------------------------ reading
    async def _read_loop(self) -> None:
        """Frames are handed over as views, not copies: a small frame is a view into the receive buffer, a
        big one a view into a buffer this connection reuses. That is safe because the next receive waits
        until the handler is done with the frame (requests are handled one at a time)."""
        buf = bytearray(RECV_BUFFER_BYTES)
        view = memoryview(buf)
        large = bytearray()
        start = end = 0
        recv_into = self._loop.sock_recv_into
        while True:
            if end - start < 4:
                if start:
                    view[: end - start] = view[start:end]
                    end -= start
                    start = 0
                n = await recv_into(self.sock, view[end:])
                if n == 0:
                    raise ConnectionClosed("")
                end += n
                continue
            size = int.from_bytes(view[start : start + 4], "big", signed=True)
            if size < 0 or size > self._max_request_bytes:
                raise ConnectionClosed(
                    f"request size {size} is outside 0..{self._max_request_bytes} (socket.request.max.bytes)"
                )
            available = end - start - 4
            if available >= size:
                frame = view[start + 4 : start + 4 + size]
                start += 4 + size
            else:
                if size > REUSED_FRAME_BYTES:
                    frame = memoryview(bytearray(size))
                else:
                    if len(large) < size:
                        large = bytearray(max(size, 2 * len(large)))
                    frame = memoryview(large)[:size]
                frame[:available] = view[start + 4 : end]
                await self._recv_exactly(frame[available:])
                start = end = 0
            if self._queued_bytes > MAX_QUEUED_RESPONSE_BYTES:
                self._drained.clear()
                await self._drained.wait()
            response = await self._handle_frame(self, frame)
            if response is not None:
                self._enqueue(response)

    async def _recv_exactly(self, target: memoryview) -> None:
        while target:
            n = await self._loop.sock_recv_into(self.sock, target)
            if n == 0:
                raise ConnectionClosed("")
            target = target[n:]

    # ------------------------------------------------------------------ writing
    def _enqueue(self, chunks: Sequence[Chunk] | None) -> None:
        if chunks is not None:
            self._queued_bytes += _chunks_size(chunks)
        self._queue.append(chunks)
        self._queue_ready.set()

    async def _write_loop(self) -> None:
        while True:
            if not self._queue:
                self._queue_ready.clear()
                await self._queue_ready.wait()
                continue
            chunks = self._queue.popleft()
            if chunks is None:
                return
            await self._send_chunks(chunks)
            self._queued_bytes -= _chunks_size(chunks)
            if self._queued_bytes <= MAX_QUEUED_RESPONSE_BYTES:
                self._drained.set()

    async def _send_chunks(self, chunks: Sequence[Chunk]) -> None:
        pending: list[bytes | bytearray | memoryview] = []
        for chunk in chunks:
            if isinstance(chunk, bytes | bytearray | memoryview):
                if len(chunk):
                    pending.append(chunk)
                continue
            if pending:
                await self._sendmsg_all(pending)
                pending = []
            await self._sendfile_all(chunk)
        if pending:
            await self._sendmsg_all(pending)

    async def _sendmsg_all(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        views = [memoryview(b).cast("B") for b in buffers]
        while views:
            try:
                sent = self.sock.sendmsg(views[:MAX_IOVECS])
            except (BlockingIOError, InterruptedError):
                await self._writable()
                continue
            while sent:
                head = views[0]
                if sent >= len(head):
                    sent -= len(head)
                    views.pop(0)
                else:
                    views[0] = head[sent:]
                    sent = 0

    async def _sendfile_all(self, chunk: FileChunk) -> None:
        try:
            in_fd = chunk.file.fileno()
        except ValueError:  # the segment was closed under us: its partition was deleted
            raise ConnectionClosed(f"segment closed while sending to {self.peer}") from None
        position, remaining = chunk.position, chunk.size
        while remaining:
            try:
                sent = os.sendfile(self._fd, in_fd, position, remaining)
            except (BlockingIOError, InterruptedError):
                await self._writable()
                continue
            if sent == 0:  # the file is shorter than the range: it was truncated under us
                raise ConnectionClosed(f"segment range ended early sending to {self.peer}")
            position += sent
            remaining -= sent

    async def _writable(self) -> None:
        waiter = self._loop.create_future()
        self._loop.add_writer(self._fd, _resolve, waiter)
        try:
            await waiter
        finally:
            self._loop.remove_writer(self._fd)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _chunks_size(chunks: Sequence[Chunk]) -> int:
    return sum(c.size if not isinstance(c, bytes | bytearray | memoryview) else len(c) for c in chunks)


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
