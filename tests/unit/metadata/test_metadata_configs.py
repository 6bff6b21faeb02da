import pytest

from strom.metadata.configs import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    ConfigError,
    ConfigSource,
    ConfigSynonym,
    ConfigType,
    broker_synonyms,
    effective_topic_properties,
    resolve_broker_configs,
    resolve_topic_config,
    resolve_topic_configs,
    validate_broker_config,
    validate_dynamic_broker_configs,
    validate_topic_config,
    validate_topic_configs,
)
from strom.protocol.errors import ErrorCode

DYN, DEFAULT_DYN, STATIC, DEFAULT = (
    ConfigSource.DYNAMIC_BROKER_CONFIG,
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    ConfigSource.STATIC_BROKER_CONFIG,
    ConfigSource.DEFAULT_CONFIG,
)

KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "remote.storage.enable",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.jitter.ms",
    "segment.ms",
    "unclean.leader.election.enable",
}


def entry(name, overrides=None, dynamic=None, static=None, default=None):
    return resolve_topic_config(name, overrides or {}, dynamic or {}, static or {}, dynamic_default=default)


def test_all_kafka_topic_configs_are_defined():
    assert {name for name, d in TOPIC_CONFIGS.items() if not d.internal} == KAFKA_TOPIC_CONFIGS


def test_internal_segment_bytes_is_obeyed_but_not_described():
    validate_topic_config("internal.segment.bytes", "1000")
    assert "internal.segment.bytes" not in {e.name for e in resolve_topic_configs({}, {}, {})}
    assert resolve_topic_configs({}, {}, {}, names=["internal.segment.bytes"]) == []
    assert (
        effective_topic_properties({"internal.segment.bytes": "1000"}, {}, {})["internal.segment.bytes"]
        == "1000"
    )
    assert "internal.segment.bytes" not in effective_topic_properties({}, {}, {})


def test_every_topic_synonym_is_a_defined_broker_config():
    for definition in TOPIC_CONFIGS.values():
        for synonym in definition.synonyms:
            assert synonym.name in BROKER_CONFIGS, synonym.name


def test_every_default_passes_its_own_validation():
    for definition in [*TOPIC_CONFIGS.values(), *BROKER_CONFIGS.values()]:
        if definition.default is not None:
            assert definition.canonical(definition.default_string) == definition.default_string


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("retention.ms", "604800000"),
        ("segment.bytes", "1073741824"),
        ("max.message.bytes", "1048588"),
        ("cleanup.policy", "delete"),
        ("compression.type", "producer"),
        ("min.insync.replicas", "1"),
        ("message.timestamp.type", "CreateTime"),
        ("min.cleanable.dirty.ratio", "0.5"),
        ("unclean.leader.election.enable", "false"),
        ("local.retention.ms", "-2"),
        ("flush.messages", str(2**63 - 1)),
    ],
)
def test_topic_defaults_match_kafka(name, value):
    assert entry(name).value == value


def test_topic_default_without_any_broker_setting_comes_from_the_broker_default():
    result = entry("segment.bytes")
    assert result.source is DEFAULT and result.is_default
    assert result.synonyms == [ConfigSynonym("log.segment.bytes", "1073741824", DEFAULT)]


def test_topic_config_without_server_synonym_has_no_chain():
    result = entry("remote.storage.enable")
    assert (result.value, result.source, result.synonyms) == ("false", DEFAULT, [])


def test_topic_override_wins_and_is_reported_canonically():
    result = entry(
        "cleanup.policy",
        overrides={"cleanup.policy": "compact, delete"},
        static={"log.cleanup.policy": "compact"},
    )
    assert result.value == "compact,delete"
    assert result.source is ConfigSource.DYNAMIC_TOPIC_CONFIG and not result.is_default
    assert [s.source for s in result.synonyms] == [ConfigSource.DYNAMIC_TOPIC_CONFIG, STATIC, DEFAULT]


def test_broker_levels_take_precedence_in_kafka_order():
    layers = dict(
        dynamic={"log.segment.bytes": "3145728"},
        default={"log.segment.bytes": "2097152"},
        static={"log.segment.bytes": "1048576"},
    )
    result = entry("segment.bytes", **layers)
    assert (result.value, result.source) == ("3145728", DYN)
    assert result.synonyms == [
        ConfigSynonym("log.segment.bytes", "3145728", DYN),
        ConfigSynonym("log.segment.bytes", "2097152", DEFAULT_DYN),
        ConfigSynonym("log.segment.bytes", "1048576", STATIC),
        ConfigSynonym("log.segment.bytes", "1073741824", DEFAULT),
    ]
    assert (
        entry(
            "segment.bytes", default={"log.segment.bytes": "2097152"}, static={"log.segment.bytes": "1048576"}
        ).source
        is DEFAULT_DYN
    )


