"""A real Strom broker for Python tests, started from the test process itself.

``EmbeddedBroker`` runs one single-node broker on 127.0.0.1 (a free port) with a temporary data directory
unless given one, in one of two modes:

- ``"thread"`` (default): the broker's asyncio event loop runs in a background thread of this process. It
  starts in well under a second and needs no child process, which suits unit and integration tests.
- ``"process"``: a ``strom serve`` child process (``StromProcess``), for tests that need the broker to be
  isolated from the test process, or to be killed (``.process.kill()``) and restarted.

Either way the broker is the same code ``strom serve`` runs, configured the same way (Kafka config names in
``overrides``, the single-node defaults of a development node); clients reach it at ``.bootstrap``::

    with EmbeddedBroker() as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

from strom.testing.process import HOST, STARTUP_TIMEOUT_S, STOP_TIMEOUT_S, StromProcess

Mode = Literal["thread", "process"]


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker did not start, or did not stop in time."""


class EmbeddedBroker:
    """One single-node Strom broker on 127.0.0.1, in a thread of this process or in a child process.

    Use as a context manager, or call ``start()`` and ``stop()``. Without ``data_dir`` the broker writes to a
    fresh temporary directory that ``stop()`` removes; a given ``data_dir`` is kept.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        overrides: Mapping[str, str] | None = None,
        mode: Mode = "thread",
        startup_timeout: float = STARTUP_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        if mode not in ("thread", "process"):
            raise ValueError(f"mode must be 'thread' or 'process', not {mode!r}")
        self.mode: Mode = mode
        self._requested_data_dir = None if data_dir is None else Path(data_dir).resolve()
        self._overrides = {key: str(value) for key, value in (overrides or {}).items()}
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._temp_dir: Path | None = None
        self._data_dir: Path | None = None
        self._port: int | None = None
        self._thread_broker: _ThreadBroker | None = None
        self._process: StromProcess | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections; returns self."""
        if self.running:
            raise EmbeddedBrokerError("embedded broker already running")
        data_dir = self._requested_data_dir
        if data_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="strom-embedded-"))
            data_dir = self._temp_dir / "data"
        try:
            if self.mode == "thread":
                thread_broker = _ThreadBroker(data_dir, self._overrides)
                self._port = thread_broker.start(self._startup_timeout)
                self._thread_broker = thread_broker
            else:
                process = StromProcess(
                    data_dir,
                    self._overrides,
                    startup_timeout=self._startup_timeout,
                    stop_timeout=self._stop_timeout,
                )
                process.start()
                self._process = process
                self._port = process.port
        except BaseException:
            self._remove_temp_dir()
            raise
        self._data_dir = data_dir
        return self

    def stop(self) -> None:
        """Stop the broker cleanly (every log flushed and closed); removes a temporary data directory."""
        try:
            if self._thread_broker is not None:
                thread_broker, self._thread_broker = self._thread_broker, None
                thread_broker.stop(self._stop_timeout)
            if self._process is not None:
                process, self._process = self._process, None
                if process.running:
                    process.stop()
        finally:
            self._remove_temp_dir()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what tests read -------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for clients' bootstrap.servers."""
        return f"{HOST}:{self.port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise EmbeddedBrokerError("embedded broker not started")
        return self._port

    @property
    def data_dir(self) -> Path:
        """Where the broker keeps its logs (set once started when it is a temporary directory)."""
        if self._data_dir is not None:
            return self._data_dir
        if self._requested_data_dir is not None:
            return self._requested_data_dir
        raise EmbeddedBrokerError("embedded broker not started")

    @property
    def running(self) -> bool:
        if self._thread_broker is not None:
            return self._thread_broker.running
        return self._process is not None and self._process.running

    @property
    def process(self) -> StromProcess:
        """The child process, in "process" mode: for tests that kill or restart the broker."""
        if self._process is None:
            raise EmbeddedBrokerError("no broker process (not started, or mode is not 'process')")
        return self._process

    def __repr__(self) -> str:
        state = f"{self.bootstrap}" if self.running else "stopped"
        return f"EmbeddedBroker(mode={self.mode!r}, {state})"

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self._data_dir = None


class _ThreadBroker:
    """The Broker and its Listener on an event loop in a daemon thread, run by the same `run_broker` as
    ``strom serve`` (which adds only its signal handlers and its address line)."""

    def __init__(self, data_dir: Path, overrides: Mapping[str, str]) -> None:
        self._data_dir = data_dir
        self._overrides = overrides
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._port: int | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float) -> int:
        """Run the broker's thread and wait until it listens; returns the bound port."""
        self._thread = threading.Thread(target=self._run, name="strom-embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop(timeout)
            raise EmbeddedBrokerError(f"embedded broker did not start within {timeout:g} s")
        if self._error is not None:
            self._thread.join(timeout)
            raise EmbeddedBrokerError(f"embedded broker failed to start: {self._error}") from self._error
        assert self._port is not None
        return self._port

    def stop(self, timeout: float) -> None:
        """Ask the event loop to stop serving, and wait for the logs to be closed."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            # RuntimeError: the loop closed in between, so the broker is down already.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise EmbeddedBrokerError(f"embedded broker did not stop within {timeout:g} s")
        if self._error is not None and self._ready.is_set() and self._port is not None:
            raise EmbeddedBrokerError(f"embedded broker failed while serving: {self._error}") from self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        import uvloop

        try:
            uvloop.run(self._serve())
        except BaseException as exc:  # reported to the thread that called start() or stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from strom.metadata.properties import BrokerConfig, with_single_node_defaults
        from strom.server.broker import Broker
        from strom.server.listener import run_broker

        properties = {"log.dirs": str(self._data_dir), **self._overrides}
        properties["listeners"] = f"PLAINTEXT://{HOST}:0"
        config = BrokerConfig(with_single_node_defaults(properties))
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()

        def listening(_broker: Broker, bound_port: int) -> None:
            self._port = bound_port
            self._ready.set()

        await run_broker(config, self._stop, listening)
