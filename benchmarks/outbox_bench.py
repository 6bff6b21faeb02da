"""Outbox relay throughput: committed outbox rows published and marked sent per second, on SQLite and on
PostgreSQL, against a Strom broker it starts (or ``--bootstrap``).

Each run fills a fresh outbox table with ``--events`` rows spread over ``--aggregates`` aggregates (not
timed), then times one relay from its first round until every row is marked sent, and checks that the topic
holds that many records. PostgreSQL runs as a throwaway cluster with its default durability (fsync and
synchronous commit on), SQLite as a file in WAL mode with SQLAlchemy's defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from strom.testing.postgres import PostgresServer
from strom.testing.process import StromProcess
from strom.toolkit.outbox import Outbox, OutboxRelay
from strom.toolkit.publisher import Publisher

TARGET_EVENTS_PER_S = 5000.0
PARTITIONS = 6
_INSERT_CHUNK = 2000
_DEADLINE_S = 300.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=20000, help="outbox rows per run (default 20000)")
    parser.add_argument("--aggregates", type=int, default=1000, help="aggregates they belong to (1000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="the relay's batch size (1000)")
    parser.add_argument("--payload-bytes", type=int, default=200, help="size of each event's payload (200)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per database; the median is shown (3)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["sqlite", "postgres"], help="leave one out")
    parser.add_argument("--bootstrap", help="a running broker instead of a Strom started for the benchmark")
    return parser.parse_args(argv)


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap is not None:
        yield bootstrap
        return
    with (
        tempfile.TemporaryDirectory(prefix="outbox-bench-") as base,
        StromProcess(Path(base) / "data") as strom,
    ):
        yield strom.bootstrap


@contextmanager
def sqlite_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="outbox-bench-sqlite-") as base:
        yield f"sqlite:///{Path(base) / 'outbox.db'}"


@contextmanager
def postgres_database() -> Iterator[str]:
    with PostgresServer(durable=True) as server:
        yield server.url


def create_topic(bootstrap: str) -> str:
    name = f"outbox-bench-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)])[name].result(30)
    return name


def records_in(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"outbox-bench-{uuid.uuid4().hex}"})
    try:
        total = 0
        for partition in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()


def one_run(url: str, bootstrap: str, options: argparse.Namespace) -> float:
    """Fill a fresh table, relay it all; returns events per second."""
    engine = create_engine(url)
    outbox = Outbox(table_name=f"outbox_{uuid.uuid4().hex[:8]}")
    outbox.create_table(engine)
    topic = create_topic(bootstrap)
    payload = {"note": "x" * options.payload_bytes}
    for start in range(0, options.events, _INSERT_CHUNK):
        with Session(engine) as session, session.begin():
            for n in range(start, min(start + _INSERT_CHUNK, options.events)):
                outbox.add(
                    session,
                    topic=topic,
                    payload={**payload, "seq": n},
                    aggregate_type="order",
                    aggregate_id=f"order-{n % options.aggregates}",
                    event_type="order.changed",
                )
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        relay = OutboxRelay(engine, publisher, outbox, batch_size=options.batch_size)
        relay.relay_once()  # warm-up: connections and topic metadata; its rows count, its time does not
        started = time.perf_counter()
        deadline = time.monotonic() + _DEADLINE_S
        while relay.unsent_count() > 0:
            relay.relay_once()
            if time.monotonic() > deadline:
                raise TimeoutError(f"rows still unsent after {_DEADLINE_S:g} s")
        elapsed = time.perf_counter() - started
        timed_events = options.events - min(options.batch_size, options.events)
    published = records_in(bootstrap, topic)
    if published < options.events:
        raise AssertionError(f"{published} records in the topic for {options.events} rows")
    engine.dispose()
    return timed_events / elapsed


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    databases: dict[str, Callable[[], AbstractContextManager[str]]] = {
        "sqlite": sqlite_database,
        "postgres": postgres_database,
    }
    results: dict[str, list[float]] = {}
    with ExitStack() as stack:
        bootstrap = stack.enter_context(broker(options.bootstrap))
        for name, database in databases.items():
            if name in options.skip:
                continue
            url = stack.enter_context(database())
            for run in range(options.repeat):
                rate = one_run(url, bootstrap, options)
                print(f"{name} run {run + 1}: {rate:,.0f} events/s", file=sys.stderr)
                results.setdefault(name, []).append(rate)

    print(
        f"outbox relay: {options.events:,} events, {options.aggregates:,} aggregates, "
        f"batch {options.batch_size:,}, payload {options.payload_bytes} B, {PARTITIONS} partitions"
    )
    print(f"{'database':<10} {'events/s (median)':>18} {'spread':>20}  target")
    all_pass = True
    for name, rates in results.items():
        median = statistics.median(rates)
        verdict = "PASS" if median >= TARGET_EVENTS_PER_S else "FAIL"
        all_pass &= verdict == "PASS"
        spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
        print(f"{name:<10} {median:>18,.0f} {spread:>20}  >= {TARGET_EVENTS_PER_S:,.0f}/s {verdict}")
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main())
