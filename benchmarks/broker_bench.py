"""Broker benchmark: start-up, memory, CPU and throughput of a Kafka-compatible broker, against targets.

By default it starts a fresh Strom for each run (``--repeat``) in a temporary data directory; with
``--bootstrap`` it measures an already running broker the same way (its start-up is then not measured, and
its memory and CPU only with ``--pid``). ``--peer`` names a second, running broker (Apache Kafka, say) whose
client throughput is measured in the same runs, so Strom's figures can be read as ratios to it. Progress goes
to stderr; the table (or ``--json``) to stdout. See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import rawload
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from strom.testing.process import StromProcess, StromProcessError

MB = rawload.MB
RSS_SAMPLE_INTERVAL_S = 0.02
# The idle figure is read this long after the first answered Metadata, once start-up work has settled.
IDLE_SETTLE_S = 0.5
CONSUME_BATCH = 10_000
# librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s by default) whenever its local queue
# holds queued.min.messages (100,000). A Python loop drains that in about 0.1 s, so with the defaults a fast
# broker sits idle most of the time and the figure is the client's. A second consume run shortens the backoff
# to show what the broker delivers.
SHORT_FETCH_BACKOFF = {"fetch.queue.backoff.ms": 10}
PHASES = ("startup", "produce", "consume", "rawproduce", "rawfetch")

Figures = dict[str, float]


# ---------------------------------------------------------------------------------------------- what is shown


@dataclass(frozen=True)
class Target:
    """A bound a figure must meet: at most or at least ``limit``, or that fraction of its baseline."""

    text: str
    at_most: bool
    limit: float = 0.0
    of_baseline: bool = False

    def met(self, value: float, baseline: float | None) -> bool | None:
        if self.of_baseline:
            if baseline is None:
                return None
            limit = self.limit * baseline
        else:
            limit = self.limit
        return value <= limit if self.at_most else value >= limit


@dataclass(frozen=True)
class Row:
    """One line of the table: a figure, how it is printed, what it is compared with and must meet."""

    key: str
    label: str
    unit: str
    digits: int
    baseline: str | None = None
    baseline_label: str = ""
    target: Target | None = None


def _produce_rows(acks: str) -> list[Row]:
    prefix = f"produce.acks{acks}"
    peer = f"peer.produce.acks{acks}.msgs"
    return [
        Row(
            f"{prefix}.msgs",
            f"produce acks={acks}",
            "msg/s",
            0,
            peer,
            "peer",
            Target("within 10% of peer", at_most=False, limit=0.9, of_baseline=True),
        ),
        Row(f"{prefix}.mbs", f"produce acks={acks}", "MB/s", 1),
        Row(f"{prefix}.cpu_s", "  broker CPU during run", "s", 2),
        Row(f"{prefix}.cpu_per_1m", "  broker CPU per 1M msgs", "s", 2, target=Target("<= 1.0 s", True, 1.0)),
        Row(f"{prefix}.peak_rss_mb", "  broker peak RSS", "MB", 1, target=Target("<= 150 MB", True, 150)),
    ]


ROWS = [
    Row("ready_s", "ready after spawn", "s", 3, target=Target("<= 0.5 s", True, 0.5)),
    Row("idle_rss_mb", "idle RSS", "MB", 1, target=Target("<= 40 MB", True, 40)),
    *_produce_rows("1"),
    *_produce_rows("all"),
    Row(
        "consume.msgs",
        "consume",
        "msg/s",
        0,
        "peer.consume.msgs",
        "peer",
        Target(">= 500,000 msg/s", at_most=False, limit=500_000),
    ),
    Row(
        "consume_short_backoff.msgs",
        "consume, fetch.queue.backoff.ms=10",
        "msg/s",
        0,
        "peer.consume_short_backoff.msgs",
        "peer",
    ),
    Row("consume.peak_rss_mb", "  broker peak RSS", "MB", 1),
    Row(
        "rawproduce.mbs",
        "raw produce, 1 MiB batches",
        "MB/s",
        0,
        "loopback.mbs",
        "loopback",
        Target(">= 400 MB/s", at_most=False, limit=400),
    ),
    Row("rawproduce.cpu_s", "  broker CPU during run", "s", 2),
    Row("rawproduce.peak_rss_mb", "  broker peak RSS", "MB", 1),
    Row(
        "rawfetch.mbs",
        "raw fetch, cached log",
        "MB/s",
        0,
        "loopback.mbs",
        "loopback",
        Target(">= 1 GB/s", at_most=False, limit=1000),
    ),
    Row("rawfetch.cpu_s", "  broker CPU during run", "s", 2),
    Row("rawfetch.peak_rss_mb", "  broker peak RSS", "MB", 1),
    Row("loopback.mbs", "loopback baseline (Python)", "MB/s", 0),
]


# --------------------------------------------------------------------------------------- the broker's process


@dataclass
class Usage:
    """What the broker used while a phase ran; filled in when the phase ends."""

    cpu_s: float | None = None
    peak_rss_mb: float | None = None


class BrokerMonitor:
    """CPU time and resident memory of the broker's process tree (nothing when its pid is unknown)."""

    def __init__(self, pid: int | None) -> None:
        self.process = psutil.Process(pid) if pid is not None else None

    def _tree(self) -> list[psutil.Process]:
        assert self.process is not None
        return [self.process, *self.process.children(recursive=True)]

    def rss_mb(self) -> float | None:
        if self.process is None:
            return None
        return sum(proc.memory_info().rss for proc in self._tree()) / MB

    def cpu_s(self) -> float | None:
        if self.process is None:
            return None
        return sum(times.user + times.system for times in (proc.cpu_times() for proc in self._tree()))

    @contextlib.contextmanager
    def watch(self) -> Iterator[Usage]:
        """Measure CPU seconds across the block and sample RSS every 20 ms in a thread for its peak."""
        usage = Usage()
        if self.process is None:
            yield usage
            return
        stop = threading.Event()
        peak = [self.rss_mb() or 0.0]

        def sample() -> None:
            with contextlib.suppress(psutil.NoSuchProcess):
                while not stop.wait(RSS_SAMPLE_INTERVAL_S):
                    peak[0] = max(peak[0], self.rss_mb() or 0.0)

        sampler = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        cpu_before = self.cpu_s() or 0.0
        sampler.start()
        try:
            yield usage
        finally:
            stop.set()
            sampler.join()
            with contextlib.suppress(psutil.NoSuchProcess):
                usage.cpu_s = (self.cpu_s() or 0.0) - cpu_before
                usage.peak_rss_mb = max(peak[0], self.rss_mb() or 0.0)


