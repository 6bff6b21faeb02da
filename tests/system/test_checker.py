"""A Jepsen-style run against a real Strom process: clients, kills and crashes, then a check of the history.

Idempotent producers (acks=all), transactional producers that commit or abort at random, and consumer groups
at read_committed and read_uncommitted (committing their positions) run as separate processes
(checker_workers.py), each recording its history. Meanwhile the broker is killed with SIGKILL and restarted
a few times, one client of each kind is killed with SIGKILL and replaced by a new incarnation, and an
observer keeps reading the groups' committed offsets. Afterwards the partitions are read in full at both
isolation levels, and `strom.testing.history.check` must find no anomaly: no acknowledged write lost, no
duplicate, no aborted data read at read_committed, no offsets out of order, no committed offset moving back.

A SIGKILL of the broker process leaves its page cache to the OS, so nothing it acknowledged may be lost; power
loss is not simulated. The run is bounded by fixed counts; the schedule of kills and crashes, and every
client's choices, follow from STROM_CHECKER_SEED.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from checker_workers import load_history, read_events
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.history import (
    CommittedOffset,
    FinalRead,
    Isolation,
    Operation,
    Outcome,
    Partition,
    Record,
    TxnFate,
    check,
)
from strom.testing.process import StromProcess

SEED = int(os.environ.get("STROM_CHECKER_SEED", "20260126"))
WORKERS_SCRIPT = Path(__file__).with_name("checker_workers.py")

TOPICS = {"checker-a": 3, "checker-b": 2}
PARTITIONS = [Partition(topic, number) for topic, count in TOPICS.items() for number in range(count)]
IDEMPOTENT_PRODUCERS = 2
MESSAGES_PER_PRODUCER = 300
SEND_PACE_S = 0.05
TRANSACTIONAL_PRODUCERS = 2
TXNS_PER_PRODUCER = 80
TXN_PACE_S = 0.4
ABORT_RATIO = 0.3
GROUPS = {"checker-rc": (Isolation.READ_COMMITTED, 2), "checker-ru": (Isolation.READ_UNCOMMITTED, 1)}

BROKER_KILLS = 3
#: One client of each kind is killed -9 and replaced by a new incarnation doing half the original count.
CRASHED_ROLES = ("transactional", "idempotent", "consumer")
#: Kills and crashes fall in this window of the run (seconds from the start), one per equal slot of it.
CHAOS_WINDOW_S = (1.5, 12.0)
BROKER_DOWN_S = (0.1, 1.0)
#: After the producers finish, each group must commit offsets past the last record it can see within this.
GROUPS_CATCH_UP_TIMEOUT_S = 30.0
OBSERVE_INTERVAL_S = 0.25
PRODUCERS_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 20.0
FINAL_READ_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 3000
CLIENT_LOGGER = logging.getLogger("checker.clients")


@dataclass
class Incarnation:
    """One process of a worker; a crash ends it and a new incarnation takes over."""

    name: str
    process: subprocess.Popen[bytes]
    history: Path
    output: Path
    killed: bool = False

    def output_tail(self) -> str:
        return self.output.read_text(errors="replace")[-LOG_TAIL_CHARS:]


@dataclass
class Worker:
    """A client role in the run (say, the second transactional producer) across its incarnations."""

    role: str
    name: str
    options: list[str]
    count: int = 0
    incarnations: list[Incarnation] = field(default_factory=list)

    @property
    def current(self) -> Incarnation:
        return self.incarnations[-1]

    @property
    def alive(self) -> bool:
        return bool(self.incarnations) and self.current.process.poll() is None


class Run:
    """The broker, the workers and the committed-offset observer of one checker run."""

    def __init__(self, broker: StromProcess, workdir: Path, rng: random.Random) -> None:
        self.broker = broker
        self.workdir = workdir
        self.rng = rng
        self.workers: list[Worker] = []
        self.broker_kills = 0
        self.client_crashes: Counter[str] = Counter()
        self.observed: list[CommittedOffset] = []
        self._stop_observing = threading.Event()
        self._observer = threading.Thread(target=self._observe_committed, daemon=True)

    # -- workers -----------------------------------------------------------------------------------------

    def add(self, worker: Worker) -> None:
        self.workers.append(worker)
        self._start(worker)

    def _start(self, worker: Worker) -> None:
        number = len(worker.incarnations)
        name = f"{worker.name}.{number}"
        count = worker.count if number == 0 else max(1, worker.count // 2)
        history, output = self.workdir / f"{name}.jsonl", self.workdir / f"{name}.out"
        command = [
            sys.executable,
            str(WORKERS_SCRIPT),
            worker.role,
            *("--bootstrap", self.broker.bootstrap, "--name", name, "--history", str(history)),
            *("--seed", str(self.rng.randrange(2**32)), "--count", str(count), *worker.options),
        ]
        with output.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        worker.incarnations.append(Incarnation(name, process, history, output))

    def crash_client(self, role: str) -> None:
        """SIGKILL a running worker of ``role`` and start its next incarnation."""
        candidates = [worker for worker in self.workers if worker.role == role and worker.alive]
        if not candidates:
            return
        worker = self.rng.choice(candidates)
        worker.current.killed = True
        worker.current.process.kill()
        worker.current.process.wait()
        self.client_crashes[role] += 1
        self._start(worker)

    def kill_broker(self) -> None:
        port = self.broker.port
        assert self.broker.kill() == -signal.SIGKILL
        self.broker_kills += 1
        time.sleep(self.rng.uniform(*BROKER_DOWN_S))
        self.broker.restart()
        assert self.broker.port == port, "the restarted broker lost its port; clients cannot find it"

    def wait_for(self, roles: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            if worker.role in roles:
                try:
                    worker.current.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{worker.current.name} still running:\n{worker.current.output_tail()}")

    def wait_for_groups(self, finals: list[FinalRead]) -> None:
        """Wait until each group has committed past the last record the final read at its level found."""
        last_offsets = {
            final.isolation: {record.partition: record.offset for record in final.records} for final in finals
        }
        wanted = {
            (group, partition): offset + 1
            for group, (isolation, _) in GROUPS.items()
            for partition, offset in last_offsets[isolation].items()
        }
        deadline = time.monotonic() + GROUPS_CATCH_UP_TIMEOUT_S
        while True:
            latest = {(seen.group, seen.partition): seen.offset for seen in list(self.observed)}
            behind = {
                key: (latest.get(key), offset)
                for key, offset in wanted.items()
                if latest.get(key, -1) < offset
            }
            if not behind:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"groups did not catch up (committed, wanted): {behind}")
            time.sleep(OBSERVE_INTERVAL_S)

    def stop_consumers(self) -> None:
        consumers = [worker.current for worker in self.workers if worker.role == "consumer"]
        for incarnation in consumers:
            incarnation.process.send_signal(signal.SIGTERM)
        for incarnation in consumers:
            try:
                incarnation.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{incarnation.name} ignored SIGTERM:\n{incarnation.output_tail()}")

    def incarnations(self) -> Iterator[Incarnation]:
        for worker in self.workers:
            yield from worker.incarnations

    def kill_leftovers(self) -> None:
        for incarnation in self.incarnations():
            if incarnation.process.poll() is None:
                incarnation.process.kill()
                incarnation.process.wait()

    # -- committed offsets -------------------------------------------------------------------------------

    def start_observing(self) -> None:
        self._observer.start()

    def stop_observing(self) -> None:
        """Stop after one last observation (by then every consumer is gone)."""
        self._stop_observing.set()
        self._observer.join()

    def _observe_committed(self) -> None:
        # A consumer per group that never subscribes: it only asks for the group's committed offsets.
        observers = {
            group: Consumer({**_client_config(self.broker.bootstrap), "group.id": group}) for group in GROUPS
        }
        try:
            stopping = False
            while not stopping:
                stopping = self._stop_observing.wait(OBSERVE_INTERVAL_S)
                self._observe_once(observers)
        finally:
            for observer in observers.values():
                observer.close()

    def _observe_once(self, observers: dict[str, Consumer]) -> None:
        for group, observer in observers.items():
            try:
                committed = observer.committed(_kafka_partitions(), timeout=CLIENT_TIMEOUT_S)
            except KafkaException:
                continue  # the broker is down: nothing observed
            self.observed += [
                CommittedOffset(group, Partition(tp.topic, tp.partition), tp.offset)
                for tp in committed
                if tp.error is None and tp.offset >= 0
            ]


def test_checker_finds_no_anomaly_after_kills_and_crashes(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    broker = StromProcess(tmp_path / "data").start()
    run = Run(broker, tmp_path, rng)
    try:
        _create_topics(broker.bootstrap)
        _start_workers(run)
        run.start_observing()
        _chaos(run, rng)
        run.wait_for({"idempotent", "transactional"}, PRODUCERS_TIMEOUT_S)
        finals = [_final_read(broker.bootstrap, isolation) for isolation in Isolation]
        run.wait_for_groups(finals)
        run.stop_consumers()
        run.stop_observing()
    finally:
        run.kill_leftovers()
        broker.stop()

    for incarnation in run.incarnations():
        expected = -signal.SIGKILL if incarnation.killed else 0
        assert incarnation.process.returncode == expected, (
            f"{incarnation.name} exited with {incarnation.process.returncode}:\n{incarnation.output_tail()}"
        )
    history: list[Operation] = [op for inc in run.incarnations() for op in load_history(inc.history)]
    history += run.observed
    history += finals
    report = check(history)
    offset_commits = sum(
        event["f"] == "commit_offsets" and event["type"] == "ok"
        for incarnation in run.incarnations()
        for event in read_events(incarnation.history)
    )
    print(
        f"\nseed {SEED}: {run.broker_kills} broker kills, client crashes {dict(run.client_crashes)}, "
        f"{sum(1 for _ in run.incarnations())} client processes, {offset_commits} offset commits\n"
        + report.summary()
    )

    assert report.ok, report.summary()
    stats = report.stats
    assert run.broker_kills == BROKER_KILLS
    assert set(run.client_crashes) == set(CRASHED_ROLES), "a kind of client was never crashed"
    assert stats.sends[Outcome.OK] > 0
    assert stats.txns[TxnFate.COMMITTED] > 0 and stats.txns[TxnFate.ABORTED] > 0
    assert all(stats.records_polled[isolation] > 0 for isolation in Isolation)
    assert all(stats.final_records[isolation] > 0 for isolation in Isolation)
    assert offset_commits > 0 and stats.committed_observations > 0


def _start_workers(run: Run) -> None:
    topics = [f"{topic}:{count}" for topic, count in TOPICS.items()]
    for number in range(IDEMPOTENT_PRODUCERS):
        options = ["--topics", *topics, "--pace", str(SEND_PACE_S)]
        run.add(Worker("idempotent", f"idempotent-{number}", options, MESSAGES_PER_PRODUCER))
    for number in range(TRANSACTIONAL_PRODUCERS):
        name = f"transactional-{number}"
        options = ["--topics", *topics, "--pace", str(TXN_PACE_S), "--abort-ratio", str(ABORT_RATIO)]
        run.add(Worker("transactional", name, [*options, "--transactional-id", name], TXNS_PER_PRODUCER))
    for group, (isolation, members) in GROUPS.items():
        for number in range(members):
            options = ["--topics", *TOPICS, "--group", group, "--isolation", isolation.value]
            run.add(Worker("consumer", f"{group}-{number}", options))


def _chaos(run: Run, rng: random.Random) -> None:
    """Broker kills and client crashes at seeded times, one per equal slot of the chaos window."""
    actions = [run.kill_broker] * BROKER_KILLS + [
        lambda role=role: run.crash_client(role) for role in CRASHED_ROLES
    ]
    rng.shuffle(actions)
    start, end = CHAOS_WINDOW_S
    slot = (end - start) / len(actions)
    began = time.monotonic()
    for number, action in enumerate(actions):
        at = start + slot * (number + rng.random())
        time.sleep(max(0.0, began + at - time.monotonic()))
        action()


def _create_topics(bootstrap: str) -> None:
    admin = AdminClient(_client_config(bootstrap))
    futures = admin.create_topics([NewTopic(topic, count, 1) for topic, count in TOPICS.items()])
    for future in futures.values():
        future.result(timeout=CLIENT_TIMEOUT_S)


def _client_config(bootstrap: str) -> dict[str, Any]:
    """For this process's clients: librdkafka's logs (connection refused while the broker is down) go to
    logging, where pytest keeps them, instead of cluttering stderr."""
    return {"bootstrap.servers": bootstrap, "reconnect.backoff.max.ms": 500, "logger": CLIENT_LOGGER}


def _kafka_partitions(offset: int = OFFSET_INVALID) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.number, offset) for p in PARTITIONS]


def _final_read(bootstrap: str, isolation: Isolation) -> FinalRead:
    """Every partition from its first offset until the consumer reports its end (the high watermark)."""
    consumer = Consumer(
        {
            **_client_config(bootstrap),
            "group.id": f"checker-final-{isolation}",
            "isolation.level": isolation.value,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        high_watermarks = {
            Partition(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=CLIENT_TIMEOUT_S)[1]
            for tp in _kafka_partitions()
        }
        consumer.assign(_kafka_partitions(OFFSET_BEGINNING))
        records: list[Record] = []
        reached: dict[Partition, int] = {}
        deadline = time.monotonic() + FINAL_READ_TIMEOUT_S
        while time.monotonic() < deadline and any(
            reached.get(p, -1) < end for p, end in high_watermarks.items() if end > 0
        ):
            for message in consumer.consume(num_messages=500, timeout=1.0):
                partition = Partition(message.topic(), message.partition())
                error = message.error()
                if error is None:
                    records.append(Record(partition, message.offset(), (message.value() or b"").decode()))
                elif error.code() == KafkaError._PARTITION_EOF:
                    reached[partition] = message.offset()
                else:
                    raise KafkaException(error)
    finally:
        consumer.close()
    short = {
        str(p): (reached.get(p), end)
        for p, end in high_watermarks.items()
        if end and reached.get(p, -1) < end
    }
    assert not short, f"final {isolation} read stopped short of the high watermark (reached, end): {short}"
    return FinalRead(isolation, tuple(records))
