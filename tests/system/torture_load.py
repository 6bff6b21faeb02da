"""The crash torture's clients and its bookkeeping (test_crash_torture.py).

`Load` runs real clients in threads against the broker: a plain and an idempotent confluent-kafka producer
(acks=all) writing to both topics, and a consumer-group member that commits what it reads. It keeps running
across broker kills (librdkafka reconnects and retries), and records what the broker acknowledged: every
delivered record with its offset, and every commit that succeeded. `pause()` stops new sends and waits for
every send in flight to be acknowledged or refused, so a check afterwards knows the full set of acknowledged
records.

`read_partition` reads a partition back over the raw protocol, batch by batch, checking the order of offsets
on the way; the checks themselves live in the test.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from wire_client import RawConnection, split_batches

from strom.protocol.errors import ErrorCode
from strom.protocol.messages import fetch
from strom.protocol.record_batch import BatchHeader, decode_batch

#: How long a paused producer may take to hear about every send in flight (the broker may be recovering).
DRAIN_TIMEOUT_S = 60.0
SEND_PACE_S = 0.002
FETCH_VERSION = 12
#: Enough for a whole partition of the torture in one response, and small reads for the index probes.
READ_ALL_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Acked:
    """A record the broker acknowledged at ``offset``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class StoredRecord:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class PartitionRead:
    """One partition as fetched: its batch headers and its records in offset order."""

    log_start_offset: int
    high_watermark: int
    batches: list[BatchHeader] = field(default_factory=list)
    records: dict[int, StoredRecord] = field(default_factory=dict)


class _Producer(threading.Thread):
    def __init__(self, load: Load, name: str, idempotent: bool, seed: int) -> None:
        super().__init__(name=name, daemon=True)
        self._load = load
        self._tag = name
        self._rng = random.Random(seed)
        self.producer = Producer(
            {
                "bootstrap.servers": load.bootstrap,
                "acks": "all",
                "enable.idempotence": idempotent,
                "linger.ms": 2,
                "batch.num.messages": 20,
                "message.timeout.ms": 120_000,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 200,
            }
        )
        self.fatal: str | None = None
        self.refused = 0
        self.idle = threading.Event()
        self._sent = 0

    def run(self) -> None:
        load = self._load
        while not load.stopping.is_set():
            if load.paused.is_set():
                self.idle.set()
                time.sleep(0.01)
                continue
            self.idle.clear()
            self._send_one()
            self.producer.poll(0)
            time.sleep(SEND_PACE_S)
        self.idle.set()

    def _send_one(self) -> None:
        load = self._load
        self._sent += 1
        value = f"{self._tag}-{self._sent}".encode()
        if self._rng.random() < 0.5:
            topic, key = load.delete_topic, None
        else:
            topic, key = load.compact_topic, f"key-{self._rng.randrange(load.keys)}".encode()
        partition = self._rng.randrange(load.partitions)
        try:
            self.producer.produce(topic, value, key, partition=partition, on_delivery=self._delivered)
        except BufferError:
            self.producer.poll(0.1)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if err.fatal():
                self.fatal = str(err)
            self.refused += 1
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        value = msg.value()
        assert topic is not None and partition is not None and offset is not None and value is not None
        self._load.acked.append(Acked(topic, partition, offset, msg.key(), value))


class _GroupMember(threading.Thread):
    """Reads the delete-policy topic in a group and commits synchronously after each message read."""

    def __init__(self, load: Load, group: str) -> None:
        super().__init__(name="group-member", daemon=True)
        self._load = load
        self.consumer = Consumer(
            {
                "bootstrap.servers": load.bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "reconnect.backoff.ms": 50,
                "reconnect.backoff.max.ms": 200,
            }
        )
        self.consumer.subscribe([load.delete_topic])
        self.commits_acked: dict[int, int] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self._load.stopping.is_set():
            try:
                msg = self.consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                committed = self.consumer.commit(message=msg, asynchronous=False)
            except KafkaException:
                continue  # the broker is down or the group is rebalancing: the commit did not happen
            with self.lock:
                for tp in committed or []:
                    if tp.error is None and tp.offset >= 0:
                        previous = self.commits_acked.get(tp.partition, -1)
                        self.commits_acked[tp.partition] = max(previous, tp.offset)
        self.consumer.close()

    def acked_commits(self) -> dict[int, int]:
        with self.lock:
            return dict(self.commits_acked)


