"""Transactions through every client against a real Strom broker.

Each scenario is written once against ``TransactionalClient`` and runs with confluent-kafka, kafka-python,
aiokafka and kafkajs (the last through ``js/transactions.js``): what read_committed and read_uncommitted
consumers see of committed, aborted and plain writes interleaved over three partitions; a transaction the
broker aborts because it outlived its ``transaction.timeout.ms``; a zombie fenced by a new producer with its
transactional.id; and consumed offsets sent to a transaction, which become the group's committed offsets only
if it commits. Whatever the client under test reads back, confluent-kafka, the reference client, also reads
with read_committed.

Readers cannot stop at a high watermark (a read_committed consumer never passes the last stable offset, and
the last offset of a partition is often a control record that no client hands out), so every scenario ends by
writing an end marker to each partition with a plain producer, and readers read until they have seen it
everywhere.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import aiokafka
import aiokafka.errors
import kafka
import kafka.errors
import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from scenario import (
    CLIENT_TIMEOUT_S,
    PARTITION_COUNT,
    READ_TIMEOUT_S,
    confluent_admin,
    create_topic_with_confluent,
)

from strom.testing.process import StromProcess

JS_DIR = Path(__file__).parent / "js"

# Kafka's default transaction.timeout.ms, for producers whose transactions must not time out.
TRANSACTION_TIMEOUT_MS = 60_000
# The shortest timeout librdkafka accepts, for the transaction left open on purpose.
SHORT_TRANSACTION_TIMEOUT_MS = 1000
# Kafka looks for timed-out transactions every 10 s by default; the timeout test would wait that long.
BROKER_OVERRIDES = {
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
    # kafkajs reads through a group of its own; Kafka's 3 s wait before a new group's first rebalance
    # would only slow each read down.
    "group.initial.rebalance.delay.ms": "0",
}

END_MARKER = "end-of-scenario"
# How a client reports that a newer producer epoch fenced it: librdkafka raises its own _FENCED, the others
# pass on the broker's PRODUCER_FENCED, or INVALID_PRODUCER_EPOCH (Produce's answer, and that of transaction
# requests too old to carry PRODUCER_FENCED).
FENCING_ERRORS = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"})

# Bounds on one call into a client, so a hung client fails the test instead of hanging it; not targets.
CALL_TIMEOUT_S = READ_TIMEOUT_S + CLIENT_TIMEOUT_S
CLOSE_TIMEOUT_S = 10.0
POLL_TIMEOUT_S = 0.5

PartitionValues = dict[int, list[str]]
T = TypeVar("T")


class ClientFailure(Exception):
    """A client call failed; ``error`` names the Kafka error the client reported, or its own error type."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error


class ClientProducer(Protocol):
    """One producer of the client under test. A transactional one has done init_transactions already.

    ``send`` returns once the broker has acknowledged every value, so writes of different producers land
    in the order the scenario makes them.
    """

    def begin(self) -> None: ...

    def send(self, topic: str, partition: int, values: list[str]) -> None: ...

    def send_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def close(self) -> None: ...


