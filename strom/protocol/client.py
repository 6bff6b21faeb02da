"""A small blocking Kafka client connection on Strom's generated codec, for what confluent-kafka cannot do.

The CLI uses it for the few admin APIs librdkafka has no call for, the system tests to send exact (even
malformed) bytes, and the benchmarks to load a broker without a client library's overhead. It frames and
decodes; it does not retry, reconnect or pick brokers, because each caller wants those differently.

Kafka answers a connection's requests in the order they were sent, so requests may be pipelined: `send`
several, then `receive` (or `discard_frame`) their responses oldest first. Every failure of the connection is
a `BrokerConnectionError`, which is a `ConnectionError`, so code that already handles socket errors handles
these too; callers with users to face (the CLI) translate them into their own messages.
"""

from __future__ import annotations

import collections
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from strom.protocol.frames import decode_response_frame_body, encode_request_frame
from strom.protocol.messages import APIS, api_versions, produce
from strom.protocol.primitives import Chunk, DecodeError

_SIZE = struct.Struct(">i")
_CORRELATION_ID = struct.Struct(">i")
# A response frame holds at least its header's correlation id.
_MIN_FRAME_BYTES = _CORRELATION_ID.size
_MAX_CORRELATION_ID = 0x7FFFFFFF
# Linux accepts at most this many buffers in one sendmsg call (IOV_MAX).
_MAX_GATHERED_BUFFERS = 1024
# ApiVersions v0 is answered by every broker, and its API ranges are all negotiation needs (later versions
# add the client's software name and feature flags).
_API_VERSIONS_VERSION = 0


class BrokerConnectionError(ConnectionError):
    """The connection to a broker could not be opened, or stopped being usable."""


class BrokerDisconnectedError(BrokerConnectionError, ConnectionResetError):
    """The broker closed the connection: end of stream, a reset, or a broken pipe."""


class BrokerTimeoutError(BrokerConnectionError, TimeoutError):
    """The broker did not connect or answer within the socket timeout. A frame may be half read, so the
    connection is out of step and should be closed."""


class UnexpectedResponseError(BrokerConnectionError):
    """What came back is not the awaited response (another correlation id, too short, undecodable), or
    ApiVersions failed: the connection is out of step with the broker."""


class UnsupportedApiError(Exception):
    """The broker and this codec share no version of an API (within the bounds the caller asked for)."""


@dataclass(frozen=True, slots=True)
class _Outstanding:
    """A request sent and not yet answered: what its response is and how to decode it."""

    correlation_id: int
    api_key: int
    version: int


