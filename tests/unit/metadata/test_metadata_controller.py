import random
import uuid

import pytest

from strom.metadata.configs import AlterConfigOp, ConfigResourceType, ConfigSource
from strom.metadata.controller import (
    NO_TOPIC_ID,
    AlterConfigsResource,
    ConfigOp,
    Controller,
    IncrementalAlterConfigsResource,
    NewTopic,
    assign_replicas,
    topic_name_error,
)
from strom.metadata.image import MetadataImage
from strom.metadata.log import MetadataLog, MetadataStorageError, metadata_log_path
from strom.metadata.properties import BrokerConfig
from strom.metadata.records import ConfigRecord, PartitionRecord, TopicRecord
from strom.protocol.errors import ErrorCode, KafkaError

TOPIC, BROKER = ConfigResourceType.TOPIC, ConfigResourceType.BROKER
SET, DELETE, APPEND, SUBTRACT = (
    AlterConfigOp.SET,
    AlterConfigOp.DELETE,
    AlterConfigOp.APPEND,
    AlterConfigOp.SUBTRACT,
)


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path


def make_controller(data_dir, static=None, brokers=(1,)):
    log = MetadataLog(metadata_log_path(data_dir))
    image = MetadataImage.replay(log.replay())
    controller = Controller(image, log, BrokerConfig(static or {}), 1, rng=random.Random(7))
    for broker_id in brokers:
        controller.register_broker(broker_id, f"host{broker_id}", 9090 + broker_id)
    return controller


@pytest.fixture
def controller(data_dir):
    controller = make_controller(data_dir)
    yield controller
    controller.log.close()


def create(controller, *topics, validate_only=False):
    return controller.create_topics(list(topics), validate_only=validate_only)


def codes(results):
    return [r.error_code for r in results]


# ------------------------------------------------------------------ create topics
def test_create_topic_writes_topic_configs_and_partitions_as_one_batch(controller):
    before = controller.log.next_offset
    frames_before = controller.log.path.stat().st_size
    [result] = create(controller, NewTopic("orders", 3, 1, configs={"retention.ms": "1000"}))
    assert result.error_code == ErrorCode.NONE and result.error_message is None
    assert (result.num_partitions, result.replication_factor) == (3, 1)
    assert result.topic_id != NO_TOPIC_ID
    records = [record for offset, record in controller.log.replay() if offset >= before]
    assert [type(r) for r in records] == [
        TopicRecord,
        ConfigRecord,
        PartitionRecord,
        PartitionRecord,
        PartitionRecord,
    ]
    assert controller.log.path.stat().st_size > frames_before
    topic = controller.image.topic("orders")
    assert topic.topic_id == result.topic_id
    assert {p.leader for p in topic.partitions.values()} == {1}
    assert dict(controller.image.topic_configs("orders")) == {"retention.ms": "1000"}


def test_created_topic_result_reports_effective_configs(controller):
    [result] = create(controller, NewTopic("t", configs={"cleanup.policy": "compact"}))
    configs = {c.name: c for c in result.configs}
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].source is ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].source is ConfigSource.DEFAULT_CONFIG


def test_defaults_come_from_broker_config(data_dir):
    controller = make_controller(data_dir, {"num.partitions": "4", "default.replication.factor": "1"})
    [result] = create(controller, NewTopic("t"))
    assert result.num_partitions == 4
    assert len(controller.image.topic("t").partitions) == 4


def test_bad_default_replication_factor_is_reported(data_dir):
    controller = make_controller(data_dir, {"default.replication.factor": "0"})
    [result] = create(controller, NewTopic("t"))
    assert result.error_code == ErrorCode.INVALID_REPLICATION_FACTOR
    assert "the replication factor must be positive" in result.error_message


def test_validate_only_writes_nothing(controller):
    offset = controller.log.next_offset
    [result] = create(controller, NewTopic("t", 2), validate_only=True)
    assert result.error_code == ErrorCode.NONE and result.num_partitions == 2
    assert controller.log.next_offset == offset
    assert controller.image.topic("t") is None


