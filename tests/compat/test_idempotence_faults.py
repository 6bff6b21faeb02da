"""Idempotent producers of four clients writing through a proxy that loses the broker's answers.

The proxy (``strom.testing.fault_proxy``) lets Produce requests reach the broker, drops some of the answers
and cuts the connection, and cuts others off before the broker sees them. Each client retries on a new
connection; its retried batches carry the sequence numbers they had, so the broker must recognise the ones
it already wrote and answer them with their original offsets instead of writing them again. Afterwards the
topic is read straight from the broker's port, around the proxy: every record exactly once, in the order
produced, and the proxy must have injected faults (a run without faults would prove nothing).

The broker advertises the proxy's address, so clients that bootstrap through the proxy keep using it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import KafkaError, Producer
from confluent_kafka import Message as ConfluentMessage
from direct_fetch import stored_batches
from kafka import KafkaProducer
from scenario import CLIENT_TIMEOUT_S, create_topic_with_confluent

from strom.protocol.messages import produce
from strom.testing.fault_proxy import CUT_BEFORE_REQUEST, DROP_RESPONSE, FaultKind, FaultProxy, FaultRule
from strom.testing.process import StromProcess

RECORD_COUNT = 2000
KEY_COUNT = 17
# Small batches, so that a run makes about a hundred Produce requests for the proxy to aim at.
RECORDS_PER_BATCH = 20
BATCH_BYTES = 512
# Bounds on the faults: enough to matter, few enough that a run stays short.
DROPPED_RESPONSES = 30
CUT_REQUESTS = 10
DROP_PROBABILITY = 0.25
CUT_PROBABILITY = 0.05
# The clients' own deadlines; pytest-timeout bounds each test as a whole.
DELIVERY_TIMEOUT_S = 120.0
JS_DIR = Path(__file__).parent / "js"


@dataclass(frozen=True)
class ProxiedBroker:
    broker: StromProcess
    proxy: FaultProxy

    def start_faults(self, seed: int) -> None:
        """From now on, drop answers to Produce requests after the broker wrote them, and cut a few before."""
        self.proxy.set_rules(
            [
                FaultRule(
                    DROP_RESPONSE,
                    api_keys=[produce.API_KEY],
                    probability=DROP_PROBABILITY,
                    limit=DROPPED_RESPONSES,
                    seed=seed,
                ),
                FaultRule(
                    CUT_BEFORE_REQUEST,
                    api_keys=[produce.API_KEY],
                    probability=CUT_PROBABILITY,
                    limit=CUT_REQUESTS,
                    seed=seed + 1,
                ),
            ]
        )


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[ProxiedBroker]:
    """A broker of its own that advertises the proxy in front of it."""
    with FaultProxy() as proxy:
        overrides = {"advertised.listeners": f"PLAINTEXT://{proxy.address}"}
        with StromProcess(tmp_path / "data", overrides) as broker:
            proxy.forward_to(broker.port)
            yield ProxiedBroker(broker, proxy)


def sequence_value(sequence: int) -> bytes:
    return b"seq-%06d" % sequence


def record_key(sequence: int) -> bytes:
    return b"key-%02d" % (sequence % KEY_COUNT)


def read_sequences_directly(broker: StromProcess, topic: str, partitions: int) -> dict[int, list[int]]:
    """Partition → the sequence numbers of its records in offset order, fetched from the broker's own port."""
    return {
        partition: [
            _sequence_of(record.value)
            for header, records in stored_batches(broker.port, topic, partition)
            if not header.is_control
            for record in records
        ]
        for partition in range(partitions)
    }


def _sequence_of(value: bytes | None) -> int:
    assert value is not None and value.startswith(b"seq-"), f"not a value this test produced: {value!r}"
    return int(value[4:])


def assert_each_record_once_in_order(proxied: ProxiedBroker, topic: str, partitions: int = 1) -> None:
    by_partition = read_sequences_directly(proxied.broker, topic, partitions)
    every = [sequence for sequences in by_partition.values() for sequence in sequences]
    duplicated = sorted(sequence for sequence, times in Counter(every).items() if times > 1)
    assert not duplicated, f"{len(every) - len(set(every))} duplicates, e.g. of {duplicated[:10]}"
    assert sorted(every) == list(range(RECORD_COUNT)), f"{RECORD_COUNT - len(every)} records missing"
    for partition, sequences in by_partition.items():
        assert sequences, f"partition {partition} got no records"
        assert sequences == sorted(sequences), f"partition {partition} is out of production order"
    faults = proxied.proxy.stats().faults
    assert faults.get(FaultKind.DROP_RESPONSE, 0) > 0, f"no response was dropped: {faults}"
    assert sum(faults.values()) <= DROPPED_RESPONSES + CUT_REQUESTS


# ---------------------------------------------------------------------------------------------- the clients


def produce_with_confluent(proxied: ProxiedBroker, topic: str, partitions: int, *, idempotent: bool) -> None:
    """Produce the records through the proxy, retrying whatever the faults interrupt; fails on any loss."""
    producer = Producer(
        {
            "bootstrap.servers": proxied.proxy.address,
            "enable.idempotence": idempotent,
            "acks": "all",
            "linger.ms": 0,
            "batch.num.messages": RECORDS_PER_BATCH,
            "message.timeout.ms": int(DELIVERY_TIMEOUT_S * 1000 / 2),
            "retry.backoff.ms": 10,
            "retry.backoff.max.ms": 100,
            "reconnect.backoff.ms": 10,
            "reconnect.backoff.max.ms": 100,
        }
    )
    errors: list[str] = []

    def on_delivery(error: KafkaError | None, _message: ConfluentMessage) -> None:
        if error is not None:
            errors.append(f"{error.name()}: {error.str()}")

    for sequence in range(RECORD_COUNT):
        producer.produce(
            topic,
            key=record_key(sequence),
            value=sequence_value(sequence),
            partition=0 if partitions == 1 else -1,
            on_delivery=on_delivery,
        )
        producer.poll(0)
    assert producer.flush(DELIVERY_TIMEOUT_S) == 0, "messages left undelivered"
    assert not errors, f"delivery failed: {errors[:3]}"


