"""The metadata image: the in-memory state that replaying the metadata log produces.

The image is a pure function of the (offset, record) sequence: applying the same records in the same order
always yields an equal image, whether they come from replaying the log at startup or from the controller
applying a batch it has just appended. Nothing else changes it, which is what lets a later Raft layer
replicate the log and have every broker arrive at the same image.

Accessors are cheap and return live, read-only views; copy what you keep across awaits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from strom.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    FeatureLevelRecord,
    MetadataRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)

_EMPTY: Mapping[str, str] = MappingProxyType({})


class MetadataImageError(ValueError):
    """A record does not fit the image (e.g. a partition of an unknown topic): the log is inconsistent."""


@dataclass(frozen=True, slots=True)
class PartitionImage:
    partition: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    leader: int
    leader_epoch: int
    partition_epoch: int


@dataclass(slots=True)
class TopicImage:
    """A topic and its partitions by index. Owned by the image: read it, never modify it."""

    name: str
    topic_id: uuid.UUID
    partitions: dict[int, PartitionImage]


@dataclass(frozen=True, slots=True)
class BrokerImage:
    node_id: int
    host: str
    port: int
    rack: str | None
    listener_name: str
    security_protocol: int
    epoch: int


def collision_key(topic_name: str) -> str:
    """Kafka's metric names map '.' to '_', so topics equal under that mapping may not coexist."""
    return topic_name.replace(".", "_")