@pytest.mark.parametrize(
    ("topic", "code", "message"),
    [
        (
            NewTopic(""),
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "Topic name is invalid: the empty string is not allowed",
        ),
        (NewTopic("."), ErrorCode.INVALID_TOPIC_EXCEPTION, "'.' is not allowed"),
        (NewTopic(".."), ErrorCode.INVALID_TOPIC_EXCEPTION, "'..' is not allowed"),
        (NewTopic("a" * 250), ErrorCode.INVALID_TOPIC_EXCEPTION, "longer than the max allowed length 249"),
        (
            NewTopic("bad/name"),
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "characters other than ASCII alphanumerics",
        ),
        (NewTopic("ünï"), ErrorCode.INVALID_TOPIC_EXCEPTION, "characters other than ASCII alphanumerics"),
        (
            NewTopic("t", 0),
            ErrorCode.INVALID_PARTITIONS,
            "Number of partitions was set to an invalid non-positive",
        ),
        (NewTopic("t", -2), ErrorCode.INVALID_PARTITIONS, "invalid non-positive value"),
        (
            NewTopic("t", 1, 0),
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0",
        ),
        (
            NewTopic("t", 1, 2),
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "The target replication factor of 2 cannot be reached because only 1 broker(s) are registered",
        ),
        (NewTopic("t", configs={"nope": "1"}), ErrorCode.INVALID_CONFIG, "Unknown topic config name: nope"),
        (NewTopic("t", configs={"retention.ms": "x"}), ErrorCode.INVALID_CONFIG, "Not a number of type LONG"),
        (NewTopic("t", configs={"retention.ms": None}), ErrorCode.INVALID_CONFIG, "Null value not supported"),
        (
            NewTopic("t", 1, assignments={0: [1]}),
            ErrorCode.INVALID_REQUEST,
            "numPartitions was not set to -1",
        ),
        (
            NewTopic("t", -1, 1, assignments={0: [1]}),
            ErrorCode.INVALID_REQUEST,
            "replication factor was not set",
        ),
        (NewTopic("t", assignments={1: [1]}), ErrorCode.INVALID_REPLICA_ASSIGNMENT, "consecutive 0-based"),
        (
            NewTopic("t", assignments={0: [9]}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "broker 9, but no such broker",
        ),
        (
            NewTopic("t", assignments={0: [1, 1]}),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "broker 1 more than once",
        ),
        (NewTopic("t", assignments={0: []}), ErrorCode.INVALID_REPLICA_ASSIGNMENT, "empty replica list"),
        (
            NewTopic("t", assignments=[(0, [1]), (0, [1])]),
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "multiple manual partition assignments for partition 0",
        ),
        (NewTopic("t", 10001), ErrorCode.POLICY_VIOLATION, "excessively large batch"),
    ],
    ids=lambda value: value.name if isinstance(value, ErrorCode) else None,
)
def test_create_topic_validation(controller, topic, code, message):
    offset = controller.log.next_offset
    [result] = create(controller, topic)
    assert result.error_code == code
    assert message in result.error_message
    assert (result.topic_id, result.num_partitions, result.configs) == (NO_TOPIC_ID, -1, [])
    assert controller.log.next_offset == offset


def test_existing_topic_and_colliding_names(controller):
    create(controller, NewTopic("a.b"))
    results = create(controller, NewTopic("a.b"), NewTopic("a_b"), NewTopic("x.y"), NewTopic("x_y"))
    assert codes(results) == [
        ErrorCode.TOPIC_ALREADY_EXISTS,
        ErrorCode.INVALID_TOPIC_EXCEPTION,
        ErrorCode.NONE,
        ErrorCode.INVALID_TOPIC_EXCEPTION,
    ]
    assert results[0].error_message == "Topic 'a.b' already exists."
    assert results[1].error_message == "Topic 'a_b' collides with existing topic: a.b"


def test_duplicate_names_in_one_request_all_fail(controller):
    results = create(controller, NewTopic("d"), NewTopic("ok"), NewTopic("d"))
    assert codes(results) == [ErrorCode.INVALID_REQUEST, ErrorCode.NONE, ErrorCode.INVALID_REQUEST]
    assert results[0].error_message == "Duplicate topic name."


def test_some_topics_fail_others_succeed_in_one_request(controller):
    results = create(controller, NewTopic("good", 2), NewTopic("bad!"))
    assert codes(results) == [ErrorCode.NONE, ErrorCode.INVALID_TOPIC_EXCEPTION]
    assert controller.image.topic("good") is not None


def test_manual_assignment_sets_replicas_and_leader(data_dir):
    controller = make_controller(data_dir, brokers=(1, 2, 3))
    [result] = create(controller, NewTopic("t", assignments={0: [3, 1], 1: [2, 3]}))
    assert result.error_code == ErrorCode.NONE and result.replication_factor == 2
    partitions = controller.image.topic("t").partitions
    assert partitions[0].replicas == (3, 1) and partitions[0].leader == 3
    assert partitions[1].isr == (2, 3)


def test_replicas_spread_over_registered_brokers(data_dir):
    controller = make_controller(data_dir, brokers=(1, 2, 3))
    [result] = create(controller, NewTopic("t", 6, 3))
    assert result.error_code == ErrorCode.NONE
    partitions = controller.image.topic("t").partitions.values()
    assert all(sorted(p.replicas) == [1, 2, 3] for p in partitions)
    assert {p.leader for p in partitions} == {1, 2, 3}


def test_assign_replicas_is_round_robin_with_distinct_replicas():
    assignment = assign_replicas([3, 1, 2, 4], 8, 3, rng=random.Random(1))
    assert all(len(set(replicas)) == 3 for replicas in assignment)
    leaders = [replicas[0] for replicas in assignment]
    assert sorted(leaders) == [1, 1, 2, 2, 3, 3, 4, 4]


def test_single_node_without_registration_assigns_itself(data_dir):
    controller = make_controller(data_dir, brokers=())
    [result] = create(controller, NewTopic("t", 2))
    assert result.error_code == ErrorCode.NONE
    assert controller.image.topic("t").partitions[1].replicas == (1,)


def test_topic_name_rules():
    assert topic_name_error("valid.Name_with-chars9") is None
    assert topic_name_error("a" * 249) is None
    assert topic_name_error("__consumer_offsets") is None
    assert topic_name_error("has space") is not None


# ------------------------------------------------------------------ delete topics and partitions
def test_delete_topics_by_name_and_id(controller):
    results = create(controller, NewTopic("a"), NewTopic("b"), NewTopic("c"))
    b_id = results[1].topic_id
    deleted = controller.delete_topics(["a", b_id, "missing", uuid.UUID(int=99)])
    assert [(r.name, r.error_code) for r in deleted] == [
        ("a", ErrorCode.NONE),
        ("b", ErrorCode.NONE),
        ("missing", ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
        (None, ErrorCode.UNKNOWN_TOPIC_ID),
    ]
    assert deleted[1].topic_id == b_id
    assert [t.name for t in controller.image.topics()] == ["c"]


def test_delete_topics_rejects_duplicates_and_name_id_pairs(controller):
    [a] = create(controller, NewTopic("a"))
    deleted = controller.delete_topics(["x", "x", a.topic_id, "a", NO_TOPIC_ID])
    assert [(r.name, r.error_code, r.error_message) for r in deleted] == [
        ("x", ErrorCode.INVALID_REQUEST, "Duplicate topic name."),
        ("a", ErrorCode.NONE, None),
        ("a", ErrorCode.INVALID_REQUEST, "The provided topic name maps to an ID that was already supplied."),
        (None, ErrorCode.INVALID_REQUEST, "Neither topic name nor id were specified."),
    ]
    assert controller.image.topic("a") is None


def test_delete_disabled(data_dir):
    controller = make_controller(data_dir, {"delete.topic.enable": "false"})
    create(controller, NewTopic("a"))
    [result] = controller.delete_topics(["a"])
    assert result.error_code == ErrorCode.TOPIC_DELETION_DISABLED
    assert controller.image.topic("a") is not None


def test_create_partitions(controller):
    create(controller, NewTopic("t", 2))
    assert controller.create_partitions("t", 4).error_code == ErrorCode.NONE
    assert sorted(controller.image.topic("t").partitions) == [0, 1, 2, 3]
    assert controller.create_partitions("t", 6, validate_only=True).error_code == ErrorCode.NONE
    assert len(controller.image.topic("t").partitions) == 4
    manual = controller.create_partitions("t", 5, assignments=[[1]])
    assert manual.error_code == ErrorCode.NONE
    assert controller.image.topic("t").partitions[4].replicas == (1,)


@pytest.mark.parametrize(
    ("total", "assignments", "code", "message"),
    [
        (2, None, ErrorCode.INVALID_PARTITIONS, "Topic already has 2 partition(s)."),
        (
            1,
            None,
            ErrorCode.INVALID_PARTITIONS,
            "The topic t currently has 2 partition(s); 1 would not be an increase.",
        ),
        (
            4,
            [[1]],
            ErrorCode.INVALID_REPLICA_ASSIGNMENT,
            "Attempted to add 2 additional partition(s), but only 1",
        ),
        (3, [[1, 2]], ErrorCode.INVALID_REPLICA_ASSIGNMENT, "but no such broker is registered"),
    ],
)
def test_create_partitions_validation(controller, total, assignments, code, message):
    create(controller, NewTopic("t", 2))
    result = controller.create_partitions("t", total, assignments)
    assert result.error_code == code and message in result.error_message
    assert len(controller.image.topic("t").partitions) == 2


def test_create_partitions_of_unknown_topic(controller):
    assert controller.create_partitions("nope", 3).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


# ------------------------------------------------------------------ configs
def test_legacy_alter_configs_replaces_the_whole_override_set(controller):
    create(controller, NewTopic("t", configs={"retention.ms": "1000", "cleanup.policy": "compact"}))
    [result] = controller.alter_configs([AlterConfigsResource(TOPIC, "t", {"segment.ms": "5000"})])
    assert result.error_code == ErrorCode.NONE
    assert dict(controller.image.topic_configs("t")) == {"segment.ms": "5000"}


def test_incremental_alter_configs_operations(controller):
    create(controller, NewTopic("t", configs={"retention.ms": "1000", "cleanup.policy": "compact, delete"}))
    ops = [
        ConfigOp("retention.ms", DELETE, None),
        ConfigOp("segment.ms", SET, "5000"),
        ConfigOp("cleanup.policy", SUBTRACT, "delete"),
        ConfigOp("leader.replication.throttled.replicas", APPEND, "0:1,1:1"),
    ]
    [result] = controller.incremental_alter_configs([IncrementalAlterConfigsResource(TOPIC, "t", ops)])
    assert result.error_code == ErrorCode.NONE
    assert dict(controller.image.topic_configs("t")) == {
        "segment.ms": "5000",
        "cleanup.policy": "compact",
        "leader.replication.throttled.replicas": "0:1,1:1",
    }


def test_append_starts_from_the_default_of_a_list_config(controller):
    create(controller, NewTopic("t"))
    ops = [ConfigOp("cleanup.policy", APPEND, "compact")]
    controller.incremental_alter_configs([IncrementalAlterConfigsResource(TOPIC, "t", ops)])
    assert controller.image.topic_configs("t")["cleanup.policy"] == "delete,compact"


def test_setting_an_unchanged_topic_config_writes_nothing(controller):
    create(controller, NewTopic("t", configs={"retention.ms": "1000"}))
    offset = controller.log.next_offset
    ops = [ConfigOp("retention.ms", SET, "1000")]
    [result] = controller.incremental_alter_configs([IncrementalAlterConfigsResource(TOPIC, "t", ops)])
    assert result.error_code == ErrorCode.NONE
    assert controller.log.next_offset == offset


@pytest.mark.parametrize(
    ("resource", "code", "message"),
    [
        (
            IncrementalAlterConfigsResource(TOPIC, "t", [ConfigOp("retention.ms", APPEND, "1")]),
            ErrorCode.INVALID_CONFIG,
            "Can't APPEND to key retention.ms because its type is not LIST.",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "t", [ConfigOp("retention.ms", SET, "x")]),
            ErrorCode.INVALID_CONFIG,
            "Invalid value x for configuration retention.ms",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "t", [ConfigOp("nope", SET, "1")]),
            ErrorCode.INVALID_CONFIG,
            "Unknown topic config name: nope",
        ),
        (
            IncrementalAlterConfigsResource(
                TOPIC, "t", [ConfigOp("a", SET, "1"), ConfigOp("a", DELETE, None)]
            ),
            ErrorCode.INVALID_REQUEST,
            "Error due to duplicate config keys",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "t", [ConfigOp("retention.ms", SET, None)]),
            ErrorCode.INVALID_REQUEST,
            "Null value not supported for : retention.ms",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "t", [ConfigOp("retention.ms", 9, "1")]),
            ErrorCode.INVALID_REQUEST,
            "Unknown operations type 9",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "missing", [ConfigOp("retention.ms", SET, "1")]),
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
            "The topic 'missing' does not exist.",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "", [ConfigOp("retention.ms", SET, "1")]),
            ErrorCode.INVALID_REQUEST,
            "Default topic resources are not allowed.",
        ),
        (
            IncrementalAlterConfigsResource(TOPIC, "bad name", [ConfigOp("retention.ms", SET, "1")]),
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            "Topic name is invalid",
        ),
        (
            IncrementalAlterConfigsResource(BROKER, "1", [ConfigOp("num.partitions", SET, "3")]),
            ErrorCode.INVALID_REQUEST,
            "Cannot update these configs dynamically: Set(num.partitions)",
        ),
        (
            IncrementalAlterConfigsResource(BROKER, "2", [ConfigOp("log.retention.ms", SET, "3")]),
            ErrorCode.INVALID_REQUEST,
            "Unexpected broker id, expected 1, but received 2",
        ),
        (
            IncrementalAlterConfigsResource(BROKER, "one", [ConfigOp("log.retention.ms", SET, "3")]),
            ErrorCode.INVALID_REQUEST,
            "Node id must be an integer, but it is: one",
        ),
        (
            IncrementalAlterConfigsResource(BROKER, "", [ConfigOp("log.retention.ms", SET, "soon")]),
            ErrorCode.INVALID_REQUEST,
            "Invalid value soon for configuration log.retention.ms",
        ),
        (
            IncrementalAlterConfigsResource(8, "1", [ConfigOp("root", SET, "DEBUG")]),
            ErrorCode.INVALID_REQUEST,
            "Unknown resource type 8",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, ErrorCode) else None,
)
def test_incremental_alter_configs_validation(controller, resource, code, message):
    create(controller, NewTopic("t", configs={"retention.ms": "1000"}))
    offset = controller.log.next_offset
    [result] = controller.incremental_alter_configs([resource])
    assert result.error_code == code
    assert message in result.error_message
    assert controller.log.next_offset == offset


