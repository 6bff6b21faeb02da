"""Console benchmark: how fast the web console shows a big cluster.

Two figures, each against its target:

- topics page, 1,000 topics: milliseconds from the start of the browser's navigation to ``#/topics`` (a full
  page load in headless Chromium) to the moment the topics table holds its last row. A MutationObserver,
  installed before any of the page's scripts run, records ``performance.now()`` (which counts from the
  navigation's start) when the table first has a row for every non-internal topic the API lists, so neither
  WebDriver's polling nor its round trips are in the figure. Target ≤ 1 s.
- browse from a timestamp, 10-million-message topic: milliseconds for one
  ``GET /api/topics/{name}/messages?start=timestamp&timestamp=T&limit=100`` answered in full, as a client of
  the console sees it (HTTP on loopback). The topic is filled without a client library, as ``rawload.py``
  does: one record batch of ~30,000 small records (one millisecond apart) is built once, and each copy sent
  gets its own base timestamp (and CRC), so the topic spans 10 million distinct, increasing timestamps.
  Each run browses from a different random timestamp, and every answer must hold exactly 100 messages
  starting at the record of that timestamp. Target ≤ 200 ms.

Without ``--bootstrap`` a fresh Strom with its console (``strom serve --console-port``) is started in a
temporary directory and stopped at the end; with ``--bootstrap`` and ``--console-url`` a running pair is
measured. Progress goes to stderr, the table (or ``--json``) to stdout. Not a test: nothing here runs under
pytest.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import crc32c
import rawload
from confluent_kafka.admin import AdminClient, NewTopic
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from strom.protocol.messages import produce
from strom.protocol.record_batch import (
    ATTRIBUTES_OFFSET,
    BASE_TIMESTAMP_OFFSET,
    BATCH_HEADER_SIZE,
    CRC_OFFSET,
    MAX_TIMESTAMP_OFFSET,
    Record,
    build_batch,
)
from strom.testing.process import StromProcess

PHASES = ("topics-page", "browse")
TOPICS_PAGE_TARGET_MS = 1000.0
BROWSE_TARGET_MS = 200.0
BROWSE_LIMIT = 100
CLIENT_TIMEOUT_S = 60.0
PHASE_TIMEOUT_S = 600.0
# Topics are created in requests of this many, as an operator's script would.
TOPICS_PER_REQUEST = 100
RECORD_VALUE = b"console-bench-value-0123"
# The topics table of the console's topics page (see the top of strom/console/static/app.js).
TOPICS_ROWS_SELECTOR = '[data-testid="topics-table"] [data-testid="topic-row"]'
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Runs before the page's own scripts on every navigation: note when the topics table first holds `want` rows.
_LAST_ROW_WATCH = """
window.__consoleBench = {lastRowAt: null};
const want = %d;
const selector = %s;
const observer = new MutationObserver(() => {
  if (document.querySelectorAll(selector).length >= want) {
    window.__consoleBench.lastRowAt = performance.now();
    observer.disconnect();
  }
});
observer.observe(document, {childList: true, subtree: true});
"""


@dataclass
class Figure:
    """One measured quantity: every run's value (ms), its target, and why it is missing if it is."""

    label: str
    target_ms: float
    runs: list[float] = field(default_factory=list)
    failure: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def verdict(self) -> str:
        median = self.median
        if median is None:
            return "FAIL (no figure)"
        return "PASS" if median <= self.target_ms else "FAIL"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def api_get(console_url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{console_url}{path}", timeout=CLIENT_TIMEOUT_S) as response:
        return json.load(response)


def wait_for_console(console_url: str, timeout_s: float) -> None:
    """Wait until the console answers its overview (it starts after the broker listens)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            api_get(console_url, "/api/overview")
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise rawload.PhaseTimeout(f"the console at {console_url} did not answer: {exc}") from None
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------- topics page


def create_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Create one-partition topics, ``TOPICS_PER_REQUEST`` to a CreateTopics request."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 5})
    for start in range(0, len(names), TOPICS_PER_REQUEST):
        chunk = names[start : start + TOPICS_PER_REQUEST]
        futures: dict[str, Future[None]] = admin.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=1) for name in chunk]
        )
        for future in futures.values():
            future.result(timeout=CLIENT_TIMEOUT_S)


def start_chrome() -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def topics_page_runs(console_url: str, repeat: int) -> Iterator[float]:
    """Load ``#/topics`` afresh ``repeat`` times; yield the milliseconds to the table's last row each time."""
    # The page lists internal topics only when asked to, so its last row is the last non-internal topic.
    listed = sum(not topic["internal"] for topic in api_get(console_url, "/api/topics?internal=1"))
    driver = start_chrome()
    try:
        driver.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument",
            {"source": _LAST_ROW_WATCH % (listed, json.dumps(TOPICS_ROWS_SELECTOR))},
        )
        for _ in range(repeat):
            driver.get("about:blank")
            driver.get(f"{console_url}/#/topics")
            last_row_at = WebDriverWait(driver, CLIENT_TIMEOUT_S, poll_frequency=0.05).until(
                lambda d: d.execute_script("return window.__consoleBench.lastRowAt"),
                f"the topics table never held {listed} rows",
            )
            yield float(last_row_at)
    finally:
        driver.quit()


