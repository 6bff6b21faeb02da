"""Group-commit fsync: produce throughput with flush.messages=1 (every acknowledgement waits for an fsync)
against the default (background fsync every second, acknowledgements do not wait).

Several concurrent confluent-kafka producers (acks=all, one process each) write to a fresh topic on a fresh
`strom serve`; per mode, the median of --repeat runs is printed, with the fsyncs the broker did against the
record batches it stored: with group commit one fsync pass serves many producers' batches, so the ratio of
fsync passes to batches stays well below 1. Not a test.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.process import StromProcess

TIMEOUT_S = 60.0
TOPIC = "flush-bench"
#: `strom serve` with INFO logging, so the broker's shutdown line reports its flusher's counters.
_SERVE_WITH_INFO_LOGS = (
    "import sys; from strom.cli.main import main; "
    "sys.exit(main([sys.argv[1], '--log-level', 'INFO', *sys.argv[2:]]))"
)
_FLUSHER_LINE = re.compile(r"flusher: (\d+) fsync passes, (\d+) fsyncs")
_BATCH_PREFIX = struct.Struct(">qi")  # base offset, batch length


def _produce(bootstrap: str, messages: int, size: int, partitions: int, start: multiprocessing.Event) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    value = b"x" * size
    producer.produce(TOPIC, value)  # connected and warmed up before the clock starts
    producer.flush(TIMEOUT_S)
    start.wait()
    for i in range(messages):
        while True:
            try:
                producer.produce(TOPIC, value, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.005)
    if producer.flush(TIMEOUT_S * 10):
        raise RuntimeError("messages left undelivered")


def _stored_batches(data_dir: Path) -> int:
    batches = 0
    for segment in data_dir.glob(f"{TOPIC}-*/*.log"):
        data = segment.read_bytes()
        position = 0
        while position + _BATCH_PREFIX.size <= len(data):
            _, length = _BATCH_PREFIX.unpack_from(data, position)
            position += _BATCH_PREFIX.size + length
            batches += 1
    return batches


def run_once(flush_messages: bool, args: argparse.Namespace) -> tuple[float, int, int]:
    """(messages/s, fsync passes, stored batches) of one run on a fresh broker."""
    with tempfile.TemporaryDirectory(prefix="flush-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        broker = StromProcess(data_dir, command=[sys.executable, "-c", _SERVE_WITH_INFO_LOGS]).start()
        try:
            configs = {"flush.messages": "1"} if flush_messages else {}
            admin = AdminClient({"bootstrap.servers": broker.bootstrap})
            admin.create_topics([NewTopic(TOPIC, args.partitions, 1, config=configs)])[TOPIC].result(
                TIMEOUT_S
            )
            context = multiprocessing.get_context("spawn")
            start = context.Event()
            workers = [
                context.Process(
                    target=_produce, args=(broker.bootstrap, args.messages, args.size, args.partitions, start)
                )
                for _ in range(args.producers)
            ]
            for worker in workers:
                worker.start()
            time.sleep(3)  # every producer connected and warmed up
            started = time.perf_counter()
            start.set()
            for worker in workers:
                worker.join()
                if worker.exitcode:
                    raise RuntimeError(f"a producer failed with status {worker.exitcode}")
            rate = args.producers * args.messages / (time.perf_counter() - started)
        finally:
            broker.stop()
        found = _FLUSHER_LINE.findall(broker.read_log())
        passes = int(found[-1][0]) if found else -1
        return rate, passes, _stored_batches(data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--messages", type=int, default=50_000, help="per producer")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(
        f"{args.producers} producers x {args.messages} messages of {args.size} B, acks=all, "
        f"{args.partitions} partitions, median of {args.repeat}"
    )
    rates = {}
    for name, flush_messages in (("default (flush.ms=1000, background)", False), ("flush.messages=1", True)):
        runs = [run_once(flush_messages, args) for _ in range(args.repeat)]
        rate = statistics.median(r[0] for r in runs)
        passes, batches = runs[-1][1], runs[-1][2]
        rates[flush_messages] = rate
        print(
            f"{name:40s} {rate:12,.0f} msg/s   fsync passes {passes:7,d} / batches {batches:8,d}"
            f" = {passes / max(batches, 1):.3f}"
        )
    print(f"flush.messages=1 keeps {rates[True] / rates[False]:.0%} of the default's throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