class MetadataImage:
    """Topics, partitions, config overrides, brokers, features and producer-id allocation, by log offset."""

    def __init__(self) -> None:
        self._topics_by_name: dict[str, TopicImage] = {}
        self._topics_by_id: dict[uuid.UUID, TopicImage] = {}
        self._names_by_collision_key: dict[str, set[str]] = {}
        self._topic_configs: dict[str, dict[str, str]] = {}
        self._broker_configs: dict[str, dict[str, str]] = {}
        self._brokers: dict[int, BrokerImage] = {}
        self._features: dict[str, int] = {}
        self._next_producer_id = 0
        self._last_offset = -1

    @classmethod
    def replay(cls, entries: Iterable[tuple[int, MetadataRecord]]) -> MetadataImage:
        """The image of a whole log, e.g. MetadataImage.replay(metadata_log.replay())."""
        image = cls()
        for offset, record in entries:
            image.apply(offset, record)
        return image

    # ------------------------------------------------------------------ reading
    @property
    def version(self) -> int:
        """Increases with every applied record; equal versions of one image mean nothing changed."""
        return self._last_offset + 1

    @property
    def last_offset(self) -> int:
        """Offset of the last applied record, -1 for an empty image."""
        return self._last_offset

    def topic(self, name: str) -> TopicImage | None:
        return self._topics_by_name.get(name)

    def topic_by_id(self, topic_id: uuid.UUID) -> TopicImage | None:
        return self._topics_by_id.get(topic_id)

    def topics(self) -> Iterable[TopicImage]:
        return self._topics_by_name.values()

    def topic_names(self) -> Iterable[str]:
        return self._topics_by_name.keys()

    def colliding_topic(self, name: str) -> str | None:
        """An existing topic, other than name itself, whose name collides with name after '.' -> '_'."""
        for existing in self._names_by_collision_key.get(collision_key(name), ()):
            if existing != name:
                return existing
        return None

    def topic_configs(self, name: str) -> Mapping[str, str]:
        """Dynamic config overrides of a topic (empty if none or no such topic)."""
        configs = self._topic_configs.get(name)
        return MappingProxyType(configs) if configs else _EMPTY

    def broker_configs(self, broker: int | str) -> Mapping[str, str]:
        """Dynamic broker configs of one broker id, or the cluster-wide defaults for ""."""
        configs = self._broker_configs.get(str(broker))
        return MappingProxyType(configs) if configs else _EMPTY

    def brokers(self) -> list[BrokerImage]:
        """Registered brokers, by id."""
        return [self._brokers[node_id] for node_id in sorted(self._brokers)]

    def broker(self, node_id: int) -> BrokerImage | None:
        return self._brokers.get(node_id)

    @property
    def next_producer_id(self) -> int:
        """The first producer id not yet handed out."""
        return self._next_producer_id

    def features(self) -> Mapping[str, int]:
        return MappingProxyType(self._features)

    def feature_level(self, name: str) -> int:
        return self._features.get(name, 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetadataImage):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]

    def _state(self) -> tuple[object, ...]:
        return (
            self._last_offset,
            self._topics_by_name,
            self._topic_configs,
            self._broker_configs,
            self._brokers,
            self._features,
            self._next_producer_id,
        )

    # ------------------------------------------------------------------ applying records
    def apply(self, offset: int, record: MetadataRecord) -> None:
        """Apply the record at this log offset; offsets must increase."""
        if offset <= self._last_offset:
            raise MetadataImageError(f"record offset {offset} is not after {self._last_offset}")
        if isinstance(record, TopicRecord):
            self._apply_topic(record)
        elif isinstance(record, PartitionRecord):
            self._apply_partition(record)
        elif isinstance(record, PartitionChangeRecord):
            self._apply_partition_change(record)
        elif isinstance(record, RemoveTopicRecord):
            self._apply_remove_topic(record)
        elif isinstance(record, ConfigRecord):
            self._apply_config(record)
        elif isinstance(record, RegisterBrokerRecord):
            self._brokers[record.broker_id] = BrokerImage(
                node_id=record.broker_id,
                host=record.host,
                port=record.port,
                rack=record.rack,
                listener_name=record.listener_name,
                security_protocol=record.security_protocol,
                epoch=offset,
            )
        elif isinstance(record, ProducerIdsRecord):
            if record.next_producer_id < self._next_producer_id:
                raise MetadataImageError(
                    f"producer ids move backwards: {record.next_producer_id} < {self._next_producer_id}"
                )
            self._next_producer_id = record.next_producer_id
        elif isinstance(record, FeatureLevelRecord):
            if record.level == 0:
                self._features.pop(record.name, None)
            else:
                self._features[record.name] = record.level
        else:
            raise MetadataImageError(f"unknown metadata record {record!r}")
        self._last_offset = offset

    def _apply_topic(self, record: TopicRecord) -> None:
        if record.name in self._topics_by_name or record.topic_id in self._topics_by_id:
            raise MetadataImageError(f"topic {record.name} ({record.topic_id}) already exists")
        topic = TopicImage(record.name, record.topic_id, {})
        self._topics_by_name[record.name] = topic
        self._topics_by_id[record.topic_id] = topic
        self._names_by_collision_key.setdefault(collision_key(record.name), set()).add(record.name)

    def _apply_partition(self, record: PartitionRecord) -> None:
        topic = self._existing_topic(record.topic_id)
        topic.partitions[record.partition] = PartitionImage(
            partition=record.partition,
            replicas=tuple(record.replicas),
            isr=tuple(record.isr),
            leader=record.leader,
            leader_epoch=record.leader_epoch,
            partition_epoch=record.partition_epoch,
        )

    def _apply_partition_change(self, record: PartitionChangeRecord) -> None:
        topic = self._existing_topic(record.topic_id)
        current = topic.partitions.get(record.partition)
        if current is None:
            raise MetadataImageError(f"no partition {record.partition} in topic {topic.name}")
        leader_changed = record.leader is not None and record.leader != current.leader
        topic.partitions[record.partition] = PartitionImage(
            partition=current.partition,
            replicas=current.replicas if record.replicas is None else tuple(record.replicas),
            isr=current.isr if record.isr is None else tuple(record.isr),
            leader=record.leader if record.leader is not None else current.leader,
            leader_epoch=current.leader_epoch + 1 if leader_changed else current.leader_epoch,
            partition_epoch=current.partition_epoch + 1,
        )

    def _apply_remove_topic(self, record: RemoveTopicRecord) -> None:
        topic = self._existing_topic(record.topic_id)
        del self._topics_by_id[topic.topic_id]
        del self._topics_by_name[topic.name]
        self._topic_configs.pop(topic.name, None)
        key = collision_key(topic.name)
        names = self._names_by_collision_key[key]
        names.discard(topic.name)
        if not names:
            del self._names_by_collision_key[key]

    def _apply_config(self, record: ConfigRecord) -> None:
        if record.resource_type == TOPIC_RESOURCE:
            by_resource = self._topic_configs
        elif record.resource_type == BROKER_RESOURCE:
            by_resource = self._broker_configs
        else:
            raise MetadataImageError(f"config record for unsupported resource type {record.resource_type}")
        configs = by_resource.setdefault(record.resource_name, {})
        if record.value is None:
            configs.pop(record.name, None)
        else:
            configs[record.name] = record.value
        if not configs:
            del by_resource[record.resource_name]

    def _existing_topic(self, topic_id: uuid.UUID) -> TopicImage:
        topic = self._topics_by_id.get(topic_id)
        if topic is None:
            raise MetadataImageError(f"no topic with id {topic_id}")
        return topic