def test_duplicate_resources_are_rejected(controller):
    create(controller, NewTopic("t"))
    resource = AlterConfigsResource(TOPIC, "t", {"retention.ms": "1"})
    results = controller.alter_configs([resource, resource])
    assert codes(results) == [ErrorCode.INVALID_REQUEST] * 2
    assert results[0].error_message == "Each resource must appear at most once."


def test_validate_only_alter_writes_nothing(controller):
    create(controller, NewTopic("t"))
    [result] = controller.alter_configs(
        [AlterConfigsResource(TOPIC, "t", {"retention.ms": "1"})], validate_only=True
    )
    assert result.error_code == ErrorCode.NONE
    assert dict(controller.image.topic_configs("t")) == {}


def test_broker_configs_per_broker_and_cluster_default(controller):
    results = controller.incremental_alter_configs(
        [
            IncrementalAlterConfigsResource(BROKER, "1", [ConfigOp("log.retention.ms", SET, "1000")]),
            IncrementalAlterConfigsResource(BROKER, "", [ConfigOp("log.segment.bytes", SET, "2097152")]),
        ]
    )
    assert codes(results) == [ErrorCode.NONE, ErrorCode.NONE]
    assert dict(controller.image.broker_configs(1)) == {"log.retention.ms": "1000"}
    create(controller, NewTopic("t"))
    properties = controller.topic_properties("t")
    assert properties["retention.ms"] == "1000" and properties["segment.bytes"] == "2097152"


