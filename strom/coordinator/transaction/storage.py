"""``__transaction_state`` as the transaction coordinator's storage (see `strom.coordinator.internal_topic`).

As in Kafka, the topic gets ``transaction.state.log.num.partitions`` partitions,
``transaction.state.log.replication.factor`` replicas (1 on a single-node broker unless configured),
``min.insync.replicas`` from ``transaction.state.log.min.isr``, ``cleanup.policy=compact``,
``compression.type=uncompressed`` and ``segment.bytes`` from ``transaction.state.log.segment.bytes``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from strom.coordinator.internal_topic import CoordinatorTopic
from strom.coordinator.transaction.coordinator import TransactionCoordinator
from strom.coordinator.transaction.records import (
    TransactionLogValue,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from strom.protocol.errors import KafkaError
from strom.protocol.primitives import DecodeError
from strom.protocol.record_batch import BatchHeader, Record, build_batch, decode_batch

if TYPE_CHECKING:
    from strom.metadata.properties import BrokerConfig
    from strom.server.broker import Broker

log = logging.getLogger(__name__)

TRANSACTION_STATE_TOPIC = "__transaction_state"


class TransactionStateTopic(CoordinatorTopic):
    """``__transaction_state``, written and replayed for one `TransactionCoordinator`."""

    def __init__(self, broker: Broker, config: BrokerConfig) -> None:
        super().__init__(
            broker,
            TRANSACTION_STATE_TOPIC,
            num_partitions=config.get_int("transaction.state.log.num.partitions"),
            replication_factor=config.get_int("transaction.state.log.replication.factor"),
            configs={
                "cleanup.policy": "compact",
                "compression.type": "uncompressed",
                "min.insync.replicas": str(config.get_int("transaction.state.log.min.isr")),
                "segment.bytes": str(config.get_int("transaction.state.log.segment.bytes")),
            },
        )
        self._transactions: TransactionCoordinator | None = None

    def attach_transactions(self, transactions: TransactionCoordinator) -> None:
        self._transactions = transactions
        self.attach(transactions, self._replay_batch)

    def write(self, partition: int, transactional_id: str, value: TransactionLogValue | None) -> None:
        """Append one record for the id (a tombstone when ``value`` is None); raises KafkaError."""
        record = Record(0, 0, encode_key(transactional_id), None if value is None else encode_value(value))
        self.append(partition, build_batch([record], base_timestamp=int(time.time() * 1000)))

    def _replay_batch(self, partition: int, header: BatchHeader, batch: memoryview) -> int:
        transactions = self._transactions
        assert transactions is not None
        if header.is_control:
            return 0
        try:
            _, records = decode_batch(batch)
        except KafkaError as exc:
            log.error("skipping a corrupt batch in %s-%d: %s", TRANSACTION_STATE_TOPIC, partition, exc)
            return 0
        count = 0
        for record in records:
            if record.key is None:
                continue
            try:
                transactional_id = decode_key(record.key)
                value = None if record.value is None else decode_value(record.value)
                transactions.replay(transactional_id, value)
            except (DecodeError, ValueError) as exc:  # ValueError: a state Kafka does not number
                log.error("skipping a malformed record in %s-%d: %s", TRANSACTION_STATE_TOPIC, partition, exc)
                continue
            count += 1
        return count