def _usage_figures(prefix: str, usage: Usage, messages: int | None = None) -> Figures:
    figures: Figures = {}
    if usage.cpu_s is not None:
        figures[f"{prefix}.cpu_s"] = usage.cpu_s
        if messages:
            figures[f"{prefix}.cpu_per_1m"] = usage.cpu_s / messages * 1_000_000
    if usage.peak_rss_mb is not None:
        figures[f"{prefix}.peak_rss_mb"] = usage.peak_rss_mb
    return figures


# ---------------------------------------------------------------------------------------------- client phases


def produce_messages(
    bootstrap: str, topic: str, messages: int, size: int, acks: str, timeout_s: float
) -> float:
    """Produce ``messages`` values of ``size`` bytes with confluent-kafka; returns the seconds it took.

    The clock starts at the first ``produce()`` and stops when ``flush()`` has seen every delivery report;
    only failed deliveries call back, to keep the client's Python overhead out of the figure.
    """
    deadline = time.perf_counter() + timeout_s
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "acks": acks,
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    producer.list_topics(topic, timeout=timeout_s)
    value = b"x" * size
    produce = producer.produce
    started = time.perf_counter()
    try:
        for sent in range(messages):
            while True:
                try:
                    produce(topic, value)
                    break
                except BufferError:
                    producer.poll(0.01)
                    if time.perf_counter() > deadline:
                        raise rawload.PhaseTimeout(
                            f"queue still full after {sent} of {messages} messages"
                        ) from None
        unsent = producer.flush(max(deadline - time.perf_counter(), 0))
        seconds = time.perf_counter() - started
        if unsent:
            raise rawload.PhaseTimeout(f"{unsent} of {messages} messages still undelivered when time ran out")
    except rawload.PhaseTimeout:
        producer.purge()  # so that dropping the producer does not wait for a stuck broker
        raise
    if failures:
        raise rawload.BrokerError(f"{len(failures)} deliveries failed, the first with {failures[0]}")
    return seconds


