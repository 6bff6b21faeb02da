"""The transactional APIs on an in-process broker, through the dispatcher and the real codec both ways.

A transaction's whole life is driven the way a client drives it (FindCoordinator, InitProducerId,
AddPartitionsToTxn, Produce, AddOffsetsToTxn, TxnOffsetCommit, EndTxn), and its effects are read back the way
consumers and tools read them (Fetch and ListOffsets read_committed, OffsetFetch require_stable,
DescribeProducers, DescribeTransactions, ListTransactions), including across a restart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.coordinator.group import OFFSETS_TOPIC
from strom.coordinator.transaction import TRANSACTION_STATE_TOPIC, TxnState
from strom.metadata.properties import BrokerConfig, with_single_node_defaults
from strom.protocol.errors import ErrorCode
from strom.protocol.frames import decode_response_frame_body, encode_request_frame
from strom.protocol.messages import (
    add_offsets_to_txn,
    add_partitions_to_txn,
    describe_producers,
    describe_transactions,
    end_txn,
    fetch,
    find_coordinator,
    init_producer_id,
    list_offsets,
    list_transactions,
    offset_commit,
    offset_fetch,
    produce,
    txn_offset_commit,
)
from strom.protocol.record_batch import Record, build_batch, validate_record_set
from strom.server.broker import Broker
from strom.server.dispatch import Dispatcher

TOPIC = "orders"
TXN = "payments"
GROUP = "billing"
TIMEOUT_MS = 60_000
READ_UNCOMMITTED, READ_COMMITTED = 0, 1
LATEST = -1

AddTopic = add_partitions_to_txn.AddPartitionsToTxnTopic
AddTransaction = add_partitions_to_txn.AddPartitionsToTxnRequest.AddPartitionsToTxnTransaction
TopicPartition = tuple[str, int]


@dataclasses.dataclass
class StubConnection:
    peer: str = "10.1.2.3:5555"


def start(data_dir: Path, **overrides: str) -> Broker:
    config = BrokerConfig(
        with_single_node_defaults(
            {
                "log.dirs": str(data_dir),
                "offsets.topic.num.partitions": "3",
                "transaction.state.log.num.partitions": "3",
                **overrides,
            }
        )
    )
    node = Broker(config, advertised_host="127.0.0.1", advertised_port=9092)
    if node.image.topic(TOPIC) is None:
        node.controller.create_topics([node.controller.new_topic(TOPIC, 2, 1)])
    return node


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    node = start(tmp_path)
    yield node
    node.close()


def _materialize(chunk: Any) -> bytes:
    """Bytes of a response chunk; records read from a log come as a file range, sent with sendfile."""
    if isinstance(chunk, bytes | bytearray | memoryview):
        return bytes(chunk)
    return os.pread(chunk.file.fileno(), chunk.size, chunk.position)


def call(broker: Broker, api_key: int, version: int, request: Any) -> Any:
    """One request through the dispatcher and the codec, both ways."""
    frame = b"".join(encode_request_frame(api_key, version, 7, "test-client", request))[4:]
    chunks = asyncio.run(Dispatcher(broker).handle_frame(StubConnection(), memoryview(bytearray(frame))))  # type: ignore[arg-type]
    assert chunks is not None
    data = b"".join(_materialize(chunk) for chunk in chunks)
    correlation_id, response = decode_response_frame_body(api_key, version, memoryview(data)[4:])
    assert correlation_id == 7
    return response


# ------------------------------------------------------------------------------------------ client steps
def find_transaction_coordinator(broker: Broker, transactional_id: str = TXN) -> Any:
    request = find_coordinator.FindCoordinatorRequest(key_type=1, coordinator_keys=[transactional_id])
    [found] = call(broker, find_coordinator.API_KEY, 4, request).coordinators
    return found


def init(
    broker: Broker, *, version: int = 5, expected: tuple[int, int] = (-1, -1), transactional_id: str = TXN
) -> Any:
    request = init_producer_id.InitProducerIdRequest(
        transactional_id=transactional_id,
        transaction_timeout_ms=TIMEOUT_MS,
        producer_id=expected[0],
        producer_epoch=expected[1],
    )
    return call(broker, init_producer_id.API_KEY, version, request)


@dataclasses.dataclass
class Producer:
    """A transactional producer: its id, epoch and next sequence number per partition."""

    broker: Broker
    producer_id: int
    epoch: int
    transactional_id: str = TXN
    sequences: dict[int, int] = dataclasses.field(default_factory=dict)

    def add(self, *partitions: TopicPartition, version: int = 3) -> dict[TopicPartition, int]:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in partitions:
            by_topic.setdefault(topic, []).append(partition)
        topics = [AddTopic(name, indexes) for name, indexes in by_topic.items()]
        if version < 4:
            request = add_partitions_to_txn.AddPartitionsToTxnRequest(
                v3_and_below_transactional_id=self.transactional_id,
                v3_and_below_producer_id=self.producer_id,
                v3_and_below_producer_epoch=self.epoch,
                v3_and_below_topics=topics,
            )
            results = call(
                self.broker, add_partitions_to_txn.API_KEY, version, request
            ).results_by_topic_v3_and_below
        else:
            transaction = AddTransaction(self.transactional_id, self.producer_id, self.epoch, False, topics)
            request = add_partitions_to_txn.AddPartitionsToTxnRequest(transactions=[transaction])
            response = call(self.broker, add_partitions_to_txn.API_KEY, version, request)
            [result] = response.results_by_transaction
            results = result.topic_results
        return {
            (t.name, p.partition_index): p.partition_error_code
            for t in results
            for p in t.results_by_partition
        }

    def produce(self, partition: int, *, version: int = 9, count: int = 3) -> Any:
        sequence = self.sequences.get(partition, 0)
        batch = build_batch(
            [Record(i, 0, None, b"v%d" % i) for i in range(count)],
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            base_sequence=sequence,
            transactional=True,
        )
        response = produce_batch(self.broker, partition, batch, self.transactional_id, version)
        if response.error_code == ErrorCode.NONE:
            self.sequences[partition] = sequence + count
        return response

    def end(self, commit: bool, *, version: int = 4) -> int:
        request = end_txn.EndTxnRequest(self.transactional_id, self.producer_id, self.epoch, commit)
        return call(self.broker, end_txn.API_KEY, version, request).error_code

    def add_offsets(self, group: str = GROUP, *, version: int = 3) -> int:
        request = add_offsets_to_txn.AddOffsetsToTxnRequest(
            self.transactional_id, self.producer_id, self.epoch, group
        )
        return call(self.broker, add_offsets_to_txn.API_KEY, version, request).error_code

    def commit_offsets(
        self, offsets: dict[int, int], group: str = GROUP, *, version: int = 3
    ) -> dict[int, int]:
        partitions = [
            txn_offset_commit.TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(p, offset)
            for p, offset in offsets.items()
        ]
        request = txn_offset_commit.TxnOffsetCommitRequest(
            transactional_id=self.transactional_id,
            group_id=group,
            producer_id=self.producer_id,
            producer_epoch=self.epoch,
            topics=[txn_offset_commit.TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(TOPIC, partitions)],
        )
        [topic] = call(self.broker, txn_offset_commit.API_KEY, version, request).topics
        return {p.partition_index: p.error_code for p in topic.partitions}


def new_producer(broker: Broker, transactional_id: str = TXN) -> Producer:
    """FindCoordinator and InitProducerId as a client does them, retrying while an earlier producer's
    transaction is being aborted (CONCURRENT_TRANSACTIONS)."""
    assert find_transaction_coordinator(broker, transactional_id).error_code == ErrorCode.NONE
    for _ in range(3):
        granted = init(broker, transactional_id=transactional_id)
        if granted.error_code != ErrorCode.CONCURRENT_TRANSACTIONS:
            break
    assert granted.error_code == ErrorCode.NONE
    return Producer(broker, granted.producer_id, granted.producer_epoch, transactional_id)


def produce_batch(
    broker: Broker, partition: int, batch: bytes, transactional_id: str | None = None, version: int = 9
) -> Any:
    request = produce.ProduceRequest(
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=1000,
        topic_data=[
            produce.ProduceRequest.TopicProduceData(
                TOPIC, [produce.ProduceRequest.PartitionProduceData(partition, batch)]
            )
        ],
    )
    [topic] = call(broker, produce.API_KEY, version, request).responses
    [result] = topic.partition_responses
    return result


def produce_plain(broker: Broker, partition: int, count: int = 3) -> int:
    """A batch from a producer without a producer id; its base offset."""
    batch = build_batch([Record(i, 0, None, b"p%d" % i) for i in range(count)])
    result = produce_batch(broker, partition, batch)
    assert result.error_code == ErrorCode.NONE
    return result.base_offset


def fetch_partition(
    broker: Broker, partition: int, isolation: int, *, offset: int = 0, version: int = 11
) -> Any:
    request = fetch.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        isolation_level=isolation,
        topics=[
            fetch.FetchRequest.FetchTopic(
                topic=TOPIC,
                partitions=[
                    fetch.FetchRequest.FetchPartition(
                        partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20
                    )
                ],
            )
        ],
    )
    [topic] = call(broker, fetch.API_KEY, version, request).responses
    [data] = topic.partitions
    return data


def batches_of(data: Any) -> list[tuple[int, int, bool]]:
    """(base offset, last offset, is a marker) of each batch a fetch returned."""
    if not data.records:
        return []
    return [
        (h.base_offset, h.last_offset, h.is_control)
        for h in validate_record_set(memoryview(bytearray(data.records)))
    ]


def latest_offset(broker: Broker, partition: int, isolation: int, version: int) -> int:
    request = list_offsets.ListOffsetsRequest(
        replica_id=-1,
        isolation_level=isolation,
        topics=[
            list_offsets.ListOffsetsRequest.ListOffsetsTopic(
                TOPIC,
                [
                    list_offsets.ListOffsetsRequest.ListOffsetsPartition(
                        partition_index=partition, timestamp=LATEST
                    )
                ],
            )
        ],
    )
    [topic] = call(broker, list_offsets.API_KEY, version, request).topics
    [answer] = topic.partitions
    assert answer.error_code == ErrorCode.NONE
    return answer.offset


def fetch_offsets(broker: Broker, *, require_stable: bool, version: int = 8) -> dict[int, tuple[int, int]]:
    """(committed offset, error) of the group's partitions 0 and 1 of the topic."""
    topics = [offset_fetch.OffsetFetchRequest.OffsetFetchRequestTopics(TOPIC, [0, 1])]
    request = offset_fetch.OffsetFetchRequest(
        groups=[offset_fetch.OffsetFetchRequest.OffsetFetchRequestGroup(GROUP, topics=topics)],
        require_stable=require_stable,
    )
    [group] = call(broker, offset_fetch.API_KEY, version, request).groups
    assert group.error_code == ErrorCode.NONE
    return {p.partition_index: (p.committed_offset, p.error_code) for t in group.topics for p in t.partitions}


