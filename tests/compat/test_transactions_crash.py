"""Transactions against a real Strom broker when processes die with SIGKILL.

Two crashes: an exactly-once consume-transform-produce processor (``eos_processor.py``) killed again and
again and restarted, after which the output holds each input record exactly once; and the broker itself
killed while several producers have transactions open or are committing them, after which every
transaction is visible whole or not at all, and every commit the broker acknowledged is there.
"""

from __future__ import annotations

import collections
import itertools
import json
import random
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from eos_processor import ProcessorConfig, transform
from group_scenario import Member, committed_offsets, members_closed, wait_for
from scenario import CLIENT_TIMEOUT_S, PARTITION_COUNT, create_topic_with_confluent
from test_transactions import END_MARKER, read_with_confluent

from strom.testing.process import StromProcess

PROCESSOR_SCRIPT = Path(__file__).parent / "eos_processor.py"
BROKER_OVERRIDES = {
    # Kafka looks for timed-out transactions every 10 s by default; recovery after the broker crash waits
    # for that.
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
    "group.initial.rebalance.delay.ms": "0",
}
SEED = 20240917

INPUT_RECORDS = 3000
PROCESSOR_KILLS = 5
# A kill comes after this many records produced in the run, or after this many commits began.
KILL_AFTER_PRODUCED = (1, 400)
KILL_AFTER_COMMITS = (1, 3)

BROKER_KILL_ROUNDS = 2
LOOPING_PRODUCERS = 4
HOLDING_PRODUCERS = 2
MAX_TRANSACTION_RECORDS = 30
# The broker is killed once the looping producers have had this many commits acknowledged in the round.
KILL_AFTER_ACKNOWLEDGED = (5, 20)
# Short, so that the broker aborts the transactions the crash left open soon after it comes back.
CRASH_TRANSACTION_TIMEOUT_MS = 5000
# How long a producer call may wait across the broker's restart (a bound, not a target).
PRODUCER_CALL_TIMEOUT_S = 15.0
JOIN_TIMEOUT_S = 60.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[StromProcess]:
    process = StromProcess(tmp_path / "data", overrides=BROKER_OVERRIDES).start()
    yield process
    if process.running:
        process.stop()


def end_every_partition(bootstrap: str, topic: str) -> None:
    """Write the end marker the readers stop at to every partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition in range(PARTITION_COUNT):
        producer.produce(topic, value=END_MARKER.encode(), partition=partition)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "end markers unacknowledged"


# ------------------------------------------------------------------- the processor killed and restarted


def produce_input(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    """INPUT_RECORDS distinct records round-robin over the partitions; returns each partition's values."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    values: dict[int, list[bytes]] = collections.defaultdict(list)
    for index in range(INPUT_RECORDS):
        partition = index % PARTITION_COUNT
        value = f"record {index:05d}".encode()
        producer.produce(topic, key=f"key-{index % 17}".encode(), value=value, partition=partition)
        values[partition].append(value)
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "input records unacknowledged"
    return dict(values)


def start_processor(config: ProcessorConfig) -> Member:
    return Member("eos-processor", [sys.executable, str(PROCESSOR_SCRIPT), config.to_json()])


def events_of(processor: Member, kind: str) -> int:
    return sum(1 for event in processor.events if event["event"] == kind)


def events_reached(processor: Member, kind: str, count: int) -> Callable[[], bool]:
    return lambda: events_of(processor, kind) >= count


def last_positions(processor: Member) -> dict[int, int]:
    """The positions of the processor's latest acknowledged commit."""
    committed = [event for event in processor.events if event["event"] == "committed"]
    if not committed:
        return {}
    return {int(partition): offset for partition, offset in committed[-1]["positions"].items()}


