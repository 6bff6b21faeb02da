"""kill -9 torture: at least 50 SIGKILLs of a real broker under mixed load, each followed by a restart and a
check that nothing acknowledged is gone and every file the broker reads back is consistent.

Long-running: about two to three minutes (bounded by the number of kills, STROM_TORTURE_KILLS, default 50).

Load (torture_load.py), all real confluent-kafka clients, running across the kills: a plain and an idempotent
producer (acks=all) writing to a delete-policy topic (4 KiB segments, retention.bytes and retention.ms small,
flush.messages low, so rolls, retention deletions and fsyncs happen all the time) and to a compacted topic
(4 KiB segments, min.cleanable.dirty.ratio 0.01, so the cleaner, where the broker runs one, cleans and swaps
all the time), plus a consumer-group member committing after every record.

Each kill point picks its moment from the seed (STROM_TORTURE_SEED): during the load, after the load has
paused (the broker then only ticks: retention, flushes, cleaning, file deletion), or while the broker is
starting (recovery itself). After each restart the producers drain (every send answered) and the check runs:

- offsets: no two acknowledged records share an offset; a partition read back has strictly increasing
  offsets in whole, valid batches;
- delete topic: every acknowledged record at or above the log start offset is there with its value;
- compacted topic: for each key, the latest acknowledged record or a newer one of that key is there, and an
  acknowledged offset still present holds the acknowledged key and value;
- indexes: Fetch from many offsets returns the batch holding that offset (or the first after it, when
  everything between was removed by retention or is superseded by a newer record of its key), and ListOffsets
  by timestamp returns the first such record at or after the timestamp;
- the group's committed offsets never go back, and never below a commit that was acknowledged.

At the end the broker stops cleanly and every partition directory is read offline: each segment is whole
valid batches, every offset index entry points at a batch boundary holding that offset, every time index
entry names a batch with the running maximum timestamp, and strom.log opens the partition (trusting the
indexes) at the offsets the broker served.

A SIGKILL leaves the page cache to the OS, so nothing acknowledged may be lost; power loss is not simulated.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import crc32c
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from torture_load import Acked, Load, OffsetMovedError, PartitionRead, fetch_batches, read_partition
from wire_client import RawConnection

from strom.log import LogConfig, PartitionLog
from strom.log.files import INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX, parse_segment_stem
from strom.protocol.errors import ErrorCode
from strom.protocol.record_batch import ATTRIBUTES_OFFSET, BATCH_HEADER_SIZE, HEADER_STRUCT, BatchHeader
from strom.testing.process import StromProcess, StromProcessError

SEED = int(os.environ.get("STROM_TORTURE_SEED", "20260207"))
KILL_POINTS = int(os.environ.get("STROM_TORTURE_KILLS", "50"))

PARTITIONS = 2
KEYS = 40
DELETE_TOPIC = "torture-delete"
COMPACT_TOPIC = "torture-compact"
GROUP = "torture-group"
BROKER_OVERRIDES = {
    "log.retention.check.interval.ms": "200",
    "log.segment.delete.delay.ms": "200",
    "group.initial.rebalance.delay.ms": "0",
}
DELETE_TOPIC_CONFIGS = {
    "internal.segment.bytes": "4096",
    "retention.bytes": "24576",
    "retention.ms": "15000",
    "flush.messages": "25",
}
COMPACT_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "internal.segment.bytes": "4096",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}
#: Seconds of load before a kill during the load; of quiet ticking after it; before a kill during startup.
LOAD_S = (0.05, 1.5)
QUIET_S = (0.0, 1.5)
STARTUP_S = (0.05, 0.6)
#: Share of kill points that land while the broker starts, and after the load paused (the rest: under load).
STARTUP_SHARE = 0.15
QUIET_SHARE = 0.25
INDEX_PROBES = 8
TIMESTAMP_PROBES = 4
RETRIES = 5

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


@dataclass
class Tally:
    under_load: int = 0
    quiet: int = 0
    startup: int = 0

    @property
    def total(self) -> int:
        return self.under_load + self.quiet + self.startup


@pytest.mark.timeout(600)
def test_kill9_torture(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    broker = StromProcess(tmp_path / "data", BROKER_OVERRIDES, port=_free_port())
    broker.start()
    _create_topics(broker.bootstrap)
    load = Load(
        broker.bootstrap,
        delete_topic=DELETE_TOPIC,
        compact_topic=COMPACT_TOPIC,
        partitions=PARTITIONS,
        keys=KEYS,
        group=GROUP,
        seed=SEED,
    )
    observer = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": GROUP, "enable.auto.commit": False}
    )
    checker = Checker(broker, load, observer, rng)
    tally = Tally()
    load.start()
    try:
        while tally.total < KILL_POINTS:
            roll = rng.random()
            if roll < STARTUP_SHARE:
                _crash(broker)
                if _kill_while_starting(broker, rng.uniform(*STARTUP_S)):
                    tally.startup += 1
            else:
                load.resume()
                time.sleep(rng.uniform(*LOAD_S))
                if roll < STARTUP_SHARE + QUIET_SHARE:
                    load.pause()
                    time.sleep(rng.uniform(*QUIET_S))
                    tally.quiet += 1
                else:
                    tally.under_load += 1
                _crash(broker)
            broker.restart()
            load.pause()
            checker.check()
        load.stop()
        observer.close()
        broker.stop()
    finally:
        load.stopping.set()
        if broker.running:
            broker.kill()
    compacted_acked = sum(1 for record in load.acked if record.topic == COMPACT_TOPIC)
    print(
        f"kill points: {tally}; records acknowledged: {len(load.acked)}; checks: {checker.checks}; "
        f"{COMPACT_TOPIC}: {compacted_acked} acknowledged, {sum(checker.stored_compacted.values())} kept"
    )
    assert tally.under_load and tally.quiet and tally.startup, tally
    assert checker.deleted_by_retention, (
        "retention never deleted anything: the delete topic was not exercised"
    )
    _check_offline(broker.data_dir, checker.served_end_offsets)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(DELETE_TOPIC, PARTITIONS, 1, config=DELETE_TOPIC_CONFIGS),
            NewTopic(COMPACT_TOPIC, PARTITIONS, 1, config=COMPACT_TOPIC_CONFIGS),
        ]
    )
    for future in futures.values():
        future.result(timeout=30)


def _kill_while_starting(broker: StromProcess, delay_s: float) -> bool:
    """Launch the broker and SIGKILL it ``delay_s`` later, most likely while it recovers its logs or loads its
    coordinators; True when the kill landed (it may come after the broker announced itself)."""
    landed = threading.Event()

    def kill() -> None:
        try:
            os.kill(broker.pid, signal.SIGKILL)
            landed.set()
        except (StromProcessError, ProcessLookupError):
            pass

    timer = threading.Timer(delay_s, kill)
    timer.start()
    with contextlib.suppress(StromProcessError):  # killed before it listened
        broker.restart()
    timer.join()
    _crash(broker)
    return landed.is_set()


def _crash(broker: StromProcess) -> None:
    """SIGKILL the broker and reap it. Its cleaner workers die with it (they ask for a parent-death signal):
    otherwise they would write on into the data directory of the next broker, and this would hang on the
    stdout they hold open."""
    broker.kill()


class Checker:
    """What must hold after every restart; remembers what the broker served to compare with the files."""

    def __init__(self, broker: StromProcess, load: Load, observer: Consumer, rng: random.Random) -> None:
        self._broker = broker
        self._load = load
        self._observer = observer
        self._rng = rng
        self._committed_seen: dict[int, int] = {}
        self.deleted_by_retention = False
        self.served_end_offsets: dict[tuple[str, int], int] = {}
        self.stored_compacted: dict[int, int] = {}  # records the compacted partitions held at the last check
        self.checks = 0

    def check(self) -> None:
        acked = list(self._load.acked)
        _assert_offsets_unique(acked)
        commits_acked = self._load.member.acked_commits()
        with RawConnection(self._broker.port) as conn:
            for topic in (DELETE_TOPIC, COMPACT_TOPIC):
                for partition in range(PARTITIONS):
                    mine = [a for a in acked if a.topic == topic and a.partition == partition]
                    self._check_partition(conn, topic, partition, mine)
        self._check_commits(commits_acked)
        self.checks += 1

    def _check_partition(self, conn: RawConnection, topic: str, partition: int, acked: list[Acked]) -> None:
        read, low_after = self._read(conn, topic, partition)
        where = f"{topic}-{partition} after {self.checks} restarts"
        self.served_end_offsets[(topic, partition)] = read.high_watermark
        if acked:
            assert read.high_watermark > max(a.offset for a in acked), f"{where}: acknowledged beyond the end"
        if topic == DELETE_TOPIC:
            self.deleted_by_retention |= low_after > 0
            for record in acked:
                if record.offset >= low_after:
                    stored = read.records.get(record.offset)
                    assert stored is not None, f"{where}: acknowledged offset {record.offset} is gone"
                    assert stored.value == record.value, f"{where}: offset {record.offset} changed value"
        else:
            self.stored_compacted[partition] = len(read.records)
            latest: dict[bytes | None, Acked] = {}
            for record in acked:
                if record.key not in latest or record.offset > latest[record.key].offset:
                    latest[record.key] = record
                stored = read.records.get(record.offset)
                if stored is not None:
                    assert (stored.key, stored.value) == (record.key, record.value), (
                        f"{where}: offset {record.offset} holds another record than the acknowledged one"
                    )
            newest_stored: dict[bytes | None, int] = {}
            for stored in read.records.values():
                newest_stored[stored.key] = stored.offset
            for key, record in latest.items():
                assert newest_stored.get(key, -1) >= record.offset, (
                    f"{where}: key {key!r} lost its latest acknowledged value (offset {record.offset})"
                )
        removable = _removable(read, low_after, compacted=topic == COMPACT_TOPIC)
        self._probe_fetches(conn, topic, partition, read, removable, where)
        self._probe_timestamps(topic, partition, read, removable, where)

    def _read(self, conn: RawConnection, topic: str, partition: int) -> tuple[PartitionRead, int]:
        """The partition in full and the log start offset right after the read (retention runs meanwhile)."""
        for _ in range(RETRIES):
            low, high = self._watermarks(topic, partition)
            try:
                read = read_partition(conn, topic, partition, low, high)
            except OffsetMovedError:
                continue
            return read, self._watermarks(topic, partition)[0]
        raise AssertionError(f"{topic}-{partition}: the log start offset kept moving under the read")

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, high watermark); the observer learns the topic first if it forgot it."""
        for _ in range(RETRIES):
            try:
                low, high = self._observer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=30, cached=False
                )
                return int(low), int(high)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._UNKNOWN_PARTITION:
                    raise
                self._observer.list_topics(topic, timeout=30)
        raise AssertionError(f"{topic}-{partition} stays unknown to the observer")

    def _probe_fetches(
        self,
        conn: RawConnection,
        topic: str,
        partition: int,
        read: PartitionRead,
        removable: set[int],
        where: str,
    ) -> None:
        """A Fetch from offset o answers with the first batch reaching o; only removable records may be
        missing between o and that batch's first offset."""
        if read.high_watermark <= read.log_start_offset:
            return
        offsets = sorted(read.records)
        for _ in range(INDEX_PROBES):
            target = self._rng.randrange(read.log_start_offset, read.high_watermark)
            error, batches = fetch_batches(conn, topic, partition, target, max_bytes=1)
            if error == ErrorCode.OFFSET_OUT_OF_RANGE and self._watermarks(topic, partition)[0] > target:
                continue  # retention moved the log start past it
            assert error == 0, f"{where}: Fetch at {target} failed with error {error}"
            assert batches, f"{where}: Fetch at {target} returned nothing below the end"
            first = HEADER_STRUCT.unpack_from(batches[0])
            header = BatchHeader._make(first)
            assert header.last_offset >= target, (
                f"{where}: Fetch at {target} returned a batch ending at {header.last_offset}"
            )
            low_now = self._watermarks(topic, partition)[0]
            skipped = [
                o for o in offsets if max(target, low_now) <= o < header.base_offset and o not in removable
            ]
            assert not skipped, f"{where}: Fetch at {target} skipped records {skipped[:5]}"

    def _probe_timestamps(
        self, topic: str, partition: int, read: PartitionRead, removable: set[int], where: str
    ) -> None:
        """ListOffsets by timestamp answers with the first record at or after it, short of removable ones."""
        stored = sorted(read.records.values(), key=lambda record: record.offset)
        if not stored:
            return
        for _ in range(TIMESTAMP_PROBES):
            target = self._rng.choice(stored).timestamp + self._rng.choice((-1, 0, 1))
            (answer,) = self._observer.offsets_for_times(
                [TopicPartition(topic, partition, target)], timeout=30
            )
            assert answer.error is None, f"{where}: ListOffsets at time {target} failed: {answer.error}"
            found = answer.offset if answer.offset >= 0 else read.high_watermark
            low_now = self._watermarks(topic, partition)[0]  # retention may have moved on meanwhile
            earlier = [r.offset for r in stored if low_now <= r.offset < found and r.timestamp >= target]
            assert all(o in removable for o in earlier), (
                f"{where}: ListOffsets at time {target} gave {found}, but {earlier[:5]} come earlier"
            )
            if found in read.records:
                assert read.records[found].timestamp >= target, (
                    f"{where}: ListOffsets at time {target} gave {found}, which is older"
                )

    def _check_commits(self, commits_acked: dict[int, int]) -> None:
        partitions = [TopicPartition(DELETE_TOPIC, p) for p in range(PARTITIONS)]
        for tp in self._observer.committed(partitions, timeout=30):
            assert tp.error is None, f"OffsetFetch failed: {tp.error}"
            committed = tp.offset if tp.offset >= 0 else -1
            floor = max(commits_acked.get(tp.partition, -1), self._committed_seen.get(tp.partition, -1))
            assert committed >= floor, (
                f"{DELETE_TOPIC}-{tp.partition}: committed offset {committed} went back below {floor}"
            )
            self._committed_seen[tp.partition] = committed