def consume_messages(
    bootstrap: str, topic: str, messages: int, timeout_s: float, settings: Mapping[str, object]
) -> float:
    """Read ``messages`` from partition 0 of ``topic`` from the beginning; returns the seconds it took.

    Uses ``assign()`` (no group membership) and default consumer settings apart from the group id that
    confluent-kafka requires, disabled auto-commit and ``settings``. The topic's metadata is loaded before
    the clock starts: otherwise librdkafka's offset-query timer adds a fixed half second, whatever the broker.
    """
    deadline = time.perf_counter() + timeout_s
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            **settings,
        }
    )
    try:
        consumer.list_topics(topic, timeout=timeout_s)
        started = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        received = 0
        while received < messages:
            if time.perf_counter() > deadline:
                raise rawload.PhaseTimeout(f"{received} of {messages} messages read when time ran out")
            for message in consumer.consume(num_messages=CONSUME_BATCH, timeout=0.5):
                error = message.error()
                if error is not None:
                    raise rawload.BrokerError(f"consumer error after {received} messages: {error}")
                received += 1
        return time.perf_counter() - started
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Settings:
    """Everything a run needs from the command line."""

    messages: int
    size: int
    skip: frozenset[str]
    timeout_s: float
    raw_batches: int
    raw_in_flight: int
    raw_connections: int
    fetch_log_batches: int
    fetch_rounds: int
    peer: str | None
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """One run's figures, and why the phases that produced none failed."""

    figures: Figures = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class BrokerGone(Exception):
    """The broker under test is no longer running, so the rest of the run is pointless."""


def measure_phase(result: RunResult, name: str, measure: Callable[[], Figures]) -> None:
    """Run one measurement, keeping its figures, or a note on why it failed.

    Each phase starts with the page cache written back (sync): otherwise the gigabytes earlier phases left
    dirty make the kernel throttle this phase's writes to the disk's speed, and the figure says more about
    the order of the phases than about the broker.
    """
    print(f"  {name} ...", file=sys.stderr, flush=True)
    os.sync()
    try:
        result.figures.update(measure())
    except (rawload.PhaseTimeout, TimeoutError) as exc:
        result.failures.append(f"{name}: timeout: {exc or 'no answer in time'}")
    except (rawload.BrokerError, KafkaException, OSError, StromProcessError) as exc:
        result.failures.append(f"{name}: error: {exc}")


@dataclass
class Endpoint:
    """A broker the client phases talk to: the one under test, or the peer (whose figures are prefixed)."""

    name: str
    bootstrap: str
    monitor: BrokerMonitor
    prefix: str = ""
    acks1_topic: str | None = None