def test_exactly_once_pipeline_survives_a_processor_killed_again_and_again(
    broker: StromProcess, new_topic_name: Callable[[], str]
) -> None:
    """The processor is killed with SIGKILL at seeded random points, mid-transaction or while committing, and
    restarted each time. At the end the output, read with read_committed, holds each input record transformed
    exactly once, in input order per partition, and the group has committed the end of the input."""
    bootstrap = broker.bootstrap
    input_topic, output_topic = new_topic_name(), new_topic_name()
    create_topic_with_confluent(bootstrap, input_topic)
    create_topic_with_confluent(bootstrap, output_topic)
    inputs = produce_input(bootstrap, input_topic)
    input_ends = {partition: len(values) for partition, values in inputs.items()}
    randomness = random.Random(SEED)
    config = ProcessorConfig(
        bootstrap=bootstrap,
        input_topic=input_topic,
        output_topic=output_topic,
        group_id=f"{input_topic}.processor",
        transactional_id=f"{input_topic}.processor",
        instance_id="processor-0",
        seed=0,
    )

    with members_closed([]) as processors:
        for run in range(PROCESSOR_KILLS):
            processor = start_processor(replace(config, seed=randomness.randrange(2**32)))
            processors.append(processor)
            if randomness.random() < 0.5:
                kind, count = "produced", randomness.randint(*KILL_AFTER_PRODUCED)
            else:
                kind, count = "committing", randomness.randint(*KILL_AFTER_COMMITS)
            wait_for(
                events_reached(processor, kind, count),
                f"run {run} of the processor to reach {count} {kind} events",
                [processor],
            )
            assert processor.running, processor.describe()
            processor.kill()

        final = start_processor(replace(config, seed=randomness.randrange(2**32)))
        processors.append(final)
        wait_for(
            lambda: last_positions(final) == input_ends, "the processor to commit the whole input", [final]
        )
        final.close()
        assert events_of(final, "closed") == 1, final.describe()

    assert committed_offsets(bootstrap, config.group_id) == input_ends
    end_every_partition(bootstrap, output_topic)
    output = read_with_confluent(bootstrap, output_topic, read_committed=True)
    expected = {
        partition: [transform(value).decode() for value in values] for partition, values in inputs.items()
    }
    for partition in range(PARTITION_COUNT):
        got, wanted = output[partition], expected[partition]
        duplicates = [value for value, seen in collections.Counter(got).items() if seen > 1]
        missing = set(wanted) - set(got)
        assert got == wanted, (
            f"partition {partition}: {len(got)} records for {len(wanted)} inputs, "
            f"{len(duplicates)} duplicated (e.g. {duplicates[:3]}), "
            f"{len(missing)} missing (e.g. {sorted(missing)[:3]})"
        )


# ----------------------------------------------------------------------------- the broker killed mid-flight


@dataclass(frozen=True)
class TransactionKey:
    producer: str
    round: int
    number: int


def transaction_records(key: TransactionKey, count: int) -> Iterator[tuple[int, bytes]]:
    """(partition, value) of each record of a transaction, spread over every partition it reaches."""
    for index in range(count):
        value = {
            "producer": key.producer,
            "round": key.round,
            "txn": key.number,
            "index": index,
            "count": count,
        }
        yield index % PARTITION_COUNT, json.dumps(value).encode()


class Outcomes:
    """What producers know of their transactions: the commits the broker acknowledged, the transactions that
    ended before their commit was asked for, and those whose commit failed (either outcome is allowed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sizes: dict[TransactionKey, int] = {}
        self.acknowledged: set[TransactionKey] = set()
        self.never_committed: set[TransactionKey] = set()
        self.commit_unknown: set[TransactionKey] = set()

    def started(self, key: TransactionKey, count: int) -> None:
        with self._lock:
            self.sizes[key] = count

    def record(self, key: TransactionKey, into: set[TransactionKey]) -> None:
        with self._lock:
            into.add(key)

    def acknowledged_count(self, round_number: int) -> int:
        with self._lock:
            return sum(1 for key in self.acknowledged if key.round == round_number)


def transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": CRASH_TRANSACTION_TIMEOUT_MS,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    return producer


# How confluent-kafka calls fail: a KafkaException, or, when a fatal error comes up during flush(), a
# SystemError caused by it (confluent-kafka then runs delivery callbacks with the exception pending).
PRODUCER_FAILURES = (KafkaException, SystemError)


class WriteFailed(Exception):
    """A transaction's records were not all acknowledged."""


