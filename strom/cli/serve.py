"""`strom serve`: run a single-node broker in the foreground.

Configuration comes from an optional Kafka `server.properties` file, then `-o key=value` overrides, then
the flags, each overriding the one before, all with Kafka's names. Prints where it listens and where the data
lives on its first line, and stops cleanly (flushing every log) on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from strom import __version__

if TYPE_CHECKING:
    from strom.metadata.properties import BrokerConfig

DEFAULT_DATA_DIR = "./strom-data"


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
        return uvloop.run(_serve(config))
    except KeyboardInterrupt:
        return 0


async def _serve(config: BrokerConfig) -> int:
    from strom.server.broker import Broker
    from strom.server.listener import run_broker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = config.listener()[0]

    def announce(broker: Broker, bound_port: int) -> None:
        print(f"Strom {__version__} listening on {host}:{bound_port}, data in {broker.log_dir}", flush=True)

    try:
        await run_broker(config, stop, announce)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{config.listener()[1]}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