class Load:
    """The clients of one torture run; ``acked`` grows from the producers' delivery callbacks."""

    def __init__(
        self,
        bootstrap: str,
        *,
        delete_topic: str,
        compact_topic: str,
        partitions: int,
        keys: int,
        group: str,
        seed: int,
    ) -> None:
        self.bootstrap = bootstrap
        self.delete_topic = delete_topic
        self.compact_topic = compact_topic
        self.partitions = partitions
        self.keys = keys
        self.acked: list[Acked] = []  # list.append is atomic: callbacks run on the producer threads
        self.stopping = threading.Event()
        self.paused = threading.Event()
        self.paused.set()
        self.producers = [
            _Producer(self, "plain", idempotent=False, seed=seed),
            _Producer(self, "idempotent", idempotent=True, seed=seed + 1),
        ]
        self.member = _GroupMember(self, group)

    def start(self) -> None:
        for thread in (*self.producers, self.member):
            thread.start()

    def resume(self) -> None:
        self.paused.clear()

    def pause(self) -> None:
        """Stop sending and wait until every send has an answer; AssertionError if one is still open."""
        self.paused.set()
        for producer in self.producers:
            assert producer.idle.wait(DRAIN_TIMEOUT_S), f"{producer.name} did not pause"
            remaining = producer.producer.flush(DRAIN_TIMEOUT_S)
            assert remaining == 0, f"{producer.name}: {remaining} sends unanswered after {DRAIN_TIMEOUT_S} s"
            assert producer.fatal is None, f"{producer.name} hit a fatal error: {producer.fatal}"

    def stop(self) -> None:
        self.stopping.set()
        for thread in (*self.producers, self.member):
            thread.join(timeout=30)


class OffsetMovedError(Exception):
    """Retention moved the log start offset past where a read was going."""


def fetch_batches(
    conn: RawConnection, topic: str, partition: int, offset: int, max_bytes: int
) -> tuple[int, list[bytes]]:
    """The error code and the whole batches of a Fetch from ``offset``."""
    request = fetch.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        topics=[
            fetch.FetchRequest.FetchTopic(
                topic=topic,
                partitions=[
                    fetch.FetchRequest.FetchPartition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=max_bytes
                    )
                ],
            )
        ],
    )
    response = conn.call(fetch.API_KEY, conn.version_for(fetch.API_KEY, FETCH_VERSION), request)
    assert response.error_code == 0, f"Fetch {topic}-{partition} failed with error {response.error_code}"
    ((data,),) = [t.partitions for t in response.responses]
    return data.error_code, list(split_batches(bytes(data.records or b"")))


def read_partition(
    conn: RawConnection, topic: str, partition: int, log_start_offset: int, high_watermark: int
) -> PartitionRead:
    """Fetch [log start, high watermark) batch by batch: CRCs valid, offsets strictly increasing, batches
    never overlapping (compaction may leave gaps)."""
    read = PartitionRead(log_start_offset, high_watermark)
    offset = log_start_offset
    last = log_start_offset - 1
    while offset < high_watermark:
        error, batches = fetch_batches(conn, topic, partition, offset, READ_ALL_BYTES)
        if error == ErrorCode.OFFSET_OUT_OF_RANGE:
            raise OffsetMovedError(f"{topic}-{partition}: offset {offset} is no longer in the log")
        assert error == 0, f"Fetch {topic}-{partition}@{offset} failed with error {error}"
        assert batches, f"{topic}-{partition}: nothing returned at offset {offset} < {high_watermark}"
        for batch in batches:
            header, records = decode_batch(batch)
            assert header.base_offset > last, (
                f"{topic}-{partition}: batch at {header.base_offset} does not follow offset {last}"
            )
            read.batches.append(header)
            for record in records:
                record_offset = header.base_offset + record.offset_delta
                assert record_offset > last, f"{topic}-{partition}: offset {record_offset} after {last}"
                assert record_offset <= header.last_offset
                last = record_offset
                if not header.is_control:
                    timestamp = header.record_timestamp(record.timestamp_delta)
                    read.records[record_offset] = StoredRecord(
                        record_offset, timestamp, record.key, record.value
                    )
            offset = header.next_offset
    return read