def write_transaction(producer: Producer, topic: str, key: TransactionKey, count: int) -> None:
    """Begin a transaction and write its records; returns once the broker has acknowledged them all."""
    failures: list[KafkaError] = []

    def on_delivery(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            failures.append(error)

    producer.begin_transaction()
    for partition, value in transaction_records(key, count):
        producer.produce(topic, value=value, partition=partition, on_delivery=on_delivery)
    unsent = producer.flush(PRODUCER_CALL_TIMEOUT_S)
    if failures or unsent:
        raise WriteFailed(f"{unsent} records unacknowledged, delivery errors: {failures[:3]}")


class TransactionLoop:
    """One producer, in a thread of its own, running transactions of random size back to back until told to
    stop or until a call fails (as calls do once the broker dies under it)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        transactional_id: str,
        round_number: int,
        outcomes: Outcomes,
        seed: int,
    ) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._transactional_id = transactional_id
        self._round = round_number
        self._outcomes = outcomes
        self._sizes = random.Random(seed)
        self._stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._run, name=transactional_id, daemon=True)
        self.failure: str | None = None
        # Kept until the test ends: dropping a producer in the middle of a failure could block its thread.
        self.producer: Producer | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask it to stop before its next transaction; the current one runs to its end, or its failure."""
        self._stop_requested.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self.producer = transactional_producer(self._bootstrap, self._transactional_id)
        except PRODUCER_FAILURES as exc:
            self.failure = f"init_transactions: {exc!r}"
            return
        for number in itertools.count(1):
            if self._stop_requested.is_set():
                return
            key = TransactionKey(self._transactional_id, self._round, number)
            count = self._sizes.randint(1, MAX_TRANSACTION_RECORDS)
            self._outcomes.started(key, count)
            try:
                write_transaction(self.producer, self._topic, key, count)
            except (*PRODUCER_FAILURES, WriteFailed) as exc:
                self._outcomes.record(key, self._outcomes.never_committed)
                self.failure = f"writing {key}: {exc!r}"
                return
            try:
                self.producer.commit_transaction(PRODUCER_CALL_TIMEOUT_S)
            except PRODUCER_FAILURES as exc:
                self._outcomes.record(key, self._outcomes.commit_unknown)
                self.failure = f"committing {key}: {exc!r}"
                return
            self._outcomes.record(key, self._outcomes.acknowledged)


def commits_reached(
    outcomes: Outcomes, round_number: int, target: int, loops: list[TransactionLoop]
) -> Callable[[], bool]:
    """Condition: ``target`` commits acknowledged in the round, or no producer left running to make them."""
    return lambda: (
        outcomes.acknowledged_count(round_number) >= target or not any(loop.is_alive() for loop in loops)
    )


def read_transactions(bootstrap: str, topic: str, *, read_committed: bool) -> dict[TransactionKey, list[int]]:
    """The indexes read of each transaction's records."""
    found: dict[TransactionKey, list[int]] = collections.defaultdict(list)
    for values in read_with_confluent(bootstrap, topic, read_committed=read_committed).values():
        for text in values:
            record = json.loads(text)
            found[TransactionKey(record["producer"], record["round"], record["txn"])].append(record["index"])
    return dict(found)


def test_a_broker_killed_mid_transaction_leaves_every_transaction_whole_or_absent(
    broker: StromProcess, unique_topic: str
) -> None:
    """Producers run transactions over three partitions while others hold theirs open; the broker is killed
    with SIGKILL at a seeded random moment and restarted, twice. Afterwards read_committed sees each
    transaction with all its records or none, every acknowledged commit whole, nothing of a transaction whose
    commit was never asked for, while read_uncommitted still has the acknowledged records of the open ones."""
    bootstrap = broker.bootstrap
    create_topic_with_confluent(bootstrap, unique_topic)
    outcomes = Outcomes()
    randomness = random.Random(SEED)
    held_open: set[TransactionKey] = set()
    loops: list[TransactionLoop] = []
    holders: list[Producer] = []

    for round_number in range(BROKER_KILL_ROUNDS):
        # The same transactional ids every round: a new producer's init must settle what the crash left.
        round_loops = [
            TransactionLoop(
                bootstrap,
                unique_topic,
                f"{unique_topic}-loop-{index}",
                round_number,
                outcomes,
                randomness.randrange(2**32),
            )
            for index in range(LOOPING_PRODUCERS)
        ]
        loops += round_loops
        for loop in round_loops:
            loop.start()
        target = randomness.randint(*KILL_AFTER_ACKNOWLEDGED)
        wait_for(
            commits_reached(outcomes, round_number, target, round_loops),
            f"{target} acknowledged commits in round {round_number}",
        )
        assert all(loop.failure is None for loop in round_loops), [loop.failure for loop in round_loops]

        for index in range(HOLDING_PRODUCERS):
            holder = transactional_producer(bootstrap, f"{unique_topic}-r{round_number}-holder-{index}")
            holders.append(holder)
            key = TransactionKey(f"{unique_topic}-r{round_number}-holder-{index}", round_number, 1)
            count = randomness.randint(1, MAX_TRANSACTION_RECORDS)
            outcomes.started(key, count)
            write_transaction(holder, unique_topic, key, count)
            outcomes.record(key, outcomes.never_committed)
            held_open.add(key)

        broker.kill()
        for loop in round_loops:
            loop.stop()
        broker.restart()
        for loop in round_loops:
            loop.join(JOIN_TIMEOUT_S)
        assert not any(loop.is_alive() for loop in round_loops), "a producer thread is stuck"

    end_every_partition(bootstrap, unique_topic)
    committed = read_transactions(bootstrap, unique_topic, read_committed=True)
    everything = read_transactions(bootstrap, unique_topic, read_committed=False)

    partial = {
        key: sorted(indexes)
        for key, indexes in committed.items()
        if sorted(indexes) != list(range(outcomes.sizes[key]))
    }
    assert not partial, f"transactions visible only in part (or twice): {partial}"
    lost = outcomes.acknowledged - set(committed)
    assert not lost, f"acknowledged commits missing after the crash: {sorted(lost, key=repr)[:5]}"
    leaked = outcomes.never_committed & set(committed)
    assert not leaked, f"transactions never committed but visible: {sorted(leaked, key=repr)[:5]}"
    held = {key for key in held_open if sorted(everything.get(key, [])) == list(range(outcomes.sizes[key]))}
    assert held == held_open, "acknowledged records of open transactions lost from the log"
