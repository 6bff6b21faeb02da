"""Log compaction seen by real clients against a real ``strom serve``.

The broker's cleaner runs every second; topics use small segments, a short segment.ms (so the active segment
rolls and everything becomes cleanable) and a low min.cleanable.dirty.ratio. Each test waits, bounded, for
the cleaning it needs and then checks what consumers read: exactly the latest value per key, tombstoned keys
gone after delete.retention.ms, aborted transactions gone, __consumer_offsets bounded by its keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaPythonTopicPartition
from scenario import create_topic_with_confluent

from strom.testing.process import StromProcess

KEYS = 1_000
UPDATES = 100_000
WAIT_S = 90.0
IDLE_ROUNDS = 3  # consecutive empty one-second polls that end a read
COMPACTED = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": str(256 * 1024),
    "segment.ms": "2000",
    "min.cleanable.dirty.ratio": "0.01",
}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[StromProcess]:
    process = StromProcess(
        tmp_path / "data",
        {
            "offsets.topic.segment.bytes": str(1024 * 1024),
            "offsets.topic.num.partitions": "1",
            "log.cleaner.min.cleanable.ratio": "0.1",
            "log.retention.check.interval.ms": "1000",
        },
    ).start()
    yield process
    if process.running:
        process.stop()


def log_bytes(broker: StromProcess, topic: str) -> int:
    """Bytes of the partition's segment files on disk."""
    directory = next(broker.data_dir.rglob(f"{topic}-0"))
    return sum(path.stat().st_size for path in directory.glob("*.log"))


def wait_for(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        time.sleep(1.0)


def read_partition(
    bootstrap: str, topic: str, *, isolation: str = "read_uncommitted"
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record of partition 0, up to its high watermark (LSO if committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    partition = TopicPartition(topic, 0)
    try:
        _, high = consumer.get_watermark_offsets(partition, timeout=30, cached=False)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        records: list[tuple[int, bytes | None, bytes | None]] = []
        idle_rounds = 0
        # librdkafka's position is the last delivered offset + 1: when cleaning removed the records at the end
        # of the log it stays below the high watermark, so an idle read ends it too.
        while consumer.position([partition])[0].offset < high and idle_rounds < IDLE_ROUNDS:
            messages = consumer.consume(1000, timeout=1.0)
            idle_rounds = 0 if messages else idle_rounds + 1
            for message in messages:
                assert message.error() is None, message.error()
                records.append((message.offset(), message.key(), message.value()))  # type: ignore[arg-type]
        return records
    finally:
        consumer.close()


def read_with_kafka_python(bootstrap: str, topic: str) -> list[tuple[int, bytes | None, bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    partition = KafkaPythonTopicPartition(topic, 0)
    try:
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        high = consumer.end_offsets([partition])[partition]
        records: list[tuple[int, bytes | None, bytes | None]] = []
        idle_rounds = 0
        while consumer.position(partition) < high and idle_rounds < IDLE_ROUNDS:
            polled = consumer.poll(timeout_ms=1000)
            idle_rounds = 0 if polled else idle_rounds + 1
            for batch in polled.values():
                records += [(record.offset, record.key, record.value) for record in batch]
        return records
    finally:
        consumer.close()


def latest(records: list[tuple[int, bytes | None, bytes | None]]) -> dict[bytes | None, bytes | None]:
    return {key: value for _, key, value in records}


def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes | None]], **config: str) -> None:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 65536, **config}
    )
    errors: list[object] = []
    for key, value in items:
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, partition=0, on_delivery=lambda e, m: e and errors.append(e)
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:3]


def test_a_consumer_reads_exactly_the_latest_value_per_key(broker: StromProcess) -> None:
    topic = f"compacted-{uuid.uuid4().hex[:8]}"
    create_topic_with_confluent(broker.bootstrap, topic, partitions=1, config=COMPACTED)
    updates = [(b"key-%04d" % (i % KEYS), b"value-%06d-" % i + b"x" * 60) for i in range(UPDATES)]
    produce(broker.bootstrap, topic, updates)
    expected = dict(updates)
    written = log_bytes(broker, topic)

    # Cleaned down to about one record per key (the 100 updates per key are ~100x that).
    wait_for(lambda: log_bytes(broker, topic) < written / 20, "the cleaner to compact the log")
    seen: list[list[tuple[int, bytes | None, bytes | None]]] = []
    wait_for(
        lambda: len(seen.append(read_partition(broker.bootstrap, topic)) or seen[-1]) == KEYS,
        lambda: f"the last segment's cleaning: {len(seen[-1])} records, {log_bytes(broker, topic)} bytes",
    )

    records = read_partition(broker.bootstrap, topic)
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(offsets) and len(records) == KEYS
    assert latest(records) == expected
    # Each surviving record is the key's last update: its offset is where that update was written.
    assert {key: offset for offset, key, _ in records} == {
        key: offset for offset, (key, _) in enumerate(updates) if expected[key] == updates[offset][1]
    }
    kafka_python_records = read_with_kafka_python(broker.bootstrap, topic)
    assert kafka_python_records == records