class Run:
    """Measures every phase not skipped against one broker (and the peer), recording failures as it goes."""

    def __init__(
        self, settings: Settings, subject: Endpoint, result: RunResult, gone: Callable[[], str]
    ) -> None:
        self.settings = settings
        self.subject = subject
        self.endpoints = [subject]
        if settings.peer:
            self.endpoints.append(Endpoint("peer", settings.peer, BrokerMonitor(None), prefix="peer."))
        self.result = result
        self.gone = gone  # "" while the broker under test runs, else why it does not
        self._batch: bytes | None = None

    def all_phases(self) -> None:
        """Run the phases in order; stops early (BrokerGone) if the broker under test dies."""
        skip = self.settings.skip
        if "produce" not in skip:
            for acks in ("1", "all"):
                for endpoint in self.endpoints:
                    self.phase(
                        f"{endpoint.name} produce acks={acks}",
                        functools.partial(self.produce, endpoint, acks),
                    )
        if "consume" not in skip:
            for endpoint in self.endpoints:
                self.phase(f"{endpoint.name} consume", functools.partial(self.consume, endpoint))
        if "rawproduce" not in skip:
            self.phase(f"{self.subject.name} raw produce", self.raw_produce)
        if "rawfetch" not in skip:
            self.phase(f"{self.subject.name} raw fetch", self.raw_fetch)

    def phase(self, name: str, measure: Callable[[], Figures]) -> None:
        measure_phase(self.result, name, measure)
        why = self.gone()
        if why:
            self.result.failures.append(f"{name}: {why}")
            raise BrokerGone(why)

    def produce(self, endpoint: Endpoint, acks: str) -> Figures:
        s = self.settings
        topic = rawload.fresh_topic_name(f"produce-acks{acks}")
        rawload.create_topic(endpoint.bootstrap, topic, s.timeout_s)
        with endpoint.monitor.watch() as usage:
            seconds = produce_messages(endpoint.bootstrap, topic, s.messages, s.size, acks, s.timeout_s)
        if acks == "1":
            endpoint.acks1_topic = topic
        key = f"{endpoint.prefix}produce.acks{acks}"
        return {
            f"{key}.msgs": s.messages / seconds,
            f"{key}.mbs": s.messages * s.size / MB / seconds,
            **_usage_figures(key, usage, s.messages),
        }

    def consume(self, endpoint: Endpoint) -> Figures:
        """Read back the acks=1 run's topic, or (if produce was skipped or failed) one filled untimed.

        Twice: with the default consumer settings, then with the short fetch backoff.
        """
        s = self.settings
        topic = endpoint.acks1_topic
        if topic is None:
            topic = rawload.fresh_topic_name("consume")
            rawload.create_topic(endpoint.bootstrap, topic, s.timeout_s)
            produce_messages(endpoint.bootstrap, topic, s.messages, s.size, "1", s.timeout_s)
        figures: Figures = {}
        for key, settings in (("consume", {}), ("consume_short_backoff", SHORT_FETCH_BACKOFF)):
            key = endpoint.prefix + key
            with endpoint.monitor.watch() as usage:
                seconds = consume_messages(endpoint.bootstrap, topic, s.messages, s.timeout_s, settings)
            figures.update({f"{key}.msgs": s.messages / seconds, **_usage_figures(key, usage)})
        return figures

    def batch(self) -> bytes:
        if self._batch is None:
            self._batch, _ = rawload.build_megabyte_batch()
        return self._batch

    def raw_produce(self) -> Figures:
        s = self.settings
        bootstrap = self.subject.bootstrap
        topic = rawload.fresh_topic_name("rawproduce")
        rawload.create_topic(bootstrap, topic, s.timeout_s)
        with self.subject.monitor.watch() as usage:
            result = rawload.produce_load(
                bootstrap,
                topic,
                self.batch(),
                s.raw_batches,
                in_flight=s.raw_in_flight,
                connections=s.raw_connections,
                timeout_s=s.timeout_s,
            )
        return {"rawproduce.mbs": result.mb_per_s, **_usage_figures("rawproduce", usage)}

    def raw_fetch(self) -> Figures:
        s = self.settings
        bootstrap = self.subject.bootstrap
        topic = rawload.fresh_topic_name("rawfetch")
        rawload.create_topic(bootstrap, topic, s.timeout_s)
        rawload.produce_load(bootstrap, topic, self.batch(), s.fetch_log_batches, timeout_s=s.timeout_s)
        with self.subject.monitor.watch() as usage:
            result = rawload.fetch_load(
                bootstrap, topic, s.fetch_rounds, connections=s.raw_connections, timeout_s=s.timeout_s
            )
        return {"rawfetch.mbs": result.mb_per_s, **_usage_figures("rawfetch", usage)}


def loopback_figures(settings: Settings) -> Figures:
    return {"loopback.mbs": rawload.loopback_throughput(timeout_s=settings.timeout_s).mb_per_s}