def test_setting_an_unchanged_broker_config_still_writes_a_record(controller):
    resource = IncrementalAlterConfigsResource(BROKER, "", [ConfigOp("log.retention.ms", SET, "1000")])
    controller.incremental_alter_configs([resource])
    offset = controller.log.next_offset
    controller.incremental_alter_configs([resource])
    assert controller.log.next_offset == offset + 1


def test_describe_topic_configs(controller):
    create(controller, NewTopic("t", configs={"retention.ms": "1000"}))
    result = controller.describe_configs(TOPIC, "t", ["retention.ms"])
    assert result.error_code == ErrorCode.NONE
    [entry] = result.configs
    assert (entry.value, entry.source) == ("1000", ConfigSource.DYNAMIC_TOPIC_CONFIG)
    assert controller.describe_configs(TOPIC, "missing").error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert controller.describe_configs(TOPIC, "bad name").error_code == ErrorCode.INVALID_TOPIC_EXCEPTION


def test_describe_broker_configs(controller):
    result = controller.describe_configs(BROKER, "1", ["num.partitions"])
    assert [(e.name, e.value, e.read_only) for e in result.configs] == [("num.partitions", "1", True)]
    assert controller.describe_configs(BROKER, "").configs == []
    wrong = controller.describe_configs(BROKER, "7")
    assert wrong.error_code == ErrorCode.INVALID_REQUEST
    assert wrong.error_message == "Unexpected broker id, expected 1 or empty string, but received 7"
    assert controller.describe_configs(BROKER, "x").error_code == ErrorCode.INVALID_REQUEST
    assert controller.describe_configs(8, "1").error_code == ErrorCode.INVALID_REQUEST


