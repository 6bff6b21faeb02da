"""Toolkit latency benchmark: how soon a committed event reaches its handler, and what a poison record costs.

1. Post-commit latency. A service commits a business transaction that adds an outbox row (SQLite, one row
   per transaction, as the order service does); the ``OutboxRelay`` publishes it as soon as the commit
   wakes it, and a ``ConsumerApp`` handler receives it. The relay's publisher has ``linger.ms`` 0
   (``--relay-linger-ms``), as in the example: the relay hands the producer whole batches itself, so
   lingering only delays each round. The latency of one event runs from the return of ``commit()`` to the
   handler's first line; ``--events`` events (default 2,000) at ``--rate`` per second (default 200),
   p50 / p99 / max printed. Target: p99 <= 50 ms (the seed's poller runs every 5 s, so its events wait
   2.5 s on average before they are even sent).

2. Poison cost. A record whose handler keeps failing must not hold up its partition for more than one
   in-process retry cycle: after ``attempts`` tries (with the policy's backoffs between them) it moves to
   a retry topic and the partition goes on. Pairs of records are published to one partition — a poison
   record then a good one, or (the baseline) two good ones — and the good record's publish-to-handler
   latency is measured; the added delay is the median difference. Target: at most the policy's in-process
   backoff total plus 100 ms (the move to the retry topic, an acks=all publish). A poison record raising
   ``NonRetryableError`` is measured too: it skips the backoffs and goes straight to the DLT.

Starts a Strom (``strom serve``) in a temporary directory unless ``--bootstrap`` names a broker. Not a test.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import MetaData, create_engine
from sqlalchemy.orm import Session, sessionmaker

from strom.testing.process import StromProcess
from strom.toolkit.consumer import ConsumerApp, Message, consumer
from strom.toolkit.outbox import Outbox, OutboxRelay
from strom.toolkit.publisher import Publisher
from strom.toolkit.retry import NonRetryableError, RetryPolicy

TIMEOUT_S = 30.0
LATENCY_TARGET_P99_S = 0.050
# What moving a record to its retry topic may cost beyond the backoffs: one acks=all publish and its ack.
POISON_MOVE_ALLOWANCE_S = 0.100
POISON_POLICY = RetryPolicy(attempts=3, backoff_s=0.1, max_backoff_s=1.0, retry_topic_delays_s=(30.0,))


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=TIMEOUT_S)
    return name


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile of the samples."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Arrivals:
    """When the handler first saw each record, by id; ``wait_for`` blocks until an id has arrived."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._changed = threading.Condition()

    def record(self, record_id: str) -> None:
        now = time.perf_counter()
        with self._changed:
            self._seen.setdefault(record_id, now)
            self._changed.notify_all()

    def wait_for(self, record_id: str) -> float:
        with self._changed:
            if not self._changed.wait_for(lambda: record_id in self._seen, timeout=TIMEOUT_S):
                raise TimeoutError(f"record {record_id} did not reach its handler in {TIMEOUT_S:g} s")
            return self._seen[record_id]


def measure_post_commit_latency(
    bootstrap: str, folder: Path, events: int, rate: float, relay_linger_ms: int, app_options: dict[str, Any]
) -> list[float]:
    """Commit ``events`` outbox rows at ``rate`` per second; each one's commit-to-handler seconds."""
    topic = create_topic(bootstrap, f"latency-{uuid.uuid4().hex[:8]}", partitions=3)
    engine = create_engine(f"sqlite:///{folder / 'outbox.db'}")
    metadata = MetaData()
    outbox = Outbox(metadata=metadata)
    metadata.create_all(engine)
    sessions = sessionmaker(engine)
    arrivals = Arrivals()

    @consumer(topic, group_id=f"latency-{uuid.uuid4().hex[:8]}")
    def handle(message: Message[bytes]) -> None:
        arrivals.record(message.key.decode() if message.key else "")

    publisher = Publisher({"linger.ms": relay_linger_ms}, bootstrap_servers=bootstrap).start()
    relay = OutboxRelay(engine, publisher, outbox=outbox)
    app = ConsumerApp({"bootstrap.servers": bootstrap}, [handle], **app_options)
    committed: dict[str, float] = {}
    relay.start()
    app.start()
    try:
        warm_up = _commit_event(sessions, outbox, topic, "warm-up")
        arrivals.wait_for(warm_up)
        interval = 1.0 / rate
        next_at = time.perf_counter()
        for number in range(events):
            next_at += interval
            record_id = f"event-{number}"
            _commit_event(sessions, outbox, topic, record_id)
            committed[record_id] = time.perf_counter()
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        return [arrivals.wait_for(record_id) - at for record_id, at in committed.items()]
    finally:
        app.stop()
        relay.stop()
        publisher.close()
        engine.dispose()


def _commit_event(sessions: sessionmaker[Session], outbox: Outbox, topic: str, record_id: str) -> str:
    with sessions.begin() as session:
        outbox.add(
            session,
            topic=topic,
            payload={"id": record_id},
            aggregate_type="bench",
            aggregate_id=record_id,
            event_type="bench.event",
            key=record_id,
        )
    return record_id