def _assert_offsets_unique(acked: list[Acked]) -> None:
    seen: dict[tuple[str, int, int], Acked] = {}
    for record in acked:
        key = (record.topic, record.partition, record.offset)
        assert key not in seen, f"offset handed out twice: {seen[key]} and {record}"
        seen[key] = record


def _removable(read: PartitionRead, low_after: int, *, compacted: bool) -> set[int]:
    """Offsets that may vanish while the check runs: below the new log start, or (compacted) superseded."""
    removable = {o for o in read.records if o < low_after}
    if compacted:
        newest: dict[bytes | None, int] = {}
        for offset in sorted(read.records):
            newest[read.records[offset].key] = offset
        removable |= {o for o, r in read.records.items() if newest[r.key] != o}
    return removable


# --------------------------------------------------------------------------------------------- offline checks
def _check_offline(data_dir: Path, served: dict[tuple[str, int], int]) -> None:
    """After a clean stop: every segment, index and time index of every partition is consistent, and
    strom.log opens each partition where the broker left it."""
    directories = sorted(
        d for d in data_dir.iterdir() if d.is_dir() and d.name.startswith((DELETE_TOPIC, COMPACT_TOPIC, "__"))
    )
    directories = [d for d in directories if not d.name.startswith("__cluster_metadata")]
    assert len(directories) >= 2 * PARTITIONS
    for directory in directories:
        end = -1
        for log_path in sorted(directory.glob("*" + LOG_SUFFIX)):
            base = parse_segment_stem(log_path.stem)
            assert base is not None
            batches = list(_scan_segment(log_path))
            _check_offset_index(log_path.with_suffix(INDEX_SUFFIX), base, batches)
            _check_time_index(log_path.with_suffix(TIME_INDEX_SUFFIX), base, batches)
            if batches:
                assert batches[0][1].base_offset >= base, f"{log_path}: batch below the segment's base offset"
                assert batches[0][1].base_offset > end, f"{log_path}: overlaps the segment before it"
                end = batches[-1][1].last_offset
        log = PartitionLog(directory, LogConfig(), clean_shutdown=True)
        try:
            served_end = served.get((log.topic, log.partition), 0)
            assert log.log_end_offset >= served_end, f"{directory}: ends before what the broker served"
            if end >= 0:
                assert log.log_end_offset == end + 1, (
                    f"{directory}: opens at {log.log_end_offset}, ends at {end}"
                )
        finally:
            log.close(flush=False)


