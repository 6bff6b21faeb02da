"""`strom serve`: run a single-node broker in the foreground.

Configuration comes from an optional Kafka `server.properties` file, then `-o key=value` overrides, then
the flags, each overriding the one before, all with Kafka's names. Prints where it listens and where the data
lives on its first line, and stops cleanly (flushing every log) on SIGINT or SIGTERM.

Once the broker listens it starts the web console (``strom console``) as a child process on
``--console-port``, unless told ``--no-console``: the console is only a client of the broker, and in a process
of its own it adds nothing to the broker's memory. The console stops with the broker; a console that cannot
start is reported as a warning and the broker goes on without it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from strom import __version__
from strom.console import DEFAULT_CONSOLE_PORT

if TYPE_CHECKING:
    from strom.metadata.properties import BrokerConfig

DEFAULT_DATA_DIR = "./strom-data"
# How long the console gets to stop after the broker has; then it is killed.
CONSOLE_STOP_TIMEOUT_S = 5.0
# A broker listening on every address is reached by its console on the loopback one.
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

logger = logging.getLogger("strom.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", type=Path, help="a Kafka server.properties file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 9092; 0 picks a free port)")
    parser.add_argument("--data-dir", type=Path, help=f"log directory (log.dirs; default {DEFAULT_DATA_DIR})")
    parser.add_argument("--node-id", type=int, help="node.id (default 1)")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any broker config, by Kafka name",
    )
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    parser.add_argument(
        "--console-port",
        type=int,
        default=DEFAULT_CONSOLE_PORT,
        help=f"port of the web console on 127.0.0.1 (default {DEFAULT_CONSOLE_PORT})",
    )
    parser.add_argument("--no-console", action="store_true", help="do not start the web console")


def run(args: argparse.Namespace) -> int:
    from strom.metadata.configs import ConfigError
    from strom.metadata.properties import BrokerConfig, load_properties, with_single_node_defaults

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        props = load_properties(args.config) if args.config else {}
        for item in args.override:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"override {item!r} is not KEY=VALUE")
            props[key.strip()] = value.strip()
        host = args.host or "127.0.0.1"
        port = 9092 if args.port is None else args.port
        if args.host or args.port is not None or "listeners" not in props:
            props["listeners"] = f"PLAINTEXT://{host}:{port}"
        if args.data_dir:
            props["log.dirs"] = str(args.data_dir)
        props.setdefault("log.dirs", DEFAULT_DATA_DIR)
        if args.node_id is not None:
            props["node.id"] = str(args.node_id)
        config = BrokerConfig(with_single_node_defaults(props))
    except (OSError, ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvloop

    try:
        return uvloop.run(_serve(config, None if args.no_console else args.console_port))
    except KeyboardInterrupt:
        return 0


async def _serve(config: BrokerConfig, console_port: int | None) -> int:
    from strom.server.broker import Broker
    from strom.server.listener import run_broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = config.listener()[0]
    consoles: list[asyncio.Task[None]] = []

    def announce(broker: Broker, bound_port: int) -> None:
        print(f"Strom {__version__} listening on {host}:{bound_port}, data in {broker.log_dir}", flush=True)
        if console_port is not None:
            consoles.append(
                asyncio.create_task(_run_console(_bootstrap_address(host, bound_port), console_port, stop))
            )

    try:
        await run_broker(config, stop, announce)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{config.listener()[1]}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        stop.set()  # however the broker ended, its console ends too
        await asyncio.gather(*consoles)
    return 0


async def _run_console(bootstrap: str, port: int, stop: asyncio.Event) -> None:
    """Run ``strom console`` for this broker until ``stop`` is set (or cancelled), then stop it; warn if it
    ends by itself while the broker runs (a Ctrl-C reaches both processes, so the console may stop first)."""
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "strom.cli.main",
            "console",
            "--bootstrap-server",
            bootstrap,
            "--port",
            str(port),
            "--parent-pid",
            str(os.getpid()),
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        logger.warning("cannot start the console: %s; the broker goes on without it", exc)
        return
    exited = asyncio.create_task(process.wait())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        # Stopped alongside the broker's own shutdown rather than after it.
        await _stop_process(process)
    if not stop.is_set():
        logger.warning(
            "the console on port %d exited with status %d; the broker goes on without it",
            port,
            process.returncode,
        )


async def _stop_process(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), CONSOLE_STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def _bootstrap_address(host: str, port: int) -> str:
    """How the console reaches this broker: its listener's address, the loopback one for a wildcard."""
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
