"""An internal topic as a coordinator's storage: created on first use, appended to with acks=all through the
broker's ordinary log path, and replayed into the coordinator at start-up.

Both coordinators keep their state this way, as Kafka does: the group coordinator in ``__consumer_offsets``,
the transaction coordinator in ``__transaction_state``. A key (group id, transactional id) lives in partition
``abs(hashCode(key)) % partitions`` (Java's String.hashCode, so keys map as in Kafka), and this broker
coordinates the keys of the partitions it leads.

Like Kafka, the topic is created when a client first looks for a coordinator (FindCoordinator), with the
partition count, replication factor and configs its coordinator asks for. Partitions that exist at start-up
are claimed at once and answer COORDINATOR_LOAD_IN_PROGRESS until `load` has replayed them: each is read from
its log start to its high watermark, batch by batch, yielding to the event loop between reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from strom.metadata.image import BrokerImage
from strom.protocol.errors import ErrorCode
from strom.protocol.record_batch import BatchHeader, parse_batch_header

if TYPE_CHECKING:
    from strom.server.broker import Broker

log = logging.getLogger(__name__)

#: Bytes read from the log per step while loading; the event loop runs between steps.
LOAD_READ_BYTES = 1024 * 1024


class PartitionedCoordinator(Protocol):
    """What a coordinator offers its topic: which partition owns a key, and loading partition by partition."""

    @property
    def num_partitions(self) -> int: ...

    def partition_for(self, key: str) -> int: ...

    def begin_loading(self, num_partitions: int, partitions: Iterable[int]) -> None: ...

    def finish_loading(self, partition: int) -> None: ...


#: Applies one stored batch of a partition to the coordinator; returns how many records it replayed.
ReplayBatch = Callable[[int, BatchHeader, memoryview], int]


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: 31-polynomial over UTF-16 code units, as a signed 32-bit int."""
    units = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: str, num_partitions: int) -> int:
    """Kafka's Utils.abs (where the minimum int maps to 0) of the key's hash, modulo the partition count."""
    h = java_string_hash(key)
    return (0 if h == -(2**31) else abs(h)) % num_partitions


