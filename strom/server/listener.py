"""The TCP listener: accepts clients and runs a Connection for each, plus the broker's periodic work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from strom.metadata.properties import BrokerConfig
from strom.server.broker import Broker
from strom.server.connection import Connection
from strom.server.dispatch import Dispatcher

log = logging.getLogger(__name__)

#: How often retention, time-based rolls and flush.ms run (Kafka's log.retention.check.interval.ms default
#: is 5 minutes; a shorter tick costs nothing when there is nothing to do).
TICK_SECONDS = 1.0
#: How often the coordinators' timers (session and rebalance timeouts, transaction timeouts) are checked: the
#: precision of those timeouts. Rebalance steps triggered by requests do not wait for it.
COORDINATOR_TICK_SECONDS = 0.1


def bind(host: str, port: int) -> socket.socket:
    """Bind before the broker starts, so `port=0` resolves to a real port we can advertise."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class Listener:
    def __init__(self, broker: Broker, sock: socket.socket) -> None:
        self.broker = broker
        self.sock = sock
        self.dispatcher = Dispatcher(broker)
        self.max_request_bytes = broker.config.get_int("socket.request.max.bytes")
        self._connections: set[asyncio.Task[None]] = set()

    async def serve(self, stop: asyncio.Event) -> None:
        """Accept clients until `stop` is set, then close every connection."""
        accept = asyncio.create_task(self._accept_loop())
        ticker = asyncio.create_task(self._tick_loop())
        coordinators = [
            asyncio.create_task(self._load_coordinators()),
            asyncio.create_task(self._coordinator_tick_loop()),
        ]
        try:
            await stop.wait()
        finally:
            for task in (accept, ticker, *coordinators, *self._connections):
                task.cancel()
            for task in (accept, ticker, *coordinators, *self._connections):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.sock.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(self.sock)
            except OSError as exc:  # e.g. EMFILE: keep serving the clients we have
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn = Connection(client, self.dispatcher.handle_frame, max_request_bytes=self.max_request_bytes)
            task = asyncio.create_task(conn.serve())
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.broker.tick()
            except Exception:
                log.exception("periodic log maintenance failed")

    async def _load_coordinators(self) -> None:
        try:
            await self.broker.load_coordinators()
        except Exception:
            log.exception("loading the coordinators' state failed")

    async def _coordinator_tick_loop(self) -> None:
        while True:
            await asyncio.sleep(COORDINATOR_TICK_SECONDS)
            try:
                self.broker.tick_coordinators()
            except Exception:
                log.exception("coordinator tick failed")


async def run_broker(
    config: BrokerConfig, stop: asyncio.Event, on_listening: Callable[[Broker, int], None]
) -> None:
    """Bind the configured listener, open the broker, call ``on_listening(broker, bound port)``, serve until
    ``stop`` is set, then close the broker: what `strom serve` and the embedded test broker both run.
    Raises OSError when the address cannot be bound."""
    host, port = config.listener()
    sock = bind(host, port)
    try:
        bound_port = sock.getsockname()[1]
        advertised_host, advertised_port = config.advertised_listener()
        broker = Broker(
            config,
            advertised_host=advertised_host if "advertised.listeners" in config else host,
            advertised_port=advertised_port or bound_port,
        )
    except BaseException:
        sock.close()
        raise
    try:
        on_listening(broker, bound_port)
        await Listener(broker, sock).serve(stop)
    finally:
        broker.close()
