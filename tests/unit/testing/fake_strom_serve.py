"""A stand-in for ``strom serve`` that StromProcess can drive without a real broker.

Run as ``fake_strom_serve.py serve [CONFIG] --host H --port P --data-dir D [--node-id N] [-o K=V ...]``.
``FAKE_SERVE_MODE`` picks its behaviour: ``serve`` (default: listen, announce, exit 0 on SIGTERM), ``crash``
(complain on stderr and exit 3), ``mute`` (never announce), ``garble`` (announce something else),
``stubborn`` (announce, then ignore SIGTERM). It echoes its arguments on stderr so tests can check them.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("config", nargs="?")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--node-id")
    parser.add_argument("-o", dest="overrides", action="append", default=[])
    parser.add_argument("--no-console", action="store_true")
    parser.add_argument("--console-port", type=int)
    args = parser.parse_args()
    mode = os.environ.get("FAKE_SERVE_MODE", "serve")
    print(f"argv: {sys.argv[1:]}", file=sys.stderr, flush=True)

    if mode == "crash":
        print("fatal: cannot open the log directory", file=sys.stderr, flush=True)
        return 3
    if mode == "mute":
        print("starting very slowly", file=sys.stderr, flush=True)
        time.sleep(60)
        return 0

    stopping = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = mode != "stubborn"

    # Installed before announcing, as a real broker does, so an early SIGTERM is handled too.
    signal.signal(signal.SIGTERM, on_sigterm)

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((args.host, args.port))
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr, flush=True)
        return 1
    listener.listen()
    port = listener.getsockname()[1]
    if mode == "garble":
        print("hello there", flush=True)
    else:
        print(f"Strom 0.1.0 listening on {args.host}:{port}, data in {args.data_dir.resolve()}", flush=True)
    print("a later stdout line", flush=True)

    while not stopping:
        time.sleep(0.02)
    print("stopped cleanly", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