def test_retention_synonyms_are_converted_to_milliseconds():
    assert entry("retention.ms", static={"log.retention.hours": "24"}).value == "86400000"
    assert entry("retention.ms", static={"log.retention.minutes": "2"}).value == "120000"
    assert entry("retention.ms", static={"log.retention.hours": "-1"}).value == "-1"
    result = entry("retention.ms", static={"log.retention.ms": "5", "log.retention.hours": "24"})
    assert (result.value, result.source) == ("5", STATIC)
    assert [s.name for s in result.synonyms] == [
        "log.retention.ms",
        "log.retention.hours",
        "log.retention.hours",
    ]


def test_default_retention_is_reported_through_log_retention_hours():
    result = entry("retention.ms")
    assert result.value == "604800000"
    assert result.synonyms == [ConfigSynonym("log.retention.hours", "168", DEFAULT)]


def test_segment_ms_uses_roll_hours_and_flush_ms_falls_back_to_scheduler_interval():
    assert entry("segment.ms", static={"log.roll.hours": "1"}).value == "3600000"
    assert entry("flush.ms", static={"log.flush.scheduler.interval.ms": "700"}).value == "700"
    assert (
        entry(
            "flush.ms", static={"log.flush.interval.ms": "9", "log.flush.scheduler.interval.ms": "700"}
        ).value
        == "9"
    )


def test_entries_carry_type_documentation_and_are_not_read_only():
    result = entry("min.cleanable.dirty.ratio")
    assert result.config_type is ConfigType.DOUBLE
    assert result.documentation
    assert not result.read_only and not result.is_sensitive


def test_resolve_topic_configs_sorted_and_filtered_by_names():
    all_entries = resolve_topic_configs({}, {}, {})
    assert [e.name for e in all_entries] == sorted(KAFKA_TOPIC_CONFIGS)
    some = resolve_topic_configs({}, {}, {}, names=["segment.ms", "nope", "retention.ms"])
    assert [e.name for e in some] == ["retention.ms", "segment.ms"]


def test_effective_topic_properties_covers_every_config():
    properties = effective_topic_properties({"retention.ms": "1000"}, {}, {"log.segment.bytes": "5242880"})
    assert set(properties) == KAFKA_TOPIC_CONFIGS
    assert properties["retention.ms"] == "1000"
    assert properties["segment.bytes"] == "5242880"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("nope", "1", "Unknown topic config name: nope"),
        (
            "retention.ms",
            "abc",
            "Invalid value abc for configuration retention.ms: Not a number of type LONG",
        ),
        ("retention.ms", "-2", "Invalid value -2 for configuration retention.ms: Value must be at least -1"),
        ("segment.bytes", "99999999999", "Not a number of type INT"),
        ("segment.bytes", "1048575", "Value must be at least 1048576"),
        ("cleanup.policy", "", "String must be one of: compact, delete"),
        ("preallocate", "yes", "Expected value to be either true or false"),
        (
            "cleanup.policy",
            "compact,forever",
            "Invalid value forever for configuration cleanup.policy: String must be one of: compact, delete",
        ),
        (
            "compression.type",
            "brotli",
            "String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer",
        ),
        ("min.cleanable.dirty.ratio", "1.5", "Value must be no more than 1"),
        ("compression.gzip.level", "0", "Value must be between 1 and 9 or equal to -1"),
        ("message.format.version", "2.9", "Version 2.9 is not a valid version"),
        ("leader.replication.throttled.replicas", "0:1,x", "must be the literal '*'"),
        ("retention.ms", None, "Null value not supported"),
    ],
)
def test_invalid_topic_configs_are_rejected_with_kafka_messages(name, value, message):
    with pytest.raises(ConfigError, match=None) as caught:
        validate_topic_config(name, value)
    assert caught.value.error_code == ErrorCode.INVALID_CONFIG
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("preallocate", "TRUE"),
        ("retention.ms", " +1000 "),
        ("min.cleanable.dirty.ratio", "1e-1"),
        ("message.format.version", "0.10.2-IV0"),
        ("message.format.version", "3.0"),
        ("follower.replication.throttled.replicas", "*"),
        ("cleanup.policy", "delete,compact"),
    ],
)
def test_valid_topic_configs_are_accepted(name, value):
    validate_topic_config(name, value)


def test_canonical_rendering_follows_kafka():
    assert TOPIC_CONFIGS["preallocate"].canonical(" TRUE ") == "true"
    assert TOPIC_CONFIGS["retention.ms"].canonical("+5") == "5"
    assert TOPIC_CONFIGS["min.cleanable.dirty.ratio"].canonical("1") == "1.0"
    assert TOPIC_CONFIGS["min.cleanable.dirty.ratio"].canonical("0.00001") == "1.0E-5"