class CoordinatorTopic:
    """The glue between a coordinator and the broker's logs for its internal topic."""

    def __init__(
        self,
        broker: Broker,
        name: str,
        *,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
    ) -> None:
        self.name = name
        self._broker = broker
        self._num_partitions = num_partitions
        self._replication_factor = replication_factor
        self._configs = dict(configs)
        self._coordinator: PartitionedCoordinator | None = None
        self._replay: ReplayBatch | None = None
        #: Partitions claimed by the coordinator and not replayed yet (see `load`).
        self._unloaded: list[int] = []

    def attach(self, coordinator: PartitionedCoordinator, replay: ReplayBatch) -> None:
        """Serve ``coordinator``, claiming the led partitions of an existing topic as loading."""
        self._coordinator, self._replay = coordinator, replay
        if self.partition_count() is not None:
            self._claim()

    # ------------------------------------------------------------------ topic and ownership
    @property
    def coordinator(self) -> PartitionedCoordinator:
        assert self._coordinator is not None, "attach() a coordinator first"
        return self._coordinator

    def partition_count(self) -> int | None:
        topic = self._broker.image.topic(self.name)
        return len(topic.partitions) if topic is not None else None

    def led_partitions(self) -> list[int]:
        topic = self._broker.image.topic(self.name)
        if topic is None:
            return []
        node_id = self._broker.node_id
        return sorted(index for index, p in topic.partitions.items() if p.leader == node_id)

    def _claim(self) -> None:
        count = self.partition_count()
        assert count is not None
        self._unloaded = self.led_partitions()
        self.coordinator.begin_loading(count, self._unloaded)

    def ensure_exists(self) -> bool:
        """Create the topic if needed and make sure the coordinator serves it; False if creation failed."""
        if self.partition_count() is None and not self._create():
            return False
        if self.coordinator.num_partitions == 0:
            # Created just now, or by a client's CreateTopics since start-up: take it over.
            self._adopt()
        return True

    def _create(self) -> bool:
        controller = self._broker.controller
        topic = controller.new_topic(
            self.name, self._num_partitions, self._replication_factor, configs=self._configs
        )
        result = controller.create_topics([topic])[0]
        if result.error_code not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
            log.error("cannot create %s: %s", self.name, result.error_message or result.error_code.name)
            return False
        return True

    def _adopt(self) -> None:
        """Claim the led partitions and replay them at once (they are new, so there is little to read)."""
        self._claim()
        partitions, self._unloaded = self._unloaded, []
        for partition in partitions:
            for _ in self._replay_partition(partition):
                pass
            self.coordinator.finish_loading(partition)

    def coordinator_node(self, key: str) -> BrokerImage | None:
        """The broker leading the key's partition, creating the topic first if needed; None if none."""
        if not self.ensure_exists():
            return None
        topic = self._broker.image.topic(self.name)
        assert topic is not None
        state = topic.partitions.get(self.coordinator.partition_for(key))
        if state is None or state.leader < 0:
            return None
        return self._broker.image.broker(state.leader)

    def leader_epoch(self, partition: int) -> int:
        """The partition's leader epoch: a coordinator's epoch for the keys it owns."""
        return self._broker.leader_epoch(self.name, partition)

    # ------------------------------------------------------------------ writing
    def append(self, partition: int, batch: bytes) -> None:
        """Append one batch with acks=all as the coordinator; raises KafkaError as the log does."""
        self._broker.append(self.name, partition, memoryview(bytearray(batch)), acks=-1, coordinator=True)

    # ------------------------------------------------------------------ loading
    async def load(self) -> None:
        """Replay the partitions claimed at start-up into the coordinator, letting it serve each when done."""
        partitions, self._unloaded = self._unloaded, []
        for partition in partitions:
            started = time.monotonic()
            count = 0
            for replayed in self._replay_partition(partition):
                count += replayed
                await asyncio.sleep(0)  # let requests for other keys through between reads
            self.coordinator.finish_loading(partition)
            if count:
                elapsed = time.monotonic() - started
                log.info("loaded %d records of %s-%d in %.3f s", count, self.name, partition, elapsed)

    def _replay_partition(self, partition: int) -> Iterator[int]:
        """Replay the partition a read step at a time, up to its high watermark; yields records per step."""
        assert self._replay is not None
        partition_log = self._broker.logs.get(self.name, partition)
        if partition_log is None:
            return
        offset = partition_log.log_start_offset
        while offset < partition_log.high_watermark:
            data = memoryview(partition_log.read_bytes(offset, LOAD_READ_BYTES))
            if not data:
                return
            replayed = 0
            pos = 0
            while pos < len(data):
                header = parse_batch_header(data, pos)
                size = header.total_size
                replayed += self._replay(partition, header, data[pos : pos + size])
                offset = header.next_offset
                pos += size
            yield replayed


class PartitionOwnership:
    """Which partitions of a coordinator's topic this broker serves, and which are still loading."""

    def __init__(self) -> None:
        self.num_partitions = 0
        self.loading: set[int] = set()
        self.active: set[int] = set()

    def begin_loading(self, num_partitions: int, partitions: Iterable[int]) -> None:
        self.num_partitions = num_partitions
        for partition in partitions:
            self.active.discard(partition)
            self.loading.add(partition)

    def finish_loading(self, partition: int) -> None:
        self.loading.discard(partition)
        self.active.add(partition)

    def availability_error(self, partition: int) -> ErrorCode | None:
        """None when the partition is served; else what a client asking about one of its keys is told."""
        if partition in self.active:
            return None
        if partition in self.loading:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        return ErrorCode.NOT_COORDINATOR