def _scan_segment(path: Path) -> Iterator[tuple[int, BatchHeader]]:
    """(position, header) of each batch; AssertionError unless the file is whole, valid batches."""
    data = path.read_bytes()
    position = 0
    while position < len(data):
        assert len(data) - position >= BATCH_HEADER_SIZE, f"{path}: torn batch header at {position}"
        header = BatchHeader._make(HEADER_STRUCT.unpack_from(data, position))
        end = position + header.total_size
        assert header.total_size >= BATCH_HEADER_SIZE and end <= len(data), (
            f"{path}: torn batch at {position}"
        )
        assert crc32c.crc32c(data[position + ATTRIBUTES_OFFSET : end]) == header.crc, f"{path}: bad CRC"
        yield position, header
        position = end


def _check_offset_index(path: Path, base: int, batches: list[tuple[int, BatchHeader]]) -> None:
    at = {position: header for position, header in batches}
    data = path.read_bytes() if path.exists() else b""
    assert len(data) % _OFFSET_ENTRY.size == 0, f"{path}: torn entry"
    for relative, position in _OFFSET_ENTRY.iter_unpack(data):
        header = at.get(position)
        assert header is not None, f"{path}: entry ({relative}, {position}) is not at a batch boundary"
        assert header.last_offset == base + relative, (
            f"{path}: entry says offset {base + relative} at {position}, the batch there ends at "
            f"{header.last_offset}"
        )


def _check_time_index(path: Path, base: int, batches: list[tuple[int, BatchHeader]]) -> None:
    running_max: dict[int, int] = {}
    highest = -1
    for _, header in batches:
        highest = max(highest, header.max_timestamp)
        running_max[header.last_offset] = highest
    data = path.read_bytes() if path.exists() else b""
    assert len(data) % _TIME_ENTRY.size == 0, f"{path}: torn entry"
    for timestamp, relative in _TIME_ENTRY.iter_unpack(data):
        offset = base + relative
        assert offset in running_max, f"{path}: entry ({timestamp}, {offset}) names no batch's last offset"
        assert running_max[offset] == timestamp, (
            f"{path}: entry says max timestamp {timestamp} at {offset}, the log says {running_max[offset]}"
        )