def run_spawned(settings: Settings, result: RunResult) -> None:
    """Start a fresh Strom in a temporary directory, measure it, stop it."""
    with tempfile.TemporaryDirectory(prefix="strom-bench-") as tmp:
        broker = StromProcess(Path(tmp) / "data", settings.overrides, startup_timeout=settings.timeout_s)
        spawned = time.perf_counter()
        try:
            broker.start()
            host, port = rawload.parse_bootstrap(broker.bootstrap)
            answered = rawload.first_metadata_answer(host, port, settings.timeout_s)
        except (StromProcessError, rawload.PhaseTimeout) as exc:
            result.failures.append(f"start-up: {exc}")
            if broker.running:
                broker.kill()
            return
        monitor = BrokerMonitor(broker.pid)
        if "startup" not in settings.skip:
            result.figures["ready_s"] = answered - spawned
            time.sleep(IDLE_SETTLE_S)
            result.figures["idle_rss_mb"] = monitor.rss_mb() or 0.0

        def gone() -> str:
            if broker.running:
                return ""
            return (
                f"broker exited with status {broker.returncode}; its log ends:\n{broker.read_log()[-2000:]}"
            )

        with contextlib.suppress(BrokerGone):
            Run(settings, Endpoint("strom", broker.bootstrap, monitor), result, gone).all_phases()
        if broker.running:
            try:
                broker.stop()
            except StromProcessError as exc:
                result.failures.append(f"stop: {exc}")


def run_external(settings: Settings, result: RunResult, bootstrap: str, pid: int | None) -> None:
    """Measure a broker that is already running; its memory and CPU only if its pid is known."""
    monitor = BrokerMonitor(pid)
    if pid is not None and "startup" not in settings.skip:
        result.figures["idle_rss_mb"] = monitor.rss_mb() or 0.0

    def gone() -> str:
        return "" if pid is None or psutil.pid_exists(pid) else f"broker pid {pid} is gone"

    with contextlib.suppress(BrokerGone):
        Run(settings, Endpoint("broker", bootstrap, monitor), result, gone).all_phases()


# ---------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Line:
    """A row of the report with its medians worked out."""

    row: Row
    median: float | None
    runs: list[float]
    baseline: float | None
    ratio: float | None
    passed: bool | None
    absent: str | None


def summarise(results: Sequence[RunResult], absent: Mapping[str, str]) -> list[Line]:
    medians: dict[str, float] = {}
    runs: dict[str, list[float]] = {}
    for result in results:
        for key, value in result.figures.items():
            runs.setdefault(key, []).append(value)
    for key, values in runs.items():
        medians[key] = statistics.median(values)
    lines = []
    for row in ROWS:
        median = medians.get(row.key)
        baseline = medians.get(row.baseline) if row.baseline else None
        ratio = median / baseline if median is not None and baseline else None
        passed = row.target.met(median, baseline) if row.target and median is not None else None
        lines.append(Line(row, median, runs.get(row.key, []), baseline, ratio, passed, absent.get(row.key)))
    return lines