# ---------------------------------------------------------------------------------------------- browse


@dataclass(frozen=True)
class TimedTopic:
    """A one-partition topic whose record at offset ``o`` has the timestamp ``first_timestamp + o`` ms."""

    name: str
    first_timestamp: int
    records: int


def timestamped_template(records_per_batch: int) -> bytes:
    """A batch of small records one millisecond apart (timestamp deltas 0, 1, 2, ...)."""
    return build_batch(
        (Record(offset_delta=i, timestamp_delta=i, value=RECORD_VALUE) for i in range(records_per_batch)),
        base_timestamp=0,
    )


def restamped(template: bytes, base_timestamp: int, records: int) -> bytes:
    """``template`` with a new base timestamp: the max timestamp follows it and the CRC is recomputed."""
    batch = bytearray(template)
    batch[BASE_TIMESTAMP_OFFSET : BASE_TIMESTAMP_OFFSET + 8] = base_timestamp.to_bytes(8, "big", signed=True)
    max_timestamp = base_timestamp + records - 1
    batch[MAX_TIMESTAMP_OFFSET : MAX_TIMESTAMP_OFFSET + 8] = max_timestamp.to_bytes(8, "big", signed=True)
    crc = crc32c.crc32c(memoryview(batch)[ATTRIBUTES_OFFSET:])
    batch[CRC_OFFSET : CRC_OFFSET + 4] = crc.to_bytes(4, "big")
    return bytes(batch)


def largest_template(limit: int = rawload.DEFAULT_BATCH_LIMIT) -> tuple[bytes, int]:
    """The largest ``timestamped_template`` within Kafka's default max.message.bytes, and its record count."""
    sample = 1000
    per_record = (len(timestamped_template(sample)) - BATCH_HEADER_SIZE) / sample
    count = int((limit - BATCH_HEADER_SIZE) / per_record)
    while True:
        template = timestamped_template(count)
        if len(template) <= limit:
            return template, count
        # Later records' deltas take more varint bytes than the sample's did: shrink by the excess.
        count -= 1 + int((len(template) - limit) / per_record)