@dataclass(frozen=True)
class PoisonFigures:
    baseline_s: float  # median publish-to-handler latency of a good record behind a good one
    retryable_s: float  # ... behind a poison record that is retried in process, then moved on
    non_retryable_s: float  # ... behind a poison record that goes straight to the DLT


def measure_poison_cost(bootstrap: str, pairs: int, app_options: dict[str, Any]) -> PoisonFigures:
    """Median latency of a good record published right behind a good, a poison and a permanent poison one."""
    topic = create_topic(bootstrap, f"poison-{uuid.uuid4().hex[:8]}")
    arrivals = Arrivals()

    @consumer(topic, group_id=f"poison-{uuid.uuid4().hex[:8]}")
    def handle(message: Message[bytes]) -> None:
        kind = message.value.split(b":", 1)[0] if message.value else b""
        if message.attempt > 1:
            return  # the retry topic's copy: nothing to measure there
        if kind == b"poison":
            raise RuntimeError("this record always fails")
        if kind == b"permanent":
            raise NonRetryableError("this record can never succeed")
        arrivals.record(message.value.decode() if message.value else "")

    publisher = Publisher(bootstrap_servers=bootstrap).start()
    app = ConsumerApp({"bootstrap.servers": bootstrap}, [handle], retry=POISON_POLICY, **app_options)
    app.start()
    try:
        publisher.publish(topic, b"good:warm-up", partition=0)
        arrivals.wait_for("good:warm-up")
        samples: dict[str, list[float]] = {"good": [], "poison": [], "permanent": []}
        for number in range(pairs):
            for lead in samples:
                good = f"good:{lead}-{number}"
                started = time.perf_counter()
                publisher.publish_async(topic, f"{lead}:{number}".encode(), partition=0)
                publisher.publish(topic, good.encode(), partition=0)
                samples[lead].append(arrivals.wait_for(good) - started)
        return PoisonFigures(*(statistics.median(samples[lead]) for lead in ("good", "poison", "permanent")))
    finally:
        app.stop()
        publisher.close()


def report(latencies: list[float], poison: PoisonFigures) -> bool:
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    latency_ok = p99 <= LATENCY_TARGET_P99_S
    backoff_total = sum(POISON_POLICY.backoff(tries) for tries in range(1, POISON_POLICY.attempts))
    retry_added = poison.retryable_s - poison.baseline_s
    permanent_added = poison.non_retryable_s - poison.baseline_s
    poison_ok = retry_added <= backoff_total + POISON_MOVE_ALLOWANCE_S
    print(
        f"post-commit latency, {len(latencies)} events: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms  (target p99 <= {LATENCY_TARGET_P99_S * 1000:.0f} ms: "
        f"{'PASS' if latency_ok else 'FAIL'})"
    )
    print(f"good record behind a good one: {poison.baseline_s * 1000:.1f} ms (median)")
    print(
        f"behind a poison record: +{retry_added * 1000:.1f} ms; the policy's in-process backoffs total "
        f"{backoff_total * 1000:.0f} ms ({POISON_POLICY.attempts} tries)  (target <= backoffs + "
        f"{POISON_MOVE_ALLOWANCE_S * 1000:.0f} ms: {'PASS' if poison_ok else 'FAIL'})"
    )
    print(f"behind a non-retryable poison record: +{permanent_added * 1000:.1f} ms (straight to the DLT)")
    return latency_ok and poison_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="measure this broker instead of starting one")
    parser.add_argument(
        "--events", type=int, default=2000, help="outbox events for the latency (default 2000)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="events committed per second (default 200)")
    parser.add_argument("--pairs", type=int, default=20, help="record pairs per poison case (default 20)")
    parser.add_argument(
        "--relay-linger-ms",
        type=int,
        default=0,
        help="linger.ms of the relay's publisher (default 0, as in the example; the Publisher's is 5)",
    )
    parser.add_argument(
        "--poll-timeout-s",
        type=float,
        help="ConsumerApp(poll_timeout_s=...); the framework's default if not given",
    )
    args = parser.parse_args(argv)
    app_options: dict[str, Any] = {}
    if args.poll_timeout_s is not None:
        app_options["poll_timeout_s"] = args.poll_timeout_s
    with tempfile.TemporaryDirectory(prefix="strom-toolkit-bench-") as folder:
        broker = None if args.bootstrap else StromProcess(Path(folder) / "data").start()
        bootstrap: str = args.bootstrap if broker is None else broker.bootstrap
        try:
            latencies = measure_post_commit_latency(
                bootstrap, Path(folder), args.events, args.rate, args.relay_linger_ms, app_options
            )
            poison = measure_poison_cost(bootstrap, args.pairs, app_options)
        finally:
            if broker is not None:
                broker.stop()
    return 0 if report(latencies, poison) else 1


if __name__ == "__main__":
    sys.exit(main())
