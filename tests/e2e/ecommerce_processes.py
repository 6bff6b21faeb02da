"""The example's services as real child processes, which a test can SIGKILL and restart.

Each service prints one line when it is ready (the order service: the URL of its API); ``ServiceProcess``
waits for that line and sends everything else the service writes to a log file, quoted when it fails.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
_LOG_TAIL_CHARS = 4000


class ServiceProcessError(RuntimeError):
    """A service did not become ready, or did not stop when asked."""


class ServiceProcess:
    """``python -m examples.ecommerce.<module> <args>``, started from the repository root."""

    def __init__(self, module: str, args: Sequence[str], log_path: Path) -> None:
        self.module = module
        self.args = list(args)
        self.log_path = log_path
        self.ready_line = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> ServiceProcess:
        """Launch the service and wait for its ready line (kept in ``ready_line``)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log_start = log.tell()
            self._process = subprocess.Popen(
                [sys.executable, "-m", f"examples.ecommerce.{self.module}", *self.args],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
            )
        assert self._process.stdout is not None
        first_line: queue.Queue[bytes] = queue.Queue(maxsize=1)
        self._pump = threading.Thread(
            target=_pump, args=(self._process.stdout, first_line, self.log_path), daemon=True
        )
        self._pump.start()
        try:
            line = first_line.get(timeout=READY_TIMEOUT_S)
        except queue.Empty:
            self.kill()
            raise ServiceProcessError(
                f"{self.module} not ready in {READY_TIMEOUT_S:g} s:\n{self._log(log_start)}"
            ) from None
        if not line:
            self._process.wait()
            raise ServiceProcessError(f"{self.module} exited before it was ready:\n{self._log(log_start)}")
        self.ready_line = line.decode().strip()
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would end it."""
        process = self._require()
        if process.poll() is None:
            process.kill()
        process.wait()
        self._join_pump()

    def stop(self) -> int:
        """SIGTERM, and wait for the clean shutdown; returns the exit status."""
        process = self._require()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise ServiceProcessError(f"{self.module} ignored SIGTERM for {STOP_TIMEOUT_S:g} s") from None
        self._join_pump()
        return process.returncode

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise ServiceProcessError(f"{self.module} not started")
        return self._process

    def _join_pump(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=STOP_TIMEOUT_S)
            self._pump = None

    def _log(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")[-_LOG_TAIL_CHARS:] or "(nothing)"


def _pump(stdout: IO[bytes], first_line: queue.Queue[bytes], log_path: Path) -> None:
    """Hand over the first line, then copy the rest to the log so a chatty service never blocks on a pipe."""
    with stdout:
        first_line.put(stdout.readline())
        with log_path.open("ab") as log:
            for line in stdout:
                log.write(line)
                log.flush()
