"""Consumer-group benchmark: how fast a broker's group coordinator lets consumers start, rebalance and commit.

Three figures, each against its target:

- subscribe → first message: a fresh group's consumer (confluent-kafka) subscribes to a topic holding one
  record; seconds until that record is returned. With ``group.initial.rebalance.delay.ms=0`` (which this
  script gives the Strom it starts) the target is 0.5 s.
- a second member joins a stable group: one member consumes a steady trickle of records (3 s heartbeats,
  30 s session, the seed's settings); a second subscribes; seconds until both are consuming again. The first
  member only learns of the rebalance from its next heartbeat, so the target is the heartbeat interval plus
  0.5 s. The second member subscribes right after the first has joined and read, so that heartbeat is
  nearly a whole interval away: the figure is close to the worst case, not an average.
- commit load: 1,000 groups (``--groups``) each commit offsets for 10 partitions once a second for 20 s,
  spread evenly over each second, over a few connections (raw OffsetCommit requests with Strom's codec, the
  way a standalone consumer commits: generation -1, no member id). It reports commit latency, whether every
  commit was answered within the second it belongs to, and the broker's CPU; a sample of groups is read back
  with OffsetFetch to show the commits took.

Without ``--bootstrap`` a fresh Strom is started for the whole run in a temporary directory; with it, a
running broker is measured as it is (its own initial rebalance delay applies; ``--pid`` gives its CPU).
Progress goes to stderr, the table (or ``--json``) to stdout. Not a test: nothing here runs under pytest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rawload
from broker_bench import BrokerMonitor
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from strom.protocol.client import UnsupportedApiError
from strom.protocol.messages import find_coordinator, offset_commit
from strom.testing.process import StromProcess

PHASES = ("first-message", "second-member", "commit-load")
CLIENT_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 120.0
FIRST_MESSAGE_TARGET_S = 0.5
HEARTBEAT_INTERVAL_MS = 3000
SESSION_TIMEOUT_MS = 30000
REBALANCE_SLACK_S = 0.5
JOIN_PARTITIONS = 6
TRICKLE_INTERVAL_S = 0.02
COMMIT_PERIOD_S = 1.0
SAMPLED_GROUPS = 10
DRAIN_TIMEOUT_S = 10.0
POLL_S = 0.01

API_OFFSET_COMMIT = 8
API_FIND_COORDINATOR = 10
# OffsetCommit v2-8 carries a generation, member id and classic (non-flexible or flexible) fields alike;
# v9+ is KIP-848's. FindCoordinator v0-3 asks for one group at a time, v4+ for a batch.
COMMIT_VERSIONS = (2, 8)
FIND_COORDINATOR_VERSIONS = (1, 4)
GROUP_KEY_TYPE = 0


@dataclass
class Figure:
    """One line of the table: a label, the figure (None when it could not be had) and its target."""

    label: str
    unit: str
    value: float | None = None
    target: str = ""
    passed: bool | None = None
    digits: int = 3
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def create_topic(bootstrap: str, partitions: int, purpose: str) -> str:
    name = f"group-bench-{purpose}-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=CLIENT_TIMEOUT_S
    )
    futures[name].result(timeout=CLIENT_TIMEOUT_S)
    return name


def consumer(bootstrap: str, group: str, **settings: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **settings,
        }
    )


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# -------------------------------------------------------------------------------- subscribe -> first message


def first_message_latency(bootstrap: str) -> float:
    """Seconds from subscribe() until a fresh group's consumer returns the topic's only record."""
    topic = create_topic(bootstrap, 1, "first")
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=b"first")
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "the record was not acknowledged"
    member = consumer(bootstrap, f"{topic}.group")
    # Metadata first, so the clock measures the group, not the client's first connection.
    member.list_topics(topic, timeout=CLIENT_TIMEOUT_S)
    try:
        started = time.perf_counter()
        member.subscribe([topic])
        while time.perf_counter() - started < PHASE_TIMEOUT_S:
            message = member.poll(POLL_S)
            if message is not None and message.error() is None:
                return time.perf_counter() - started
        raise TimeoutError(f"no record within {PHASE_TIMEOUT_S:g} s")
    finally:
        member.close()


# ---------------------------------------------------------------------------------- a second member joins


class TimedMember:
    """A group member polling in its own thread, noting when it was last assigned and when it read."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.assigned_at: list[float] = []
        self.read_at: list[float] = []
        self._stop = threading.Event()
        self._consumer = consumer(
            bootstrap,
            group,
            **{"heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS, "session.timeout.ms": SESSION_TIMEOUT_MS},
        )
        self._consumer.list_topics(topic, timeout=CLIENT_TIMEOUT_S)
        self._topic = topic
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> float:
        started = time.perf_counter()
        self._consumer.subscribe([self._topic], on_assign=self._on_assign)
        self._thread.start()
        return started

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=CLIENT_TIMEOUT_S)
        self._consumer.close()

    def consuming_since(self, moment: float) -> float | None:
        """When it first read after its first assignment at or after ``moment``."""
        assignments = [at for at in self.assigned_at if at >= moment]
        if not assignments:
            return None
        return next((at for at in self.read_at if at >= assignments[0]), None)

    def _on_assign(self, _consumer: Consumer, partitions: list[Any]) -> None:
        self.assigned_at.append(time.perf_counter())

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(POLL_S)
            if message is not None and message.error() is None:
                self.read_at.append(time.perf_counter())


