"""Raw-protocol load generator: how fast a broker ingests and serves big record batches.

Client libraries spend most of their time in their own code, so they cannot show what the broker itself can
take. This generator removes the client: it builds ONE record batch of about 1 MiB (of 1 KiB records) once
and sends it over and over in pipelined Produce requests (the broker writes the offsets into its own copy, so
resending identical bytes is fine), then fetches a small, freshly written (so page-cached) log from offset 0
again and again, throwing the response bytes away as they arrive. Both report MB/s (1 MB = 10^6 bytes).

The figures are read against a baseline measured on the same machine in the same run: the plain loopback
throughput between two Python processes (one sends with ``sendall``, the other discards with ``recv_into``).
A broker cannot move bytes through loopback faster than that without zero-copy tricks, so the ratio is what
compares across machines.

Usable on its own: ``python benchmarks/rawload.py --bootstrap 127.0.0.1:9092``. ``broker_bench.py`` imports
it for its raw-protocol figures and for the start-up probe (the first answered Metadata request).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from strom.protocol.client import BrokerConnection, BrokerConnectionError, UnsupportedApiError
from strom.protocol.messages import fetch, metadata, produce
from strom.protocol.record_batch import Record, build_batch

MB = 1_000_000
CLIENT_ID = "strom-rawload"

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3

# The newest versions this generator speaks. Fetch stops at 12 because 13+ names topics by id; Produce,
# Metadata and Fetch below these ranges' minimums predate record batches (magic 2) or topic lists.
PREFERRED_VERSIONS = {API_PRODUCE: (3, 11), API_FETCH: (4, 12), API_METADATA: (1, 12)}
# Start-up probes send Metadata before any negotiation, so they use a version every broker still serves.
PROBE_METADATA_VERSION = 4

# Kafka's default max.message.bytes (1 MiB plus the 12 bytes of offset and length before each batch).
DEFAULT_BATCH_LIMIT = 1_048_588
RECORD_VALUE_BYTES = 1024
# Kafka's default fetch.max.bytes is 55 MiB; the fetched log stays under it so one response holds all of it.
FETCH_MAX_BYTES = 64 * 1024 * 1024
PRODUCE_TIMEOUT_MS = 30_000
FETCH_MAX_WAIT_MS = 500
SCRATCH_BYTES = 4 * 1024 * 1024
CONNECT_RETRY_S = 0.005


class PhaseTimeout(Exception):
    """A measurement did not finish within its time bound."""


class BrokerError(Exception):
    """The broker answered with an error where the measurement needs a success (a connection that fails
    raises the shared client's ``BrokerConnectionError``, an ``OSError``)."""


@dataclass(frozen=True)
class Throughput:
    """Bytes moved in a timed run, and what the run consisted of."""

    bytes: int
    seconds: float
    requests: int

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds


# ---------------------------------------------------------------------------------------------- connection


class Connection(BrokerConnection):
    """The shared raw-protocol connection, introducing itself as this generator."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s, client_id=CLIENT_ID)


def parse_bootstrap(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host.strip("[]"), int(port)


def negotiate_versions(conn: Connection) -> dict[int, int]:
    """The version this generator will use for each API it needs, from the broker's ApiVersions answer."""
    try:
        return {
            api_key: conn.negotiate(api_key, oldest=oldest, newest=newest)
            for api_key, (oldest, newest) in PREFERRED_VERSIONS.items()
        }
    except UnsupportedApiError as exc:
        raise BrokerError(str(exc)) from None


# ---------------------------------------------------------------------------------------------- start-up


def first_metadata_answer(host: str, port: int, timeout_s: float) -> float:
    """Connect (retrying while refused) and send Metadata until one is answered; returns the answer's time.

    The time is ``time.perf_counter()`` when the answer was decoded, so callers can subtract their own
    start time.
    """
    deadline = time.perf_counter() + timeout_s
    request = metadata.MetadataRequest(topics=[], allow_auto_topic_creation=False)
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise PhaseTimeout(f"no Metadata answer from {host}:{port} within {timeout_s:g} s")
        try:
            with Connection(host, port, timeout_s=remaining) as conn:
                conn.call(API_METADATA, PROBE_METADATA_VERSION, request)
                return time.perf_counter()
        except TimeoutError:
            raise PhaseTimeout(f"no Metadata answer from {host}:{port} within {timeout_s:g} s") from None
        except BrokerConnectionError:  # not listening yet, or hung up while starting: try again
            time.sleep(CONNECT_RETRY_S)


# ---------------------------------------------------------------------------------------------- topics


def create_topic(bootstrap: str, name: str, timeout_s: float) -> None:
    """Create a 1-partition topic with replication factor 1."""
    # Level 5 (notice) hides the info line librdkafka logs when an admin client is dropped after one call.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 5})
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    try:
        futures[name].result(timeout=timeout_s)
    except TimeoutError:
        raise PhaseTimeout(f"topic {name} was not created within {timeout_s:g} s") from None


def partition_leader(bootstrap: str, topic: str, timeout_s: float) -> tuple[str, int]:
    """Host and port of the leader of ``topic``'s partition 0, waiting while it has none."""
    host, port = parse_bootstrap(bootstrap)
    deadline = time.perf_counter() + timeout_s
    with Connection(host, port, timeout_s) as conn:
        version = negotiate_versions(conn)[API_METADATA]
        request = metadata.MetadataRequest(
            topics=[metadata.MetadataRequest.MetadataRequestTopic(name=topic)],
            allow_auto_topic_creation=False,
        )
        while time.perf_counter() < deadline:
            response = conn.call(API_METADATA, version, request)
            brokers = {broker.node_id: (broker.host, broker.port) for broker in response.brokers}
            for found in response.topics:
                for partition in found.partitions:
                    if (
                        partition.partition_index == 0
                        and not partition.error_code
                        and partition.leader_id in brokers
                    ):
                        return brokers[partition.leader_id]
            time.sleep(0.05)
    raise PhaseTimeout(f"topic {topic} has no leader after {timeout_s:g} s")


def fresh_topic_name(purpose: str) -> str:
    return f"bench-{purpose}-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------- batches


def build_megabyte_batch(
    value_bytes: int = RECORD_VALUE_BYTES, batch_limit: int = DEFAULT_BATCH_LIMIT
) -> tuple[bytes, int]:
    """The largest batch of ``value_bytes``-byte records within ``batch_limit``; returns it and its count."""
    value = random.Random(0).randbytes(value_bytes)
    count = batch_limit // value_bytes
    while True:
        batch = build_batch(Record(offset_delta=i, value=value) for i in range(count))
        if len(batch) <= batch_limit:
            return batch, count
        count -= 1 + (len(batch) - batch_limit) // (value_bytes + 8)


# ---------------------------------------------------------------------------------------------- load


def _check_produce(response: Any) -> None:
    for topic in response.responses:
        for part in topic.partition_responses:
            if part.error_code:
                raise BrokerError(
                    f"Produce to {topic.name}-{part.index} failed with error code {part.error_code}"
                )


def _check_fetch(response: Any) -> None:
    if getattr(response, "error_code", 0):
        raise BrokerError(f"Fetch failed with error code {response.error_code}")
    for topic in response.responses:
        for part in topic.partitions:
            if part.error_code:
                raise BrokerError(
                    f"Fetch from {topic.topic}-{part.partition_index} failed with error {part.error_code}"
                )
            if not part.records:
                raise BrokerError(
                    f"Fetch from {topic.topic}-{part.partition_index} from offset 0 returned no records"
                )


def _run_pipelined(
    address: tuple[str, int],
    api_key: int,
    request: Any,
    requests: int,
    in_flight: int,
    check: Callable[[Any], None],
    keep_responses: bool,
    start: threading.Barrier,
    deadline: float,
) -> int:
    """Keep ``in_flight`` requests outstanding on one connection until ``requests`` are answered.

    One untimed request, decoded and checked, comes first. In the timed part each response is decoded and
    checked when ``keep_responses`` (produce, whose answers are tiny), otherwise read into a reused buffer and
    dropped (fetch), with only its size compared with the checked one's. Returns the response bytes received.
    """
    timeout_s = max(deadline - time.perf_counter(), 0.001)
    try:
        with Connection(*address, timeout_s=timeout_s) as conn:
            version = negotiate_versions(conn)[api_key]
            untimed_start = conn.received_bytes
            check(conn.call(api_key, version, request))
            checked_size = conn.received_bytes - untimed_start
            scratch = memoryview(bytearray(SCRATCH_BYTES))
            start.wait(timeout=timeout_s)
            timed_start = conn.received_bytes
            sent = answered = 0
            while answered < requests:
                while sent < requests and conn.in_flight < in_flight:
                    conn.send(api_key, version, request)
                    sent += 1
                if keep_responses:
                    check(conn.receive())
                else:
                    size = conn.discard_frame(scratch)
                    if size < checked_size // 2:
                        raise BrokerError(f"a {size}-byte response where the checked one had {checked_size}")
                answered += 1
                if time.perf_counter() > deadline:
                    raise PhaseTimeout(f"{answered} of {requests} requests answered when time ran out")
            return conn.received_bytes - timed_start
    except TimeoutError:
        raise PhaseTimeout("the broker did not answer within the time bound") from None


def _run_connections(
    shares: Sequence[int], deadline: float, work: Callable[[int, threading.Barrier], int]
) -> tuple[int, float]:
    """Run ``work(share, barrier)`` on a thread per share, timed from when all are ready to when all are done.

    Returns the summed results and the wall time.
    """
    barrier = threading.Barrier(len(shares) + 1)
    with ThreadPoolExecutor(max_workers=len(shares)) as pool:
        futures = [pool.submit(work, share, barrier) for share in shares]
        try:
            barrier.wait(timeout=max(deadline - time.perf_counter(), 0.001))
        except threading.BrokenBarrierError:
            for future in futures:
                future.result()  # a worker's own error explains the broken barrier best
            raise PhaseTimeout("the connections did not get ready in time") from None
        started = time.perf_counter()
        total = sum(future.result() for future in futures)
        return total, time.perf_counter() - started


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def produce_load(
    bootstrap: str,
    topic: str,
    batch: bytes,
    batches: int,
    *,
    in_flight: int = 4,
    connections: int = 1,
    acks: int = 1,
    timeout_s: float = 300.0,
) -> Throughput:
    """Send ``batch`` ``batches`` times to partition 0 of ``topic`` (which must exist), pipelined.

    Each connection also sends one untimed batch first, so the log grows by ``connections`` extra batches.
    """
    deadline = time.perf_counter() + timeout_s
    leader = partition_leader(bootstrap, topic, timeout_s)
    data = produce.ProduceRequest.PartitionProduceData(index=0, records=batch)
    topic_data = produce.ProduceRequest.TopicProduceData(name=topic, partition_data=[data])
    request = produce.ProduceRequest(acks=acks, timeout_ms=PRODUCE_TIMEOUT_MS, topic_data=[topic_data])

    def work(share: int, barrier: threading.Barrier) -> int:
        _run_pipelined(
            leader, API_PRODUCE, request, share, in_flight, _check_produce, True, barrier, deadline
        )
        return share * len(batch)

    sent_bytes, seconds = _run_connections(_split(batches, connections), deadline, work)
    return Throughput(bytes=sent_bytes, seconds=seconds, requests=batches)


def fetch_load(
    bootstrap: str,
    topic: str,
    rounds: int,
    *,
    in_flight: int = 2,
    connections: int = 1,
    timeout_s: float = 300.0,
) -> Throughput:
    """Fetch partition 0 of ``topic`` from offset 0, ``rounds`` times over, dropping the bytes as they come.

    The topic should be smaller than ``FETCH_MAX_BYTES`` so that each response carries all of it.
    """
    deadline = time.perf_counter() + timeout_s
    leader = partition_leader(bootstrap, topic, timeout_s)
    wanted = fetch.FetchRequest.FetchPartition(
        partition=0, fetch_offset=0, partition_max_bytes=FETCH_MAX_BYTES
    )
    request = fetch.FetchRequest(
        replica_id=-1,
        max_wait_ms=FETCH_MAX_WAIT_MS,
        min_bytes=1,
        max_bytes=FETCH_MAX_BYTES,
        isolation_level=0,
        topics=[fetch.FetchRequest.FetchTopic(topic=topic, partitions=[wanted])],
    )

    def work(share: int, barrier: threading.Barrier) -> int:
        return _run_pipelined(
            leader, API_FETCH, request, share, in_flight, _check_fetch, False, barrier, deadline
        )

    received, seconds = _run_connections(_split(rounds, connections), deadline, work)
    return Throughput(bytes=received, seconds=seconds, requests=rounds)


# ---------------------------------------------------------------------------------------------- baseline


def _sink(listener: socket.socket) -> None:
    """Accept one connection, discard everything it sends, then answer one byte so the sender can stop."""
    conn, _ = listener.accept()
    with conn:
        scratch = memoryview(bytearray(SCRATCH_BYTES))
        while conn.recv_into(scratch):
            pass
        conn.sendall(b"\x00")


def loopback_throughput(total_bytes: int = 1 << 30, timeout_s: float = 60.0) -> Throughput:
    """Plain Python loopback: ``sendall`` of 1 MiB buffers to a process that discards with ``recv_into``."""
    listener = socket.create_server(("127.0.0.1", 0))
    sink = multiprocessing.get_context("spawn").Process(target=_sink, args=(listener,), daemon=True)
    sink.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=timeout_s) as conn:
            chunk = memoryview(bytearray(1 << 20))
            chunks = total_bytes // len(chunk)
            started = time.perf_counter()
            for _ in range(chunks):
                conn.sendall(chunk)
            conn.shutdown(socket.SHUT_WR)
            if conn.recv(1) != b"\x00":
                raise BrokerError("the loopback sink closed before acknowledging")
            seconds = time.perf_counter() - started
    except TimeoutError:
        raise PhaseTimeout(f"loopback baseline took more than {timeout_s:g} s") from None
    finally:
        listener.close()
        sink.join(timeout=5)
        if sink.is_alive():
            sink.kill()
    return Throughput(bytes=chunks * len(chunk), seconds=seconds, requests=chunks)