class TransactionalClient(Protocol):
    """The client under test: its producers, its consumers at either isolation level, its view of offsets."""

    name: str

    def producer(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        """A plain producer when ``transactional_id`` is None."""
        ...

    def read(self, topic: str, *, read_committed: bool) -> PartitionValues:
        """Each partition's values in offset order, up to its end marker."""
        ...

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets for the topic's partitions that have one."""
        ...

    def close(self) -> None: ...


class UntilEndMarkers:
    """Collects each partition's values until its end marker; the deadline only stops a broken run."""

    def __init__(self) -> None:
        self.values: PartitionValues = {partition: [] for partition in range(PARTITION_COUNT)}
        self._ended: set[int] = set()
        self._deadline = time.monotonic() + READ_TIMEOUT_S

    def add(self, partition: int, value: bytes | None) -> None:
        if partition in self._ended:
            return
        text = (value or b"").decode()
        if text == END_MARKER:
            self._ended.add(partition)
        else:
            self.values[partition].append(text)

    def keep_reading(self) -> bool:
        if len(self._ended) == PARTITION_COUNT:
            return False
        assert time.monotonic() < self._deadline, (
            f"no end marker on partitions {sorted(set(self.values) - self._ended)}; "
            f"read so far: {self.values}"
        )
        return True


def reader_group() -> str:
    """A group of its own for one read (some clients want a group id even to read assigned partitions)."""
    return f"txn-reader-{uuid.uuid4().hex}"


# ------------------------------------------------------------------------------------ confluent-kafka


def confluent_failure(error: KafkaError) -> ClientFailure:
    return ClientFailure(error.name(), error.str())


@contextlib.contextmanager
def confluent_errors() -> Iterator[None]:
    try:
        yield
    except KafkaException as exc:
        raise confluent_failure(exc.args[0]) from exc
    except SystemError as exc:
        # When a fatal error (being fenced, say) comes up during flush(), confluent-kafka goes on to run
        # delivery callbacks with that KafkaException pending, and Python reports a SystemError caused by it.
        if isinstance(exc.__cause__, KafkaException):
            raise confluent_failure(exc.__cause__.args[0]) from exc
        raise


class ConfluentProducer:
    def __init__(self, bootstrap: str, transactional_id: str | None, transaction_timeout_ms: int) -> None:
        self._bootstrap = bootstrap
        config: dict[str, str | int] = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0}
        if transactional_id is not None:
            config |= {"transactional.id": transactional_id, "transaction.timeout.ms": transaction_timeout_ms}
        self._producer = Producer(config)
        if transactional_id is not None:
            with confluent_errors():
                self._producer.init_transactions(CLIENT_TIMEOUT_S)

    def begin(self) -> None:
        with confluent_errors():
            self._producer.begin_transaction()

    def send(self, topic: str, partition: int, values: list[str]) -> None:
        failures: list[KafkaError] = []

        def on_delivery(error: KafkaError | None, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        with confluent_errors():
            for value in values:
                self._producer.produce(
                    topic, value=value.encode(), partition=partition, on_delivery=on_delivery
                )
            unsent = self._producer.flush(CLIENT_TIMEOUT_S)
        if failures:
            raise confluent_failure(failures[0])
        assert unsent == 0, f"{unsent} records still unacknowledged"

    def send_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        # The group metadata of a consumer that has not joined: generation -1, as a standalone consumer has.
        consumer = Consumer({"bootstrap.servers": self._bootstrap, "group.id": group})
        try:
            with confluent_errors():
                self._producer.send_offsets_to_transaction(
                    [TopicPartition(topic, partition, offset) for partition, offset in offsets.items()],
                    consumer.consumer_group_metadata(),
                    CLIENT_TIMEOUT_S,
                )
        finally:
            consumer.close()

    def commit(self) -> None:
        with confluent_errors():
            self._producer.commit_transaction(CLIENT_TIMEOUT_S)

    def abort(self) -> None:
        with confluent_errors():
            self._producer.abort_transaction(CLIENT_TIMEOUT_S)

    def close(self) -> None:
        # Closing aborts an open transaction; a fenced producer cannot, and confluent-kafka warns about it.
        with confluent_errors(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Producer abort_transaction failed", RuntimeWarning)
            self._producer.close()


def read_with_confluent(bootstrap: str, topic: str, *, read_committed: bool) -> PartitionValues:
    """Read every partition from its start to its end marker, with assigned partitions (no group joined)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": reader_group(),
            "enable.auto.commit": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
        }
    )
    try:
        consumer.assign(
            [TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in range(PARTITION_COUNT)]
        )
        collected = UntilEndMarkers()
        while collected.keep_reading():
            for message in consumer.consume(500, timeout=POLL_TIMEOUT_S):
                assert message.error() is None, f"consumer error: {message.error()}"
                partition = message.partition()
                assert partition is not None
                collected.add(partition, message.value())
        return collected.values
    finally:
        consumer.close()


def committed_per_reference(
    bootstrap: str, group: str, topic: str, *, require_stable: bool
) -> dict[int, int]:
    """The group's committed offsets as an admin client's OffsetFetch reports them.

    Without ``require_stable`` Kafka answers with what is committed and ignores offsets still pending in an
    open transaction; with it, it makes the client wait until no transaction holds offsets of the partition.
    """
    admin = confluent_admin(bootstrap)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)]
    )
    future = admin.list_consumer_group_offsets(
        [request], require_stable=require_stable, request_timeout=CLIENT_TIMEOUT_S
    )[group]
    answer = future.result(timeout=CLIENT_TIMEOUT_S)
    errors = {tp.partition: tp.error for tp in answer.topic_partitions if tp.error is not None}
    assert not errors, f"OffsetFetch errors: {errors}"
    return {tp.partition: tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


class ConfluentClient:
    name = "confluent-kafka"

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    def producer(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        return ConfluentProducer(self._bootstrap, transactional_id, transaction_timeout_ms)

    def read(self, topic: str, *, read_committed: bool) -> PartitionValues:
        return read_with_confluent(self._bootstrap, topic, read_committed=read_committed)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        consumer = Consumer(
            {"bootstrap.servers": self._bootstrap, "group.id": group, "isolation.level": "read_committed"}
        )
        try:
            with confluent_errors():
                partitions = consumer.committed(
                    [TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)],
                    timeout=CLIENT_TIMEOUT_S,
                )
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in partitions if tp.offset >= 0}

    def close(self) -> None:
        """Nothing to release: each producer and consumer is closed by its owner."""


# --------------------------------------------------------------------------------------- kafka-python


@contextlib.contextmanager
def kafka_python_errors() -> Iterator[None]:
    try:
        yield
    except kafka.errors.KafkaError as exc:
        # Broker errors carry Kafka's error name; the client's own errors are named by their class.
        raise ClientFailure(getattr(exc, "message", None) or type(exc).__name__, str(exc)) from exc


class KafkaPythonProducer:
    def __init__(self, bootstrap: str, transactional_id: str | None, transaction_timeout_ms: int) -> None:
        config: dict[str, Any] = {"bootstrap_servers": bootstrap, "acks": "all"}
        if transactional_id is not None:
            config |= {"transactional_id": transactional_id, "transaction_timeout_ms": transaction_timeout_ms}
        with kafka_python_errors():
            self._producer = kafka.KafkaProducer(**config)
            if transactional_id is not None:
                self._producer.init_transactions()

    def begin(self) -> None:
        with kafka_python_errors():
            self._producer.begin_transaction()

    def send(self, topic: str, partition: int, values: list[str]) -> None:
        with kafka_python_errors():
            futures = [
                self._producer.send(topic, value=value.encode(), partition=partition) for value in values
            ]
            for future in futures:
                future.get(timeout=CLIENT_TIMEOUT_S)

    def send_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        with kafka_python_errors():
            self._producer.send_offsets_to_transaction(
                {
                    kafka.TopicPartition(topic, partition): kafka.OffsetAndMetadata(offset, "", -1)
                    for partition, offset in offsets.items()
                },
                group,
            )

    def commit(self) -> None:
        with kafka_python_errors():
            self._producer.commit_transaction()

    def abort(self) -> None:
        with kafka_python_errors():
            self._producer.abort_transaction()

    def close(self) -> None:
        with kafka_python_errors():
            self._producer.close(timeout=CLOSE_TIMEOUT_S)


class KafkaPythonClient:
    name = "kafka-python"

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap

    def producer(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        return KafkaPythonProducer(self._bootstrap, transactional_id, transaction_timeout_ms)

    def read(self, topic: str, *, read_committed: bool) -> PartitionValues:
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            enable_auto_commit=False,
        )
        try:
            consumer.assign([kafka.TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)])
            consumer.seek_to_beginning()
            collected = UntilEndMarkers()
            while collected.keep_reading():
                for records in consumer.poll(timeout_ms=int(POLL_TIMEOUT_S * 1000)).values():
                    for record in records:
                        collected.add(record.partition, record.value)
            return collected.values
        finally:
            consumer.close()

    def committed(self, group: str, topic: str) -> dict[int, int]:
        # read_committed makes kafka-python ask for stable offsets (require_stable), as the Java client does.
        consumer = kafka.KafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=group,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        try:
            with kafka_python_errors():
                offsets = {
                    partition: consumer.committed(kafka.TopicPartition(topic, partition))
                    for partition in range(PARTITION_COUNT)
                }
        finally:
            consumer.close()
        return {partition: offset for partition, offset in offsets.items() if offset is not None}

    def close(self) -> None:
        """Nothing to release: each producer and consumer is closed by its owner."""


# ------------------------------------------------------------------------------------------- aiokafka


class EventLoopThread:
    """An event loop running in a thread of its own, so the test can drive aiokafka one call at a time while
    aiokafka's background tasks keep running between calls."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="aiokafka-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=CALL_TIMEOUT_S)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=CLOSE_TIMEOUT_S)
        self._loop.close()


def aiokafka_error_name(exc: aiokafka.errors.KafkaError) -> str:
    # aiokafka turns INVALID_PRODUCER_EPOCH and PRODUCER_FENCED alike into ProducerFenced, which has no code.
    if isinstance(exc, aiokafka.errors.ProducerFenced):
        return "PRODUCER_FENCED"
    return getattr(exc, "message", None) or type(exc).__name__


class AiokafkaProducer:
    def __init__(self, loop: EventLoopThread, producer: aiokafka.AIOKafkaProducer) -> None:
        self._loop = loop
        self._producer = producer

    @classmethod
    def start(
        cls, loop: EventLoopThread, bootstrap: str, transactional_id: str | None, transaction_timeout_ms: int
    ) -> AiokafkaProducer:
        """A started producer; aiokafka's start() waits for InitProducerId."""

        async def started() -> aiokafka.AIOKafkaProducer:
            producer = aiokafka.AIOKafkaProducer(
                bootstrap_servers=bootstrap,
                acks="all",
                transactional_id=transactional_id,
                transaction_timeout_ms=transaction_timeout_ms,
            )
            await producer.start()
            return producer

        return cls(loop, _run_aiokafka(loop, started))

    def begin(self) -> None:
        _run_aiokafka(self._loop, self._producer.begin_transaction)

    def send(self, topic: str, partition: int, values: list[str]) -> None:
        async def send_all() -> None:
            delivered = [
                await self._producer.send(topic, value=value.encode(), partition=partition)
                for value in values
            ]
            await asyncio.gather(*delivered)

        _run_aiokafka(self._loop, send_all)

    def send_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        positions = {
            aiokafka.TopicPartition(topic, partition): offset for partition, offset in offsets.items()
        }
        _run_aiokafka(self._loop, lambda: self._producer.send_offsets_to_transaction(positions, group))

    def commit(self) -> None:
        _run_aiokafka(self._loop, self._producer.commit_transaction)

    def abort(self) -> None:
        _run_aiokafka(self._loop, self._producer.abort_transaction)

    def close(self) -> None:
        _run_aiokafka(self._loop, self._producer.stop)


def _run_aiokafka(loop: EventLoopThread, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make`` gives, made on the loop's thread (aiokafka objects must be created there),
    and translate aiokafka's errors."""

    async def translated() -> T:
        try:
            return await make()
        except aiokafka.errors.KafkaError as exc:
            raise ClientFailure(aiokafka_error_name(exc), str(exc)) from exc

    return loop.run(translated())


class AiokafkaClient:
    name = "aiokafka"

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._loop = EventLoopThread()

    def producer(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        return AiokafkaProducer.start(self._loop, self._bootstrap, transactional_id, transaction_timeout_ms)

    def read(self, topic: str, *, read_committed: bool) -> PartitionValues:
        async def read_all() -> PartitionValues:
            consumer = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                isolation_level="read_committed" if read_committed else "read_uncommitted",
                enable_auto_commit=False,
            )
            await consumer.start()
            try:
                consumer.assign(
                    [aiokafka.TopicPartition(topic, partition) for partition in range(PARTITION_COUNT)]
                )
                await consumer.seek_to_beginning()
                collected = UntilEndMarkers()
                while collected.keep_reading():
                    batches = await consumer.getmany(timeout_ms=int(POLL_TIMEOUT_S * 1000))
                    for records in batches.values():
                        for record in records:
                            collected.add(record.partition, record.value)
                return collected.values
            finally:
                await consumer.stop()

        return _run_aiokafka(self._loop, read_all)

    def committed(self, group: str, topic: str) -> dict[int, int]:
        async def fetch() -> dict[int, int | None]:
            consumer = aiokafka.AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=group,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await consumer.start()
            try:
                return {
                    partition: await consumer.committed(aiokafka.TopicPartition(topic, partition))
                    for partition in range(PARTITION_COUNT)
                }
            finally:
                await consumer.stop()

        offsets = _run_aiokafka(self._loop, fetch)
        return {partition: offset for partition, offset in offsets.items() if offset is not None}

    def close(self) -> None:
        self._loop.close()


# -------------------------------------------------------------------------------------------- kafkajs


class KafkajsHelper:
    """The ``js/transactions.js`` process: one JSON command per line in, one JSON answer per line out."""

    def __init__(self, bootstrap: str) -> None:
        self._process = subprocess.Popen(
            ["node", "transactions.js", json.dumps({"brokers": [bootstrap]})],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._answers: queue.Queue[str] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._readers = [
            threading.Thread(target=self._pump, args=(self._process.stdout, self._answers.put), daemon=True),
            threading.Thread(
                target=self._pump, args=(self._process.stderr, self._stderr.append), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def call(self, op: str, **arguments: Any) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self._process.stdin.flush()
        try:
            line = self._answers.get(timeout=CALL_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(
                f"kafkajs did not answer {op} in time; stderr: {list(self._stderr)}"
            ) from None
        answer = json.loads(line)
        if not answer["ok"]:
            error = answer["error"]
            raise ClientFailure(error["type"] or error["name"], error["message"])
        return answer["result"]

    def close(self) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for reader in self._readers:
            reader.join(timeout=CLOSE_TIMEOUT_S)

    @staticmethod
    def _pump(stream: IO[str], sink: Callable[[str], None]) -> None:
        for line in stream:
            if line.strip():
                sink(line.rstrip("\n"))


class KafkajsProducer:
    def __init__(self, helper: KafkajsHelper, handle: str) -> None:
        self._helper = helper
        self._handle = handle

    def begin(self) -> None:
        self._helper.call("begin", handle=self._handle)

    def send(self, topic: str, partition: int, values: list[str]) -> None:
        self._helper.call("send", handle=self._handle, topic=topic, partition=partition, values=values)

    def send_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        self._helper.call("sendOffsets", handle=self._handle, group=group, topic=topic, offsets=dict(offsets))

    def commit(self) -> None:
        self._helper.call("commit", handle=self._handle)

    def abort(self) -> None:
        self._helper.call("abort", handle=self._handle)

    def close(self) -> None:
        self._helper.call("close", handle=self._handle)


class KafkajsClient:
    name = "kafkajs"

    def __init__(self, bootstrap: str) -> None:
        self._helper = KafkajsHelper(bootstrap)
        self._handles = itertools.count(1)

    def producer(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        handle = f"producer-{next(self._handles)}"
        self._helper.call(
            "producer",
            handle=handle,
            transactionalId=transactional_id,
            transactionTimeoutMs=transaction_timeout_ms,
        )
        return KafkajsProducer(self._helper, handle)

    def read(self, topic: str, *, read_committed: bool) -> PartitionValues:
        values = self._helper.call(
            "read",
            topic=topic,
            partitions=PARTITION_COUNT,
            readCommitted=read_committed,
            endMarker=END_MARKER,
            group=reader_group(),
        )
        return {int(partition): list(found) for partition, found in values.items()}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = self._helper.call("committed", group=group, topic=topic)
        return {int(partition): offset for partition, offset in offsets.items()}

    def close(self) -> None:
        self._helper.close()


# ----------------------------------------------------------------------------------- what must be seen


@dataclass(frozen=True)
class Write:
    partition: int
    value: str
    transaction: int | None  # None for a plain (non-transactional) write


class Ledger:
    """Drives producers through a scenario on one topic and keeps the books: every acknowledged write, and
    which transactions committed, hence exactly what each isolation level must read.

    A transaction that never commits (aborted, timed out, or its producer fenced) must stay invisible to
    read_committed. Values carry a tag saying what the scenario intends for them, to read failures easily.
    """

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._writes: list[Write] = []
        self._open: dict[ClientProducer, int] = {}
        self._committed: set[int] = set()
        self._transaction_numbers = itertools.count(1)
        self._value_numbers = itertools.count(1)

    def begin(self, producer: ClientProducer) -> None:
        producer.begin()
        self._open[producer] = next(self._transaction_numbers)

    def send(self, producer: ClientProducer, counts: Mapping[int, int], tag: str) -> None:
        """Send ``counts[partition]`` values to each partition, recording each batch once acknowledged."""
        for partition, count in counts.items():
            values = [f"{tag}-{next(self._value_numbers)}" for _ in range(count)]
            producer.send(self.topic, partition, values)
            transaction = self._open.get(producer)
            self._writes.extend(Write(partition, value, transaction) for value in values)

    def commit(self, producer: ClientProducer) -> None:
        producer.commit()
        self._committed.add(self._open.pop(producer))

    def abort(self, producer: ClientProducer) -> None:
        producer.abort()
        del self._open[producer]

    def finish(self, plain: ClientProducer) -> None:
        """Write the end marker readers stop at to every partition."""
        for partition in range(PARTITION_COUNT):
            plain.send(self.topic, partition, [END_MARKER])

    def expected(self, *, read_committed: bool) -> PartitionValues:
        values: PartitionValues = {partition: [] for partition in range(PARTITION_COUNT)}
        for write in self._writes:
            if not read_committed or write.transaction is None or write.transaction in self._committed:
                values[write.partition].append(write.value)
        return values


def assert_reads(client: TransactionalClient, bootstrap: str, ledger: Ledger) -> None:
    """The client's consumers read exactly the ledger's values at each isolation level, in order, and so
    does the reference client with read_committed."""
    committed = ledger.expected(read_committed=True)
    everything = ledger.expected(read_committed=False)
    assert client.read(ledger.topic, read_committed=True) == committed, f"{client.name} read_committed"
    assert client.read(ledger.topic, read_committed=False) == everything, f"{client.name} read_uncommitted"
    assert read_with_confluent(bootstrap, ledger.topic, read_committed=True) == committed, "reference"


# ---------------------------------------------------------------------------------------------- fixtures

CLIENTS: dict[str, Callable[[str], TransactionalClient]] = {
    ConfluentClient.name: ConfluentClient,
    KafkaPythonClient.name: KafkaPythonClient,
    AiokafkaClient.name: AiokafkaClient,
    KafkajsClient.name: KafkajsClient,
}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    process = StromProcess(
        tmp_path_factory.mktemp("transactions") / "data", overrides=BROKER_OVERRIDES
    ).start()
    yield process
    process.stop()


def ensure_node_modules() -> None:
    """kafkajs needs node, and the pinned packages installed on first use (node_modules is not committed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run kafkajs")
    if not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, capture_output=True, timeout=300
        )


class ProducersClosed:
    """Hands out the client's producers and closes them all at the end, fenced or failed ones included."""

    def __init__(self, client: TransactionalClient) -> None:
        self.client = client
        self._made: list[ClientProducer] = []

    def __call__(
        self, transactional_id: str | None = None, *, transaction_timeout_ms: int = TRANSACTION_TIMEOUT_MS
    ) -> ClientProducer:
        producer = self.client.producer(transactional_id, transaction_timeout_ms=transaction_timeout_ms)
        self._made.append(producer)
        return producer

    def close_all(self) -> None:
        for producer in self._made:
            with contextlib.suppress(ClientFailure):
                producer.close()


@pytest.fixture(params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest, broker: StromProcess) -> Iterator[TransactionalClient]:
    if request.param == KafkajsClient.name:
        ensure_node_modules()
    made = CLIENTS[request.param](broker.bootstrap)
    yield made
    made.close()


@pytest.fixture
def producers(client: TransactionalClient) -> Iterator[ProducersClosed]:
    made = ProducersClosed(client)
    yield made
    made.close_all()


# ------------------------------------------------------------------------------------------------ tests


def test_each_isolation_level_reads_exactly_its_share_of_interleaved_writes(
    client: TransactionalClient, producers: ProducersClosed, broker: StromProcess, unique_topic: str
) -> None:
    """Two transactional producers and a plain one interleave over three partitions: commits and aborts of
    overlapping transactions, plain writes inside and between them. read_committed sees the committed and
    plain values, read_uncommitted everything, each partition in the order written."""
    create_topic_with_confluent(broker.bootstrap, unique_topic)
    ledger = Ledger(unique_topic)
    first = producers(f"{unique_topic}-first")
    second = producers(f"{unique_topic}-second")
    plain = producers()

    ledger.begin(first)
    ledger.send(first, {0: 2, 1: 1}, "first-committed")
    ledger.send(plain, {0: 1}, "plain")
    ledger.begin(second)
    ledger.send(second, {0: 1, 2: 2}, "second-aborted")
    ledger.send(first, {2: 1}, "first-committed")
    ledger.send(plain, {1: 1, 2: 1}, "plain")
    ledger.abort(second)
    ledger.commit(first)

    ledger.begin(first)
    ledger.send(first, {1: 2, 2: 1}, "first-aborted")
    ledger.send(plain, {1: 1}, "plain")
    ledger.abort(first)

    ledger.begin(second)
    ledger.send(second, {0: 1, 1: 1, 2: 1}, "second-committed")
    ledger.send(plain, {0: 1}, "plain")
    ledger.commit(second)
    ledger.finish(plain)

    assert_reads(client, broker.bootstrap, ledger)


def test_a_transaction_open_past_its_timeout_is_aborted_by_the_broker(
    client: TransactionalClient, producers: ProducersClosed, broker: StromProcess, unique_topic: str
) -> None:
    """A producer writes in a transaction and then neither commits nor aborts. Once transaction.timeout.ms
    has passed the broker aborts it: read_committed readers, held at its first record until then, read past
    it to what was written later, and the producer's late commit fails because its epoch was bumped."""
    create_topic_with_confluent(broker.bootstrap, unique_topic)
    ledger = Ledger(unique_topic)
    plain = producers()
    forgetful = producers(f"{unique_topic}-forgetful", transaction_timeout_ms=SHORT_TRANSACTION_TIMEOUT_MS)

    ledger.send(plain, {0: 1, 1: 1, 2: 1}, "plain-before")
    ledger.begin(forgetful)
    ledger.send(forgetful, {0: 2, 1: 1, 2: 1}, "timed-out")
    ledger.send(plain, {0: 1, 1: 2, 2: 1}, "plain-after")
    ledger.finish(plain)

    # The read_committed readers get to the end markers only once the broker has aborted the transaction.
    assert_reads(client, broker.bootstrap, ledger)
    with pytest.raises(ClientFailure) as late_commit:
        forgetful.commit()
    assert late_commit.value.error in FENCING_ERRORS, late_commit.value


def test_zombies_are_fenced_by_new_producers_with_their_transactional_ids(
    client: TransactionalClient, producers: ProducersClosed, broker: StromProcess, unique_topic: str
) -> None:
    """Two zombies write in transactions; then a new producer initialises with each one's transactional.id,
    which aborts the zombie's transaction and bumps the epoch. One zombie tries to send more, the other to
    commit: both are refused as fenced, nothing of either becomes visible to read_committed, and the new
    producers' transactions commit.

    Each zombie makes one late move, because what a client does after the first refusal is its own affair
    (kafka-python, for one, starts bumping its epoch and meanwhile refuses a commit without asking the
    broker).
    """
    create_topic_with_confluent(broker.bootstrap, unique_topic)
    ledger = Ledger(unique_topic)
    plain = producers()
    sending_zombie = producers(f"{unique_topic}-first-id")
    committing_zombie = producers(f"{unique_topic}-second-id")
    for zombie in (sending_zombie, committing_zombie):
        ledger.begin(zombie)
        ledger.send(zombie, {0: 2, 1: 1}, "zombie")

    successors = [producers(f"{unique_topic}-first-id"), producers(f"{unique_topic}-second-id")]
    with pytest.raises(ClientFailure) as late_send:
        ledger.send(sending_zombie, {0: 1}, "zombie-late")
    assert late_send.value.error in FENCING_ERRORS, late_send.value
    with pytest.raises(ClientFailure):
        ledger.commit(sending_zombie)
    with pytest.raises(ClientFailure) as late_commit:
        ledger.commit(committing_zombie)
    assert late_commit.value.error in FENCING_ERRORS, late_commit.value

    for round_number in range(2):
        for successor in successors:
            ledger.begin(successor)
            ledger.send(successor, {0: 1, 1: 1, 2: 1}, f"successor-{round_number}")
            ledger.commit(successor)
    ledger.finish(plain)

    assert_reads(client, broker.bootstrap, ledger)


def test_offsets_sent_to_a_transaction_are_committed_only_when_it_commits(
    client: TransactionalClient,
    producers: ProducersClosed,
    broker: StromProcess,
    unique_topic: str,
    new_topic_name: Callable[[], str],
) -> None:
    """Consumed offsets sent with send_offsets_to_transaction are pending while the transaction is open
    (OffsetFetch still answers the previous commit), vanish if it aborts, and become the group's committed
    offsets, together with the records written, when it commits."""
    bootstrap = broker.bootstrap
    input_topic, output_topic = unique_topic, new_topic_name()
    create_topic_with_confluent(bootstrap, input_topic)
    create_topic_with_confluent(bootstrap, output_topic)
    group = f"{input_topic}.processor"
    ledger = Ledger(output_topic)
    producer = producers(f"{input_topic}-processor")
    plain = producers()

    def committed_now() -> dict[int, int]:
        return committed_per_reference(bootstrap, group, input_topic, require_stable=False)

    def committed_stable() -> dict[int, int]:
        """What the reference client and the client under test both say is committed, once no transaction
        holds offsets of the group."""
        reference = committed_per_reference(bootstrap, group, input_topic, require_stable=True)
        assert client.committed(group, input_topic) == reference, client.name
        return reference

    ledger.begin(producer)
    ledger.send(producer, {0: 1}, "aborted-output")
    producer.send_offsets(group, input_topic, {0: 4, 1: 2})
    assert committed_now() == {}
    ledger.abort(producer)
    assert committed_stable() == {}

    ledger.begin(producer)
    ledger.send(producer, {0: 1, 2: 1}, "committed-output")
    producer.send_offsets(group, input_topic, {0: 5, 2: 3})
    assert committed_now() == {}
    ledger.commit(producer)
    assert committed_stable() == {0: 5, 2: 3}

    ledger.begin(producer)
    producer.send_offsets(group, input_topic, {0: 9, 1: 9})
    assert committed_now() == {0: 5, 2: 3}
    ledger.abort(producer)
    assert committed_stable() == {0: 5, 2: 3}

    ledger.finish(plain)
    assert_reads(client, bootstrap, ledger)
