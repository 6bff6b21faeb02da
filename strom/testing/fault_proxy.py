"""A fault-injecting TCP proxy in front of one broker port, for loopback tests of how clients recover.

Whether a client's retry duplicates a write depends on whether the broker had written it before the
connection failed. The proxy makes those moments happen on purpose. It reads Kafka's framing (an int32 size,
then a request header starting with api key, api version and correlation id) so that a fault can be aimed at
one kind of request, for instance: let a Produce request reach the broker, wait for the broker's answer,
drop that answer and cut the client's connection, so the write is on disk and the client never hears of it.

Faults are chosen per request by rules: a ``FaultRule`` (api keys, a bound on how often, a probability
drawn from a seeded ``random.Random``) or any callable taking a ``RequestInfo``. The first rule that
returns a ``Fault`` decides. The proxy counts the faults it actually injected, so a test can show that its
faults happened.

Clients connect to the addresses that Metadata responses advertise, so the broker behind the proxy must
advertise the proxy's address (``advertised.listeners``). That address is only known once the proxy
listens, hence a proxy may start without a target and be pointed at the broker with ``forward_to``.

The proxy runs an asyncio loop in a thread of its own and listens on 127.0.0.1 on an ephemeral port; use it
as a context manager or call ``start`` and ``stop``, which closes every connection and ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import random
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

_SIZE = struct.Struct(">i")
# The start of every request header (v0 to v2): api key, api version, correlation id.
_REQUEST_HEADER_START = struct.Struct(">hhi")
_CORRELATION_ID = struct.Struct(">i")


class FaultKind(enum.Enum):
    """What the proxy does to a request chosen for a fault."""

    CUT_BEFORE_REQUEST = "cut before request"
    """Close both connections without forwarding the request: the broker never sees it."""
    DROP_RESPONSE = "drop response"
    """Forward the request, wait for the broker's response, discard it and close both connections."""
    DELAY_RESPONSE = "delay response"
    """Hold the response back; later responses on the connection wait behind it, as Kafka's order demands."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    delay_s: float = 0.0
    """How long a DELAY_RESPONSE holds the response."""


CUT_BEFORE_REQUEST = Fault(FaultKind.CUT_BEFORE_REQUEST)
DROP_RESPONSE = Fault(FaultKind.DROP_RESPONSE)


def delay_response(seconds: float) -> Fault:
    return Fault(FaultKind.DELAY_RESPONSE, seconds)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a rule may judge a request by."""

    api_key: int
    api_version: int
    correlation_id: int
    connection: int
    """Which client connection carried it: 1 for the first the proxy accepted, and so on."""
    size: int
    """Bytes in the frame after its size prefix."""


FaultChooser = Callable[[RequestInfo], Fault | None]
"""Returns the fault to inject into a request, or None to pass it on untouched."""


