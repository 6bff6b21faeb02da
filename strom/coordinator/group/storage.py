"""``__consumer_offsets`` as the group coordinator's storage: created on first use, appended to with
acks=all through the broker's ordinary log path, and replayed into the coordinator at start-up.

Like Kafka, the topic is created when a client first looks for a group coordinator (FindCoordinator), with
``offsets.topic.num.partitions`` partitions, ``offsets.topic.replication.factor`` replicas (1 on a
single-node broker unless configured, see `config`), ``cleanup.policy=compact``,
``compression.type=producer`` and ``segment.bytes`` from ``offsets.topic.segment.bytes``. This broker serves
the groups of the partitions it leads.

Loading runs as a task: each partition is read from its log start to its high watermark, batch by batch,
yielding to the event loop between reads, and its groups answer COORDINATOR_LOAD_IN_PROGRESS until it is
done. Control batches are skipped, and so are transactional batches: transactional offset commits
(TxnOffsetCommit) are not served yet, so none can be in the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from strom.coordinator.group.config import GroupConfig
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.records import StoredRecord, decode_key, decode_value, encode_key, encode_value
from strom.metadata.image import BrokerImage
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.primitives import DecodeError
from strom.protocol.record_batch import Record, build_batch, decode_batch, parse_batch_header

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
#: Bytes read from the log per step while loading; the event loop runs between steps.
LOAD_READ_BYTES = 1024 * 1024


class OffsetsTopic:
    """The glue between the coordinator and the broker's log for ``__consumer_offsets``."""

    def __init__(self, broker: Broker, config: GroupConfig) -> None:
        self._broker = broker
        self._config = config
        #: Partitions claimed by the coordinator and not replayed yet (see `load`).
        self._unloaded: list[int] = []

    # ------------------------------------------------------------------ topic and ownership
    def led_partitions(self) -> list[int]:
        topic = self._broker.image.topic(OFFSETS_TOPIC)
        if topic is None:
            return []
        node_id = self._broker.node_id
        return sorted(index for index, p in topic.partitions.items() if p.leader == node_id)

    def partition_count(self) -> int | None:
        topic = self._broker.image.topic(OFFSETS_TOPIC)
        return len(topic.partitions) if topic is not None else None

    def claim(self, coordinator: GroupCoordinator) -> None:
        """Have the coordinator take the led partitions of an existing topic, as loading (see `load`)."""
        count = self.partition_count()
        if count is not None:
            self._unloaded = self.led_partitions()
            coordinator.begin_loading(count, self._unloaded)

    def ensure_exists(self, coordinator: GroupCoordinator) -> bool:
        """Create the topic if needed and make sure the coordinator serves it; False if creation failed."""
        if self.partition_count() is None and not self._create():
            return False
        if coordinator.num_partitions == 0:
            # Created just now, or by a client's CreateTopics since start-up: take it over.
            self._adopt(coordinator)
        return True

    def _create(self) -> bool:
        config = self._config
        controller = self._broker.controller
        topic = controller.new_topic(
            OFFSETS_TOPIC,
            config.offsets_topic_num_partitions,
            config.offsets_topic_replication_factor,
            configs={
                "cleanup.policy": "compact",
                "compression.type": "producer",
                "segment.bytes": str(config.offsets_topic_segment_bytes),
            },
        )
        result = controller.create_topics([topic])[0]
        if result.error_code not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
            log.error("cannot create %s: %s", OFFSETS_TOPIC, result.error_message or result.error_code.name)
            return False
        return True

    def _adopt(self, coordinator: GroupCoordinator) -> None:
        """Claim the led partitions and replay them at once (they are new, so there is little to read)."""
        self.claim(coordinator)
        partitions, self._unloaded = self._unloaded, []
        for partition in partitions:
            for _ in self._replay(partition, coordinator):
                pass
            coordinator.finish_loading(partition)

    def coordinator_node(self, group_id: str, coordinator: GroupCoordinator) -> BrokerImage | None:
        """The broker leading the group's partition, creating the topic first if needed; None if none."""
        if not self.ensure_exists(coordinator):
            return None
        topic = self._broker.image.topic(OFFSETS_TOPIC)
        assert topic is not None
        state = topic.partitions.get(coordinator.partition_for(group_id))
        if state is None or state.leader < 0:
            return None
        return self._broker.image.broker(state.leader)

    # ------------------------------------------------------------------ writing
    def append(self, partition: int, records: Sequence[StoredRecord]) -> None:
        """Append records as one batch with acks=all; raises KafkaError as the log does."""
        batch = build_batch(
            [
                Record(i, 0, encode_key(r.key), None if r.value is None else encode_value(r.value))
                for i, r in enumerate(records)
            ],
            base_timestamp=int(time.time() * 1000),
        )
        self._broker.append(OFFSETS_TOPIC, partition, memoryview(bytearray(batch)), acks=-1)

    # ------------------------------------------------------------------ loading
    async def load(self, coordinator: GroupCoordinator) -> None:
        """Replay the partitions claimed at start-up into the coordinator, letting it serve each when done."""
        partitions, self._unloaded = self._unloaded, []
        for partition in partitions:
            started = time.monotonic()
            count = 0
            for replayed in self._replay(partition, coordinator):
                count += replayed
                await asyncio.sleep(0)  # let requests for other groups through between reads
            coordinator.finish_loading(partition)
            if count:
                elapsed = time.monotonic() - started
                log.info("loaded %d records of %s-%d in %.3f s", count, OFFSETS_TOPIC, partition, elapsed)

    def _replay(self, partition: int, coordinator: GroupCoordinator) -> Iterator[int]:
        """Replay the partition into the coordinator a read step at a time, yielding the records per step."""
        for records in self._read_partition(partition):
            for record in records:
                coordinator.replay(record)
            yield len(records)

    def _read_partition(self, partition: int) -> Iterator[list[StoredRecord]]:
        """The partition's records, a read step at a time, up to the high watermark."""
        partition_log = self._broker.logs.get(OFFSETS_TOPIC, partition)
        if partition_log is None:
            return
        offset = partition_log.log_start_offset
        end = partition_log.high_watermark
        while offset < end:
            data = memoryview(partition_log.read_bytes(offset, LOAD_READ_BYTES))
            if not data:
                return
            records: list[StoredRecord] = []
            pos = 0
            while pos < len(data):
                header = parse_batch_header(data, pos)
                size = header.total_size
                if not (header.is_control or header.is_transactional):
                    records.extend(_decode_records(data[pos : pos + size], partition))
                offset = header.next_offset
                pos += size
            yield records


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
                continue  # another kind of coordinator record (KIP-848, share groups)
            value = None if record.value is None else decode_value(key, record.value)
        except DecodeError as exc:
            log.error("skipping a malformed record in %s-%d: %s", OFFSETS_TOPIC, partition, exc)
            continue
        yield StoredRecord(key, value)