def find_group_coordinator(broker: Broker) -> None:
    find = find_coordinator.FindCoordinatorRequest(key_type=0, coordinator_keys=[GROUP])
    assert call(broker, find_coordinator.API_KEY, 4, find).coordinators[0].error_code == ErrorCode.NONE


def commit_plain_offset(broker: Broker, partition: int, offset: int) -> None:
    find_group_coordinator(broker)
    request = offset_commit.OffsetCommitRequest(
        group_id=GROUP,
        topics=[
            offset_commit.OffsetCommitRequest.OffsetCommitRequestTopic(
                TOPIC, [offset_commit.OffsetCommitRequest.OffsetCommitRequestPartition(partition, offset)]
            )
        ],
    )
    [topic] = call(broker, offset_commit.API_KEY, 8, request).topics
    assert topic.partitions[0].error_code == ErrorCode.NONE


def describe(broker: Broker, *transactional_ids: str) -> list[Any]:
    request = describe_transactions.DescribeTransactionsRequest(list(transactional_ids))
    return call(broker, describe_transactions.API_KEY, 0, request).transaction_states


def list_txns(broker: Broker, version: int = 1, **filters: Any) -> Any:
    return call(
        broker, list_transactions.API_KEY, version, list_transactions.ListTransactionsRequest(**filters)
    )


