"""TransactionalPipeline against a real broker: exactly once across SIGKILLs, rewinds, fencing, commit bounds.

Run as a script (``python test_pipeline.py CONFIG_JSON``) this module is the pipeline process the crash test
kills: it prints one line per transformed record, so the test can kill it at chosen points mid-stream.
"""

from __future__ import annotations

import collections
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from strom.toolkit.pipeline import (
    Output,
    PipelineError,
    PipelineFencedError,
    TransactionalPipeline,
    run_pipeline,
)

CLIENT_TIMEOUT_S = 30.0
# Bounds on waiting for a condition, not expectations of speed.
WAIT_S = 60.0
END_MARKER = b"--end--"
PARTITIONS = 3
# A restarted static member replaces the killed one at once; the session only bounds a clean leave.
SESSION_TIMEOUT_MS = 6000


def processed(value: bytes) -> bytes:
    return b"processed " + value


# ---------------------------------------------------------------------------------------- the child process


@dataclass(frozen=True)
class ChildConfig:
    bootstrap: str
    input_topic: str
    output_topic: str
    group_id: str
    transactional_id: str


def child_main(config: ChildConfig) -> None:
    def transform(message: Message) -> Output:
        value = message.value()
        assert value is not None
        print("t", flush=True)
        time.sleep(0.001)  # some work per record, so that kills land inside transactions
        return Output(config.output_topic, processed(value), key=message.key(), partition=message.partition())

    run_pipeline(
        {
            "bootstrap.servers": config.bootstrap,
            "group.instance.id": "pipeline-0",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
        },
        [config.input_topic],
        config.group_id,
        config.transactional_id,
        transform,
        commit_every_records=50,
        commit_every_ms=200,
    )


# ------------------------------------------------------------------------------------------------- helpers


def produce_input(bootstrap: str, topic: str, count: int) -> dict[int, list[bytes]]:
    """``count`` distinct records round-robin over the partitions; returns each partition's values."""
    producer = Producer({"bootstrap.servers": bootstrap})
    values: dict[int, list[bytes]] = collections.defaultdict(list)
    for index in range(count):
        partition, value = index % PARTITIONS, f"record {index:05d}".encode()
        producer.produce(topic, key=f"k{index % 7}".encode(), value=value, partition=partition)
        values[partition].append(value)
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    return dict(values)


