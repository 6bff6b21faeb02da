"""Recovery after kill -9: how long a broker holding GBs in many partitions takes to serve again.

The data is built fast: the topics are created through a running broker, which then stops; the partition
logs are filled offline through strom.log's own LogManager (appends of large batches, flushed and closed as
the broker would); the broker starts on them. Then, for each run: produce a little to every partition, wait a
moment (so kills land at various points of the flusher's cycle), SIGKILL the broker, and time a restart until
it serves: the first Metadata answer listing every partition AND a ListOffsets for every partition answered
without error. The figure is the median over the runs (target: <= 5 s for 10 GB in 1,000 partitions).

    python benchmarks/recovery_bench.py                   # 10 GB, 1,000 partitions (needs ~11 GB free)
    python benchmarks/recovery_bench.py --gb 1 --runs 3   # a quick one

The data directory is created under --dir (default: the system temp dir) and removed at the end unless
--keep is given; --reuse DIR skips building and runs against a directory kept before.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.log import LogConfig, LogManager
from strom.protocol.client import BrokerConnection, BrokerConnectionError
from strom.protocol.messages import list_offsets, metadata
from strom.protocol.record_batch import Record, build_batch
from strom.testing.process import StromProcess

GB = 1_000_000_000
MB = 1_000_000
TOPIC_PREFIX = "recovery"
RECORD_BYTES = 1000
SERVE_TIMEOUT_S = 300.0
LIST_OFFSETS_VERSION = 1
METADATA_VERSION = 1
LATEST = -1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=10.0, help="data to hold, in GB (10^9 bytes)")
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=10, help="the partitions are spread over this many")
    parser.add_argument("--batch-kb", type=int, default=256, help="size of each appended batch")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--reuse", type=Path, help="a data directory kept by an earlier run (skips building)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("-o", dest="overrides", action="append", default=[], help="broker config KEY=VALUE")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.overrides)
    topics = {f"{TOPIC_PREFIX}-{i}": args.partitions // args.topics for i in range(args.topics)}

    if args.reuse:
        data_dir = args.reuse
    else:
        needed = int(args.gb * GB * 1.1)
        free = shutil.disk_usage(args.dir).free
        if free < needed:
            print(
                f"error: {args.gb:g} GB needs ~{needed / GB:.1f} GB free in {args.dir}; {free / GB:.1f} GB is"
            )
            return 2
        data_dir = Path(tempfile.mkdtemp(prefix="strom-recovery-", dir=args.dir)) / "data"
    try:
        if not args.reuse:
            build(data_dir, topics, overrides, args.gb, args.batch_kb * 1024)
        seconds = measure(data_dir, topics, overrides, args.runs, random.Random(args.seed))
    finally:
        if not args.keep and not args.reuse:
            shutil.rmtree(data_dir.parent, ignore_errors=True)
    held = sum(f.stat().st_size for f in data_dir.rglob("*.log")) / GB if data_dir.exists() else args.gb
    print(
        f"recovery after kill -9: {held:.2f} GB in {sum(topics.values())} partitions: serving in "
        f"{statistics.median(seconds):.2f} s (median of {len(seconds)}: "
        f"{', '.join(f'{s:.2f}' for s in seconds)})"
    )
    return 0


def build(
    data_dir: Path, topics: dict[str, int], overrides: dict[str, str], gb: float, batch_bytes: int
) -> None:
    """Create the topics through the broker, stop it, and fill every partition offline."""
    broker = StromProcess(data_dir, overrides)
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        futures = admin.create_topics([NewTopic(name, count, 1) for name, count in topics.items()])
        for future in futures.values():
            future.result(timeout=120)
    finally:
        broker.stop()

    started = time.perf_counter()
    records = [
        Record(offset_delta=i, timestamp_delta=0, key=None, value=os.urandom(RECORD_BYTES))
        for i in range(max(batch_bytes // (RECORD_BYTES + 10), 1))
    ]
    batch = build_batch(records, base_timestamp=int(time.time() * 1000))
    partitions = sum(topics.values())
    per_partition = int(gb * GB) // partitions
    manager = LogManager(data_dir, default_config=LogConfig())
    manager.load()
    written = 0
    for log in manager.logs():
        if not log.topic.startswith(TOPIC_PREFIX):
            continue
        while log.size_bytes() < per_partition:
            log.append(memoryview(bytearray(batch)))
        written += log.size_bytes()
    manager.close()
    elapsed = time.perf_counter() - started
    print(
        f"built {written / GB:.2f} GB in {partitions} partitions in {elapsed:.1f} s "
        f"({written / MB / elapsed:.0f} MB/s)"
    )


def measure(
    data_dir: Path, topics: dict[str, int], overrides: dict[str, str], runs: int, rng: random.Random
) -> list[float]:
    """Start the broker; then per run: produce a little everywhere, kill -9, time the restart."""
    broker = StromProcess(data_dir, overrides, startup_timeout=SERVE_TIMEOUT_S)
    started = time.perf_counter()
    broker.start()
    print(f"first start (clean): serving in {wait_serving(broker.port, topics, started):.2f} s")
    seconds = []
    try:
        for run in range(runs):
            produce_a_little(broker.bootstrap, topics)
            time.sleep(rng.uniform(0.2, 1.5))
            broker.kill()
            started = time.perf_counter()
            broker.start()
            seconds.append(wait_serving(broker.port, topics, started))
            print(f"run {run + 1}: serving {seconds[-1]:.2f} s after the restart")
    finally:
        if broker.running:
            broker.stop()
    return seconds


def produce_a_little(bootstrap: str, topics: dict[str, int]) -> None:
    """A few records to every partition, acknowledged by all (what the crash must not lose)."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for name, count in topics.items():
        for partition in range(count):
            for _ in range(3):
                producer.produce(name, os.urandom(RECORD_BYTES), partition=partition)
    if producer.flush(120):
        raise RuntimeError("produce did not complete")


def wait_serving(port: int, topics: dict[str, int], started: float) -> float:
    """Seconds from ``started`` until Metadata lists every partition with a leader and ListOffsets answers
    for every partition without error."""
    deadline = started + SERVE_TIMEOUT_S
    while time.perf_counter() < deadline:
        try:
            with BrokerConnection("127.0.0.1", port, timeout=SERVE_TIMEOUT_S) as conn:
                if _serves(conn, topics):
                    return time.perf_counter() - started
        except BrokerConnectionError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"not serving within {SERVE_TIMEOUT_S:g} s")


def _serves(conn: BrokerConnection, topics: dict[str, int]) -> bool:
    request = metadata.MetadataRequest(
        topics=[metadata.MetadataRequest.MetadataRequestTopic(name=name) for name in topics]
    )
    answer = conn.call(metadata.API_KEY, METADATA_VERSION, request)
    led = sum(1 for t in answer.topics if t.error_code == 0 for p in t.partitions if p.leader_id >= 0)
    if led < sum(topics.values()):
        return False
    request = list_offsets.ListOffsetsRequest(
        replica_id=-1,
        topics=[
            list_offsets.ListOffsetsRequest.ListOffsetsTopic(
                name=name,
                partitions=[
                    list_offsets.ListOffsetsRequest.ListOffsetsPartition(partition_index=p, timestamp=LATEST)
                    for p in range(count)
                ],
            )
            for name, count in topics.items()
        ],
    )
    answer = conn.call(list_offsets.API_KEY, LIST_OFFSETS_VERSION, request)
    return all(p.error_code == 0 and p.offset > 0 for t in answer.topics for p in t.partitions)


if __name__ == "__main__":
    sys.exit(main())
