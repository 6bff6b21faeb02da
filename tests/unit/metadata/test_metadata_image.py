import uuid

import pytest

from strom.metadata.image import MetadataImage, MetadataImageError
from strom.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    FeatureLevelRecord,
    PartitionChangeRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)

A = uuid.UUID(int=1)
B = uuid.UUID(int=2)


def image_of(*records):
    return MetadataImage.replay(enumerate(records))


def test_topic_with_partitions_is_found_by_name_and_id():
    image = image_of(
        TopicRecord("a", A),
        PartitionRecord(A, 0, [1, 2], [1, 2], 1),
        PartitionRecord(A, 1, [2, 1], [2], 2, leader_epoch=3, partition_epoch=4),
    )
    topic = image.topic("a")
    assert topic is image.topic_by_id(A)
    assert topic.name == "a" and topic.topic_id == A
    assert sorted(topic.partitions) == [0, 1]
    partition = topic.partitions[1]
    assert (partition.replicas, partition.isr, partition.leader) == ((2, 1), (2,), 2)
    assert (partition.leader_epoch, partition.partition_epoch) == (3, 4)
    assert list(image.topic_names()) == ["a"]
    assert image.topic("missing") is None and image.topic_by_id(B) is None


def test_version_increases_with_every_record_and_empty_image_is_version_zero():
    image = MetadataImage()
    assert image.version == 0 and image.last_offset == -1
    image.apply(0, TopicRecord("a", A))
    first = image.version
    image.apply(5, ProducerIdsRecord(1, 1000))
    assert image.version > first
    assert image.last_offset == 5


def test_offsets_must_increase():
    image = image_of(TopicRecord("a", A))
    with pytest.raises(MetadataImageError):
        image.apply(0, TopicRecord("b", B))


def test_partition_change_bumps_epochs():
    image = image_of(
        TopicRecord("a", A),
        PartitionRecord(A, 0, [1, 2], [1, 2], 1),
        PartitionChangeRecord(A, 0, isr=[1]),
        PartitionChangeRecord(A, 0, leader=2, isr=[2]),
    )
    partition = image.topic("a").partitions[0]
    assert partition.isr == (2,) and partition.leader == 2 and partition.replicas == (1, 2)
    assert partition.leader_epoch == 1
    assert partition.partition_epoch == 2


def test_records_for_unknown_topics_or_partitions_are_errors():
    with pytest.raises(MetadataImageError):
        image_of(PartitionRecord(A, 0, [1], [1], 1))
    with pytest.raises(MetadataImageError):
        image_of(TopicRecord("a", A), PartitionChangeRecord(A, 9, leader=1))
    with pytest.raises(MetadataImageError):
        image_of(RemoveTopicRecord(A))
    with pytest.raises(MetadataImageError):
        image_of(TopicRecord("a", A), TopicRecord("a", B))


def test_topic_config_overrides_are_set_and_deleted():
    image = image_of(
        TopicRecord("a", A),
        ConfigRecord(TOPIC_RESOURCE, "a", "retention.ms", "1000"),
        ConfigRecord(TOPIC_RESOURCE, "a", "cleanup.policy", "compact"),
        ConfigRecord(TOPIC_RESOURCE, "a", "retention.ms", None),
    )
    assert dict(image.topic_configs("a")) == {"cleanup.policy": "compact"}
    assert dict(image.topic_configs("other")) == {}


def test_removing_a_topic_drops_its_partitions_and_configs():
    image = image_of(
        TopicRecord("a.b", A),
        PartitionRecord(A, 0, [1], [1], 1),
        ConfigRecord(TOPIC_RESOURCE, "a.b", "retention.ms", "1000"),
        RemoveTopicRecord(A),
    )
    assert image.topic("a.b") is None and image.topic_by_id(A) is None
    assert dict(image.topic_configs("a.b")) == {}
    assert image.colliding_topic("a_b") is None


def test_colliding_topic_maps_dots_to_underscores():
    image = image_of(TopicRecord("a.b", A))
    assert image.colliding_topic("a_b") == "a.b"
    assert image.colliding_topic("a.b") is None  # a topic does not collide with itself
    assert image.colliding_topic("ab") is None


def test_broker_configs_by_broker_id_and_cluster_default():
    image = image_of(
        ConfigRecord(BROKER_RESOURCE, "1", "log.retention.ms", "5"),
        ConfigRecord(BROKER_RESOURCE, "", "log.retention.ms", "7"),
    )
    assert dict(image.broker_configs(1)) == {"log.retention.ms": "5"}
    assert dict(image.broker_configs("1")) == {"log.retention.ms": "5"}
    assert dict(image.broker_configs("")) == {"log.retention.ms": "7"}


def test_config_record_of_unsupported_resource_type_is_an_error():
    with pytest.raises(MetadataImageError):
        image_of(ConfigRecord(8, "1", "x", "y"))


def test_broker_registration_takes_its_offset_as_epoch():
    image = MetadataImage()
    image.apply(3, RegisterBrokerRecord(2, "h2", 9093))
    image.apply(4, RegisterBrokerRecord(1, "h1", 9092, rack="r"))
    image.apply(9, RegisterBrokerRecord(2, "h2b", 9094))
    assert [b.node_id for b in image.brokers()] == [1, 2]
    assert image.broker(2).host == "h2b" and image.broker(2).epoch == 9
    assert image.broker(1).rack == "r"


def test_producer_ids_only_move_forward():
    image = image_of(ProducerIdsRecord(1, 1000), ProducerIdsRecord(1, 2000))
    assert image.next_producer_id == 2000
    with pytest.raises(MetadataImageError):
        image.apply(5, ProducerIdsRecord(1, 1500))


def test_feature_levels_are_set_and_removed_by_level_zero():
    image = image_of(FeatureLevelRecord("metadata.version", 20), FeatureLevelRecord("x", 1))
    image.apply(2, FeatureLevelRecord("x", 0))
    assert dict(image.features()) == {"metadata.version": 20}
    assert image.feature_level("x") == 0


def test_images_compare_by_content():
    records = [TopicRecord("a", A), PartitionRecord(A, 0, [1], [1], 1)]
    assert image_of(*records) == image_of(*records)
    assert image_of(*records) != image_of(records[0])