@pytest.mark.parametrize("partitions", [1, 3], ids=["one-partition", "three-partitions"])
def test_confluent_idempotent_producer_survives_lost_answers(
    proxied: ProxiedBroker, unique_topic: str, partitions: int
) -> None:
    create_topic_with_confluent(proxied.proxy.address, unique_topic, partitions=partitions)
    proxied.start_faults(seed=partitions)
    produce_with_confluent(proxied, unique_topic, partitions, idempotent=True)
    assert_each_record_once_in_order(proxied, unique_topic, partitions)


def test_without_idempotence_dropped_answers_write_records_twice(
    proxied: ProxiedBroker, unique_topic: str
) -> None:
    """The control: a plain producer resends batches whose answers were dropped, though the broker wrote
    them, so these faults do put the broker's duplicate detection to the test. Only answers are dropped here:
    without idempotence librdkafka pipelines hundreds of requests, and a cut could end a connection before any
    chosen answer arrived."""
    create_topic_with_confluent(proxied.proxy.address, unique_topic, partitions=1)
    proxied.proxy.set_rules(
        [
            FaultRule(
                DROP_RESPONSE,
                api_keys=[produce.API_KEY],
                probability=DROP_PROBABILITY,
                limit=DROPPED_RESPONSES,
                seed=1,
            )
        ]
    )
    produce_with_confluent(proxied, unique_topic, 1, idempotent=False)
    sequences = read_sequences_directly(proxied.broker, unique_topic, 1)[0]
    assert proxied.proxy.stats().faults[FaultKind.DROP_RESPONSE] > 0
    assert set(sequences) == set(range(RECORD_COUNT))
    assert len(sequences) > RECORD_COUNT


def test_kafka_python_idempotent_producer_survives_lost_answers(
    proxied: ProxiedBroker, unique_topic: str
) -> None:
    create_topic_with_confluent(proxied.proxy.address, unique_topic, partitions=1)
    proxied.start_faults(seed=11)
    producer = KafkaProducer(
        bootstrap_servers=proxied.proxy.address,
        enable_idempotence=True,
        acks="all",
        batch_size=BATCH_BYTES,
        linger_ms=0,
        retry_backoff_ms=10,
        reconnect_backoff_ms=10,
        reconnect_backoff_max_ms=100,
        delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
    )
    try:
        futures = [
            producer.send(unique_topic, key=record_key(n), value=sequence_value(n), partition=0)
            for n in range(RECORD_COUNT)
        ]
        producer.flush(timeout=DELIVERY_TIMEOUT_S)
        offsets = [future.get(timeout=CLIENT_TIMEOUT_S).offset for future in futures]
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    assert offsets == list(range(RECORD_COUNT))
    assert_each_record_once_in_order(proxied, unique_topic)


def test_aiokafka_idempotent_producer_survives_lost_answers(
    proxied: ProxiedBroker, unique_topic: str
) -> None:
    create_topic_with_confluent(proxied.proxy.address, unique_topic, partitions=1)
    proxied.start_faults(seed=21)

    async def produce_all() -> list[int]:
        producer = AIOKafkaProducer(
            bootstrap_servers=proxied.proxy.address,
            enable_idempotence=True,
            acks="all",
            max_batch_size=BATCH_BYTES,
            linger_ms=0,
            retry_backoff_ms=10,
            request_timeout_ms=int(CLIENT_TIMEOUT_S * 1000),
        )
        await producer.start()
        try:
            futures = [
                await producer.send(unique_topic, key=record_key(n), value=sequence_value(n), partition=0)
                for n in range(RECORD_COUNT)
            ]
            metadata = await asyncio.wait_for(asyncio.gather(*futures), DELIVERY_TIMEOUT_S)
        finally:
            await producer.stop()
        return [record.offset for record in metadata]

    assert asyncio.run(produce_all()) == list(range(RECORD_COUNT))
    assert_each_record_once_in_order(proxied, unique_topic)


def test_kafkajs_idempotent_producer_survives_lost_answers(proxied: ProxiedBroker, unique_topic: str) -> None:
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.skip("node and tests/compat/js/node_modules (npm ci) are needed to run kafkajs")
    create_topic_with_confluent(proxied.proxy.address, unique_topic, partitions=1)
    proxied.start_faults(seed=31)
    request = {
        "brokers": [proxied.proxy.address],
        "topic": unique_topic,
        "partition": 0,
        "perSend": RECORDS_PER_BATCH,
        "maxInFlightRequests": 1,
        "messages": [
            {"key": record_key(n).decode(), "value": sequence_value(n).decode()} for n in range(RECORD_COUNT)
        ],
    }
    completed = subprocess.run(
        ["node", "idempotent_producer.js"],
        cwd=JS_DIR,
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=DELIVERY_TIMEOUT_S * 2,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )
    assert completed.returncode == 0, f"kafkajs failed:\n{completed.stderr[-4000:]}"
    assert json.loads(completed.stdout) == {"sends": RECORD_COUNT // RECORDS_PER_BATCH}
    assert_each_record_once_in_order(proxied, unique_topic)