# ------------------------------------------------------------------ brokers, producer ids, listeners, replay
def test_register_broker_is_idempotent_until_details_change(controller):
    epoch = controller.register_broker(1, "host1", 9091)
    assert controller.register_broker(1, "host1", 9091) == epoch
    assert controller.register_broker(1, "host1", 9999) > epoch
    assert controller.image.broker(1).port == 9999


def test_allocate_producer_ids_hands_out_consecutive_blocks(controller):
    first = controller.allocate_producer_ids(1)
    second = controller.allocate_producer_ids(1, count=10)
    assert (first.first_id, first.size) == (0, 1000)
    assert (second.first_id, second.size) == (1000, 10)
    assert controller.image.next_producer_id == 1010
    with pytest.raises(KafkaError):
        controller.allocate_producer_ids(1, count=0)


def test_listeners_get_each_committed_batch_after_the_image_applied_it(controller):
    seen = []
    controller.add_listener(
        lambda records: seen.append((list(records), controller.image.topic("t") is not None))
    )
    create(controller, NewTopic("t", 2))
    create(controller, NewTopic("bad!"))
    assert len(seen) == 1
    records, topic_visible = seen[0]
    assert [type(r) for r in records] == [TopicRecord, PartitionRecord, PartitionRecord]
    assert topic_visible