def test_compaction_lags_are_checked_together():
    with pytest.raises(ConfigError, match="min.compaction.lag.ms \\(10\\) > max.compaction.lag.ms \\(5\\)"):
        validate_topic_configs({"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}, {}, {})
    with pytest.raises(ConfigError, match="min.compaction.lag.ms"):
        validate_topic_configs(
            {"max.compaction.lag.ms": "5"}, {}, {"log.cleaner.min.compaction.lag.ms": "10"}
        )


def test_tiered_storage_cannot_be_enabled():
    with pytest.raises(ConfigError, match="Tiered Storage functionality is disabled"):
        validate_topic_configs({"remote.storage.enable": "true"}, {}, {})


def test_broker_config_values_are_validated_but_custom_names_allowed():
    validate_broker_config("my.plugin.setting", "anything")
    with pytest.raises(ConfigError) as caught:
        validate_broker_config("num.partitions", "0")
    assert caught.value.error_code == ErrorCode.INVALID_CONFIG


def test_dynamic_broker_config_rules():
    validate_dynamic_broker_configs({"log.retention.ms": "1000", "custom.thing": "x"})
    with pytest.raises(
        ConfigError,
        match=r"Cannot update these configs dynamically: Set\(log.retention.hours, num.partitions\)",
    ) as caught:
        validate_dynamic_broker_configs({"num.partitions": "3", "log.retention.hours": "1"})
    assert caught.value.error_code == ErrorCode.INVALID_REQUEST
    with pytest.raises(ConfigError, match="Not a number") as caught:
        validate_dynamic_broker_configs({"log.retention.ms": "soon"})
    assert caught.value.error_code == ErrorCode.INVALID_REQUEST


def test_broker_synonym_groups():
    assert broker_synonyms("log.retention.hours") == (
        "log.retention.ms",
        "log.retention.minutes",
        "log.retention.hours",
    )
    assert broker_synonyms("log.flush.interval.ms") == (
        "log.flush.interval.ms",
        "log.flush.scheduler.interval.ms",
    )
    assert broker_synonyms("num.partitions") == ("num.partitions",)


def by_name(entries):
    return {e.name: e for e in entries}


def test_broker_description_lists_all_known_configs_with_sources():
    entries = by_name(
        resolve_broker_configs(
            {"log.retention.ms": "1"}, {"num.partitions": "3"}, dynamic_default={"log.retention.ms": "2"}
        )
    )
    assert set(BROKER_CONFIGS) <= set(entries)
    assert (entries["num.partitions"].value, entries["num.partitions"].source) == ("3", STATIC)
    assert entries["num.partitions"].read_only
    retention = entries["log.retention.ms"]
    assert (retention.value, retention.source, retention.read_only) == ("1", DYN, False)
    assert retention.synonyms == [
        ConfigSynonym("log.retention.ms", "1", DYN),
        ConfigSynonym("log.retention.ms", "2", DEFAULT_DYN),
        ConfigSynonym("log.retention.hours", "168", DEFAULT),
    ]
    assert (entries["message.max.bytes"].value, entries["message.max.bytes"].is_default) == ("1048588", True)


def test_broker_description_leaves_higher_precedence_synonyms_out_of_a_configs_chain():
    entries = by_name(resolve_broker_configs({}, {"log.retention.ms": "5", "log.retention.hours": "2"}))
    hours = entries["log.retention.hours"]
    assert hours.value == "2"
    assert hours.synonyms == [
        ConfigSynonym("log.retention.hours", "2", STATIC),
        ConfigSynonym("log.retention.hours", "168", DEFAULT),
    ]


def test_cluster_default_description_lists_only_dynamic_defaults():
    entries = resolve_broker_configs(
        {"log.retention.ms": "1"}, {}, dynamic_default={"log.segment.bytes": "5242880"}, per_broker=False
    )
    assert [(e.name, e.value, e.source) for e in entries] == [("log.segment.bytes", "5242880", DEFAULT_DYN)]
    assert entries[0].synonyms == [ConfigSynonym("log.segment.bytes", "5242880", DEFAULT_DYN)]


def test_custom_broker_configs_are_reported_as_sensitive_unknowns():
    entries = by_name(resolve_broker_configs({}, {"my.plugin.secret": "s3cret"}))
    custom = entries["my.plugin.secret"]
    assert custom.value is None and custom.is_sensitive and custom.config_type is ConfigType.UNKNOWN
    assert all(s.value is None for s in custom.synonyms)