def _number(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def _verdict(line: Line) -> str:
    if line.absent:
        return line.absent
    if line.row.target is None:
        return ""
    if line.passed is None:
        if line.median is None:
            return "FAIL (no figure)"
        return "n/a (no peer)"
    return "PASS" if line.passed else "FAIL"


def render_table(lines: Sequence[Line]) -> str:
    header = ("figure", "median", "unit", "spread", "baseline", "ratio", "target", "result")
    table = [header]
    for line in lines:
        row = line.row
        if line.absent == "skipped" or (line.median is None and row.target is None and not line.absent):
            continue
        median = _number(line.median, row.digits) if line.median is not None else "n/a"
        spread = (
            f"{_number(min(line.runs), row.digits)}-{_number(max(line.runs), row.digits)}"
            if len(line.runs) > 1
            else ""
        )
        baseline = (
            f"{row.baseline_label} {_number(line.baseline, row.digits)}" if line.baseline is not None else ""
        )
        ratio = f"{line.ratio:.2f}x" if line.ratio is not None else ""
        target = row.target.text if row.target else ""
        table.append((row.label, median, row.unit, spread, baseline, ratio, target, _verdict(line)))
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    right = {1, 3, 5}
    rendered = []
    for cells in table:
        parts = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        rendered.append("  ".join(parts).rstrip())
    return "\n".join(rendered)


def not_measured(settings: Settings, measured_externally: bool, pid: int | None) -> dict[str, str]:
    """Rows that by design have no figure, with why: their absence is not a failure.

    "skipped" rows are left out of the report; the others are shown as n/a with the reason.
    """
    phase_prefixes = {
        "startup": ("ready_s", "idle_rss_mb"),
        "produce": ("produce.",),
        "consume": ("consume.", "consume_short_backoff."),
        "rawproduce": ("rawproduce.",),
        "rawfetch": ("rawfetch.",),
    }
    process_figures = ("idle_rss_mb", ".cpu_s", ".cpu_per_1m", ".peak_rss_mb")
    reasons: dict[str, str] = {}
    for row in ROWS:
        if any(phase in settings.skip and row.key.startswith(p) for phase, p in phase_prefixes.items()):
            reasons[row.key] = "skipped"
        elif measured_externally and row.key == "ready_s":
            reasons[row.key] = "n/a (already running)"
        elif measured_externally and pid is None and row.key.endswith(process_figures):
            reasons[row.key] = "n/a (no --pid)"
    if settings.skip >= {"rawproduce", "rawfetch"}:
        reasons["loopback.mbs"] = "skipped"
    return reasons


# ---------------------------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bootstrap", help="HOST:PORT of a running broker to measure instead of starting Strom"
    )
    parser.add_argument("--pid", type=int, help="with --bootstrap: the broker's pid, for its memory and CPU")
    parser.add_argument(
        "--peer", help="HOST:PORT of a running broker whose client throughput is the baseline"
    )
    parser.add_argument(
        "--messages", type=int, default=1_000_000, help="messages per produce run (default 1M)"
    )
    parser.add_argument("--size", type=int, default=100, help="bytes per message value (default 100)")
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=PHASES, action="extend", help="phases to leave out"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs; each figure is the median over them")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="bound on each phase, seconds (default 300)"
    )
    parser.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="Strom config"
    )
    parser.add_argument("--raw-batches", type=int, default=512, help="1 MiB batches in the raw produce run")
    parser.add_argument(
        "--raw-in-flight", type=int, default=4, help="raw produce requests in flight per connection"
    )
    parser.add_argument("--raw-connections", type=int, default=1, help="connections for the raw runs")
    parser.add_argument("--fetch-log-batches", type=int, default=32, help="1 MiB batches in the fetched log")
    parser.add_argument(
        "--fetch-rounds", type=int, default=50, help="times the raw fetch reads the whole log"
    )
    args = parser.parse_args(argv)
    if args.pid is not None and args.bootstrap is None:
        parser.error("--pid needs --bootstrap")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.override)
    settings = Settings(
        messages=args.messages,
        size=args.size,
        skip=frozenset(args.skip),
        timeout_s=args.timeout,
        raw_batches=args.raw_batches,
        raw_in_flight=args.raw_in_flight,
        raw_connections=args.raw_connections,
        fetch_log_batches=args.fetch_log_batches,
        fetch_rounds=args.fetch_rounds,
        peer=args.peer,
        overrides=overrides,
    )
    results = []
    for number in range(1, args.repeat + 1):
        print(f"run {number} of {args.repeat}", file=sys.stderr, flush=True)
        result = RunResult()
        if not settings.skip >= {"rawproduce", "rawfetch"}:
            measure_phase(result, "loopback baseline", lambda: loopback_figures(settings))
        if args.bootstrap is None:
            run_spawned(settings, result)
        else:
            run_external(settings, result, args.bootstrap, args.pid)
        results.append(result)
    lines = summarise(results, not_measured(settings, args.bootstrap is not None, args.pid))
    failures = [f"run {i}: {failure}" for i, result in enumerate(results, 1) for failure in result.failures]
    if args.json:
        report = {
            "broker": args.bootstrap or "strom (spawned)",
            "peer": args.peer,
            "messages": args.messages,
            "size": args.size,
            "repeat": args.repeat,
            "figures": {
                line.row.key: {
                    "label": line.row.label.strip(),
                    "unit": line.row.unit,
                    "median": line.median,
                    "runs": line.runs,
                    "baseline": line.baseline,
                    "ratio": line.ratio,
                    "target": line.row.target.text if line.row.target else None,
                    "passed": line.passed,
                    "not_measured": line.absent,
                }
                for line in lines
                if line.absent != "skipped"
            },
            "failures": failures,
        }
        print(json.dumps(report, indent=2))
    else:
        print(render_table(lines))
        for failure in failures:
            print(f"\n{failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
