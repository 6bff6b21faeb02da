"""Run ``strom serve`` as a child process, for tests and benchmarks that need a real broker.

The broker announces itself on its first stdout line (``Strom <version> listening on <host>:<port>, data
in <dir>``); ``StromProcess`` waits for that line, so a started broker is known to accept connections. Its
stderr, and any later stdout, go to a log file beside the data directory (``<data dir>.log``), which the
error of a failed start quotes.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0
LISTENING_LINE = re.compile(
    r"^Strom (?P<version>\S+) listening on (?P<host>\[[^\]]+\]|[^\s:]+):(?P<port>\d+), "
    r"data in (?P<data_dir>.+)$"
)
# How much of the log a startup error quotes.
_LOG_TAIL_CHARS = 4000


class StromProcessError(RuntimeError):
    """The broker process did not start, or did not stop when asked."""


class _ExitedDuringStartup(StromProcessError):
    """The broker exited before announcing itself (for instance because its port was taken)."""


class StromProcess:
    """A ``strom serve`` child process on 127.0.0.1 with its own data directory.

    Use as a context manager, or call ``start()`` and ``stop()``. ``port=0`` lets the broker pick a free
    port; ``restart()`` then tries to keep the port it had, so clients' bootstrap addresses stay valid.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        overrides: Mapping[str, str] | None = None,
        *,
        port: int = 0,
        node_id: int | None = None,
        config_file: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        console_port: int | None = None,
    ) -> None:
        """``overrides`` become ``-o key=value`` broker configs; ``command`` replaces the launcher.

        The broker starts its web console only when given ``console_port`` (a free port, as the console's
        own may not be learnt otherwise); it answers at ``console_url`` shortly after the broker listens.
        """
        self._requested_data_dir = Path(data_dir).resolve()
        self._overrides = dict(overrides or {})
        self._requested_port = port
        self._node_id = node_id
        self._config_file = None if config_file is None else Path(config_file)
        self.log_path = (
            Path(log_path)
            if log_path is not None
            else self._requested_data_dir.with_name(f"{self._requested_data_dir.name}.log")
        )
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._command = list(command) if command is not None else [sys.executable, "-m", "strom.cli.main"]
        self._env = dict(env or {})
        self.console_port = console_port
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout_pump: threading.Thread | None = None
        self._port: int | None = None
        self._data_dir: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> StromProcess:
        """Launch the broker and wait until it listens; returns self."""
        if self.running:
            raise StromProcessError(f"broker already running as pid {self.pid}")
        self._launch(self._requested_port)
        return self

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; returns the exit status. Killed (and an error) if it hangs."""
        process = self._require_process()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self._join_stdout_pump()
                raise StromProcessError(
                    f"broker pid {process.pid} ignored SIGTERM for {self._stop_timeout:g} s and was killed"
                ) from None
        self._join_stdout_pump()
        return process.returncode

    def kill(self) -> int:
        """SIGKILL, as a crash would end it, and wait; returns the exit status."""
        process = self._require_process()
        if process.poll() is None:
            process.kill()
            process.wait()
        self._join_stdout_pump()
        return process.returncode

    def restart(self) -> StromProcess:
        """Stop if running, then start on the same data directory, on the same port when it is still free."""
        if self.running:
            self.stop()
        previous_port = self._port if self._port is not None else self._requested_port
        try:
            self._launch(previous_port)
        except _ExitedDuringStartup:
            if self._requested_port != 0:
                raise
            self._launch(0)
        return self

    def __enter__(self) -> StromProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self.stop()

    # -- what tests read -------------------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` for clients' bootstrap.servers."""
        return f"{HOST}:{self.port}"

    @property
    def console_url(self) -> str:
        """``http://127.0.0.1:PORT`` of the broker's web console."""
        if self.console_port is None:
            raise StromProcessError("the broker was started without a console (no console_port)")
        return f"http://{HOST}:{self.console_port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise StromProcessError("broker not started")
        return self._port

    @property
    def data_dir(self) -> Path:
        """The data directory as the broker reported it (the requested one before the first start)."""
        return self._data_dir if self._data_dir is not None else self._requested_data_dir

    @property
    def pid(self) -> int:
        return self._require_process().pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last process, None while it runs or before the first start."""
        return None if self._process is None else self._process.poll()

    def read_log(self) -> str:
        """Everything the broker wrote to stderr (and to stdout after its first line), across restarts."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __repr__(self) -> str:
        state = f"pid {self._process.pid}" if self.running and self._process else "stopped"
        return f"StromProcess({self.data_dir}, port={self._port}, {state})"

    # -- internals -------------------------------------------------------------------------------------------

    def _launch(self, port: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log_start = log.tell()
            process = subprocess.Popen(
                self._serve_command(port),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self._env},
            )
        self._process = process
        assert process.stdout is not None
        first_line: queue.Queue[bytes] = queue.Queue(maxsize=1)
        self._stdout_pump = threading.Thread(
            target=_pump_stdout, args=(process.stdout, first_line, self.log_path), daemon=True
        )
        self._stdout_pump.start()
        try:
            line = first_line.get(timeout=self._startup_timeout)
        except queue.Empty:
            self.kill()
            raise StromProcessError(
                f"broker did not announce itself within {self._startup_timeout:g} s; "
                f"its log says:\n{self._log_since(log_start)}"
            ) from None
        if not line:
            status = process.wait()
            self._join_stdout_pump()
            raise _ExitedDuringStartup(
                f"broker exited with status {status} before listening; "
                f"its log says:\n{self._log_since(log_start)}"
            )
        match = LISTENING_LINE.match(line.decode(errors="replace").rstrip("\r\n"))
        if match is None:
            self.kill()
            raise StromProcessError(f"unexpected first line from the broker: {line!r}")
        self._port = int(match["port"])
        self._data_dir = Path(match["data_dir"])

    def _serve_command(self, port: int) -> list[str]:
        command = [*self._command, "serve"]
        if self._config_file is not None:
            command.append(str(self._config_file))
        command += ["--host", HOST, "--port", str(port), "--data-dir", str(self._requested_data_dir)]
        if self._node_id is not None:
            command += ["--node-id", str(self._node_id)]
        for key, value in self._overrides.items():
            command += ["-o", f"{key}={value}"]
        if self.console_port is None:
            command.append("--no-console")
        else:
            command += ["--console-port", str(self.console_port)]
        return command

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise StromProcessError("broker not started")
        return self._process

    def _join_stdout_pump(self) -> None:
        if self._stdout_pump is not None:
            self._stdout_pump.join(timeout=self._stop_timeout)
            self._stdout_pump = None

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        return text[-_LOG_TAIL_CHARS:] if text else "(nothing)"


def _pump_stdout(stdout: IO[bytes], first_line: queue.Queue[bytes], log_path: Path) -> None:
    """Hand over the first stdout line (b"" if stdout closes first), then copy the rest into the log.

    Draining keeps a chatty broker from blocking on a full pipe.
    """
    with stdout:
        first_line.put(stdout.readline())
        with log_path.open("ab") as log:
            for line in stdout:
                log.write(line)
                log.flush()