# ------------------------------------------------------------------------------------------ FindCoordinator
@pytest.mark.parametrize("version", range(1, 4))
def test_find_coordinator_for_a_transactional_id_single_key(broker: Broker, version: int) -> None:
    request = find_coordinator.FindCoordinatorRequest(key=TXN, key_type=1)
    response = call(broker, find_coordinator.API_KEY, version, request)
    assert (response.error_code, response.node_id, response.host, response.port) == (0, 1, "127.0.0.1", 9092)
    topic = broker.image.topic(TRANSACTION_STATE_TOPIC)
    assert topic is not None and len(topic.partitions) == 3


def test_find_coordinator_for_transactional_ids_batched(broker: Broker) -> None:
    request = find_coordinator.FindCoordinatorRequest(key_type=1, coordinator_keys=[TXN, "other"])
    found = call(broker, find_coordinator.API_KEY, 6, request).coordinators
    assert [(c.key, c.node_id, c.error_code) for c in found] == [(TXN, 1, 0), ("other", 1, 0)]


# ------------------------------------------------------------------------------------------ InitProducerId
def test_init_producer_id_before_the_coordinator_exists_is_not_coordinator(broker: Broker) -> None:
    assert init(broker).error_code == ErrorCode.NOT_COORDINATOR


@pytest.mark.parametrize("version", range(0, 6))
def test_init_producer_id_with_a_transactional_id(broker: Broker, version: int) -> None:
    find_transaction_coordinator(broker)
    first = init(broker, version=version)
    assert (first.error_code, first.producer_epoch) == (ErrorCode.NONE, 0)
    again = init(broker, version=version)
    assert (again.error_code, again.producer_id, again.producer_epoch) == (
        ErrorCode.NONE,
        first.producer_id,
        1,
    )
    other = init(broker, version=version, transactional_id="another-app")
    assert other.producer_id != first.producer_id


