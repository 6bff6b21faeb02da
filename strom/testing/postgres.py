"""A throwaway PostgreSQL cluster for tests and benchmarks: ``initdb`` into a temporary directory, a server
on a free 127.0.0.1 port, and everything removed on ``stop()``.

The server binaries (``initdb``, ``pg_ctl``, ``postgres``) are looked up in ``$STROM_PG_BIN``, then in
Debian's layout (``/usr/lib/postgresql/<version>/bin``, the newest version; the Debian package
``postgresql`` installs it), then on ``PATH``. PostgreSQL refuses to run as root, so when this process is
root the cluster belongs to, and the server runs as, the ``postgres`` OS user (created by that package).

The unix socket lives in the temporary directory too, so the cluster never touches the system's
``/var/run/postgresql`` nor any other server on the machine.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
SUPERUSER = "strom"
BIN_DIR_VARIABLE = "STROM_PG_BIN"
_DEBIAN_BIN_DIRS = Path("/usr/lib/postgresql")
_OS_USER_WHEN_ROOT = "postgres"
_STARTUP_TIMEOUT_S = 60
_START_ATTEMPTS = 3  # a port picked as free may be taken before the server binds it
_LOG_TAIL_CHARS = 4000
# Settings for a cluster whose data nobody will want after the test: no waiting for the disk.
_THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresNotFoundError(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


class PostgresServerError(RuntimeError):
    """The cluster could not be created, started or stopped."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``; ``PostgresNotFoundError`` if none."""
    candidates: list[Path] = []
    if os.environ.get(BIN_DIR_VARIABLE):
        candidates.append(Path(os.environ[BIN_DIR_VARIABLE]))
    if _DEBIAN_BIN_DIRS.is_dir():
        versions = [path for path in _DEBIAN_BIN_DIRS.iterdir() if path.name.split(".")[0].isdigit()]
        versions.sort(key=lambda path: [int(part) for part in path.name.split(".") if part.isdigit()])
        candidates += [version / "bin" for version in reversed(versions)]
    on_path = shutil.which("pg_ctl")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / program).is_file() for program in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PostgresNotFoundError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in "
        f"${BIN_DIR_VARIABLE}, {_DEBIAN_BIN_DIRS}/<version>/bin or on PATH. Install them (on Debian and "
        f"Ubuntu: apt-get install postgresql) or point {BIN_DIR_VARIABLE} at their directory."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """A PostgreSQL cluster of its own on 127.0.0.1, for as long as the test needs it.

    Use as a context manager, or ``start()`` and ``stop()``. ``url`` is an SQLAlchemy URL (psycopg 3) for
    the ``postgres`` database as the superuser ``strom`` (trust authentication: the cluster is reachable
    from this machine only and lives minutes). ``durable=False`` (the default) turns off fsync and
    synchronous commit, which tests do not need; benchmarks pass ``durable=True`` to measure what a real
    server would do.
    """

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        self._settings = {**({} if durable else _THROWAWAY_SETTINGS), **(settings or {})}
        self._base_dir: Path | None = None
        self._bin_dir: Path | None = None
        self._port: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Create the cluster and start the server; returns once it accepts connections."""
        if self._base_dir is not None:
            raise PostgresServerError("the server is already started")
        self._bin_dir = find_bin_dir()
        self._base_dir = Path(tempfile.mkdtemp(prefix="strom-postgres-"))
        try:
            self.socket_dir.mkdir()
            if os.geteuid() == 0:
                _chown_tree(self._base_dir, _OS_USER_WHEN_ROOT)
            self._run(
                "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"
            )
            self._start_server()
        except BaseException:
            self._remove_files()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut) and delete the cluster."""
        if self._base_dir is None:
            return
        try:
            if self._port is not None:
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            self._port = None
            self._remove_files()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what clients read -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise PostgresServerError("the server is not running")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database (driver psycopg 3)."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        """SQLAlchemy URL of another database of this cluster (see ``create_database``)."""
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database (so tests can keep apart on one cluster); returns its URL."""
        import psycopg  # here, so that importing this module does not need the driver

        with psycopg.connect(
            host=HOST, port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.database_url(name)

    @property
    def data_dir(self) -> Path:
        return self._require_base_dir() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._require_base_dir() / "sockets"

    @property
    def log_path(self) -> Path:
        return self._require_base_dir() / "postgres.log"

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (FileNotFoundError, PostgresServerError):
            return ""

    # -- internals -------------------------------------------------------------------------------------------

    def _start_server(self) -> None:
        failure: PostgresServerError | None = None
        for _ in range(_START_ATTEMPTS):
            port = _free_port()
            options = [f"-c listen_addresses={HOST}", f"-p {port}", f"-k {self.socket_dir}"]
            options += [f"-c {name}={value}" for name, value in self._settings.items()]
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                    "-t", str(_STARTUP_TIMEOUT_S), "-o", " ".join(options), "start",
                )  # fmt: skip
            except PostgresServerError as exc:
                failure = exc
                continue
            self._port = port
            return
        assert failure is not None
        raise failure

    def _run(self, program: str, *arguments: str) -> None:
        assert self._bin_dir is not None
        command: Sequence[str] = [str(self._bin_dir / program), *arguments]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _OS_USER_WHEN_ROOT, "--", *command]
        result = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=self._base_dir, check=False
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"{program} exited with status {result.returncode}:\n{result.stdout}{result.stderr}"
                f"\nserver log:\n{self.read_log()[-_LOG_TAIL_CHARS:] or '(nothing)'}"
            )

    def _require_base_dir(self) -> Path:
        if self._base_dir is None:
            raise PostgresServerError("the server is not started")
        return self._base_dir

    def _remove_files(self) -> None:
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None


def _chown_tree(root: Path, user: str) -> None:
    """Give ``root`` and everything under it to ``user``; PostgreSQL insists on owning its data directory."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise PostgresServerError(
            f"running as root, but there is no {user!r} OS user to run PostgreSQL as "
            "(the Debian package postgresql creates it)"
        ) from None
    for directory, _, files in os.walk(root):
        os.chown(directory, account.pw_uid, account.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), account.pw_uid, account.pw_gid)
