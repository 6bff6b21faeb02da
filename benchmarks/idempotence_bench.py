"""Idempotence overhead: 1M × 100-byte messages with acks=all, plain vs enable.idempotence=true.

Issue 4's target: the idempotent run reaches at least 90 % of the plain one. Runs alternate (plain,
idempotent, plain, ...) on fresh 1-partition topics so both see the same machine noise; the medians and
their ratio are printed. Starts a Strom in a temporary directory unless ``--bootstrap`` names a broker.
Not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.process import StromProcess

TIMEOUT_S = 30.0


def produce_rate(bootstrap: str, messages: int, size: int, idempotent: bool) -> float:
    """Messages per second from the first timed produce() until flush() returns, to a fresh topic."""
    topic = f"idempotence-bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=TIMEOUT_S)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all", "enable.idempotence": idempotent}
    )
    value = b"x" * size
    # One delivered message first, for both: the clock measures producing, not the connection set-up and (for
    # the idempotent producer) the producer-id handshake, which happen once per producer.
    producer.produce(topic, value)
    if producer.flush(TIMEOUT_S):
        raise RuntimeError("the warm-up message was not delivered")
    started = time.perf_counter()
    for _ in range(messages):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(TIMEOUT_S * 10):
        raise RuntimeError("messages left undelivered")
    return messages / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start Strom)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        broker = None if args.bootstrap else StromProcess(Path(folder) / "data").start()
        bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
        try:
            rates: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeat):
                for idempotent in (False, True):
                    rates[idempotent].append(produce_rate(bootstrap, args.messages, args.size, idempotent))
        finally:
            if broker is not None:
                broker.stop()
    plain, idempotent = statistics.median(rates[False]), statistics.median(rates[True])
    ratio = idempotent / plain
    print(f"plain acks=all        {plain:12,.0f} msg/s")
    print(f"idempotent acks=all   {idempotent:12,.0f} msg/s")
    print(f"ratio                 {ratio:12.2f}   target >= 0.90   {'PASS' if ratio >= 0.9 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
