"""Idempotent producers against a real Strom broker process: InitProducerId, and retried batches that the
broker answers with their original offsets instead of writing them twice."""

from __future__ import annotations

from typing import Any

from direct_fetch import stored_batches
from kafka import KafkaProducer
from scenario import CLIENT_TIMEOUT_S, Message, create_topic_with_confluent, produce_with_confluent

from strom.protocol.client import BrokerConnection
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import find_coordinator, init_producer_id, produce
from strom.protocol.record_batch import BatchHeader, Record, build_batch
from strom.testing.process import StromProcess

MESSAGE_COUNT = 1000


def _messages() -> list[Message]:
    return [Message(key=b"key-%d" % n, value=b"value-%d" % n) for n in range(MESSAGE_COUNT)]


def _connect(broker: StromProcess) -> BrokerConnection:
    return BrokerConnection("127.0.0.1", broker.port, timeout=CLIENT_TIMEOUT_S)


def _stored_batches(broker: StromProcess, topic: str) -> list[tuple[BatchHeader, list[bytes | None]]]:
    """Every batch in partition 0 of ``topic``, with its record values."""
    return [
        (header, [record.value for record in records])
        for header, records in stored_batches(broker.port, topic)
    ]


def _assert_stored_once_in_order(broker: StromProcess, topic: str) -> None:
    batches = _stored_batches(broker, topic)
    assert all(header.producer_id >= 0 and header.producer_epoch == 0 for header, _ in batches)
    offsets = [header.base_offset + i for header, values in batches for i in range(len(values))]
    values = [value for _, batch_values in batches for value in batch_values]
    assert offsets == list(range(MESSAGE_COUNT))
    assert values == [message.value for message in _messages()]


def test_kafka_python_default_producer_is_idempotent_and_writes_each_message_once(
    strom_broker: StromProcess, unique_topic: str
) -> None:
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    producer = KafkaProducer(bootstrap_servers=strom_broker.bootstrap)  # enable_idempotence defaults to True
    try:
        futures = [
            producer.send(unique_topic, key=message.key, value=message.value, partition=0)
            for message in _messages()
        ]
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        offsets = [future.get(timeout=CLIENT_TIMEOUT_S).offset for future in futures]
    finally:
        producer.close(timeout=CLIENT_TIMEOUT_S)
    assert offsets == list(range(MESSAGE_COUNT))
    _assert_stored_once_in_order(strom_broker, unique_topic)


def test_confluent_idempotent_producer_writes_each_message_once(
    strom_broker: StromProcess, unique_topic: str
) -> None:
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    deliveries = produce_with_confluent(
        strom_broker.bootstrap, unique_topic, _messages(), partition=0, config={"enable.idempotence": True}
    )
    assert sorted(delivery.offset for delivery in deliveries) == list(range(MESSAGE_COUNT))
    _assert_stored_once_in_order(strom_broker, unique_topic)


def _init_producer_id(broker: StromProcess) -> int:
    with _connect(broker) as conn:
        response = conn.call(
            init_producer_id.API_KEY,
            conn.negotiate(init_producer_id.API_KEY),
            init_producer_id.InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000),
        )
    assert response.error_code == ErrorCode.NONE and response.producer_epoch == 0
    return response.producer_id


def _produce(conn: BrokerConnection, topic: str, records: bytes) -> Any:
    request = produce.ProduceRequest
    data = request.PartitionProduceData(index=0, records=records)
    response = conn.call(
        produce.API_KEY,
        conn.negotiate(produce.API_KEY),
        request(
            acks=-1,
            timeout_ms=10_000,
            topic_data=[request.TopicProduceData(name=topic, partition_data=[data])],
        ),
    )
    return response.responses[0].partition_responses[0]


def test_a_resent_idempotent_batch_gets_its_original_offset_and_is_stored_once(
    strom_broker: StromProcess, unique_topic: str
) -> None:
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    producer_id = _init_producer_id(strom_broker)

    def batch(first_sequence: int, count: int) -> bytes:
        records = [Record(i, value=b"value-%d" % (first_sequence + i)) for i in range(count)]
        return build_batch(records, producer_id=producer_id, producer_epoch=0, base_sequence=first_sequence)

    with _connect(strom_broker) as conn:
        first = _produce(conn, unique_topic, batch(0, 3))
        second = _produce(conn, unique_topic, batch(3, 2))
        retried = _produce(conn, unique_topic, batch(0, 3))
        gap = _produce(conn, unique_topic, batch(7, 1))
    assert (first.error_code, first.base_offset) == (ErrorCode.NONE, 0)
    assert (second.error_code, second.base_offset) == (ErrorCode.NONE, 3)
    assert (retried.error_code, retried.base_offset) == (ErrorCode.NONE, 0)
    assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    stored = _stored_batches(strom_broker, unique_topic)
    assert [(header.base_offset, header.base_sequence) for header, _ in stored] == [(0, 0), (3, 3)]


def test_a_transactional_id_is_served_by_its_coordinator_only(strom_broker: StromProcess) -> None:
    """Before anyone looked for its coordinator, __transaction_state does not exist: NOT_COORDINATOR, as a
    Kafka broker that does not lead the id's partition answers. After FindCoordinator: epochs 0, then 1."""
    request = init_producer_id.InitProducerIdRequest(
        transactional_id="payments", transaction_timeout_ms=60_000
    )
    with _connect(strom_broker) as conn:
        version = conn.negotiate(init_producer_id.API_KEY)
        before = conn.call(init_producer_id.API_KEY, version, request)
        found = conn.call(
            find_coordinator.API_KEY,
            conn.negotiate(find_coordinator.API_KEY),
            find_coordinator.FindCoordinatorRequest(key_type=1, coordinator_keys=["payments"]),
        )
        first = conn.call(init_producer_id.API_KEY, version, request)
        second = conn.call(init_producer_id.API_KEY, version, request)
    assert before.error_code == ErrorCode.NOT_COORDINATOR
    assert [c.error_code for c in found.coordinators] == [ErrorCode.NONE]
    assert (first.error_code, first.producer_epoch) == (ErrorCode.NONE, 0)
    assert (second.error_code, second.producer_id, second.producer_epoch) == (
        ErrorCode.NONE,
        first.producer_id,
        1,
    )


def test_producer_ids_are_never_handed_out_twice_even_after_a_kill(fresh_broker: StromProcess) -> None:
    before = [_init_producer_id(fresh_broker) for _ in range(3)]
    assert before == sorted(set(before))
    fresh_broker.kill()
    fresh_broker.restart()
    assert _init_producer_id(fresh_broker) > before[-1]