def second_member_join(bootstrap: str) -> float:
    """Seconds from a second member's subscribe() until both members read records again."""
    topic = create_topic(bootstrap, JOIN_PARTITIONS, "join")
    group = f"{topic}.group"
    stop_trickle = threading.Event()

    def trickle() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        while not stop_trickle.wait(TRICKLE_INTERVAL_S):
            for partition in range(JOIN_PARTITIONS):
                producer.produce(topic, value=b"tick", partition=partition)
            producer.poll(0)
        producer.flush(CLIENT_TIMEOUT_S)

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    first = TimedMember(bootstrap, group, topic)
    second = TimedMember(bootstrap, group, topic)
    try:
        first.start()
        _wait_until(lambda: bool(first.read_at), "the first member to read")
        joined = second.start()
        _wait_until(
            lambda: first.consuming_since(joined) is not None and second.consuming_since(joined) is not None,
            "both members to read after the second joined",
        )
        both = max(first.consuming_since(joined) or 0.0, second.consuming_since(joined) or 0.0)
        return both - joined
    finally:
        second.stop()
        first.stop()
        stop_trickle.set()
        trickler.join(timeout=CLIENT_TIMEOUT_S)


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.perf_counter() + PHASE_TIMEOUT_S
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {PHASE_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


# ------------------------------------------------------------------------------------------------ commit load


@dataclass
class CommitStats:
    """What one connection's commits saw."""

    sent: int = 0
    answered: int = 0
    late: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


class CommitConnection:
    """Commits for a share of the groups on one connection: a sender paces them evenly over each period and
    a receiver matches the answers (Kafka answers a connection's requests in order)."""

    def __init__(
        self, address: tuple[str, int], groups: list[str], topic: str, partitions: int, version: int
    ):
        self._connection = rawload.Connection(*address, timeout_s=CLIENT_TIMEOUT_S)
        self._groups = groups
        self._topic = topic
        self._partitions = partitions
        self._version = version
        self._sent_at: list[float] = []
        self._lock = threading.Condition()
        self.stats = CommitStats()
        self.last_offsets: dict[str, int] = {}

    def run(self, periods: int, start: float) -> None:
        receiver = threading.Thread(target=self._receive, args=(periods * len(self._groups),), daemon=True)
        receiver.start()
        step = COMMIT_PERIOD_S / max(len(self._groups), 1)
        for period in range(periods):
            for index, group in enumerate(self._groups):
                due = start + period * COMMIT_PERIOD_S + index * step
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                self._send(group, offset=period + 1)
        receiver.join(timeout=DRAIN_TIMEOUT_S + COMMIT_PERIOD_S)
        self._connection.close()

    def _send(self, group: str, offset: int) -> None:
        request = offset_commit.OffsetCommitRequest(
            group_id=group,
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=[
                offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                    name=self._topic,
                    partitions=[
                        offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(
                            partition_index=partition, committed_offset=offset
                        )
                        for partition in range(self._partitions)
                    ],
                )
            ],
        )
        sent_at = time.perf_counter()
        # Not under the lock: a send that blocks on a full socket must not keep the receiver from reading.
        self._connection.send(API_OFFSET_COMMIT, self._version, request)
        with self._lock:
            self._sent_at.append(sent_at)
            self.stats.sent += 1
            self.last_offsets[group] = offset
            self._lock.notify()

    def _receive(self, expected: int) -> None:
        while self.stats.answered < expected:
            with self._lock:
                if not self._lock.wait_for(lambda: self.stats.answered < len(self._sent_at), DRAIN_TIMEOUT_S):
                    return
                sent_at = self._sent_at[self.stats.answered]
            response = self._connection.receive()
            latency = time.perf_counter() - sent_at
            self.stats.answered += 1
            self.stats.latencies.append(latency)
            if latency > COMMIT_PERIOD_S:
                self.stats.late += 1
            for topic in response.topics:
                for partition in topic.partitions:
                    if partition.error_code:
                        self.stats.errors[partition.error_code] = (
                            self.stats.errors.get(partition.error_code, 0) + 1
                        )