# ---------------------------------------------------------------------------------------------- stand-alone


@dataclass(frozen=True)
class RawResults:
    """One run of the generator: the two figures and the loopback baseline (MB/s)."""

    produce_mb_per_s: float
    fetch_mb_per_s: float
    loopback_mb_per_s: float


def run_once(args: argparse.Namespace) -> RawResults:
    batch, _ = build_megabyte_batch()
    loopback = loopback_throughput().mb_per_s
    os.sync()  # start from a written-back page cache, as broker_bench does (see measure_phase there)
    ingest_topic = fresh_topic_name("rawproduce")
    create_topic(args.bootstrap, ingest_topic, args.timeout)
    ingest = produce_load(
        args.bootstrap,
        ingest_topic,
        batch,
        args.batches,
        in_flight=args.in_flight,
        connections=args.connections,
        timeout_s=args.timeout,
    )
    log_topic = fresh_topic_name("rawfetch")
    create_topic(args.bootstrap, log_topic, args.timeout)
    produce_load(args.bootstrap, log_topic, batch, args.fetch_log_batches, timeout_s=args.timeout)
    served = fetch_load(
        args.bootstrap, log_topic, args.fetch_rounds, connections=args.connections, timeout_s=args.timeout
    )
    return RawResults(ingest.mb_per_s, served.mb_per_s, loopback)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True, help="HOST:PORT of the broker to load")
    parser.add_argument("--batches", type=int, default=512, help="1 MiB batches to produce (default 512)")
    parser.add_argument("--in-flight", type=int, default=4, help="produce requests in flight per connection")
    parser.add_argument("--connections", type=int, default=1, help="connections to spread the load over")
    parser.add_argument(
        "--fetch-log-batches", type=int, default=32, help="size of the fetched log, in batches"
    )
    parser.add_argument("--fetch-rounds", type=int, default=50, help="times the whole log is fetched")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the median of each figure is printed")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each phase, seconds")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    runs = [asdict(run_once(args)) for _ in range(args.repeat)]
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    if args.json:
        print(json.dumps({"median": medians, "runs": runs}, indent=2))
        return 0
    loopback = medians["loopback_mb_per_s"]
    print(f"loopback baseline  {loopback:8,.0f} MB/s")
    for label, key in (("raw produce", "produce_mb_per_s"), ("raw fetch", "fetch_mb_per_s")):
        print(f"{label:<18} {medians[key]:8,.0f} MB/s  {medians[key] / loopback:.2f}x loopback")
    return 0


if __name__ == "__main__":
    sys.exit(main())
