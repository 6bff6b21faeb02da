"""``__consumer_offsets`` as the group coordinator's storage (see `strom.coordinator.internal_topic`).

The topic gets ``offsets.topic.num.partitions`` partitions, ``offsets.topic.replication.factor`` replicas (1
on a single-node broker unless configured, see `config`), ``cleanup.policy=compact``,
``compression.type=producer`` and ``segment.bytes`` from ``offsets.topic.segment.bytes``, as in Kafka.

Transactional offset commits (TxnOffsetCommit) are written as transactional batches stamped with the
producer's id and epoch; they replay as pending offsets of that producer until the partition's transaction
marker (a control batch) commits or aborts them, exactly as they do while the broker runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.coordinator import GroupCoordinator, ProducerStamp
from strom.coordinator.group.records import StoredRecord, decode_key, decode_value, encode_key, encode_value
from strom.coordinator.internal_topic import CoordinatorTopic
from strom.protocol.errors import KafkaError
from strom.protocol.primitives import DecodeError
from strom.protocol.record_batch import (
    BatchHeader,
    ControlType,
    Record,
    build_batch,
    decode_batch,
    parse_control_batch,
)

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"


class OffsetsTopic(CoordinatorTopic):
    """``__consumer_offsets``, written and replayed for one `GroupCoordinator`."""

    def __init__(self, broker: Broker, config: GroupConfig) -> None:
        super().__init__(
            broker,
            OFFSETS_TOPIC,
            num_partitions=config.offsets_topic_num_partitions,
            replication_factor=config.offsets_topic_replication_factor,
            configs={
                "cleanup.policy": "compact",
                "compression.type": "producer",
                "segment.bytes": str(config.offsets_topic_segment_bytes),
            },
        )
        self._groups: GroupCoordinator | None = None

    def attach_groups(self, groups: GroupCoordinator) -> None:
        self._groups = groups
        self.attach(groups, self._replay_batch)

    def write(
        self, partition: int, records: Sequence[StoredRecord], producer: ProducerStamp | None = None
    ) -> None:
        """Append records as one batch (transactional when a producer is given); raises KafkaError."""
        self.append(partition, encode_batch(records, producer))

    def _replay_batch(self, partition: int, header: BatchHeader, batch: memoryview) -> int:
        groups = self._groups
        assert groups is not None
        if header.is_control:
            try:
                control_type, _ = parse_control_batch(batch)
            except KafkaError as exc:
                log.error("skipping a bad marker in %s-%d: %s", OFFSETS_TOPIC, partition, exc)
                return 0
            groups.complete_transaction(header.producer_id, committed=control_type is ControlType.COMMIT)
            return 1
        producer_id = header.producer_id if header.is_transactional else -1
        count = 0
        for record in _decode_records(batch, partition):
            groups.replay(record, producer_id=producer_id)
            count += 1
        return count


def encode_batch(records: Sequence[StoredRecord], producer: ProducerStamp | None = None) -> bytes:
    """The batch a coordinator writes: transactional and stamped with the producer for TxnOffsetCommit."""
    return build_batch(
        [
            Record(i, 0, encode_key(r.key), None if r.value is None else encode_value(r.value))
            for i, r in enumerate(records)
        ],
        base_timestamp=int(time.time() * 1000),
        producer_id=producer.producer_id if producer else -1,
        producer_epoch=producer.producer_epoch if producer else -1,
        transactional=producer is not None,
    )


def _decode_records(batch: memoryview, partition: int) -> Iterator[StoredRecord]:
    try:
        _, records = decode_batch(batch)
    except KafkaError as exc:
        log.error("skipping a corrupt batch in %s-%d: %s", OFFSETS_TOPIC, partition, exc)
        return
    for record in records:
        if record.key is None:
            continue
        try:
            key = decode_key(record.key)
            if key is None:
                continue  # another kind of coordinator record (share or streams groups)
            value = None if record.value is None else decode_value(key, record.value)
        except DecodeError as exc:
            log.error("skipping a malformed record in %s-%d: %s", OFFSETS_TOPIC, partition, exc)
            continue
        yield StoredRecord(key, value)