def test_init_producer_id_refuses_a_timeout_beyond_the_maximum(broker: Broker) -> None:
    find_transaction_coordinator(broker)
    request = init_producer_id.InitProducerIdRequest(transactional_id=TXN, transaction_timeout_ms=900_001)
    assert (
        call(broker, init_producer_id.API_KEY, 4, request).error_code == ErrorCode.INVALID_TRANSACTION_TIMEOUT
    )


def test_a_failed_write_to_the_transaction_log_asks_the_client_to_retry(tmp_path: Path) -> None:
    """Kafka turns a failed append to __transaction_state into an error the transactional client retries:
    NOT_ENOUGH_REPLICAS (like UNKNOWN_TOPIC_OR_PARTITION and REQUEST_TIMED_OUT) becomes
    COORDINATOR_NOT_AVAILABLE (TransactionStateManager.appendTransactionToLog)."""
    broker = start(tmp_path, **{"transaction.state.log.min.isr": "2"})
    try:
        assert find_transaction_coordinator(broker).error_code == ErrorCode.NONE
        assert init(broker).error_code == ErrorCode.COORDINATOR_NOT_AVAILABLE
    finally:
        broker.close()


# ----------------------------------------------------------------------------------------- AddPartitionsToTxn
@pytest.mark.parametrize("version", range(0, 4))
def test_add_partitions_opens_the_transaction(broker: Broker, version: int) -> None:
    producer = new_producer(broker)
    assert producer.add((TOPIC, 0), (TOPIC, 1), version=version) == {(TOPIC, 0): 0, (TOPIC, 1): 0}
    [described] = describe(broker, TXN)
    assert described.transaction_state == "Ongoing"
    assert [(t.topic, sorted(t.partitions)) for t in described.topics] == [(TOPIC, [0, 1])]


@pytest.mark.parametrize("version", [4, 5])
def test_add_partitions_batched_with_verify_only(broker: Broker, version: int) -> None:
    adder = new_producer(broker)
    verifier = new_producer(broker, "verified")
    verifier.add((TOPIC, 1))
    request = add_partitions_to_txn.AddPartitionsToTxnRequest(
        transactions=[
            AddTransaction(TXN, adder.producer_id, adder.epoch, False, [AddTopic(TOPIC, [0])]),
            AddTransaction("verified", verifier.producer_id, verifier.epoch, True, [AddTopic(TOPIC, [0, 1])]),
        ]
    )
    response = call(broker, add_partitions_to_txn.API_KEY, version, request)
    answers = {
        r.transactional_id: {
            (t.name, p.partition_index): p.partition_error_code
            for t in r.topic_results
            for p in t.results_by_partition
        }
        for r in response.results_by_transaction
    }
    assert answers == {
        TXN: {(TOPIC, 0): ErrorCode.NONE},
        "verified": {(TOPIC, 0): ErrorCode.INVALID_TXN_STATE, (TOPIC, 1): ErrorCode.NONE},
    }
    states = {
        d.transactional_id: (d.transaction_state, [(t.topic, t.partitions) for t in d.topics])
        for d in describe(broker, TXN, "verified")
    }
    assert states == {
        TXN: ("Ongoing", [(TOPIC, [0])]),
        "verified": ("Ongoing", [(TOPIC, [1])]),
    }  # verify changed nothing