def test_failing_listener_does_not_fail_the_request(controller):
    def broken(records):
        raise RuntimeError("boom")

    controller.add_listener(broken)
    [result] = create(controller, NewTopic("t"))
    assert result.error_code == ErrorCode.NONE
    assert controller.image.topic("t") is not None


def test_replayed_image_equals_live_image(data_dir):
    controller = make_controller(data_dir, brokers=(1, 2))
    create(controller, NewTopic("a", 3, 2, configs={"retention.ms": "5"}), NewTopic("b.c"))
    controller.create_partitions("a", 5)
    controller.incremental_alter_configs(
        [IncrementalAlterConfigsResource(BROKER, "", [ConfigOp("log.retention.ms", SET, "9")])]
    )
    controller.delete_topics(["b.c"])
    controller.allocate_producer_ids(1)
    controller.log.close()
    with MetadataLog(metadata_log_path(data_dir)) as log:
        replayed = MetadataImage.replay(log.replay())
    assert replayed == controller.image
    assert replayed.version == controller.image.version


class _FullDiskLog(MetadataLog):
    """A metadata log on a full disk, until ``full`` is cleared."""

    full = False

    def append(self, records):
        if self.full:
            raise MetadataStorageError(ErrorCode.KAFKA_STORAGE_ERROR, "No space left on device")
        return super().append(records)


def test_a_metadata_log_that_cannot_be_written_fails_every_change_of_the_request(data_dir):
    full_log = _FullDiskLog(metadata_log_path(data_dir))
    controller = Controller(MetadataImage(), full_log, BrokerConfig({}), 1, rng=random.Random(7))
    controller.register_broker(1, "host1", 9091)
    full_log.full = True
    try:
        results = create(controller, NewTopic("a", 1, 1, {}, {}), NewTopic("bad name!", 1, 1, {}, {}))
        assert codes(results) == [ErrorCode.KAFKA_STORAGE_ERROR, ErrorCode.INVALID_TOPIC_EXCEPTION]
        assert "No space left" in (results[0].error_message or "")
        assert controller.image.topic("a") is None
        altered = controller.incremental_alter_configs(
            [IncrementalAlterConfigsResource(BROKER, "1", [ConfigOp("log.retention.ms", SET, "1000")])]
        )
        assert codes(altered) == [ErrorCode.KAFKA_STORAGE_ERROR]

        full_log.full = False  # space returns: the same request now succeeds
        assert codes(create(controller, NewTopic("a", 1, 1, {}, {}))) == [ErrorCode.NONE]
        assert controller.image.topic("a") is not None
    finally:
        full_log.close()
