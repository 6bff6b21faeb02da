"""The broker: metadata image and controller, partition logs, and what handlers need from them.

Startup order matters for crash safety: the metadata log is replayed first (it is the truth about which topics
and partitions exist), then the partition logs are loaded and recovered, then logs are reconciled with the
image (a partition the image knows but the disk lacks is created; a log of a deleted topic is removed).
After that, every metadata change made through the controller reconciles the logs again, so handlers never
touch log creation or deletion themselves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from strom.coordinator.group import OFFSETS_TOPIC, GroupConfig, GroupCoordinator, OffsetsTopic
from strom.coordinator.group.consumer_group import ImageTopicCatalog
from strom.coordinator.group.consumer_membership import ConsumerGroupConfig
from strom.coordinator.producer_ids import PRODUCER_ID_BLOCK_SIZE, ProducerIdManager
from strom.coordinator.transaction import TransactionConfig, TransactionCoordinator, TransactionStateTopic
from strom.log import AppendOrigin, AppendResult, LogConfig, LogManager, PartitionLog
from strom.log.cleaner import CleanerConfig, LogCleaner
from strom.log.files import write_atomically
from strom.metadata.controller import Controller
from strom.metadata.image import BrokerImage, MetadataImage, PartitionImage
from strom.metadata.log import MetadataLog
from strom.metadata.properties import BrokerConfig
from strom.protocol.errors import ErrorCode, KafkaError
from strom.protocol.record_batch import (
    BATCH_HEADER_SIZE,
    ControlType,
    build_control_batch,
    parse_batch_header,
)
from strom.server.handlers import supported_api_versions
from strom.server.waiters import AppendWaiters

log = logging.getLogger(__name__)

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
METADATA_DIR = "__cluster_metadata-0"
META_PROPERTIES = "meta.properties"


class Broker:
    """One node's state. Single-node: this broker is also the (quorum-of-one) controller."""

    def __init__(self, config: BrokerConfig, *, advertised_host: str, advertised_port: int) -> None:
        self.config = config
        self.node_id = config.node_id
        self.controller_id = config.node_id
        self.log_dirs = [directory.resolve() for directory in config.log_dirs()]
        self.log_dir = self.log_dirs[0]
        metadata_dir = Path(config.get_str("metadata.log.dir") or self.log_dir).resolve()
        for directory in dict.fromkeys([*self.log_dirs, metadata_dir]):
            directory.mkdir(parents=True, exist_ok=True)
        self.cluster_id = _cluster_id(list(dict.fromkeys([metadata_dir, *self.log_dirs])), self.node_id)
        self.supported_api_versions = supported_api_versions()
        self.image = MetadataImage()
        self.metadata_log = MetadataLog(metadata_dir / METADATA_DIR / "metadata.log")
        for offset, record in self.metadata_log.replay():
            self.image.apply(offset, record)
        self.controller = Controller(self.image, self.metadata_log, config, self.node_id)
        self.controller.register_broker(self.node_id, advertised_host, advertised_port, config.rack)
        self.logs = LogManager(
            self.log_dirs,
            default_config=self._topic_log_config(None),
            retention_check_interval_ms=config.get_int("log.retention.check.interval.ms"),
        )
        self.logs.load({name: self._topic_log_config(name) for name in self.image.topic_names()})
        self.cleaner = LogCleaner(
            self.logs.logs,
            self.log_dirs,
            CleanerConfig.from_broker_config(config),
        )
        self._waiters = AppendWaiters()
        self._image_version = -1
        self._min_insync_replicas: dict[str, int] = {}
        self.reconcile_logs()
        self.controller.add_listener(lambda _records: self.reconcile_logs())
        # Consumer groups: the coordinator and its storage in __consumer_offsets, whose existing partitions
        # answer COORDINATOR_LOAD_IN_PROGRESS until `load_coordinators` has replayed them.
        self.group_config = GroupConfig.from_broker_config(config)
        self.offsets_topic = OffsetsTopic(self, self.group_config)
        self.groups = GroupCoordinator(
            self.group_config,
            self.offsets_topic.write,
            consumer_config=ConsumerGroupConfig.from_broker_config(config),
            topics=ImageTopicCatalog(self.image),
        )
        self.offsets_topic.attach_groups(self.groups)
        # Producer ids come from blocks the controller records in the metadata log.
        self.producer_ids = ProducerIdManager(
            lambda: self.controller.allocate_producer_ids(self.node_id, PRODUCER_ID_BLOCK_SIZE)
        )
        # Transactions: the coordinator and its storage in __transaction_state, loaded like the groups.
        self.transaction_state_topic = TransactionStateTopic(self, config)
        self.transactions = TransactionCoordinator(
            TransactionConfig.from_broker_config(config),
            write_record=self.transaction_state_topic.write,
            write_markers=self.write_txn_markers,
            new_producer_id=self.producer_ids.next_id,
            coordinator_epoch=self.transaction_state_topic.leader_epoch,
        )
        self.transaction_state_topic.attach_transactions(self.transactions)

    # ------------------------------------------------------------------ metadata → logs
    def reconcile_logs(self) -> None:
        """Make the partition logs on disk match the image: create, delete, reconfigure."""
        if self.image.version == self._image_version:
            return
        self._image_version = self.image.version
        wanted: set[tuple[str, int]] = set()
        min_insync: dict[str, int] = {}
        for name in self.image.topic_names():
            topic = self.image.topic(name)
            assert topic is not None
            properties = self.controller.topic_properties(name)
            config = LogConfig.from_properties(properties)
            min_insync[name] = int(properties["min.insync.replicas"])
            for index, partition in topic.partitions.items():
                if self.node_id not in partition.replicas:
                    continue
                wanted.add((name, index))
                self.logs.create(name, index, config, topic.topic_id)
        for partition_log in list(self.logs.logs()):
            if (partition_log.topic, partition_log.partition) not in wanted:
                self.logs.delete(partition_log.topic, partition_log.partition)
        self._min_insync_replicas = min_insync

    def _topic_log_config(self, topic: str | None) -> LogConfig:
        return LogConfig.from_properties(self.controller.topic_properties(topic))

    # ------------------------------------------------------------------ lookups for handlers
    @property
    def auto_create_topics(self) -> bool:
        return self.config.get_bool("auto.create.topics.enable")

    def auto_create_topic(self, name: str) -> None:
        result = self.controller.create_topics([self.controller.new_topic(name)], validate_only=False)[0]
        if result.error_code not in (ErrorCode.NONE, ErrorCode.TOPIC_ALREADY_EXISTS):
            raise KafkaError(result.error_code, result.error_message)

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        topic = self.image.topic_by_id(topic_id)
        return topic.name if topic is not None else None

    def is_internal_topic(self, name: str) -> bool:
        return name in INTERNAL_TOPICS

    def live_brokers(self) -> list[BrokerImage]:
        return list(self.image.brokers())

    def offline_replicas(self, replicas: Iterable[int]) -> list[int]:
        live = {b.node_id for b in self.image.brokers()}
        return [r for r in replicas if r not in live]

    def leader_epoch(self, topic: str, partition: int) -> int:
        state = self._partition_state(topic, partition)
        return state.leader_epoch if state is not None else -1

    def leader_log(self, topic: str, partition: int, current_leader_epoch: int = -1) -> PartitionLog:
        """The log of a partition this broker leads, checking the client's leader epoch (KIP-320)."""
        return self._leader(topic, partition, current_leader_epoch)[1]

    def _partition_state(self, topic: str, partition: int) -> PartitionImage | None:
        image = self.image.topic(topic)
        return image.partitions.get(partition) if image is not None else None

    def _leader(
        self, topic: str, partition: int, current_leader_epoch: int = -1
    ) -> tuple[PartitionImage, PartitionLog]:
        state = self._partition_state(topic, partition)
        if state is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        if state.leader != self.node_id:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER)
        if current_leader_epoch >= 0:
            if current_leader_epoch < state.leader_epoch:
                raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH)
            if current_leader_epoch > state.leader_epoch:
                raise KafkaError(ErrorCode.UNKNOWN_LEADER_EPOCH)
        partition_log = self.logs.get(topic, partition)
        if partition_log is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
        return state, partition_log

    # ------------------------------------------------------------------ produce and long polls
    def append(
        self, topic: str, partition: int, records: memoryview, *, acks: int, coordinator: bool = False
    ) -> AppendResult:
        """Append a batch to a led partition: a client's, or a coordinator's (records, markers)."""
        state, partition_log = self._leader(topic, partition)
        if acks == -1 and len(state.isr) < self._min_insync_replicas.get(topic, 1):
            raise KafkaError(ErrorCode.NOT_ENOUGH_REPLICAS)
        origin = AppendOrigin.COORDINATOR if coordinator else AppendOrigin.CLIENT
        result = partition_log.append(records, leader_epoch=state.leader_epoch, origin=origin)
        partition_log.high_watermark = partition_log.log_end_offset  # a single replica: ISR is just us
        self._waiters.notify((topic, partition))
        return result

    def verify_transactional_write(
        self, transactional_id: str, topic: str, partition: int, records: memoryview
    ) -> None:
        """Produce: a transactional batch must belong to the producer's open transaction (see below)."""
        if len(records) < BATCH_HEADER_SIZE:
            return
        header = parse_batch_header(records)
        if header.is_transactional:
            self.verify_in_transaction(
                transactional_id,
                header.producer_id,
                header.producer_epoch,
                topic,
                partition,
                retriable=ErrorCode.NOT_ENOUGH_REPLICAS,
            )

    def verify_in_transaction(
        self,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        topic: str,
        partition: int,
        *,
        retriable: ErrorCode,
    ) -> None:
        """KIP-890 part 1 (``transaction.partition.verification.enable``): a transactional write (a batch, or
        TxnOffsetCommit's offsets) must go to a partition of the producer's open transaction, so a late write
        cannot open a transaction nobody will end. Raises INVALID_PRODUCER_EPOCH for a fenced producer,
        INVALID_TXN_STATE for a partition outside its transaction, ``retriable`` while the coordinator cannot
        tell yet (loading, or markers being written)."""
        if not self.config.get_bool("transaction.partition.verification.enable"):
            return
        try:
            error = self.transactions.verify_partitions(
                transactional_id, producer_id, producer_epoch, [(topic, partition)]
            )[topic, partition]
            message = f"{topic}-{partition} is not part of an open transaction of {transactional_id!r}"
        except KafkaError as exc:
            error, message = exc.code, exc.message or exc.code.message
        if error is ErrorCode.NONE:
            return
        if error in (
            ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
            ErrorCode.NOT_COORDINATOR,
            ErrorCode.CONCURRENT_TRANSACTIONS,
        ):
            raise KafkaError(retriable, message)
        if error is ErrorCode.PRODUCER_FENCED:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_EPOCH, message)
        raise KafkaError(ErrorCode.INVALID_TXN_STATE, message)

    def wait_durable(self, topic: str, partition: int, offset: int) -> asyncio.Future[None] | None:
        """What a produce response for ``offset`` must wait for: a future done once an fsync covers it, when
        the topic's flush.messages asks for one (group commit: one fsync pass answers many producers); None
        when the response can go at once. The future fails with KAFKA_STORAGE_ERROR when the fsync does."""
        partition_log = self.logs.get(topic, partition)
        if partition_log is None:
            return None
        return self.logs.flusher.wait_durable(partition_log, offset)

    async def wait_for_append(self, partitions: Iterable[tuple[str | None, int]], timeout: float) -> None:
        await self._waiters.wait(partitions, timeout)

    # ------------------------------------------------------------------ coordinators
    async def load_coordinators(self) -> None:
        """Replay __consumer_offsets, then __transaction_state (run once, as a task, after start-up).

        Groups first: finishing a transaction a crash left half-done writes markers to __consumer_offsets,
        which must reach a group coordinator that already knows the transaction's pending offsets."""
        await self.offsets_topic.load()
        await self.transaction_state_topic.load()

    def tick_coordinators(self) -> None:
        self.groups.tick()
        self.transactions.tick()

    def write_txn_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Iterable[tuple[str, int]],
    ) -> bool:
        """Write a transaction's commit or abort marker to each of its partitions; False if one failed (the
        coordinator tries again later). A partition that no longer exists has nothing to mark."""
        marker = build_control_batch(
            producer_id,
            producer_epoch,
            ControlType.COMMIT if commit else ControlType.ABORT,
            coordinator_epoch,
            int(time.time() * 1000),
        )
        written = True
        for topic, partition in partitions:
            try:
                self.append(topic, partition, memoryview(bytearray(marker)), acks=-1, coordinator=True)
            except KafkaError as exc:
                if exc.code in (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.INVALID_PRODUCER_EPOCH):
                    # Deleted, or already marked by a newer epoch of the producer: nothing left to do.
                    log.info("no marker for %s-%d: %s", topic, partition, exc.code.name)
                    continue
                log.warning("could not write a marker to %s-%d: %s", topic, partition, exc)
                written = False
                continue
            if topic == OFFSETS_TOPIC:
                self.groups.complete_transaction(producer_id, committed=commit)
        return written

    # ------------------------------------------------------------------ housekeeping
    def tick(self) -> None:
        """Periodic log work: retention, time-based segment rolls, flushes and compaction."""
        now_ms = int(time.time() * 1000)
        self.logs.tick(now_ms)
        self.cleaner.tick(now_ms)

    def close(self) -> None:
        self.cleaner.close()
        self.logs.close()
        self.metadata_log.close()