class BrokerConnection:
    """One blocking TCP connection to a broker, with correlation ids and API version negotiation.

    The socket timeout (``timeout``, seconds) bounds the connect and every later socket operation; ``sock``
    is the socket itself, for callers that change the timeout or close it in unusual ways. One thread may
    send while another receives (the benchmarks do), but not two of either.
    """

    def __init__(
        self, host: str, port: int, *, timeout: float | None, client_id: str | None = "strom"
    ) -> None:
        self.address = f"{host}:{port}"
        self.client_id = client_id
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError:
            raise BrokerTimeoutError(f"cannot connect to {self.address}: timed out") from None
        except OSError as exc:
            raise BrokerConnectionError(f"cannot connect to {self.address}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._last_correlation_id = 0
        self._outstanding: collections.deque[_Outstanding] = collections.deque()
        self._advertised: dict[int, tuple[int, int]] | None = None
        self._size_buffer = bytearray(_SIZE.size)
        self.received_bytes = 0
        """Response bytes read so far, size prefixes included (for throughput figures)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def in_flight(self) -> int:
        """Requests sent whose responses have not been read yet."""
        return len(self._outstanding)

    # ------------------------------------------------------------------------------------------- requests

    def send(self, api_key: int, version: int, msg: Any) -> int:
        """Encode and send one request; returns its correlation id.

        Its response is then due after those of the requests sent before it, except for a Produce with
        ``acks=0``, which Kafka never answers.
        """
        correlation_id = self._next_correlation_id()
        chunks = encode_request_frame(api_key, version, correlation_id, self.client_id, msg)
        self._send_chunks(chunks)
        if _expects_response(api_key, msg):
            self._outstanding.append(_Outstanding(correlation_id, api_key, version))
        return correlation_id

    def receive(self) -> Any:
        """The decoded response to the oldest request still awaiting one."""
        due = self._pop_outstanding()
        body = memoryview(self._read_body())
        try:
            correlation_id, response = decode_response_frame_body(due.api_key, due.version, body)
        except DecodeError as exc:
            name = APIS[due.api_key].name
            raise UnexpectedResponseError(
                f"the {name} v{due.version} response from {self.address} does not decode: {exc}"
            ) from exc
        self._check_correlation_id(correlation_id, due)
        return response

    def call(self, api_key: int, version: int, msg: Any) -> Any:
        """Send one request and return its decoded response (None for a Produce with ``acks=0``)."""
        self.send(api_key, version, msg)
        return self.receive() if _expects_response(api_key, msg) else None

    def discard_frame(self, scratch: memoryview) -> int:
        """Read the response to the oldest request awaiting one into ``scratch``, piece by piece, keeping
        none of it: no Python objects are built, so a benchmark measures the broker and not the decoder.

        Only the correlation id is checked. Returns the frame's size on the wire, size prefix included.
        ``scratch`` must hold at least 4 bytes.
        """
        due = self._pop_outstanding()
        size = self._read_size()
        remaining = size
        first = True
        while remaining:
            piece = scratch[: min(remaining, len(scratch))]
            self._receive_into(piece)
            if first:
                self._check_correlation_id(_CORRELATION_ID.unpack_from(piece)[0], due)
                first = False
            remaining -= len(piece)
        return _SIZE.size + size

    # ------------------------------------------------------------------------------------------- raw bytes

    def send_bytes(self, data: bytes) -> None:
        """Send any bytes at all, well-formed or not; nothing is recorded as awaiting a response."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise self._failure("send to", exc) from exc

    def read_frame(self) -> bytes:
        """The next frame's body (after its size prefix), undecoded.

        It answers the oldest request awaiting a response, if any, which then awaits no more. Mixing requests
        sent raw with ``send_bytes`` and requests sent with ``send`` on one connection is the caller's
        business: frames are matched to requests only by their order.
        """
        if self._outstanding:
            self._outstanding.popleft()
        return bytes(self._read_body())

    # ------------------------------------------------------------------------------------------- versions

    def advertised_versions(self) -> dict[int, tuple[int, int]]:
        """API key -> (min, max) version the broker serves, from ApiVersions (asked once per connection)."""
        if self._advertised is None:
            response = self.call(
                api_versions.API_KEY, _API_VERSIONS_VERSION, api_versions.ApiVersionsRequest()
            )
            if response.error_code:
                raise UnexpectedResponseError(
                    f"ApiVersions to {self.address} failed with error code {response.error_code}"
                )
            self._advertised = {api.api_key: (api.min_version, api.max_version) for api in response.api_keys}
        return self._advertised

    def negotiate(self, api_key: int, *, oldest: int | None = None, newest: int | None = None) -> int:
        """The newest version of ``api_key`` that both the broker and the codec speak, as Kafka's clients
        choose it, within ``oldest``..``newest`` when the caller needs a range (e.g. a request shape).

        A latest version the codec marks unstable is not chosen, as Kafka's clients do not choose it.
        """
        spec = APIS.get(api_key)
        if spec is None:
            raise UnsupportedApiError(f"the codec has no API with key {api_key}")
        served = self.advertised_versions().get(api_key)
        if served is None:
            raise UnsupportedApiError(
                f"the broker at {self.address} does not support {spec.name} (API key {api_key})"
            )
        usable_low = max(spec.min_version, oldest if oldest is not None else spec.min_version)
        usable_high = spec.max_version - 1 if spec.latest_version_unstable else spec.max_version
        if newest is not None:
            usable_high = min(usable_high, newest)
        version = min(served[1], usable_high)
        if version < max(served[0], usable_low):
            raise UnsupportedApiError(
                f"the broker at {self.address} serves {spec.name} (API key {api_key}) "
                f"v{served[0]}-v{served[1]}, none of v{usable_low}-v{usable_high}"
            )
        return version

    # ------------------------------------------------------------------------------------------- plumbing

    def _next_correlation_id(self) -> int:
        self._last_correlation_id = self._last_correlation_id % _MAX_CORRELATION_ID + 1
        return self._last_correlation_id

    def _pop_outstanding(self) -> _Outstanding:
        if not self._outstanding:
            raise RuntimeError(f"no request sent to {self.address} awaits a response")
        return self._outstanding.popleft()

    def _check_correlation_id(self, correlation_id: int, due: _Outstanding) -> None:
        if correlation_id != due.correlation_id:
            raise UnexpectedResponseError(
                f"{self.address} answered request {correlation_id} when request {due.correlation_id} "
                f"({APIS[due.api_key].name}) was due"
            )

    def _send_chunks(self, chunks: Sequence[Chunk]) -> None:
        """Send a frame's chunks with gathered writes (no joined copy of a big record batch)."""
        views = [memoryview(chunk).cast("B") for chunk in chunks]
        try:
            while views:
                sent = self.sock.sendmsg(views[:_MAX_GATHERED_BUFFERS])
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if sent:
                    views[0] = views[0][sent:]
        except OSError as exc:
            raise self._failure("send to", exc) from exc

    def _read_size(self) -> int:
        """Read the next frame's size prefix: the size of the rest of the frame."""
        self._receive_into(memoryview(self._size_buffer))
        (size,) = _SIZE.unpack(self._size_buffer)
        if size < _MIN_FRAME_BYTES:
            raise UnexpectedResponseError(
                f"{self.address} sent a frame of {size} bytes: too short for a response header"
            )
        return size

    def _read_body(self) -> bytearray:
        body = bytearray(self._read_size())
        self._receive_into(memoryview(body))
        return body

    def _receive_into(self, view: memoryview) -> None:
        received = 0
        while received < len(view):
            try:
                count = self.sock.recv_into(view[received:])
            except OSError as exc:
                raise self._failure("receive from", exc) from exc
            if count == 0:
                raise BrokerDisconnectedError(
                    f"{self.address} closed the connection ({received} of {len(view)} bytes read)"
                )
            received += count
            self.received_bytes += count

    def _failure(self, doing: str, exc: OSError) -> BrokerConnectionError:
        """The exception to raise for a socket error: what the caller needs to tell apart, and where."""
        message = f"cannot {doing} {self.address}: {exc}"
        if isinstance(exc, TimeoutError):
            return BrokerTimeoutError(f"cannot {doing} {self.address}: timed out")
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return BrokerDisconnectedError(message)
        return BrokerConnectionError(message)


def _expects_response(api_key: int, msg: Any) -> bool:
    """Every request is answered except a Produce with acks=0 (Kafka's NetworkClient rule)."""
    return not (api_key == produce.API_KEY and msg.acks == 0)
