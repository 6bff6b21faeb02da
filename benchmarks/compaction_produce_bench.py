"""Produce throughput while the log cleaner works, against the same broker with the cleaner idle.

One broker (cleaner enabled, one worker) holds ``--repeat`` compacted topics of ``--dirty-mb`` MB each,
written while their ``min.compaction.lag.ms`` of a day made them uncleanable. Then, ``--repeat`` times: an
idle run (nothing to clean) and a busy run right after lowering one dirty topic's ``min.compaction.lag.ms`` to
0, which the cleaner picks up within a second; the busy run starts once the cleaner's worker uses CPU, and
counts only if the cleaned segments were not yet swapped in when it ends (the cleaning lasted the whole run).
Each run produces ``--records`` records of ``--size`` bytes with confluent-kafka (acks=all) to a separate
topic. Pairs of neighbouring runs cancel the machine's drift; the figure is the median over pairs of busy /
idle, with the cleaner's CPU seconds during each busy run (read from /proc) to show it really worked then.

    .venv/bin/python benchmarks/compaction_produce_bench.py [--dirty-mb 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from strom.testing.process import StromProcess

TARGET_DROP_PERCENT = 10.0
DAY_MS = str(24 * 3600 * 1000)
DIRTY_VALUE_BYTES = 100


def create_topic(admin: AdminClient, topic: str, config: dict[str, str]) -> None:
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


def segment_files(broker: StromProcess, topic: str) -> list[tuple[str, int]]:
    """Name and size of each segment file of ``topic``: they change only when a cleaning is swapped in."""
    return sorted((path.name, path.stat().st_size) for path in (broker.data_dir / f"{topic}-0").glob("*.log"))


def swapped(broker: StromProcess, topic: str, before: list[tuple[str, int]]) -> bool:
    return segment_files(broker, topic) != before


def worker_busy(pid: int, cpu_before: float) -> bool:
    """Whether the broker's children used CPU since ``cpu_before`` was read: the cleaner is working."""
    return children_cpu_seconds(pid) > cpu_before + 0.05


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the broker's child processes (the cleaner's workers), from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dirty-mb", type=int, default=200, help="dirty compacted log per busy run")
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=200_000, help="records per measured produce run")
    parser.add_argument("--size", type=int, default=200, help="value bytes of measured records")
    parser.add_argument("--repeat", type=int, default=5, help="idle/busy pairs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        broker = StromProcess(
            Path(tmp) / "data", {"log.cleaner.threads": "1", "log.cleaner.dedupe.buffer.size": "536870912"}
        ).start()
        try:
            pairs = run(broker, args)
        finally:
            broker.stop()

    ratios = [busy / idle for idle, busy, _, _ in pairs]
    counted = [ratio for ratio, (_, _, _, whole) in zip(ratios, pairs, strict=True) if whole]
    for number, (idle, busy, cpu, whole) in enumerate(pairs, 1):
        print(
            f"pair {number}: idle {idle:10,.0f} rec/s   cleaner running {busy:10,.0f} rec/s   "
            f"ratio {busy / idle:.3f}   cleaner CPU during the run {cpu:.2f} s"
            + ("" if whole else "   (cleaning ended before the run: not counted)")
        )
    if not counted:
        print("no busy run overlapped a cleaning throughout: use a larger --dirty-mb")
        return
    drop = 100.0 * (1 - statistics.median(counted))
    verdict = "PASS" if drop <= TARGET_DROP_PERCENT else "FAIL"
    print(
        f"produce drop while the cleaner runs (median of {len(counted)} pairs): {drop:.1f}% "
        f"(target <= {TARGET_DROP_PERCENT:.0f}%) {verdict}"
    )


def run(broker: StromProcess, args: argparse.Namespace) -> list[tuple[float, float, float, bool]]:
    """(idle rec/s, busy rec/s, cleaner CPU seconds during the busy run, cleaning lasted the run) per pair."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    prefix = uuid.uuid4().hex[:6]
    bench_topic = f"bench-{prefix}"
    create_topic(admin, bench_topic, {})
    dirty_topics = [f"dirty-{prefix}-{n}" for n in range(args.repeat)]
    dirty_config = {"cleanup.policy": "compact", "segment.ms": "1000", "min.compaction.lag.ms": DAY_MS}
    for topic in dirty_topics:
        create_topic(admin, topic, dirty_config)
        count = args.dirty_mb * 1_000_000 // DIRTY_VALUE_BYTES
        produce(broker.bootstrap, topic, count, DIRTY_VALUE_BYTES, args.keys)
        print(f"prepared {args.dirty_mb} MB of dirty compacted log in {topic}", file=sys.stderr)
    time.sleep(2)  # the active segments roll (segment.ms), so all of each log can be cleaned
    produce(broker.bootstrap, bench_topic, args.records, args.size)  # warm-up

    pairs = []
    for topic in dirty_topics:
        idle = produce(broker.bootstrap, bench_topic, args.records, args.size)
        lag = ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", topic, incremental_configs=[lag])
        segments = segment_files(broker, topic)
        cpu_idle = children_cpu_seconds(broker.pid)
        admin.incremental_alter_configs([resource])[resource].result(30)
        # The cleaning has started once the worker uses CPU (it is spawned with the broker's first job).
        if not wait_until(partial(worker_busy, broker.pid, cpu_idle), 30):
            raise RuntimeError(f"the cleaner did not start on {topic}")
        cpu_before = children_cpu_seconds(broker.pid)
        busy = produce(broker.bootstrap, bench_topic, args.records, args.size)
        cpu = children_cpu_seconds(broker.pid) - cpu_before
        whole = not swapped(broker, topic, segments)  # not swapped in yet: it cleaned all along
        pairs.append((idle, busy, cpu, whole))
        wait_until(partial(swapped, broker, topic, segments), 600)  # so the next idle run is idle
    return pairs


if __name__ == "__main__":
    main()