@pytest.mark.parametrize("version", [3, 5])
def test_add_partitions_of_unknown_topics_fails_them_and_attempts_none(broker: Broker, version: int) -> None:
    producer = new_producer(broker)
    answered = producer.add((TOPIC, 0), ("no-such-topic", 0), (TOPIC, 9), version=version)
    assert answered == {
        (TOPIC, 0): ErrorCode.OPERATION_NOT_ATTEMPTED,
        ("no-such-topic", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
        (TOPIC, 9): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
    assert describe(broker, TXN)[0].transaction_state == "Empty"


# ------------------------------------------------------------------------------------------ Produce (KIP-890)
def test_a_transactional_write_to_a_partition_not_in_the_transaction_is_refused(broker: Broker) -> None:
    producer = new_producer(broker)
    assert producer.produce(0).error_code == ErrorCode.INVALID_TXN_STATE
    log = broker.leader_log(TOPIC, 0)
    assert (log.log_end_offset, log.last_stable_offset) == (0, 0)
    producer.add((TOPIC, 0))
    written = producer.produce(0)
    assert (written.error_code, written.base_offset) == (ErrorCode.NONE, 0)
    assert producer.produce(1).error_code == ErrorCode.INVALID_TXN_STATE  # only partition 0 was added
    assert producer.end(True) == ErrorCode.NONE
    assert producer.produce(0).error_code == ErrorCode.INVALID_TXN_STATE  # a late write after the commit
    assert log.last_stable_offset == log.high_watermark


def test_a_fenced_producer_cannot_write_any_more(broker: Broker) -> None:
    zombie = new_producer(broker)
    zombie.add((TOPIC, 0))
    assert zombie.produce(0).error_code == ErrorCode.NONE
    successor = new_producer(broker)  # aborts the zombie's transaction with a bumped epoch
    assert successor.epoch > zombie.epoch + 1
    log = broker.leader_log(TOPIC, 0)
    assert log.last_stable_offset == log.high_watermark
    assert zombie.produce(0).error_code == ErrorCode.INVALID_PRODUCER_EPOCH
    data = fetch_partition(broker, 0, READ_COMMITTED)
    assert [(t.producer_id, t.first_offset) for t in data.aborted_transactions] == [(zombie.producer_id, 0)]


# ------------------------------------------------------------------------------------------ read_committed
def test_fetch_read_committed_stops_at_the_last_stable_offset_and_lists_aborted_transactions(
    broker: Broker,
) -> None:
    producer = new_producer(broker)
    producer.add((TOPIC, 0))
    producer.produce(0)  # 0-2
    produce_plain(broker, 0)  # 3-5
    uncommitted = fetch_partition(broker, 0, READ_UNCOMMITTED)
    assert batches_of(uncommitted) == [(0, 2, False), (3, 5, False)]
    committed = fetch_partition(broker, 0, READ_COMMITTED)
    assert (committed.high_watermark, committed.last_stable_offset) == (6, 0)
    assert batches_of(committed) == []
    assert producer.end(False) == ErrorCode.NONE  # the marker is at 6
    committed = fetch_partition(broker, 0, READ_COMMITTED)
    assert (committed.high_watermark, committed.last_stable_offset) == (7, 7)
    assert batches_of(committed) == [(0, 2, False), (3, 5, False), (6, 6, True)]
    assert [(t.producer_id, t.first_offset) for t in committed.aborted_transactions] == [
        (producer.producer_id, 0)
    ]
    later = fetch_partition(broker, 0, READ_COMMITTED, offset=7)
    assert later.aborted_transactions == []


def test_fetch_read_committed_omits_committed_transactions_from_the_aborted_list(broker: Broker) -> None:
    producer = new_producer(broker)
    producer.add((TOPIC, 1))
    producer.produce(1)
    assert producer.end(True) == ErrorCode.NONE
    committed = fetch_partition(broker, 1, READ_COMMITTED, version=4)
    assert batches_of(committed) == [(0, 2, False), (3, 3, True)]
    assert committed.aborted_transactions == []


@pytest.mark.parametrize("version", [2, 10])
def test_list_offsets_latest_is_the_last_stable_offset_under_read_committed(
    broker: Broker, version: int
) -> None:
    produce_plain(broker, 0)  # 0-2
    producer = new_producer(broker)
    producer.add((TOPIC, 0))
    producer.produce(0)  # 3-5
    assert latest_offset(broker, 0, READ_UNCOMMITTED, version) == 6
    assert latest_offset(broker, 0, READ_COMMITTED, version) == 3
    producer.end(True)
    assert latest_offset(broker, 0, READ_COMMITTED, version) == 7


# ------------------------------------------------------------------------------------ offsets in transactions
@pytest.mark.parametrize("commit", [True, False], ids=["commit", "abort"])
def test_transactional_offsets_are_unstable_until_the_transaction_ends(broker: Broker, commit: bool) -> None:
    commit_plain_offset(broker, 0, 5)
    producer = new_producer(broker)
    assert producer.add_offsets() == ErrorCode.NONE
    [described] = describe(broker, TXN)
    assert [t.topic for t in described.topics] == [OFFSETS_TOPIC]
    assert producer.commit_offsets({0: 42}) == {0: ErrorCode.NONE}
    assert fetch_offsets(broker, require_stable=True) == {
        0: (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT),
        1: (-1, 0),
    }
    assert fetch_offsets(broker, require_stable=False) == {0: (5, 0), 1: (-1, 0)}
    assert producer.end(commit) == ErrorCode.NONE
    assert fetch_offsets(broker, require_stable=True) == {0: (42 if commit else 5, 0), 1: (-1, 0)}


@pytest.mark.parametrize("fenced_first", [False, True], ids=["never-added", "fenced-zombie"])
def test_txn_offset_commit_outside_the_producers_transaction_is_refused(
    broker: Broker, fenced_first: bool
) -> None:
    """Kafka's group coordinator verifies a TxnOffsetCommit against the transaction coordinator (KIP-890,
    transaction.partition.verification.enable) before writing it, as Produce does: offsets of a transaction
    that did not add the group (or of a fenced producer) would stay pending forever, and consumers fetching
    with require_stable would get UNSTABLE_OFFSET_COMMIT forever."""
    find_group_coordinator(broker)
    producer = new_producer(broker)
    if fenced_first:
        new_producer(broker)
    answer = producer.commit_offsets({0: 42})[0]
    assert answer in (
        (ErrorCode.INVALID_PRODUCER_EPOCH, ErrorCode.PRODUCER_FENCED)
        if fenced_first
        else (ErrorCode.INVALID_TXN_STATE, ErrorCode.TRANSACTION_ABORTABLE)
    )
    assert fetch_offsets(broker, require_stable=True) == {0: (-1, 0), 1: (-1, 0)}


def test_a_fenced_producers_offsets_are_not_committed_by_its_successor(broker: Broker) -> None:
    """Pending offsets are kept by producer id, which the successor shares: an offset the zombie slipped in
    must not count when the successor's transaction commits."""
    find_group_coordinator(broker)
    zombie = new_producer(broker)
    successor = new_producer(broker)
    zombie.commit_offsets({0: 999})
    assert successor.add_offsets() == ErrorCode.NONE
    assert successor.commit_offsets({1: 7}) == {1: ErrorCode.NONE}
    assert successor.end(True) == ErrorCode.NONE
    assert fetch_offsets(broker, require_stable=True) == {0: (-1, 0), 1: (7, 0)}


def test_txn_offset_commit_of_an_unknown_topic_partition(broker: Broker) -> None:
    producer = new_producer(broker)
    assert producer.add_offsets() == ErrorCode.NONE
    assert producer.commit_offsets({0: 1, 9: 1}) == {
        0: ErrorCode.NONE,
        9: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }


# ------------------------------------------------------------------------------------------ administration
def test_describe_producers_shows_the_open_transaction_and_the_last_marker(broker: Broker) -> None:
    producer = new_producer(broker)
    producer.add((TOPIC, 0))
    produce_plain(broker, 0)  # 0-2: no producer id, not listed
    producer.produce(0)  # 3-5

    def described() -> list[tuple[int, int, int, int, int]]:
        request = describe_producers.DescribeProducersRequest(
            [describe_producers.DescribeProducersRequest.TopicRequest(TOPIC, [0])]
        )
        [topic] = call(broker, describe_producers.API_KEY, 0, request).topics
        [partition] = topic.partitions
        assert partition.error_code == ErrorCode.NONE
        return [
            (
                p.producer_id,
                p.producer_epoch,
                p.last_sequence,
                p.coordinator_epoch,
                p.current_txn_start_offset,
            )
            for p in partition.active_producers
        ]

    assert described() == [(producer.producer_id, producer.epoch, 2, -1, 3)]
    producer.end(True)
    coordinator_epoch = broker.leader_epoch(TRANSACTION_STATE_TOPIC, broker.transactions.partition_for(TXN))
    assert described() == [(producer.producer_id, producer.epoch, 2, coordinator_epoch, -1)]
    unknown = describe_producers.DescribeProducersRequest(
        [describe_producers.DescribeProducersRequest.TopicRequest("no-such-topic", [0])]
    )
    [topic] = call(broker, describe_producers.API_KEY, 0, unknown).topics
    assert topic.partitions[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def test_describe_transactions(broker: Broker) -> None:
    producer = new_producer(broker)
    producer.add((TOPIC, 1), (TOPIC, 0))
    ongoing, unknown = describe(broker, TXN, "never-seen")
    assert (ongoing.error_code, ongoing.transactional_id, ongoing.transaction_state) == (0, TXN, "Ongoing")
    assert (ongoing.producer_id, ongoing.producer_epoch, ongoing.transaction_timeout_ms) == (
        producer.producer_id,
        producer.epoch,
        TIMEOUT_MS,
    )
    assert ongoing.transaction_start_time_ms > 0
    assert [(t.topic, t.partitions) for t in ongoing.topics] == [(TOPIC, [0, 1])]
    assert (unknown.transactional_id, unknown.error_code) == (
        "never-seen",
        ErrorCode.TRANSACTIONAL_ID_NOT_FOUND,
    )
    producer.end(True)
    [done] = describe(broker, TXN)
    assert (done.transaction_state, done.topics) == ("CompleteCommit", [])


@pytest.fixture
def two_transactions(broker: Broker) -> dict[str, Producer]:
    """The "idle" id (Empty) and TXN (Ongoing)."""
    idle = new_producer(broker, "idle")
    busy = new_producer(broker)
    busy.add((TOPIC, 0))
    return {"idle": idle, TXN: busy}


@pytest.mark.parametrize("version", [0, 1])
def test_list_transactions_filters_by_state_including_unknown_names(
    broker: Broker, two_transactions: dict[str, Producer], version: int
) -> None:
    def listed(**filters: Any) -> tuple[list[str], list[tuple[str, str]]]:
        response = list_txns(broker, version, **filters)
        assert response.error_code == ErrorCode.NONE
        states = sorted((t.transactional_id, t.transaction_state) for t in response.transaction_states)
        return response.unknown_state_filters, states

    everything = [("idle", "Empty"), (TXN, "Ongoing")]
    assert listed() == ([], everything)
    assert listed(state_filters=["Ongoing"]) == ([], [(TXN, "Ongoing")])
    assert listed(state_filters=["Ongoing", "Bogus"]) == (["Bogus"], [(TXN, "Ongoing")])
    assert listed(state_filters=["Bogus"]) == (["Bogus"], [])
    assert listed(state_filters=["PrepareCommit", "Empty"]) == ([], [("idle", "Empty")])
    idle_id = two_transactions["idle"].producer_id
    assert listed(producer_id_filters=[idle_id]) == ([], [("idle", "Empty")])
    assert listed(producer_id_filters=[idle_id], state_filters=["Ongoing"]) == ([], [])


def test_list_transactions_v1_duration_filter(broker: Broker, two_transactions: dict[str, Producer]) -> None:
    def listed(duration_ms: int) -> list[str]:
        return sorted(
            t.transactional_id for t in list_txns(broker, 1, duration_filter=duration_ms).transaction_states
        )

    assert listed(-1) == ["idle", TXN]
    assert listed(3_600_000) == []


# ------------------------------------------------------------------------------------------ old versions
def fenced(broker: Broker) -> Producer:
    """A producer whose epoch a newer InitProducerId superseded, in the middle of a transaction."""
    zombie = new_producer(broker)
    zombie.add((TOPIC, 0))
    new_producer(broker)
    return zombie


@pytest.mark.parametrize(("version", "expected"), [(0, 47), (1, 47), (2, 90), (3, 90), (4, 90)])
def test_end_txn_reports_a_fenced_producer_as_old_clients_know_it(
    broker: Broker, version: int, expected: int
) -> None:
    assert fenced(broker).end(True, version=version) == expected  # INVALID_PRODUCER_EPOCH / PRODUCER_FENCED


@pytest.mark.parametrize(("version", "expected"), [(0, 47), (1, 47), (2, 90), (3, 90), (4, 90), (5, 90)])
def test_add_partitions_reports_a_fenced_producer_as_old_clients_know_it(
    broker: Broker, version: int, expected: int
) -> None:
    assert fenced(broker).add((TOPIC, 1), version=version) == {(TOPIC, 1): expected}


@pytest.mark.parametrize(("version", "expected"), [(0, 47), (1, 47), (2, 90), (3, 90), (4, 90)])
def test_add_offsets_reports_a_fenced_producer_as_old_clients_know_it(
    broker: Broker, version: int, expected: int
) -> None:
    assert fenced(broker).add_offsets(version=version) == expected


@pytest.mark.parametrize(("version", "expected"), [(3, 47), (4, 90), (5, 90)])
def test_init_producer_id_reports_a_fenced_recovery_as_old_clients_know_it(
    broker: Broker, version: int, expected: int
) -> None:
    zombie = fenced(broker)
    answer = init(broker, version=version, expected=(zombie.producer_id, zombie.epoch))
    assert (answer.error_code, answer.producer_epoch) == (expected, -1)


# ------------------------------------------------------------------------------------------ restart
def test_a_restart_keeps_open_transactions_and_their_pending_offsets(tmp_path: Path) -> None:
    broker = start(tmp_path)
    commit_plain_offset(broker, 0, 5)
    producer = new_producer(broker)
    producer.add((TOPIC, 0))
    producer.produce(0)
    producer.add_offsets()
    producer.commit_offsets({0: 42})
    broker.close()

    broker = start(tmp_path)
    try:
        producer.broker = broker
        assert init(broker, transactional_id="other").error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        assert describe(broker, TXN)[0].error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        # The write cannot be verified yet: a retriable error, as Kafka's ReplicaManager answers.
        assert producer.produce(0).error_code == ErrorCode.NOT_ENOUGH_REPLICAS
        asyncio.run(broker.load_coordinators())
        [described] = describe(broker, TXN)
        assert described.transaction_state == "Ongoing"
        assert sorted((t.topic, tuple(t.partitions)) for t in described.topics) == sorted(
            [(TOPIC, (0,)), (OFFSETS_TOPIC, (broker.groups.partition_for(GROUP),))]
        )
        assert fetch_offsets(broker, require_stable=True)[0] == (-1, ErrorCode.UNSTABLE_OFFSET_COMMIT)
        assert fetch_partition(broker, 0, READ_COMMITTED).last_stable_offset == 0
        assert producer.end(True) == ErrorCode.NONE
        assert fetch_offsets(broker, require_stable=True)[0] == (42, 0)
        data = fetch_partition(broker, 0, READ_COMMITTED)
        assert data.last_stable_offset == data.high_watermark == 4
    finally:
        broker.close()


def test_list_transactions_while_the_coordinator_loads_is_load_in_progress(tmp_path: Path) -> None:
    """Kafka answers ListTransactions with COORDINATOR_LOAD_IN_PROGRESS while any partition of
    __transaction_state is loading, rather than a list missing the loading partitions' ids."""
    broker = start(tmp_path)
    new_producer(broker)
    broker.close()
    broker = start(tmp_path)
    try:
        assert list_txns(broker, 0).error_code == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        asyncio.run(broker.load_coordinators())
        listed = list_txns(broker, 0)
        assert (listed.error_code, [t.transactional_id for t in listed.transaction_states]) == (0, [TXN])
    finally:
        broker.close()


def test_a_restart_finishes_a_commit_decided_before_a_crash(tmp_path: Path) -> None:
    """A broker that wrote PrepareCommit and died before the markers: loading writes them, so the data and
    the offsets of the transaction become visible without the producer doing anything."""
    broker = start(tmp_path)
    producer = new_producer(broker)
    producer.add((TOPIC, 0))
    producer.produce(0)
    producer.add_offsets()
    producer.commit_offsets({1: 17})
    ongoing = broker.transactions.describe(TXN).to_record_value()
    decided = dataclasses.replace(ongoing, state=int(TxnState.PREPARE_COMMIT))
    broker.transaction_state_topic.write(broker.transactions.partition_for(TXN), TXN, decided)  # step 1 only
    broker.close()

    broker = start(tmp_path)
    try:
        asyncio.run(broker.load_coordinators())
        producer.broker = broker
        [described] = describe(broker, TXN)
        assert (described.transaction_state, described.topics) == ("CompleteCommit", [])
        data = fetch_partition(broker, 0, READ_COMMITTED)
        assert batches_of(data) == [(0, 2, False), (3, 3, True)]
        assert data.aborted_transactions == []
        assert fetch_offsets(broker, require_stable=True)[1] == (17, 0)
        assert producer.end(True) == ErrorCode.NONE  # the producer's retry of its EndTxn
    finally:
        broker.close()
