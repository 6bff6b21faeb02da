"""A consume-transform-produce processor with exactly-once semantics, built on confluent-kafka.

test_transactions_crash.py runs it as a child process (``python eos_processor.py CONFIG_JSON``) and kills it
with SIGKILL at random points, then starts it again. It reads the input topic as a static member of its
group with read_committed, and for each batch of records runs one transaction: the transformed records go to
the same partition of the output topic, and the consumed positions go to the group with
send_offsets_to_transaction, so output and progress are committed together or not at all. A restart takes
over with the same transactional.id, which aborts whatever transaction the killed process left open, and
resumes from the group's committed offsets.

It reports what it does as JSON lines on stdout, in the form group_scenario.Member reads: ``produced`` after
each record handed to the producer (``count`` so far in this run), ``committing`` before each commit,
``committed`` after it (``positions``: partition → next offset to read), ``closed`` on the way out. It
stops between transactions when a ``close`` line arrives on stdin or stdin ends.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

CLIENT_TIMEOUT_S = 30.0
TRANSACTION_TIMEOUT_MS = 10_000
# Kafka's smallest allowed group session; a restarted static member replaces the killed one at once anyway.
SESSION_TIMEOUT_MS = 6000
POLL_S = 0.2
MIN_BATCH = 50
MAX_BATCH = 100
# Stands in for the work a real processor does per record, so that kills land inside transactions too.
WORK_PER_RECORD_S = 0.002


@dataclass(frozen=True)
class ProcessorConfig:
    bootstrap: str
    input_topic: str
    output_topic: str
    group_id: str
    transactional_id: str
    instance_id: str
    seed: int

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessorConfig:
        return cls(**json.loads(text))


def transform(value: bytes) -> bytes:
    """What the processor makes of an input value."""
    return b"processed " + value


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def watch_stdin(close_requested: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "close":
            break
    close_requested.set()


def consumed_positions(consumer: Consumer) -> list[TopicPartition]:
    """The next offset to read of each assigned partition this consumer has a position in."""
    return [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]


def run(config: ProcessorConfig) -> None:
    # The producer comes first: its init_transactions aborts a transaction a killed predecessor left open,
    # whose pending offsets would otherwise keep the consumer's stable-offset fetch waiting.
    producer = Producer(
        {
            "bootstrap.servers": config.bootstrap,
            "transactional.id": config.transactional_id,
            "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    consumer = Consumer(
        {
            "bootstrap.servers": config.bootstrap,
            "group.id": config.group_id,
            "group.instance.id": config.instance_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([config.input_topic])
    close_requested = threading.Event()
    threading.Thread(target=watch_stdin, args=(close_requested,), daemon=True).start()
    batch_sizes = random.Random(config.seed)
    produced = 0
    while not close_requested.is_set():
        records = consumer.consume(batch_sizes.randint(MIN_BATCH, MAX_BATCH), timeout=POLL_S)
        if not records:
            continue
        producer.begin_transaction()
        for record in records:
            produced += 1
            forward(producer, config.output_topic, record)
            emit("produced", count=produced)
            time.sleep(WORK_PER_RECORD_S)
        positions = consumed_positions(consumer)
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), CLIENT_TIMEOUT_S)
        emit("committing")
        producer.commit_transaction(CLIENT_TIMEOUT_S)
        emit("committed", positions={tp.partition: tp.offset for tp in positions})
    consumer.close()
    emit("closed")


def forward(producer: Producer, output_topic: str, record: Message) -> None:
    error = record.error()
    if error is not None:
        raise RuntimeError(f"consumer error: {error}")
    value, partition = record.value(), record.partition()
    assert value is not None and partition is not None
    producer.produce(output_topic, key=record.key(), value=transform(value), partition=partition)
    producer.poll(0)


if __name__ == "__main__":
    run(ProcessorConfig.from_json(sys.argv[1]))