def test_tombstoned_keys_disappear_after_delete_retention(broker: StromProcess) -> None:
    topic = f"tombstones-{uuid.uuid4().hex[:8]}"
    config = {**COMPACTED, "delete.retention.ms": "3000"}
    create_topic_with_confluent(broker.bootstrap, topic, partitions=1, config=config)
    values = [(b"key-%03d" % (i % 200), b"value-%d" % i) for i in range(2000)]
    tombstones: list[tuple[bytes, bytes | None]] = [(b"key-%03d" % i, None) for i in range(100)]
    produce(broker.bootstrap, topic, [*values, *tombstones])
    survivors = {key: value for key, value in values if int(key[4:]) >= 100}

    wait_for(lambda: latest(read_partition(broker.bootstrap, topic)) == survivors, "the tombstones to go")

    records = read_partition(broker.bootstrap, topic)
    assert len(records) == len(survivors)  # neither old values nor tombstones of deleted keys are left
    assert latest(records) == survivors


def test_aborted_records_disappear_and_committed_ones_survive(broker: StromProcess) -> None:
    topic = f"transactions-{uuid.uuid4().hex[:8]}"
    create_topic_with_confluent(broker.bootstrap, topic, partitions=1, config=COMPACTED)
    producer = Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": f"txn-{topic}", "linger.ms": 5}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, key=b"a%d" % i, value=b"committed", partition=0)
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, key=b"a%d" % i, value=b"aborted", partition=0)
        producer.produce(topic, key=b"b%d" % i, value=b"aborted", partition=0)
    producer.flush(30)
    producer.abort_transaction(30)
    producer.begin_transaction()
    for i in range(50):
        producer.produce(topic, key=b"c%d" % i, value=b"later", partition=0)
    producer.commit_transaction(30)
    expected = {**{b"a%d" % i: b"committed" for i in range(50)}, **{b"c%d" % i: b"later" for i in range(50)}}

    # Before cleaning a read_uncommitted consumer sees the aborted values; after it, they are gone.
    wait_for(lambda: latest(read_partition(broker.bootstrap, topic)) == expected, "the aborted records to go")
    for isolation in ("read_uncommitted", "read_committed"):
        records = read_partition(broker.bootstrap, topic, isolation=isolation)
        assert latest(records) == expected, isolation
        assert all(value != b"aborted" for _, _, value in records)
        assert len(records) == len(expected)


# The slowest test here (tens of seconds): a million offset commits.
COMMITS = 10_000
PARTITIONS_PER_COMMIT = 100


def test_consumer_offsets_stay_bounded_under_a_million_commits(broker: StromProcess) -> None:
    topic = f"committed-{uuid.uuid4().hex[:8]}"
    create_topic_with_confluent(broker.bootstrap, topic, partitions=PARTITIONS_PER_COMMIT)
    group = f"group-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    largest = 0
    try:
        for commit in range(1, COMMITS + 1):
            offsets = [TopicPartition(topic, p, commit * 1000 + p) for p in range(PARTITIONS_PER_COMMIT)]
            consumer.commit(offsets=offsets, asynchronous=False)
            if commit % 500 == 0:
                largest = max(largest, log_bytes(broker, "__consumer_offsets"))
    finally:
        consumer.close()
    # ~1,000,000 records of ~80 bytes were written (~80 MB); the keys are 100 (a partition of the group each).
    # While commits pour in, the log holds the cleaned part (one record per key), the active segment and the
    # segments written since the last cleaning began (the cleaner starts one per second).
    segment_bytes = 1024 * 1024
    cleaned_bytes = PARTITIONS_PER_COMMIT * 200
    assert largest < 16 * segment_bytes + cleaned_bytes, f"__consumer_offsets grew to {largest} bytes"
    # Once the commits stop, what is left is the active segment and the cleaned keys.
    wait_for(
        lambda: log_bytes(broker, "__consumer_offsets") < segment_bytes + cleaned_bytes, "the last cleaning"
    )

    broker.restart()
    after = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = after.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS_PER_COMMIT)], timeout=30
        )
    finally:
        after.close()
    assert [c.offset for c in committed] == [COMMITS * 1000 + p for p in range(PARTITIONS_PER_COMMIT)]


def _children(pid: int) -> set[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name, in parentheses, may hold spaces: the parent id follows the last ")".
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_the_cleaner_workers_die_with_a_killed_broker(broker: StromProcess) -> None:
    topic = f"orphans-{uuid.uuid4().hex[:8]}"
    create_topic_with_confluent(broker.bootstrap, topic, partitions=1, config=COMPACTED)
    produce(broker.bootstrap, topic, [(b"key-%02d" % (i % 50), b"x" * 200) for i in range(20_000)])
    written = log_bytes(broker, topic)
    wait_for(lambda: log_bytes(broker, topic) < written / 10, "the cleaner to compact the log")
    helpers = _children(broker.pid)
    assert helpers, "the cleaner runs in worker processes of the broker"

    broker.kill()  # as a crash: SIGKILL to the broker alone

    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), "the workers to exit", 20)