def _cluster_id(directories: list[Path], node_id: int) -> str:
    """The cluster id all the directories share (the metadata log's first): Kafka writes meta.properties in
    each, and refuses to start when they name different clusters. Directories without one get it written."""
    found = {d: _load_or_create_cluster_id(d, node_id) for d in directories if (d / META_PROPERTIES).exists()}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{d}: {cluster_id}" for d, cluster_id in found.items())
        raise RuntimeError(f"the log directories belong to different clusters ({listed})")
    if not found:
        return _load_or_create_cluster_id(directories[0], node_id)
    cluster_id = next(iter(found.values()))
    for directory in directories:
        if directory not in found:
            content = f"#\n#{time.ctime()}\nnode.id={node_id}\nversion=1\ncluster.id={cluster_id}\n"
            write_atomically(directory / META_PROPERTIES, content.encode())
    return cluster_id


def _load_or_create_cluster_id(log_dir: Path, node_id: int) -> str:
    """Kafka keeps the cluster id in meta.properties in each log dir; so do we."""
    meta = log_dir / "meta.properties"
    if meta.exists():
        for line in meta.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "cluster.id":
                return value.strip()
        # Written atomically, so a crash cannot leave it without an id: the file was damaged or replaced, and
        # a new id would silently make this a different cluster (Kafka refuses to start as well).
        raise RuntimeError(f"{meta} has no cluster.id")
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    # fsynced and renamed into place: a power loss leaves no file (a new id before any data) or the whole one.
    content = f"#\n#{time.ctime()}\nnode.id={node_id}\nversion=1\ncluster.id={cluster_id}\n"
    write_atomically(meta, content.encode())
    return cluster_id