def find_coordinators(bootstrap: str, groups: list[str]) -> dict[str, tuple[str, int]]:
    """The coordinator address of every group."""
    with rawload.Connection(*rawload.parse_bootstrap(bootstrap), timeout_s=CLIENT_TIMEOUT_S) as connection:
        version = _common_version(connection, API_FIND_COORDINATOR, FIND_COORDINATOR_VERSIONS)
        found: dict[str, tuple[str, int]] = {}
        if version >= 4:
            request = find_coordinator.FindCoordinatorRequest(
                key_type=GROUP_KEY_TYPE, coordinator_keys=groups
            )
            for answer in connection.call(API_FIND_COORDINATOR, version, request).coordinators:
                if answer.error_code:
                    raise rawload.BrokerError(
                        f"FindCoordinator({answer.key}) failed: error {answer.error_code}"
                    )
                found[answer.key] = (answer.host, answer.port)
            return found
        for group in groups:
            request = find_coordinator.FindCoordinatorRequest(key=group, key_type=GROUP_KEY_TYPE)
            response = connection.call(API_FIND_COORDINATOR, version, request)
            if response.error_code:
                raise rawload.BrokerError(f"FindCoordinator({group}) failed: error {response.error_code}")
            found[group] = (response.host, response.port)
        return found


def _common_version(connection: rawload.Connection, api_key: int, ours: tuple[int, int]) -> int:
    try:
        return connection.negotiate(api_key, oldest=ours[0], newest=ours[1])
    except UnsupportedApiError as exc:
        raise rawload.BrokerError(str(exc)) from None


@dataclass
class CommitLoadResult:
    requests: int
    answered: int
    late: int
    errors: dict[int, int]
    latencies: list[float]
    seconds: float
    broker_cpu_s: float | None
    sampled_ok: int


