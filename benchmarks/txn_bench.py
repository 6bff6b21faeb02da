"""Transactions benchmark: a consume-transform-produce pipeline, plain vs transactional, with confluent-kafka.

The target: a transactional pipeline committing every 1,000 records reaches at least 50 % of the plain
pipeline's throughput. Both pipelines read the same input topic (``--records`` values of ``--size`` bytes,
one partition, written once before the runs) from offset 0 with ``assign()``, upper-case every value and
produce it, with its key, to a fresh one-partition output topic, acks=all and ``linger.ms=5`` for both:

- plain: ``enable.idempotence=false`` and a read_uncommitted consumer that checkpoints every 1,000 records
  as an at-least-once pipeline must: ``flush`` the producer, then commit the consumed offsets
  synchronously (committing before the output is acknowledged could lose records). This is the
  like-for-like baseline, and the target is measured against it;
- plain, auto-commit: the same without checkpoints, offsets auto-committed in the background (fast, but
  a crash may lose output): printed for reference, with its ratio;
- transactional: a ``transactional.id``, a read_committed consumer, and per 1,000 records
  ``begin_transaction``, the produces, ``send_offsets_to_transaction`` and ``commit_transaction``.

Each run's clock starts when its consumer is assigned the input partition, once both clients have the
topics' metadata and the transactional producer its producer id (``init_transactions``, once per
producer), and stops once every output record is acknowledged (plain: ``flush``) or committed
(transactional: the last ``commit_transaction``). Runs alternate, plain then transactional, so both see the
same machine noise; the medians of ``--repeat`` runs and their ratio are printed. After each run the output
topic's end offset is checked: the records, plus one commit marker per transaction.

Starts a Strom in a temporary directory unless ``--bootstrap`` names a broker. Not a test.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.process import StromProcess

TIMEOUT_S = 30.0
TARGET_RATIO = 0.5
LINGER_MS = 5
CONSUME_BATCH = 1000
FETCH_QUEUE_BACKOFF_MS = 10
# A run that reads nothing for this long has stalled (a broker or client fault, not slowness).
STALL_S = 30.0


def create_topic(admin: AdminClient, name: str) -> None:
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result(timeout=TIMEOUT_S)


def fill_input(bootstrap: str, topic: str, records: int, size: int) -> None:
    """Write the input once: lower-case values (so the transform changes them), keyed by record number."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": LINGER_MS, "acks": "all"})
    filler = b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1)
    for n in range(records):
        key = b"key-%d" % (n % 1000)
        value = (b"record %d " % n + filler)[:size]
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(TIMEOUT_S * 10):
        raise RuntimeError("the input topic was not filled")


def input_consumer(bootstrap: str, topic: str, *, transactional: bool, auto_commit: bool = False) -> Consumer:
    """A consumer with the input's metadata loaded, not yet assigned.

    Loading the metadata first spares the run librdkafka's half-second offset-query timer, and a short
    ``fetch.queue.backoff.ms`` its one-second pause whenever 100,000 records are queued (see "The figures"
    in the README): both are client artefacts that would hide most of a fast pipeline's time.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"txn-bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": auto_commit,
            "isolation.level": "read_committed" if transactional else "read_uncommitted",
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
    )
    consumer.list_topics(topic, timeout=TIMEOUT_S)
    return consumer


class Clock:
    """Times a run from its creation; fails the run if input records stop coming."""

    def __init__(self) -> None:
        self.started = self._last_progress = time.monotonic()

    def saw(self, count: int) -> None:
        now = time.monotonic()
        if count:
            self._last_progress = now
        elif now - self._last_progress > STALL_S:
            raise RuntimeError(f"no input record for {STALL_S:g} s")

    def rate(self, records: int) -> float:
        """``records`` per second since the clock started."""
        return records / (time.monotonic() - self.started)


def start(consumer: Consumer, topic: str) -> Clock:
    """Assign the input from offset 0 and start the run's clock."""
    clock = Clock()
    consumer.assign([TopicPartition(topic, 0, 0)])
    return clock