class FaultRule:
    """Inject ``fault`` into requests of the given api keys (all when None).

    The first ``skip`` matching requests pass; after that each is chosen with ``probability``, drawn from a
    ``random.Random(seed)``, until ``limit`` have been chosen. For a given sequence of requests the choices
    are therefore always the same. ``matched`` and ``chosen`` count what the rule saw and picked; a picked
    fault may still not happen (a response that never comes, as for Produce with acks=0, or that was due on
    a connection an earlier fault cut), which is why the proxy counts injections separately.
    """

    def __init__(
        self,
        fault: Fault,
        *,
        api_keys: Iterable[int] | None = None,
        probability: float = 1.0,
        limit: int | None = None,
        skip: int = 0,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability {probability} is not within [0, 1]")
        self.fault = fault
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.probability = probability
        self.limit = limit
        self.skip = skip
        self._random = random.Random(seed)
        self.matched = 0
        self.chosen = 0

    def __call__(self, request: RequestInfo) -> Fault | None:
        if self.api_keys is not None and request.api_key not in self.api_keys:
            return None
        self.matched += 1
        if self.matched <= self.skip or (self.limit is not None and self.chosen >= self.limit):
            return None
        if self._random.random() >= self.probability:
            return None
        self.chosen += 1
        return self.fault


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of what the proxy has done since it started."""

    connections: int
    requests: Mapping[int, int]
    """Requests forwarded to the broker, by api key."""
    faults: Mapping[FaultKind, int]
    """Faults injected (not merely chosen), by kind."""

    @property
    def faults_injected(self) -> int:
        return sum(self.faults.values())


class FaultProxy:
    """A loopback proxy to ``target_host:target_port`` that injects the faults its rules choose.

    ``rules`` are consulted in order for every request; ``set_rules`` replaces them while the proxy runs. A
    client that connects before the proxy has a target is disconnected at once.
    """

    def __init__(
        self,
        target_port: int | None = None,
        *,
        rules: Sequence[FaultChooser] = (),
        target_host: str = HOST,
    ) -> None:
        self._target = None if target_port is None else (target_host, target_port)
        self._rules: tuple[FaultChooser, ...] = tuple(rules)
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._client_writers: set[asyncio.StreamWriter] = set()
        self._connection_numbers = itertools.count(1)
        self._stats_lock = threading.Lock()
        self._connections = 0
        self._requests: Counter[int] = Counter()
        self._faults: Counter[FaultKind] = Counter()

    # -- configuration -------------------------------------------------------------------------------------

    def forward_to(self, port: int, host: str = HOST) -> None:
        """Send the connections accepted from now on to ``host:port``."""
        self._target = (host, port)

    def set_rules(self, rules: Sequence[FaultChooser]) -> None:
        """Judge the requests read from now on by ``rules``."""
        self._rules = tuple(rules)

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen and serve in a background thread; returns self once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        bound: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(bound,), name="fault-proxy", daemon=True)
        self._thread.start()
        try:
            self._port = bound.result(timeout=START_TIMEOUT_S)
        except BaseException:
            self._thread.join(timeout=STOP_TIMEOUT_S)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and wait for the thread to end."""
        thread, loop, stop_requested = self._thread, self._loop, self._stop_requested
        if thread is None or loop is None or stop_requested is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed if the thread failed
            loop.call_soon_threadsafe(stop_requested.set)
        thread.join(timeout=STOP_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"the proxy thread did not end within {STOP_TIMEOUT_S:g} s")
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, for bootstrap.servers and advertised.listeners."""
        return f"{HOST}:{self.port}"

    @property
    def faults_injected(self) -> int:
        return self.stats().faults_injected

    def stats(self) -> ProxyStats:
        with self._stats_lock:
            return ProxyStats(self._connections, dict(self._requests), dict(self._faults))

    # -- the loop thread -----------------------------------------------------------------------------------

    def _run(self, bound: Future[int]) -> None:
        try:
            asyncio.run(self._serve(bound))
        except BaseException as exc:
            if not bound.done():
                bound.set_exception(exc)
            else:
                raise

    async def _serve(self, bound: Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        server = await asyncio.start_server(self._serve_connection, HOST, 0)
        bound.set_result(server.sockets[0].getsockname()[1])
        try:
            await self._stop_requested.wait()
        finally:
            server.close()
            await self._cut_every_connection()
            await server.wait_closed()

    async def _cut_every_connection(self) -> None:
        """Abort every client connection and let each connection's task wind down on its own.

        Cancelling the tasks instead would work too, but asyncio logs the cancellation of a stream server's
        connection task as an error; cancelling is the fallback for a task that does not end.
        """
        await asyncio.sleep(0)  # a connection accepted just now gets to start its task
        for writer in self._client_writers:
            writer.transport.abort()
        tasks = list(self._connection_tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S / 2)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _serve_connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_tasks.discard)
        self._client_writers.add(client_writer)
        task.add_done_callback(lambda _: self._client_writers.discard(client_writer))
        connection = next(self._connection_numbers)
        with self._stats_lock:
            self._connections += 1
        broker_writer: asyncio.StreamWriter | None = None
        pumps: list[asyncio.Task[bool]] = []
        # Abrupt unless the pumps end normally: a proxy being stopped must not wait on a client's reading.
        cut = True
        try:
            if self._target is None:
                return
            try:
                broker_reader, broker_writer = await asyncio.open_connection(*self._target)
            except OSError:
                return
            # Correlation id → the fault to apply to that request's response. Responses are matched by
            # correlation id, not by position, because a Produce with acks=0 is never answered.
            response_faults: dict[int, Fault] = {}
            pumps = [
                asyncio.create_task(
                    self._pump_requests(connection, client_reader, broker_writer, response_faults)
                ),
                asyncio.create_task(self._pump_responses(broker_reader, client_writer, response_faults)),
            ]
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            cut = any(pump.result() for pump in done)
        finally:
            await _close_all(pumps, [w for w in (client_writer, broker_writer) if w is not None], abort=cut)

    async def _pump_requests(
        self,
        connection: int,
        client: asyncio.StreamReader,
        broker: asyncio.StreamWriter,
        response_faults: dict[int, Fault],
    ) -> bool:
        """Forward requests until the client goes away (False) or a fault cuts the connection (True)."""
        while True:
            frame = await _read_frame(client)
            if frame is None or len(frame[1]) < _REQUEST_HEADER_START.size:
                return False
            prefix, body = frame
            api_key, api_version, correlation_id = _REQUEST_HEADER_START.unpack_from(body)
            fault = self._choose(RequestInfo(api_key, api_version, correlation_id, connection, len(body)))
            if fault is not None and fault.kind is FaultKind.CUT_BEFORE_REQUEST:
                self._count_fault(fault.kind)
                return True
            if fault is not None:
                response_faults[correlation_id] = fault
            broker.write(prefix)
            broker.write(body)
            with self._stats_lock:
                self._requests[api_key] += 1
            if not await _drained(broker):
                return False

    async def _pump_responses(
        self, broker: asyncio.StreamReader, client: asyncio.StreamWriter, response_faults: dict[int, Fault]
    ) -> bool:
        """Forward responses until the broker goes away (False) or a fault cuts the connection (True)."""
        while True:
            frame = await _read_frame(broker)
            if frame is None or len(frame[1]) < _CORRELATION_ID.size:
                return False
            prefix, body = frame
            (correlation_id,) = _CORRELATION_ID.unpack_from(body)
            fault = response_faults.pop(correlation_id, None)
            if fault is not None:
                self._count_fault(fault.kind)
                if fault.kind is FaultKind.DROP_RESPONSE:
                    return True
                await asyncio.sleep(fault.delay_s)
            client.write(prefix)
            client.write(body)
            if not await _drained(client):
                return False

    def _choose(self, request: RequestInfo) -> Fault | None:
        for rule in self._rules:
            fault = rule(request)
            if fault is not None:
                return fault
        return None

    def _count_fault(self, kind: FaultKind) -> None:
        with self._stats_lock:
            self._faults[kind] += 1


async def _read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One frame as (size prefix, rest), or None once the peer has closed or sent something unframed."""
    try:
        prefix = await reader.readexactly(_SIZE.size)
        (size,) = _SIZE.unpack(prefix)
        if size < 0:
            return None
        return prefix, await reader.readexactly(size)
    except (asyncio.IncompleteReadError, OSError):
        return None


async def _drained(writer: asyncio.StreamWriter) -> bool:
    """Wait until the writer's buffer has room again; False if its connection is gone."""
    try:
        await writer.drain()
    except OSError:
        return False
    return True


async def _close_all(
    pumps: list[asyncio.Task[bool]], writers: list[asyncio.StreamWriter], *, abort: bool
) -> None:
    """End a connection's pumps and close its sockets: abruptly for an injected cut (unsent data is thrown
    away), else gracefully. Closing starts before the first await, so a stop that cancels this wait still
    leaves every socket closed (aborted, then)."""
    for pump in pumps:
        pump.cancel()
    for writer in writers:
        if abort:
            writer.transport.abort()
        else:
            writer.close()
    try:
        await asyncio.gather(*pumps, *(writer.wait_closed() for writer in writers), return_exceptions=True)
    except asyncio.CancelledError:
        for writer in writers:
            writer.transport.abort()
        raise