def fill_timed_topic(bootstrap: str, messages: int, timeout_s: float) -> TimedTopic:
    """A fresh topic holding ``messages`` records with distinct, increasing millisecond timestamps."""
    template, per_batch = largest_template()
    batches = -(-messages // per_batch)
    topic = TimedTopic(
        name=rawload.fresh_topic_name("console-browse"),
        first_timestamp=int(time.time() * 1000) - batches * per_batch - 60_000,
        records=batches * per_batch,
    )
    rawload.create_topic(bootstrap, topic.name, timeout_s)
    leader = rawload.partition_leader(bootstrap, topic.name, timeout_s)
    in_flight = 4
    with rawload.Connection(*leader, timeout_s=timeout_s) as conn:
        version = rawload.negotiate_versions(conn)[rawload.API_PRODUCE]
        sent = answered = 0
        while answered < batches:
            while sent < batches and conn.in_flight < in_flight:
                batch = restamped(template, topic.first_timestamp + sent * per_batch, per_batch)
                data = produce.ProduceRequest.PartitionProduceData(index=0, records=batch)
                request = produce.ProduceRequest(
                    acks=1,
                    timeout_ms=rawload.PRODUCE_TIMEOUT_MS,
                    topic_data=[
                        produce.ProduceRequest.TopicProduceData(name=topic.name, partition_data=[data])
                    ],
                )
                conn.send(rawload.API_PRODUCE, version, request)
                sent += 1
            check_produced(conn.receive())
            answered += 1
    return topic


def check_produced(response: Any) -> None:
    for topic in response.responses:
        for part in topic.partition_responses:
            if part.error_code:
                raise rawload.BrokerError(
                    f"Produce to {topic.name}-{part.index} failed: error {part.error_code}"
                )


def browse_runs(console_url: str, topic: TimedTopic, repeat: int, seed: int = 0) -> Iterator[float]:
    """Browse 100 messages from ``repeat`` random timestamps; yield each call's milliseconds."""
    chooser = random.Random(seed)
    for _ in range(repeat):
        offset = chooser.randrange(topic.records - BROWSE_LIMIT)
        query = urllib.parse.urlencode(
            {"start": "timestamp", "timestamp": topic.first_timestamp + offset, "limit": BROWSE_LIMIT}
        )
        path = f"/api/topics/{urllib.parse.quote(topic.name)}/messages?{query}"
        started = time.perf_counter()
        answer = api_get(console_url, path)
        elapsed_ms = (time.perf_counter() - started) * 1000
        offsets = [message["offset"] for message in answer["messages"]]
        if offsets != list(range(offset, offset + BROWSE_LIMIT)):
            raise AssertionError(
                f"browsing from the timestamp of offset {offset} gave offsets {offsets[:3]}... "
                f"({len(offsets)} messages)"
            )
        yield elapsed_ms


# ---------------------------------------------------------------------------------------------- running


def measure(figure: Figure, runs: Callable[[], Iterator[float]]) -> None:
    """Collect the runs into ``figure``; a failure leaves its reason there instead of stopping the others."""
    try:
        for value in runs():
            figure.runs.append(value)
            log(f"  {figure.label}: {value:,.1f} ms")
    except Exception as exc:  # noqa: BLE001 - a phase's failure is a result to report, not a crash
        figure.failure = f"{type(exc).__name__}: {exc}"
        log(f"  {figure.label} failed: {figure.failure}")


@contextmanager
def cluster(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """The (bootstrap, console URL) to measure: the given ones, or a fresh Strom with its console."""
    if args.bootstrap:
        if not args.console_url:
            raise SystemExit("--bootstrap needs --console-url")
        yield args.bootstrap, args.console_url.rstrip("/")
        return
    with ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-")))
        broker = stack.enter_context(StromProcess(data_dir / "data", console_port=free_port()))
        wait_for_console(broker.console_url, CLIENT_TIMEOUT_S)
        yield broker.bootstrap, broker.console_url


def run(args: argparse.Namespace) -> list[Figure]:
    topics_page = Figure(f"topics page, {args.topics:,} topics", TOPICS_PAGE_TARGET_MS)
    browse = Figure(f"browse 100 from a timestamp, {args.messages:,} msgs", BROWSE_TARGET_MS)
    with cluster(args) as (bootstrap, console_url):
        if "topics-page" not in args.skip:
            log(f"creating {args.topics:,} topics")
            prefix = f"bench-topics-{uuid.uuid4().hex[:8]}"
            create_topics(bootstrap, [f"{prefix}-{index:04d}" for index in range(args.topics)])
            measure(topics_page, lambda: topics_page_runs(console_url, args.repeat))
        if "browse" not in args.skip:
            log(f"filling a topic with {args.messages:,} messages")
            filled = fill_timed_topic(bootstrap, args.messages, PHASE_TIMEOUT_S)
            measure(browse, lambda: browse_runs(console_url, filled, args.repeat))
    return [
        figure
        for figure, phase in ((topics_page, "topics-page"), (browse, "browse"))
        if phase not in args.skip
    ]


def print_table(figures: Sequence[Figure]) -> None:
    print(f"{'figure':<48} {'median':>10} {'spread':>20} {'target':>10}  result")
    for figure in figures:
        median = "—" if figure.median is None else f"{figure.median:,.0f} ms"
        spread = f"{min(figure.runs):,.0f}–{max(figure.runs):,.0f} ms" if len(figure.runs) > 1 else ""
        target = f"≤ {figure.target_ms:,.0f} ms"
        print(f"{figure.label:<48} {median:>10} {spread:>20} {target:>10}  {figure.verdict}")
    for figure in figures:
        if figure.failure:
            print(f"\n{figure.label}: {figure.failure}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="HOST:PORT of a running broker (needs --console-url)")
    parser.add_argument("--console-url", help="base URL of that broker's console, e.g. http://127.0.0.1:8989")
    parser.add_argument("--topics", type=int, default=1000, help="topics on the topics page (default 1000)")
    parser.add_argument(
        "--messages", type=int, default=10_000_000, help="messages in the browsed topic (default 10M)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="runs of each figure; the median is judged")
    parser.add_argument("--skip", nargs="*", default=[], choices=PHASES, help="phases to leave out")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    figures = run(args)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "figure": figure.label,
                        "median_ms": figure.median,
                        "runs_ms": figure.runs,
                        "target_ms": figure.target_ms,
                        "verdict": figure.verdict,
                        "failure": figure.failure,
                    }
                    for figure in figures
                ],
                indent=2,
            )
        )
    else:
        print_table(figures)
    return 0 if all(figure.verdict == "PASS" for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