def plain_rate(bootstrap: str, source: str, sink: str, records: int, checkpoint_every: int | None) -> float:
    """Records per second of the plain pipeline: checkpointed every ``checkpoint_every`` records (flush,
    then a synchronous offset commit), or with auto-committed offsets when None."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": LINGER_MS, "acks": "all", "enable.idempotence": False}
    )
    producer.list_topics(sink, timeout=TIMEOUT_S)
    consumer = input_consumer(bootstrap, source, transactional=False, auto_commit=checkpoint_every is None)
    clock = start(consumer, source)
    step = checkpoint_every or records
    try:
        done = 0
        while done < records:
            since_checkpoint = 0
            while since_checkpoint < min(step, records - done):
                batch = consumer.consume(min(CONSUME_BATCH, step - since_checkpoint), timeout=1.0)
                clock.saw(len(batch))
                transform_into(producer, sink, batch)
                since_checkpoint += len(batch)
                producer.poll(0)
            if checkpoint_every is not None:
                if producer.flush(TIMEOUT_S):
                    raise RuntimeError("output records left unacknowledged")
                consumer.commit(asynchronous=False)
            done += since_checkpoint
        if producer.flush(TIMEOUT_S * 10):
            raise RuntimeError("output records left unacknowledged")
        return clock.rate(records)
    finally:
        consumer.close()


def transactional_rate(bootstrap: str, source: str, sink: str, records: int, commit_every: int) -> float:
    """Records per second of the transactional pipeline, one transaction per ``commit_every`` records."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": LINGER_MS,
            "transactional.id": f"txn-bench-{uuid.uuid4().hex[:8]}",
        }
    )
    producer.init_transactions(TIMEOUT_S)
    producer.list_topics(sink, timeout=TIMEOUT_S)
    consumer = input_consumer(bootstrap, source, transactional=True)
    clock = start(consumer, source)
    try:
        done = 0
        while done < records:
            producer.begin_transaction()
            in_transaction = 0
            while in_transaction < min(commit_every, records - done):
                batch = consumer.consume(min(CONSUME_BATCH, commit_every - in_transaction), timeout=1.0)
                clock.saw(len(batch))
                transform_into(producer, sink, batch)
                in_transaction += len(batch)
                producer.poll(0)
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TIMEOUT_S
            )
            producer.commit_transaction(TIMEOUT_S)
            done += in_transaction
        return clock.rate(records)
    finally:
        consumer.close()


def transform_into(producer: Producer, sink: str, batch: list[Message]) -> None:
    """The pipeline's work: each value upper-cased, produced with its key."""
    for message in batch:
        error, value = message.error(), message.value()
        if error is not None:
            raise KafkaException(error)
        assert value is not None
        while True:
            try:
                producer.produce(sink, value.upper(), message.key())
                break
            except BufferError:
                producer.poll(0.01)


def check_output(bootstrap: str, sink: str, expected_end: int) -> None:
    """The output's end offset must be the records plus the transactions' commit markers, no more."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "txn-bench-check"})
    try:
        _, end = consumer.get_watermark_offsets(TopicPartition(sink, 0), timeout=TIMEOUT_S, cached=False)
    finally:
        consumer.close()
    if end != expected_end:
        raise RuntimeError(f"output {sink} ends at offset {end}, expected {expected_end}")


def measure(
    bootstrap: str, records: int, size: int, commit_every: int, repeat: int
) -> dict[str, list[float]]:
    """Fill the input, then run the pipelines alternately; records/s of every run, by pipeline."""
    rates: dict[str, list[float]] = {"plain": [], "plain-autocommit": [], "transactional": []}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    source = f"txn-bench-in-{uuid.uuid4().hex[:8]}"
    create_topic(admin, source)
    print(f"filling {source} with {records:,} x {size} B", file=sys.stderr)
    fill_input(bootstrap, source, records, size)
    transactions = math.ceil(records / commit_every)
    for run in range(1, repeat + 1):
        for kind in rates:
            sink = f"txn-bench-out-{kind}-{uuid.uuid4().hex[:8]}"
            create_topic(admin, sink)
            if kind.startswith("plain"):
                rate = plain_rate(bootstrap, source, sink, records, commit_every if kind == "plain" else None)
                check_output(bootstrap, sink, records)
            else:
                rate = transactional_rate(bootstrap, source, sink, records, commit_every)
                check_output(bootstrap, sink, records + transactions)
            rates[kind].append(rate)
            print(f"run {run} {kind:13} {rate:12,.0f} records/s", file=sys.stderr)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", help="HOST:PORT of a running broker (default: start Strom)")
    parser.add_argument("--records", type=int, default=200_000, help="input records (default 200,000)")
    parser.add_argument("--size", type=int, default=100, help="bytes per value (default 100)")
    parser.add_argument("--commit-every", type=int, default=1000, help="records per transaction (1,000)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        broker = None if args.bootstrap else StromProcess(Path(folder) / "data").start()
        bootstrap = args.bootstrap or broker.bootstrap  # type: ignore[union-attr]
        try:
            rates = measure(bootstrap, args.records, args.size, args.commit_every, args.repeat)
        finally:
            if broker is not None:
                broker.stop()
    plain, transactional = statistics.median(rates["plain"]), statistics.median(rates["transactional"])
    autocommit = statistics.median(rates["plain-autocommit"])
    ratio = transactional / plain
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    every = f"{args.commit_every:,}"
    for label, kind in (
        (f"plain pipeline, checkpoint every {every}", "plain"),
        ("plain pipeline, auto-commit", "plain-autocommit"),
        (f"transactional, commit every {every}", "transactional"),
    ):
        print(f"{label:36} {statistics.median(rates[kind]):12,.0f} records/s   {_spread(rates[kind])}")
    print(f"ratio transactional / plain          {ratio:12.2f}   target >= {TARGET_RATIO:.2f}   {verdict}")
    print(f"ratio transactional / auto-commit    {transactional / autocommit:12.2f}   (reference)")
    return 0


def _spread(rates: list[float]) -> str:
    return f"(runs: {', '.join(f'{rate:,.0f}' for rate in rates)})"


if __name__ == "__main__":
    sys.exit(main())
