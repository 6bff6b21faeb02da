"""A full disk: a real `strom serve` whose log directories live on small tmpfs mounts the test creates.

Producers get KAFKA_STORAGE_ERROR, every acknowledged record stays readable, consumers keep reading, and the
broker takes writes again by itself once space returns (no restart); after a restart nothing acknowledged is
missing. With two log directories, a full one does not stop the partitions on the other, and DescribeLogDirs
reports both. Needs root (mount); skipped with the reason otherwise. About 20 s.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.admin import KafkaAdminClient

from strom.testing.process import StromProcess

VALUE_SIZE = 4096
CLIENT_TIMEOUT_S = 30


def _mount(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")


@pytest.fixture
def small_disks(tmp_path: Path) -> Iterator[list[Path]]:
    """Two tmpfs mounts of 24 MB; unmounted at teardown."""
    mounts = []
    try:
        for name in ("disk-a", "disk-b"):
            _mount(tmp_path / name, 24)
            mounts.append(tmp_path / name)
        yield mounts
    finally:
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path, leave_bytes: int) -> Path:
    """A filler file taking all but about ``leave_bytes`` of the file system holding ``path``."""
    filler = path / "filler"
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with filler.open("wb") as out:
        remaining = max(free - leave_bytes, 0)
        chunk = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= out.write(chunk[: min(len(chunk), remaining)])
    return filler


def _broker(dirs: list[Path], log_path: Path) -> StromProcess:
    return StromProcess(
        ",".join(str(d / "data") for d in dirs),
        {"log.flush.interval.messages": "1"},  # acknowledged means fsynced: a failing fsync must show too
        log_path=log_path,
    )


def _create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(CLIENT_TIMEOUT_S)


class _Produced:
    """What a producer was told: acknowledged (partition, offset) -> value, and the failures' error codes."""

    def __init__(self) -> None:
        self.acked: dict[tuple[int, int], bytes] = {}
        self.errors: list[int] = []

    def report(self, err: KafkaError | None, msg: object) -> None:
        if err is not None:
            self.errors.append(err.code())
        else:
            self.acked[(msg.partition(), msg.offset())] = msg.value()  # type: ignore[attr-defined]


def _producer(bootstrap: str) -> Producer:
    # No retries: each failure comes back as the broker's error code instead of a retry loop.
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "retries": 0,
            "enable.idempotence": False,
            "linger.ms": 5,
        }
    )


def _produce(
    producer: Producer, topic: str, partition: int, start: int, count: int, produced: _Produced
) -> None:
    for i in range(start, start + count):
        value = b"%08d" % i + b"x" * (VALUE_SIZE - 8)
        producer.produce(topic, value, partition=partition, on_delivery=produced.report)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def _read_all(bootstrap: str, topic: str, partition: int) -> dict[int, bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), CLIENT_TIMEOUT_S)
        consumer.assign([TopicPartition(topic, partition, 0)])
        found: dict[int, bytes] = {}
        while len(found) < high:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"read {len(found)} of {high} records, then nothing"
            assert message.error() is None, message.error()
            found[message.offset()] = message.value()
        return found
    finally:
        consumer.close()


def _check_acked_readable(bootstrap: str, topic: str, partition: int, produced: _Produced) -> None:
    stored = _read_all(bootstrap, topic, partition)
    acked = {offset: value for (p, offset), value in produced.acked.items() if p == partition}
    assert {offset: stored.get(offset) for offset in acked} == acked


def test_a_full_disk_rejects_writes_keeps_acknowledged_records_and_recovers(
    small_disks: list[Path], tmp_path: Path
) -> None:
    disk = small_disks[0]
    filler = _fill(disk, 12 << 20)  # about 12 MB left for the broker
    broker = _broker([disk], tmp_path / "broker.log").start()
    try:
        _create_topic(broker.bootstrap, "events", 1)
        producer = _producer(broker.bootstrap)
        produced = _Produced()
        sent = 0
        while not produced.errors:
            assert sent < 20_000, "the disk never filled up"
            _produce(producer, "events", 0, sent, 200, produced)
            sent += 200
        _produce(producer, "events", 0, sent, 200, produced)  # still full: these fail too
        sent += 200
        assert set(produced.errors) == {KafkaError.KAFKA_STORAGE_ERROR}
        assert len(produced.acked) > 1000
        _check_acked_readable(broker.bootstrap, "events", 0, produced)  # consumers still read

        filler.unlink()  # space returns: the same broker process takes writes again
        before = len(produced.acked)
        errors = len(produced.errors)
        _produce(producer, "events", 0, sent, 200, produced)
        sent += 200
        assert len(produced.errors) == errors and len(produced.acked) == before + 200

        broker.stop()
        broker.start()
        _check_acked_readable(broker.bootstrap, "events", 0, produced)
    finally:
        if broker.running:
            broker.stop()


def test_one_full_log_dir_does_not_stop_the_other(small_disks: list[Path], tmp_path: Path) -> None:
    broker = _broker(small_disks, tmp_path / "broker.log").start()
    try:
        _create_topic(broker.bootstrap, "spread", 2)  # one partition in each directory: the fewest rule
        placed = {
            partition: disk
            for disk in small_disks
            for partition in (0, 1)
            if (disk / "data" / f"spread-{partition}").is_dir()
        }
        assert set(placed.values()) == set(small_disks), placed
        full_partition = next(p for p, disk in placed.items() if disk == small_disks[0])
        other = 1 - full_partition
        producer = _producer(broker.bootstrap)
        produced = _Produced()
        _produce(producer, "spread", full_partition, 0, 50, produced)
        filler = _fill(small_disks[0], 0)
        errors_before = len(produced.errors)
        _produce(producer, "spread", full_partition, 50, 50, produced)
        assert len(produced.errors) > errors_before
        assert set(produced.errors) == {KafkaError.KAFKA_STORAGE_ERROR}
        acked_before = len(produced.acked)
        _produce(producer, "spread", other, 0, 200, produced)
        assert len(produced.acked) == acked_before + 200, "the other directory's partition takes writes"
        _check_acked_readable(broker.bootstrap, "spread", full_partition, produced)
        _check_acked_readable(broker.bootstrap, "spread", other, produced)

        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            described = admin.describe_log_dirs()
        finally:
            admin.close()
        results = {entry["log_dir"]: entry for response in described for entry in response["log_dirs"]}
        assert set(results) == {str((disk / "data").resolve()) for disk in small_disks}
        sizes = {
            log_dir: {
                (topic["name"], part["partition_index"]): part["partition_size"]
                for topic in entry["topics"]
                for part in topic["partitions"]
            }
            for log_dir, entry in results.items()
        }
        assert all(entry["total_bytes"] > 0 for entry in results.values())
        other_dir = str((placed[other] / "data").resolve())
        assert sizes[other_dir][("spread", other)] >= 200 * VALUE_SIZE
        full_dir = str((small_disks[0] / "data").resolve())
        assert (
            sizes[full_dir][("spread", full_partition)]
            >= len([key for key in produced.acked if key[0] == full_partition]) * VALUE_SIZE
        )
        filler.unlink()
    finally:
        broker.stop()