def read_committed_output(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    """Every partition's committed records, read up to an end marker written to each partition now."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition in range(PARTITIONS):
        producer.produce(topic, value=END_MARKER, partition=partition)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"checker-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0) for partition in range(PARTITIONS)])
        values: dict[int, list[bytes]] = {partition: [] for partition in range(PARTITIONS)}
        open_partitions = set(values)
        while open_partitions:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"no end marker on partitions {open_partitions}"
            assert message.error() is None, message.error()
            record_partition, value = message.partition(), message.value()
            assert record_partition is not None and value is not None
            if value == END_MARKER:
                open_partitions.discard(record_partition)
            else:
                values[record_partition].append(value)
        return values
    finally:
        consumer.close()


def committed_total(bootstrap: str, group_id: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group_id})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, partition) for partition in range(PARTITIONS)], timeout=CLIENT_TIMEOUT_S
        )
        return sum(max(tp.offset, 0) for tp in offsets)
    finally:
        consumer.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def expected_output(inputs: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
    return {partition: [processed(value) for value in values] for partition, values in inputs.items()}


@dataclass
class Topics:
    input: str
    output: str
    group_id: str
    transactional_id: str


@pytest.fixture
def topics(new_topic: Callable[..., str]) -> Topics:
    suffix = uuid.uuid4().hex[:8]
    return Topics(new_topic(PARTITIONS), new_topic(PARTITIONS), f"group-{suffix}", f"txn-{suffix}")


class PipelineThread:
    """A TransactionalPipeline running in a thread; ``join`` returns what ``run`` raised, if anything."""

    def __init__(self, pipeline: TransactionalPipeline) -> None:
        self.pipeline = pipeline
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.pipeline.run()
        except BaseException as exc:
            self.error = exc

    def join(self) -> BaseException | None:
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "pipeline did not stop"
        return self.error

    def stop(self) -> BaseException | None:
        self.pipeline.stop()
        return self.join()


def forward_to(output_topic: str) -> Callable[[Message], Output]:
    def transform(message: Message) -> Output:
        value = message.value()
        assert value is not None
        return Output(output_topic, processed(value), key=message.key(), partition=message.partition())

    return transform


def pipeline(
    bootstrap: str, topics: Topics, transform: Callable[[Message], Any], **options: Any
) -> TransactionalPipeline:
    return TransactionalPipeline(
        {"bootstrap.servers": bootstrap},
        [topics.input],
        topics.group_id,
        topics.transactional_id,
        transform,
        **options,
    )


# --------------------------------------------------------------------------------------------------- tests


def test_output_is_exactly_once_across_sigkills(bootstrap: str, topics: Topics) -> None:
    inputs = produce_input(bootstrap, topics.input, 1500)
    total = sum(len(values) for values in inputs.values())
    config = ChildConfig(bootstrap, topics.input, topics.output, topics.group_id, topics.transactional_id)
    chooser = random.Random(20261126)
    for _ in range(4):
        with ChildPipeline(config) as child:
            child.wait_for_records(chooser.randint(20, 300))
            child.process.kill()
    with ChildPipeline(config) as child:
        wait_for(lambda: committed_total(bootstrap, topics.group_id, topics.input) == total, "all input")
        child.process.send_signal(signal.SIGTERM)
        assert child.process.wait(WAIT_S) == 0
    assert read_committed_output(bootstrap, topics.output) == expected_output(inputs)


class ChildPipeline:
    """This module run as a pipeline process; counts the records it reports transforming."""

    def __init__(self, config: ChildConfig) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, json.dumps(asdict(config))], stdout=subprocess.PIPE
        )
        self.records = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            with self._changed:
                self.records += 1
                self._changed.notify_all()

    def wait_for_records(self, count: int) -> None:
        with self._changed:
            arrived = self._changed.wait_for(lambda: self.records >= count, WAIT_S)
        assert arrived, f"the pipeline transformed only {self.records} of {count} records"

    def __enter__(self) -> ChildPipeline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(WAIT_S)


def test_a_failed_transform_aborts_and_rewinds(bootstrap: str, topics: Topics) -> None:
    inputs = produce_input(bootstrap, topics.input, 60)
    forward = forward_to(topics.output)
    failed: list[bytes] = []

    def flaky(message: Message) -> Output:
        if message.value() == b"record 00031" and not failed:
            failed.append(b"record 00031")
            raise RuntimeError("downstream hiccup")
        return forward(message)

    running = PipelineThread(pipeline(bootstrap, topics, flaky, commit_every_records=10, retry_backoff_s=0))
    wait_for(lambda: committed_total(bootstrap, topics.group_id, topics.input) == 60, "all input")
    assert running.stop() is None
    assert failed == [b"record 00031"]
    assert running.pipeline.stats.transactions_aborted == 1
    assert read_committed_output(bootstrap, topics.output) == expected_output(inputs)


def test_a_transform_that_keeps_failing_stops_the_pipeline(bootstrap: str, topics: Topics) -> None:
    inputs = produce_input(bootstrap, topics.input, 6)  # partition 0 holds records 0 and 3
    forward = forward_to(topics.output)

    def poisoned(message: Message) -> Output:
        if message.value() == b"record 00003":
            raise ValueError("poison record")
        return forward(message)

    running = PipelineThread(
        pipeline(bootstrap, topics, poisoned, commit_every_records=1, max_retries=2, retry_backoff_s=0)
    )
    error = running.join()
    assert isinstance(error, PipelineError) and isinstance(error.__cause__, ValueError)
    assert running.pipeline.stats.transactions_aborted >= 3
    # Whatever got done before the pipeline gave up is committed whole: output and offsets agree.
    output = read_committed_output(bootstrap, topics.output)
    assert output[0] == [b"processed record 00000"]
    for partition, values in output.items():
        assert values == expected_output(inputs)[partition][: len(values)]
    assert committed_total(bootstrap, topics.group_id, topics.input) == sum(map(len, output.values()))


def test_commits_every_n_records_and_on_stop(bootstrap: str, topics: Topics) -> None:
    inputs = produce_input(bootstrap, topics.input, 35)
    running = PipelineThread(
        pipeline(
            bootstrap, topics, forward_to(topics.output), commit_every_records=10, commit_every_ms=600_000
        )
    )
    wait_for(lambda: running.pipeline.stats.records_consumed == 35, "all input consumed")
    assert committed_total(bootstrap, topics.group_id, topics.input) == 30
    assert running.stop() is None
    assert running.pipeline.stats.transactions_committed == 4
    assert committed_total(bootstrap, topics.group_id, topics.input) == 35
    assert read_committed_output(bootstrap, topics.output) == expected_output(inputs)


def test_a_fenced_pipeline_stops(bootstrap: str, topics: Topics) -> None:
    produce_input(bootstrap, topics.input, 3)
    running = PipelineThread(pipeline(bootstrap, topics, forward_to(topics.output)))
    wait_for(lambda: committed_total(bootstrap, topics.group_id, topics.input) == 3, "the first input")
    successor = Producer({"bootstrap.servers": bootstrap, "transactional.id": topics.transactional_id})
    successor.init_transactions(CLIENT_TIMEOUT_S)
    produce_input(bootstrap, topics.input, 3)
    assert isinstance(running.join(), PipelineFencedError)
    assert committed_total(bootstrap, topics.group_id, topics.input) == 3


def test_commit_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="positive"):
        TransactionalPipeline({}, ["in"], "g", "t", forward_to("out"), commit_every_records=0)


if __name__ == "__main__":
    child_main(ChildConfig(**json.loads(sys.argv[1])))
