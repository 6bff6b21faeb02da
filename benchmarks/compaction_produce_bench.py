"""Produce throughput while the log cleaner works: idle broker vs one busy compacting a large dirty log.

A broker is started with the cleaner disabled and a compacted topic is filled with ``--dirty-mb`` of updates
over ``--keys`` keys; then it restarts with the cleaner enabled, which starts cleaning that topic within a
second. Produce throughput (confluent-kafka, acks=all, ``--records`` records of ``--size`` bytes to another
topic, median of ``--repeat`` runs) is measured on the idle broker first and then while the cleaner runs.
Prints both, the drop in % (target <= 10%), and whether the cleaner was still busy at the end of each run.

    .venv/bin/python benchmarks/compaction_produce_bench.py --dirty-mb 300 --repeat 3
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

TARGET_DROP_PERCENT = 10.0


def create_topic(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(30)


def produce(bootstrap: str, topic: str, count: int, size: int, keys: int | None = None) -> float:
    """Records per second for ``count`` acks=all records (keyed round-robin over ``keys`` when given)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 256 * 1024}
    )
    value = b"v" * size
    started = time.perf_counter()
    for i in range(count):
        key = b"key-%d" % (i % keys) if keys else None
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=0)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    return count / (time.perf_counter() - started)


def cleaning(broker: StromProcess, topic: str) -> bool:
    """Whether a cleaning of ``topic`` is under way: its worker's output files exist."""
    directory = next(broker.data_dir.rglob(f"{topic}-0"))
    return any(directory.glob("*.cleaned"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dirty-mb", type=int, default=300, help="dirty compacted log to prepare")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=100_000, help="records per measured produce run")
    parser.add_argument("--size", type=int, default=200, help="value bytes of measured records")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        broker = StromProcess(data, {"log.cleaner.enable": "false"}).start()
        dirty_topic, bench_topic = f"dirty-{uuid.uuid4().hex[:6]}", f"bench-{uuid.uuid4().hex[:6]}"
        create_topic(
            broker.bootstrap,
            dirty_topic,
            {"cleanup.policy": "compact", "segment.ms": "1000", "min.cleanable.dirty.ratio": "0.01"},
        )
        create_topic(broker.bootstrap, bench_topic, {})
        value_size = 1000
        produce(
            broker.bootstrap, dirty_topic, args.dirty_mb * 1024 * 1024 // value_size, value_size, args.keys
        )
        print(f"prepared {args.dirty_mb} MB of dirty compacted log", file=sys.stderr)

        idle = [produce(broker.bootstrap, bench_topic, args.records, args.size) for _ in range(args.repeat)]
        time.sleep(2)  # the dirty topic's active segment rolls (segment.ms) so all of it is cleanable
        broker.stop()
        broker = StromProcess(data, {"log.cleaner.enable": "true"}).start()
        deadline = time.monotonic() + 30
        while not cleaning(broker, dirty_topic) and time.monotonic() < deadline:
            time.sleep(0.05)
        busy: list[float] = []
        still_cleaning: list[bool] = []
        for _ in range(args.repeat):
            busy.append(produce(broker.bootstrap, bench_topic, args.records, args.size))
            still_cleaning.append(cleaning(broker, dirty_topic))
        broker.stop()

    idle_median, busy_median = statistics.median(idle), statistics.median(busy)
    drop = 100.0 * (idle_median - busy_median) / idle_median
    runs = {
        name: ", ".join(f"{rate:,.0f}" for rate in rates) for name, rates in (("idle", idle), ("busy", busy))
    }
    print(f"produce, idle broker:      {idle_median:12,.0f} records/s  (runs: {runs['idle']})")
    print(f"produce, cleaner running:  {busy_median:12,.0f} records/s  (runs: {runs['busy']})")
    print(f"drop: {drop:.1f}% (target <= {TARGET_DROP_PERCENT:.0f}%)")
    print(f"cleaner still busy at the end of each run: {still_cleaning}")


if __name__ == "__main__":
    main()
