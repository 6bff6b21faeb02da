"""``strom console``: serve the web console for a Kafka cluster (Strom's or any other) until interrupted.

The console is only a client of the cluster, so it runs as its own process; ``strom serve`` starts one
beside its broker and passes ``--parent-pid``, so the console also ends when the broker is killed rather
than stopped. Its first stdout line says where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from strom.cli.client import CliError, add_client_arguments, create_client
from strom.console import DEFAULT_CONSOLE_HOST, DEFAULT_CONSOLE_PORT

if TYPE_CHECKING:
    from aiohttp import web

    from strom.console.cluster import ClusterView

TOKEN_ENV = "STROM_CONSOLE_TOKEN"
# How often a console started by `strom serve` checks that its broker still runs.
PARENT_CHECK_INTERVAL_S = 1.0
# The sampler's thread is a daemon: on the way out, a sample in progress gets this long, then is abandoned.
SAMPLER_STOP_TIMEOUT_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_client_arguments(parser)
    parser.add_argument(
        "--host", default=DEFAULT_CONSOLE_HOST, help=f"address to listen on (default {DEFAULT_CONSOLE_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_CONSOLE_PORT,
        help=f"port to listen on (default {DEFAULT_CONSOLE_PORT}; 0 picks a free port)",
    )
    parser.add_argument("--read-only", action="store_true", help="refuse every change to the cluster")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"require 'Authorization: Bearer TOKEN' on the API (default: ${TOKEN_ENV}, if set)",
    )
    auth.add_argument("--basic-auth", metavar="USER:PASSWORD", help="require HTTP basic auth on the API")
    parser.add_argument("--log-level", default="WARNING", help="Python logging level (default WARNING)")
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from strom.console.api import ApiSettings
    from strom.console.app import Credentials, create_app
    from strom.console.cluster import ClusterView
    from strom.console.metrics import Sampler

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.verbose:
        # The cluster view hands librdkafka's log lines to its own logger.
        logging.getLogger(ClusterView.__module__).setLevel(logging.DEBUG)
    try:
        if args.basic_auth is not None:
            credentials: Credentials | None = Credentials.basic(args.basic_auth)
        elif args.token is not None:
            credentials = Credentials.token(args.token)
        else:
            credentials = None
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, not {args.port}", exit_code=2)

    cluster = create_client(
        lambda config: ClusterView(args.bootstrap_server, config=config, timeout_s=args.timeout),
        dict(args.client_properties),
    )
    sampler = Sampler(cluster).start()
    threading.Thread(target=_warm_up, args=(cluster,), name="console-warm-up", daemon=True).start()
    settings = ApiSettings(read_only=args.read_only)
    app = create_app(cluster, sampler=sampler, settings=settings, credentials=credentials)
    try:
        return asyncio.run(_serve(app, args))
    except KeyboardInterrupt:
        return 0
    finally:
        sampler.stop(timeout_s=SAMPLER_STOP_TIMEOUT_S)
        cluster.close()


def _warm_up(cluster: ClusterView) -> None:
    try:
        cluster.warm_up()
    except Exception as exc:  # the cluster may be down yet: the first page then pays for the consumer
        logging.getLogger(__name__).info("could not warm up the browse consumer: %s", exc)


async def _serve(app: web.Application, args: argparse.Namespace) -> int:
    from strom.console.app import serve_console

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = (
        None if args.parent_pid is None else asyncio.create_task(_stop_with_parent(args.parent_pid, stop))
    )

    def announce(host: str, port: int) -> None:
        shown_host = f"[{host}]" if ":" in host else host
        print(
            f"Strom console listening on http://{shown_host}:{port} for {args.bootstrap_server}",
            flush=True,
        )

    try:
        await serve_console(app, args.host, args.port, stop, announce)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return 0


async def _stop_with_parent(parent_pid: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once the process that started the console is gone (the console was re-parented)."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(PARENT_CHECK_INTERVAL_S)
    stop.set()