def commit_load(
    bootstrap: str, monitor: BrokerMonitor, groups: int, partitions: int, seconds: int, connections: int
) -> CommitLoadResult:
    topic = create_topic(bootstrap, partitions, "commits")
    names = [f"{topic}.group-{index:05d}" for index in range(groups)]
    coordinators = find_coordinators(bootstrap, names)
    with rawload.Connection(*rawload.parse_bootstrap(bootstrap), timeout_s=CLIENT_TIMEOUT_S) as probe:
        version = _common_version(probe, API_OFFSET_COMMIT, COMMIT_VERSIONS)
    shares: dict[tuple[tuple[str, int], int], list[str]] = {}
    for index, group in enumerate(names):
        shares.setdefault((coordinators[group], index % connections), []).append(group)
    workers = [
        CommitConnection(address, share, topic, partitions, version) for (address, _), share in shares.items()
    ]
    start = time.perf_counter() + COMMIT_PERIOD_S
    threads = [threading.Thread(target=worker.run, args=(seconds, start), daemon=True) for worker in workers]
    with monitor.watch() as usage:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + DRAIN_TIMEOUT_S + 2 * COMMIT_PERIOD_S)
    elapsed = time.perf_counter() - start

    stats = [worker.stats for worker in workers]
    last_offsets = {group: offset for worker in workers for group, offset in worker.last_offsets.items()}
    errors: dict[int, int] = {}
    for stat in stats:
        for code, count in stat.errors.items():
            errors[code] = errors.get(code, 0) + count
    return CommitLoadResult(
        requests=sum(stat.sent for stat in stats),
        answered=sum(stat.answered for stat in stats),
        late=sum(stat.late for stat in stats),
        errors=errors,
        latencies=[latency for stat in stats for latency in stat.latencies],
        seconds=elapsed,
        broker_cpu_s=usage.cpu_s,
        sampled_ok=_sampled_groups_match(bootstrap, names[:: max(1, groups // SAMPLED_GROUPS)], last_offsets),
    )


def _sampled_groups_match(bootstrap: str, groups: list[str], last_offsets: dict[str, int]) -> int:
    """How many of ``groups`` read back (OffsetFetch) the offsets last committed for every partition."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    matching = 0
    for group in groups:
        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
        offsets = {tp.offset for tp in future.result(timeout=CLIENT_TIMEOUT_S).topic_partitions}
        matching += offsets == {last_offsets.get(group)}
    return matching


# ----------------------------------------------------------------------------------------------------- report


def percentile(values: Sequence[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def commit_figures(result: CommitLoadResult, groups: int, partitions: int, seconds: int) -> list[Figure]:
    offered = groups * seconds
    kept_up = result.answered == offered and result.late == 0 and not result.errors
    cpu_percent = None if result.broker_cpu_s is None else 100 * result.broker_cpu_s / result.seconds
    sampled = len(range(0, groups, max(1, groups // SAMPLED_GROUPS)))
    error_text = ", ".join(f"code {code} x{count}" for code, count in sorted(result.errors.items())) or "none"
    return [
        Figure(
            f"commit load: {groups} groups x {partitions} partitions / s",
            "commits/s",
            result.answered / result.seconds,
            f"{offered} answered, each within {COMMIT_PERIOD_S:g} s, no errors",
            kept_up,
            digits=0,
            note=f"{result.answered}/{offered} answered, {result.late} late, errors: {error_text}",
        ),
        Figure("  commit latency p50", "s", percentile(result.latencies, 0.5), digits=4),
        Figure("  commit latency p99", "s", percentile(result.latencies, 0.99), digits=4),
        Figure("  commit latency max", "s", max(result.latencies, default=None), digits=4),
        Figure(
            "  broker CPU",
            "% of a core",
            cpu_percent,
            digits=1,
            note="" if cpu_percent is not None else "no --pid",
        ),
        Figure(
            "  sampled groups read back",
            "groups",
            result.sampled_ok,
            f"{sampled} of {sampled}",
            result.sampled_ok == sampled,
            digits=0,
        ),
    ]


def render(report: Report) -> str:
    rows = [("figure", "value", "unit", "target", "result", "note")]
    for figure in report.figures:
        value = "n/a" if figure.value is None else f"{figure.value:.{figure.digits}f}"
        verdict = "" if figure.passed is None else ("PASS" if figure.passed else "FAIL")
        if figure.target and figure.value is None:
            verdict = "FAIL (no figure)"
        rows.append((figure.label, value, figure.unit, figure.target, verdict, figure.note))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines += [f"failed: {failure}" for failure in report.failures]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- command line


def run(args: argparse.Namespace, bootstrap: str, monitor: BrokerMonitor) -> Report:
    report = Report()
    skip = set(args.skip)
    if "first-message" not in skip:
        log(f"subscribe -> first message, {args.repeat} run(s)")
        runs = _repeat(report, "first-message", args.repeat, lambda: first_message_latency(bootstrap))
        value = median(runs)
        report.figures.append(
            Figure(
                "subscribe -> first message",
                "s",
                value,
                f"<= {FIRST_MESSAGE_TARGET_S:g} s",
                None if value is None else value <= FIRST_MESSAGE_TARGET_S,
                note=_spread(runs),
            )
        )
    if "second-member" not in skip:
        log(f"second member joins a stable group, {args.repeat} run(s)")
        runs = _repeat(report, "second-member", args.repeat, lambda: second_member_join(bootstrap))
        limit = HEARTBEAT_INTERVAL_MS / 1000 + REBALANCE_SLACK_S
        value = median(runs)
        report.figures.append(
            Figure(
                f"second member joins ({HEARTBEAT_INTERVAL_MS / 1000:g} s heartbeats): both consuming",
                "s",
                value,
                f"<= {limit:g} s",
                None if value is None else value <= limit,
                note=_spread(runs),
            )
        )
    if "commit-load" not in skip:
        log(
            f"commit load: {args.groups} groups x {args.partitions} partitions, "
            f"every second for {args.seconds} s"
        )
        try:
            result = commit_load(
                bootstrap, monitor, args.groups, args.partitions, args.seconds, args.connections
            )
        except Exception as exc:  # a benchmark reports a failed phase and goes on
            report.failures.append(f"commit-load: {exc!r}")
        else:
            report.figures += commit_figures(result, args.groups, args.partitions, args.seconds)
    return report


def _repeat(report: Report, phase: str, times: int, measure: Callable[[], float]) -> list[float]:
    runs = []
    for _ in range(times):
        try:
            runs.append(measure())
        except Exception as exc:  # a benchmark reports a failed run and goes on
            report.failures.append(f"{phase}: {exc!r}")
    return runs


def _spread(runs: Sequence[float]) -> str:
    return f"runs {min(runs):.3f}-{max(runs):.3f} s" if len(runs) > 1 else ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", help="HOST:PORT of a running broker to measure instead of starting Strom"
    )
    parser.add_argument("--pid", type=int, help="with --bootstrap: the broker's pid, for its CPU")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of the two latency figures (median shown)"
    )
    parser.add_argument("--groups", type=int, default=1000, help="groups committing in the commit load")
    parser.add_argument("--partitions", type=int, default=10, help="partitions each group commits")
    parser.add_argument("--seconds", type=int, default=20, help="length of the commit load")
    parser.add_argument("--connections", type=int, default=8, help="connections the commits share")
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=PHASES, action="extend", help="phases to leave out"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="Strom config"
    )
    args = parser.parse_args(argv)
    if args.pid is not None and args.bootstrap is None:
        parser.error("--pid needs --bootstrap")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bootstrap is not None:
        report = run(args, args.bootstrap, BrokerMonitor(args.pid))
    else:
        overrides = {
            "group.initial.rebalance.delay.ms": "0",
            **dict(item.split("=", 1) for item in args.override),
        }
        with tempfile.TemporaryDirectory(prefix="group-bench-") as directory:
            broker = StromProcess(Path(directory) / "data", overrides=overrides).start()
            try:
                report = run(args, broker.bootstrap, BrokerMonitor(broker.pid))
            finally:
                broker.stop()
    if args.json:
        print(
            json.dumps(
                [figure.__dict__ for figure in report.figures] + [{"failed": f} for f in report.failures]
            )
        )
    else:
        print(render(report))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
