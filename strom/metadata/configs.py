"""Kafka's topic and broker config definitions, their validation, and how an effective value is resolved.

A topic config's value comes from the first place that sets it, in Kafka's order of precedence:

    1. a dynamic override on the topic                        (DYNAMIC_TOPIC_CONFIG)
    2. a dynamic config of this broker, under a synonym       (DYNAMIC_BROKER_CONFIG)
    3. a cluster-wide dynamic broker default, under a synonym (DYNAMIC_DEFAULT_BROKER_CONFIG)
    4. the broker's server.properties, under a synonym        (STATIC_BROKER_CONFIG)
    5. the broker config's default, under a synonym           (DEFAULT_CONFIG)
    6. the topic config's own default                         (DEFAULT_CONFIG)

Synonyms are the broker configs that stand in for a topic config (retention.ms <- log.retention.ms <-
log.retention.minutes <- log.retention.hours); at each level the first synonym set wins and its value is
converted to the topic config's unit. DescribeConfigs reports that chain, highest precedence first.

All config values travel and are stored as strings, exactly as clients send them; the definitions here
parse them, validate them, and render them back in Kafka's canonical form ("TRUE " -> "true").
"""

from __future__ import annotations

import decimal
import enum
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from strom.protocol.errors import ErrorCode, KafkaError

INT_MAX = 2**31 - 1
LONG_MAX = 2**63 - 1
_MINUTE_MS = 60 * 1000
_HOUR_MS = 60 * _MINUTE_MS
#: Strom departs from Kafka's "never fsync" (log.flush.interval.ms null, scheduler interval Long.MAX): a
#: single node has no replica to fall back on, so logs are fsynced in the background every second (acks do
#: not wait).
_FLUSH_INTERVAL_MS = 1000


class ConfigType(enum.IntEnum):
    """Config value types, as DescribeConfigs v3+ reports them."""

    UNKNOWN = 0
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    CLASS = 8
    PASSWORD = 9


class ConfigSource(enum.IntEnum):
    """Where a config value comes from, as DescribeConfigs reports it."""

    UNKNOWN = 0
    DYNAMIC_TOPIC_CONFIG = 1
    DYNAMIC_BROKER_CONFIG = 2
    DYNAMIC_DEFAULT_BROKER_CONFIG = 3
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5
    DYNAMIC_BROKER_LOGGER_CONFIG = 6


class ConfigResourceType(enum.IntEnum):
    """Kafka's ConfigResource types."""

    UNKNOWN = 0
    TOPIC = 2
    BROKER = 4
    BROKER_LOGGER = 8


class AlterConfigOp(enum.IntEnum):
    """IncrementalAlterConfigs operations."""

    SET = 0
    DELETE = 1
    APPEND = 2
    SUBTRACT = 3


class ConfigError(KafkaError):
    """A config name or value was rejected; carries the Kafka error code to answer with."""

    def __init__(self, error_code: ErrorCode, message: str) -> None:
        super().__init__(error_code, message)

    @property
    def error_code(self) -> ErrorCode:
        return self.code


class ConfigSynonym(NamedTuple):
    """One entry of a DescribeConfigs synonym chain."""

    name: str
    value: str | None
    source: ConfigSource


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One config as DescribeConfigs (and CreateTopics) describe it."""

    name: str
    value: str | None
    source: ConfigSource
    is_default: bool
    read_only: bool
    is_sensitive: bool
    config_type: ConfigType
    synonyms: list[ConfigSynonym]
    documentation: str | None


# ---------------------------------------------------------------------------------------------- validators
Validator = Callable[[str, Any], None]


def _invalid(name: str, value: object, message: str) -> ConfigError:
    return ConfigError(ErrorCode.INVALID_CONFIG, f"Invalid value {value} for configuration {name}: {message}")


def at_least(minimum: int) -> Validator:
    def check(name: str, value: Any) -> None:
        if value < minimum:
            raise _invalid(name, _render_number(value), f"Value must be at least {minimum}")

    return check


def between(minimum: int, maximum: int) -> Validator:
    def check(name: str, value: Any) -> None:
        if value < minimum:
            raise _invalid(name, _render_number(value), f"Value must be at least {minimum}")
        if value > maximum:
            raise _invalid(name, _render_number(value), f"Value must be no more than {maximum}")

    return check


def one_of(*allowed: str) -> Validator:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise _invalid(name, value, "String must be one of: " + ", ".join(allowed))

    return check


def each_one_of(*allowed: str) -> Validator:
    """For lists: every element must be one of the allowed strings."""
    element_check = one_of(*allowed)

    def check(name: str, value: Any) -> None:
        for element in value:
            element_check(name, element)

    return check


def _cleanup_policies(name: str, value: Any) -> None:
    """A list of "compact" and "delete"; an empty list is refused, since it would leave a log unbounded."""
    if not value:
        raise _invalid(name, "", "String must be one of: " + ", ".join(_CLEANUP_POLICIES))
    each_one_of(*_CLEANUP_POLICIES)(name, value)


def _gzip_level(name: str, value: Any) -> None:
    if value > 9 or (value < 1 and value != -1):
        raise _invalid(name, value, "Value must be between 1 and 9 or equal to -1")


_THROTTLED_REPLICA = re.compile(r"([0-9]+:[0-9]+)?")


def _throttled_replicas(name: str, value: Any) -> None:
    entries = [entry.strip() for entry in value]
    if not (all(_THROTTLED_REPLICA.fullmatch(entry) for entry in entries) or "".join(entries) == "*"):
        raise _invalid(
            name,
            "[" + ", ".join(value) + "]",
            f"{name} must be the literal '*' or a list of replicas of the form partitionId:brokerId,...",
        )


#: Releases accepted by message.format.version, with their highest inter-version ("-IVn") number.
_MESSAGE_FORMAT_RELEASES: dict[str, int | None] = {
    "0.8.0": None, "0.8.1": None, "0.8.2": None, "0.9.0": None,
    "0.10.0": 1, "0.10.1": 2, "0.10.2": 0, "0.11.0": 2,
    "1.0": 0, "1.1": 0, "2.0": 1, "2.1": 2, "2.2": 1, "2.3": 1, "2.4": 1, "2.5": 0, "2.6": 0, "2.7": 2,
    "2.8": 1, "3.0": 1, "3.1": 0, "3.2": 0, "3.3": 3, "3.4": 0, "3.5": 2, "3.6": 2, "3.7": 4, "3.8": 0,
    "3.9": 0,
}  # fmt: skip


def _metadata_version(name: str, value: Any) -> None:
    """Kafka matches the leading segments (three for 0.x, two after) against its known versions."""
    segments = value.split(".")
    key = ".".join(segments[: 3 if value.startswith("0.") else 2])
    release, _, iv = key.partition("-IV")
    max_iv = _MESSAGE_FORMAT_RELEASES.get(release, -1)
    valid = max_iv != -1 and (not iv or (max_iv is not None and iv.isdigit() and int(iv) <= max_iv))
    if not valid:
        raise _invalid(name, value, f"Version {value} is not a valid version")


# ---------------------------------------------------------------------------------------------- definitions
def _same(value: str) -> str:
    return value


def _scaled(factor: int) -> Callable[[str], str]:
    def convert(value: str) -> str:
        return str(int(value.strip()) * factor)

    return convert


def _retention_scaled(factor: int) -> Callable[[str], str]:
    """Like _scaled, but any negative retention means "forever", which is spelled -1."""

    def convert(value: str) -> str:
        millis = int(value.strip()) * factor
        return str(millis if millis >= 0 else -1)

    return convert


@dataclass(frozen=True, slots=True)
class Synonym:
    """A broker config standing in for a topic config; convert turns its value into the topic's unit."""

    name: str
    convert: Callable[[str], str] = _same


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """A config's name, type, default, validator and short documentation.

    default is the parsed default value, None when the config has no default (null).
    For topic configs, synonyms are the broker configs supplying its server default, by priority.
    For broker configs, dynamic says whether it may be altered at runtime. internal configs are accepted and
    obeyed but not described (Kafka keeps test-only knobs that way).
    """

    name: str
    type: ConfigType
    default: Any
    doc: str
    validator: Validator | None = None
    synonyms: tuple[Synonym, ...] = ()
    dynamic: bool = False
    internal: bool = False

    @property
    def sensitive(self) -> bool:
        return self.type in (ConfigType.PASSWORD, ConfigType.UNKNOWN)

    @property
    def default_string(self) -> str | None:
        return None if self.default is None else self.render(self.default)

    def parse(self, raw: str) -> Any:
        """The typed value of a string, validated; raises ConfigError(INVALID_CONFIG) like Kafka."""
        value = _parse_typed(self.name, raw, self.type)
        if self.validator is not None:
            self.validator(self.name, value)
        return value

    def canonical(self, raw: str) -> str:
        """A valid string value in Kafka's canonical rendering."""
        return self.render(self.parse(raw))

    def render(self, value: Any) -> str:
        if self.type is ConfigType.BOOLEAN:
            return "true" if value else "false"
        if self.type is ConfigType.LIST:
            return ",".join(value)
        if self.type is ConfigType.DOUBLE:
            return _java_double(value)
        return str(value)


_INTEGER = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)[fFdD]?")
_LIST_SEPARATOR = re.compile(r"\s*,\s*")
_INTEGER_RANGES = {
    ConfigType.SHORT: (-(2**15), 2**15 - 1),
    ConfigType.INT: (-(2**31), INT_MAX),
    ConfigType.LONG: (-(2**63), LONG_MAX),
}


def _parse_typed(name: str, raw: str, config_type: ConfigType) -> Any:
    text = raw.strip()
    if config_type is ConfigType.BOOLEAN:
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise _invalid(name, raw, "Expected value to be either true or false")
    if config_type in _INTEGER_RANGES:
        low, high = _INTEGER_RANGES[config_type]
        if _INTEGER.fullmatch(text) and low <= int(text) <= high:
            return int(text)
        raise _invalid(name, raw, f"Not a number of type {config_type.name}")
    if config_type is ConfigType.DOUBLE:
        if _DOUBLE.fullmatch(text):
            return float(text.rstrip("fFdD"))
        raise _invalid(name, raw, "Not a number of type DOUBLE")
    if config_type is ConfigType.LIST:
        return [] if not text else _LIST_SEPARATOR.split(text)
    return text


def _render_number(value: Any) -> str:
    return _java_double(value) if isinstance(value, float) else str(value)


def _java_double(value: float) -> str:
    """Java's Double.toString: plain notation in [1e-3, 1e7), otherwise d.dddE<exponent>."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0 or 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = str(digits[0]) + "." + ("".join(map(str, digits[1:])) or "0")
    return ("-" if sign else "") + f"{mantissa}E{len(digits) - 1 + exponent}"


_COMPRESSION_TYPES = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")
_CLEANUP_POLICIES = ("compact", "delete")
_TIMESTAMP_TYPES = ("CreateTime", "LogAppendTime")
_SECURITY_PROTOCOL_MAP = "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"

# Short aliases keep the definition tables below readable.
_B, _S, _I, _H, _L, _D, _LI = (
    ConfigType.BOOLEAN,
    ConfigType.STRING,
    ConfigType.INT,
    ConfigType.SHORT,
    ConfigType.LONG,
    ConfigType.DOUBLE,
    ConfigType.LIST,
)


def _topic(
    name: str,
    config_type: ConfigType,
    default: Any,
    doc: str,
    validator: Validator | None = None,
    *synonyms: str | Synonym,
) -> ConfigDef:
    return ConfigDef(
        name, config_type, default, doc, validator,
        tuple(s if isinstance(s, Synonym) else Synonym(s) for s in synonyms),
    )  # fmt: skip


#: Kafka 4 raised the floor of segment.bytes from 14 bytes to 1 MiB (KIP-1030); the internal config
#: internal.segment.bytes still allows small segments, for tests.
_MIN_SEGMENT_BYTES = 1024 * 1024


#: Every topic-level config Kafka knows, with the broker configs that supply its default.
TOPIC_CONFIGS: dict[str, ConfigDef] = {
    definition.name: definition
    for definition in (
        _topic("cleanup.policy", _LI, ["delete"],
               'Retention policy for old segments: "delete", "compact", or both.',
               _cleanup_policies, "log.cleanup.policy"),
        _topic("compression.type", _S, "producer",
               "Final compression codec of the topic's data; 'producer' keeps whatever the producer used.",
               one_of(*_COMPRESSION_TYPES), "compression.type"),
        _topic("compression.gzip.level", _I, -1, "Compression level when compression.type is gzip.",
               _gzip_level, "compression.gzip.level"),
        _topic("compression.lz4.level", _I, 9, "Compression level when compression.type is lz4.",
               between(1, 17), "compression.lz4.level"),
        _topic("compression.zstd.level", _I, 3, "Compression level when compression.type is zstd.",
               between(-131072, 22), "compression.zstd.level"),
        _topic("delete.retention.ms", _L, 24 * _HOUR_MS,
               "How long delete tombstones are kept in compacted topics.",
               at_least(0), "log.cleaner.delete.retention.ms"),
        _topic("file.delete.delay.ms", _L, 60000, "Delay before a deleted segment file is removed from disk.",
               at_least(0), "log.segment.delete.delay.ms"),
        _topic("flush.messages", _L, LONG_MAX, "Number of messages after which the log is fsynced.",
               at_least(1), "log.flush.interval.messages"),
        _topic("flush.ms", _L, _FLUSH_INTERVAL_MS, "Time in ms after which the log is fsynced.",
               at_least(0), "log.flush.interval.ms", "log.flush.scheduler.interval.ms"),
        _topic("follower.replication.throttled.replicas", _LI, [],
               "Replicas (partitionId:brokerId, or *) whose follower-side replication is throttled.",
               _throttled_replicas),
        _topic("index.interval.bytes", _I, 4096, "Bytes of log between two offset index entries.",
               at_least(0), "log.index.interval.bytes"),
        _topic("leader.replication.throttled.replicas", _LI, [],
               "Replicas (partitionId:brokerId, or *) whose leader-side replication is throttled.",
               _throttled_replicas),
        _topic("local.retention.bytes", _L, -2,
               "Local size limit of a tiered partition; -2 means use retention.bytes.",
               at_least(-2), "log.local.retention.bytes"),
        _topic("local.retention.ms", _L, -2,
               "Local time limit of a tiered partition's segments; -2 means use retention.ms.",
               at_least(-2), "log.local.retention.ms"),
        _topic("max.compaction.lag.ms", _L, LONG_MAX,
               "Longest time a record may stay ineligible for compaction.",
               at_least(1), "log.cleaner.max.compaction.lag.ms"),
        _topic("max.message.bytes", _I, 1048588, "Largest record batch accepted, after compression.",
               at_least(0), "message.max.bytes"),
        _topic("message.downconversion.enable", _B, True,
               "Whether fetches from old clients may be served by down-converting the message format.",
               None, "log.message.downconversion.enable"),
        _topic("message.format.version", _S, "3.0-IV1",
               "[Deprecated] Message format version; ignored since 3.0.",
               _metadata_version, "log.message.format.version"),
        _topic("message.timestamp.after.max.ms", _L, LONG_MAX,
               "How far a CreateTime timestamp may be ahead of the broker's clock.",
               at_least(0), "log.message.timestamp.after.max.ms"),
        _topic("message.timestamp.before.max.ms", _L, LONG_MAX,
               "How far a CreateTime timestamp may be behind the broker's clock.",
               at_least(0), "log.message.timestamp.before.max.ms"),
        _topic("message.timestamp.difference.max.ms", _L, LONG_MAX,
               "[Deprecated] Largest difference allowed between a CreateTime timestamp and the clock.",
               at_least(0), "log.message.timestamp.difference.max.ms"),
        _topic("message.timestamp.type", _S, "CreateTime",
               "Whether record timestamps are the producer's (CreateTime) or the broker's (LogAppendTime).",
               one_of(*_TIMESTAMP_TYPES), "log.message.timestamp.type"),
        _topic("min.cleanable.dirty.ratio", _D, 0.5,
               "Fraction of a log that must be uncompacted before the cleaner compacts it.",
               between(0, 1), "log.cleaner.min.cleanable.ratio"),
        _topic("min.compaction.lag.ms", _L, 0, "Shortest time a record stays uncompacted.",
               at_least(0), "log.cleaner.min.compaction.lag.ms"),
        _topic("min.insync.replicas", _I, 1,
               "Replicas that must acknowledge an acks=all write for it to succeed.",
               at_least(1), "min.insync.replicas"),
        _topic("preallocate", _B, False, "Whether segment files are preallocated on disk.",
               None, "log.preallocate"),
        _topic("remote.log.copy.disable", _B, False,
               "Stop copying this tiered topic's segments to remote storage.", None),
        _topic("remote.log.delete.on.disable", _B, False,
               "Delete remote data when tiered storage is turned off for this topic.", None),
        _topic("remote.storage.enable", _B, False, "Enable tiered storage for this topic.", None),
        _topic("retention.bytes", _L, -1,
               "Size a partition may grow to before old segments are deleted; -1 means no limit.",
               None, "log.retention.bytes"),
        _topic("retention.ms", _L, 7 * 24 * _HOUR_MS,
               "How long records are kept before old segments are deleted; -1 means forever.",
               at_least(-1), "log.retention.ms",
               Synonym("log.retention.minutes", _retention_scaled(_MINUTE_MS)),
               Synonym("log.retention.hours", _retention_scaled(_HOUR_MS))),
        _topic("segment.bytes", _I, 1024**3, "Size of a log segment file.",
               at_least(_MIN_SEGMENT_BYTES), "log.segment.bytes"),
        ConfigDef("internal.segment.bytes", _I, None, "Test-only segment size overriding segment.bytes.",
                  at_least(1), internal=True),
        _topic("segment.index.bytes", _I, 10 * 1024**2, "Size of the offset index of a segment.",
               at_least(4), "log.index.size.max.bytes"),
        _topic("segment.jitter.ms", _L, 0, "Random jitter subtracted from the segment roll time.",
               at_least(0), "log.roll.jitter.ms", Synonym("log.roll.jitter.hours", _scaled(_HOUR_MS))),
        _topic("segment.ms", _L, 7 * 24 * _HOUR_MS, "Time after which a segment is rolled even if not full.",
               at_least(1), "log.roll.ms", Synonym("log.roll.hours", _scaled(_HOUR_MS))),
        _topic("unclean.leader.election.enable", _B, False,
               "Whether a replica outside the ISR may become leader, at the risk of losing data.",
               None, "unclean.leader.election.enable"),
    )
}  # fmt: skip


def _broker(
    name: str,
    config_type: ConfigType,
    default: Any,
    doc: str,
    validator: Validator | None = None,
    *,
    dynamic: bool = False,
) -> ConfigDef:
    return ConfigDef(name, config_type, default, doc, validator, dynamic=dynamic)


#: The broker configs Strom understands. Which are dynamic follows Kafka, except the listener configs: Strom
#: cannot rebind or re-advertise at runtime, so they are read-only.
BROKER_CONFIGS: dict[str, ConfigDef] = {
    definition.name: definition
    for definition in (
        # identity and roles
        _broker("node.id", _I, -1, "Id of this node; the same as broker.id."),
        _broker("broker.id", _I, -1, "Id of this broker; the same as node.id."),
        _broker("broker.rack", _S, None, "Rack of the broker, for rack-aware replica placement."),
        _broker("process.roles", _LI, [], "Roles of this process: broker, controller or both.",
                each_one_of("broker", "controller")),
        # network
        _broker("listeners", _S, "PLAINTEXT://:9092", "Comma-separated listener URIs the broker binds."),
        _broker("advertised.listeners", _S, None, "Listener URIs given to clients; default: listeners."),
        _broker("listener.security.protocol.map", _S, _SECURITY_PROTOCOL_MAP,
                "Security protocol of each listener name."),
        _broker("inter.broker.listener.name", _S, None, "Listener brokers use to talk to each other."),
        _broker("controller.listener.names", _S, None, "Listener names used by controllers."),
        _broker("controller.quorum.voters", _LI, [], "The controller quorum, as id@host:port entries."),
        _broker("socket.request.max.bytes", _I, 100 * 1024**2, "Largest request the broker accepts.",
                at_least(1)),
        _broker("socket.send.buffer.bytes", _I, 100 * 1024, "SO_SNDBUF of sockets; -1: OS default."),
        _broker("socket.receive.buffer.bytes", _I, 100 * 1024,
                "SO_RCVBUF of client sockets; -1 for OS default."),
        _broker("connections.max.idle.ms", _L, 10 * _MINUTE_MS, "Idle connections are closed after this."),
        _broker("max.connections", _I, INT_MAX, "Most connections the broker accepts.", at_least(0),
                dynamic=True),
        _broker("max.connections.per.ip", _I, INT_MAX, "Most connections from one address.", at_least(0),
                dynamic=True),
        _broker("max.connections.per.ip.overrides", _S, "", "Per-host overrides of max.connections.per.ip.",
                dynamic=True),
        _broker("queued.max.requests", _I, 500, "Requests queued before the network layer stops reading.",
                at_least(1)),
        _broker("num.network.threads", _I, 3, "Threads serving network requests.", at_least(1), dynamic=True),
        _broker("num.io.threads", _I, 8, "Threads processing requests.", at_least(1), dynamic=True),
        _broker("background.threads", _I, 10, "Threads for background work.", at_least(1), dynamic=True),
        _broker("fetch.max.bytes", _I, 55 * 1024**2, "Most bytes returned by one fetch.", at_least(1024)),
        # topics
        _broker("num.partitions", _I, 1, "Default number of partitions of a new topic.", at_least(1)),
        _broker("default.replication.factor", _I, 1, "Default replication factor of a new topic."),
        _broker("auto.create.topics.enable", _B, True, "Create topics on first use by a client."),
        _broker("delete.topic.enable", _B, True, "Whether topics may be deleted."),
        # log storage
        _broker("log.dirs", _S, None, "Comma-separated data directories; default: log.dir."),
        _broker("log.dir", _S, "/tmp/kafka-logs", "Data directory, used when log.dirs is not set."),
        _broker("metadata.log.dir", _S, None,
                "Directory of the metadata log; default: the first of log.dirs."),
        _broker("num.recovery.threads.per.data.dir", _I, 1, "Threads recovering logs at startup.",
                at_least(1), dynamic=True),
        _broker("log.segment.bytes", _I, 1024**3, "Size of a log segment file.", at_least(_MIN_SEGMENT_BYTES),
                dynamic=True),
        _broker("log.roll.ms", _L, None, "Time after which a segment is rolled; default: log.roll.hours.",
                dynamic=True),
        _broker("log.roll.hours", _I, 168, "Time in hours after which a segment is rolled.", at_least(1)),
        _broker("log.roll.jitter.ms", _L, None, "Jitter subtracted from the roll time; default: hours form.",
                dynamic=True),
        _broker("log.roll.jitter.hours", _I, 0, "Roll time jitter, in hours.", at_least(0)),
        _broker("log.retention.ms", _L, None,
                "How long records are kept; -1 means forever; default: log.retention.minutes.", dynamic=True),
        _broker("log.retention.minutes", _I, None,
                "How long records are kept, in minutes; default: log.retention.hours."),
        _broker("log.retention.hours", _I, 168, "How long records are kept, in hours."),
        _broker("log.retention.bytes", _L, -1, "Size limit of a partition; -1 means no limit.", dynamic=True),
        _broker("log.retention.check.interval.ms", _L, 5 * _MINUTE_MS,
                "How often logs are checked for segments to delete.", at_least(1)),
        _broker("log.cleanup.policy", _LI, ["delete"], "Default cleanup policy of topics.",
                _cleanup_policies, dynamic=True),
        _broker("log.index.size.max.bytes", _I, 10 * 1024**2, "Size of a segment's offset index.",
                at_least(4), dynamic=True),
        _broker("log.index.interval.bytes", _I, 4096, "Bytes of log between offset index entries.",
                at_least(0), dynamic=True),
        _broker("log.flush.interval.messages", _L, LONG_MAX, "Messages after which a log is fsynced.",
                at_least(1), dynamic=True),
        _broker("log.flush.interval.ms", _L, _FLUSH_INTERVAL_MS,
                "Time after which a log is fsynced in the background (Strom: 1 s, Kafka: never).",
                dynamic=True),
        _broker("log.flush.scheduler.interval.ms", _L, LONG_MAX, "How often logs are checked for flushing."),
        _broker("log.flush.offset.checkpoint.interval.ms", _I, 60000,
                "How often the recovery point is checkpointed.", at_least(0)),
        _broker("log.segment.delete.delay.ms", _L, 60000, "Delay before a deleted segment leaves the disk.",
                at_least(0), dynamic=True),
        _broker("log.preallocate", _B, False, "Preallocate segment files.", dynamic=True),
        _broker("log.message.format.version", _S, "3.0-IV1", "[Deprecated] Message format version.",
                _metadata_version),
        _broker("log.message.timestamp.type", _S, "CreateTime", "Default timestamp type of topics.",
                one_of(*_TIMESTAMP_TYPES), dynamic=True),
        _broker("log.message.timestamp.difference.max.ms", _L, LONG_MAX,
                "[Deprecated] Largest timestamp difference accepted.", at_least(0), dynamic=True),
        _broker("log.message.timestamp.before.max.ms", _L, LONG_MAX,
                "How far a timestamp may be behind the broker's clock.", at_least(0), dynamic=True),
        _broker("log.message.timestamp.after.max.ms", _L, LONG_MAX,
                "How far a timestamp may be ahead of the broker's clock.", at_least(0), dynamic=True),
        _broker("log.message.downconversion.enable", _B, True, "Allow down-converting for old consumers.",
                dynamic=True),
        _broker("log.local.retention.ms", _L, -2, "Local retention time of tiered topics.", at_least(-2),
                dynamic=True),
        _broker("log.local.retention.bytes", _L, -2, "Local retention size of tiered topics.", at_least(-2),
                dynamic=True),
        _broker("log.cleaner.enable", _B, True, "Run the log cleaner for compacted topics."),
        _broker("log.cleaner.threads", _I, 1, "Worker processes compacting logs (read at start-up).",
                at_least(0)),
        _broker("log.cleaner.dedupe.buffer.size", _L, 128 * 1024 * 1024,
                "Memory for the cleaners' key-to-offset maps, shared by the workers.", at_least(0)),
        _broker("log.cleaner.delete.retention.ms", _L, 24 * _HOUR_MS, "How long tombstones are kept.",
                at_least(0), dynamic=True),
        _broker("log.cleaner.min.compaction.lag.ms", _L, 0, "Shortest time a record stays uncompacted.",
                at_least(0), dynamic=True),
        _broker("log.cleaner.max.compaction.lag.ms", _L, LONG_MAX,
                "Longest time a record stays ineligible for compaction.", at_least(1), dynamic=True),
        _broker("log.cleaner.min.cleanable.ratio", _D, 0.5, "Dirty fraction that triggers compaction.",
                between(0, 1), dynamic=True),
        _broker("message.max.bytes", _I, 1048588, "Largest record batch accepted.", at_least(0),
                dynamic=True),
        _broker("compression.type", _S, "producer", "Default compression codec of topics.",
                one_of(*_COMPRESSION_TYPES), dynamic=True),
        _broker("compression.gzip.level", _I, -1, "Default gzip level.", _gzip_level, dynamic=True),
        _broker("compression.lz4.level", _I, 9, "Default lz4 level.", between(1, 17), dynamic=True),
        _broker("compression.zstd.level", _I, 3, "Default zstd level.", between(-131072, 22), dynamic=True),
        _broker("min.insync.replicas", _I, 1, "Default min.insync.replicas of topics.", at_least(1),
                dynamic=True),
        _broker("unclean.leader.election.enable", _B, False, "Default unclean leader election setting.",
                dynamic=True),
        # consumer groups
        _broker("offsets.topic.num.partitions", _I, 50, "Partitions of __consumer_offsets.", at_least(1)),
        _broker("offsets.topic.replication.factor", _H, 3, "Replication factor of __consumer_offsets.",
                at_least(1)),
        _broker("offsets.topic.segment.bytes", _I, 100 * 1024**2, "Segment size of __consumer_offsets.",
                at_least(1)),
        _broker("offsets.retention.minutes", _I, 7 * 24 * 60, "How long offsets of empty groups are kept.",
                at_least(1)),
        _broker("offsets.retention.check.interval.ms", _L, 600000, "How often stale offsets are looked for.",
                at_least(1)),
        _broker("offset.metadata.max.bytes", _I, 4096, "Largest metadata string of an offset commit."),
        _broker("group.initial.rebalance.delay.ms", _I, 3000,
                "Wait for more members before a new group's first rebalance."),
        _broker("group.min.session.timeout.ms", _I, 6000, "Shortest session timeout a member may ask for."),
        _broker("group.max.session.timeout.ms", _I, 1800000, "Longest session timeout a member may ask for."),
        _broker("group.max.size", _I, INT_MAX, "Most members of one consumer group.", at_least(1)),
        # consumer groups of the next-generation protocol (KIP-848)
        _broker("group.consumer.session.timeout.ms", _I, 45000,
                "Session timeout of consumer-protocol members.", at_least(1)),
        _broker("group.consumer.min.session.timeout.ms", _I, 45000,
                "Shortest session timeout a consumer-protocol group may use.", at_least(1)),
        _broker("group.consumer.max.session.timeout.ms", _I, 60000,
                "Longest session timeout a consumer-protocol group may use.", at_least(1)),
        _broker("group.consumer.heartbeat.interval.ms", _I, 5000,
                "Heartbeat interval given to consumer-protocol members.", at_least(1)),
        _broker("group.consumer.min.heartbeat.interval.ms", _I, 5000,
                "Shortest heartbeat interval a consumer-protocol group may use.", at_least(1)),
        _broker("group.consumer.max.heartbeat.interval.ms", _I, 15000,
                "Longest heartbeat interval a consumer-protocol group may use.", at_least(1)),
        _broker("group.consumer.max.size", _I, INT_MAX, "Most members of one consumer-protocol group.",
                at_least(1)),
        _broker("group.consumer.assignors", _LI, ["uniform", "range"],
                "Server-side assignors; the first is the default.", each_one_of("uniform", "range")),
        # transactions and idempotence
        _broker("transaction.state.log.num.partitions", _I, 50, "Partitions of __transaction_state.",
                at_least(1)),
        _broker("transaction.state.log.replication.factor", _H, 3, "Replication of __transaction_state.",
                at_least(1)),
        _broker("transaction.state.log.min.isr", _I, 2, "min.insync.replicas of __transaction_state.",
                at_least(1)),
        _broker("transaction.state.log.segment.bytes", _I, 100 * 1024**2, "Segment size of the txn log.",
                at_least(1)),
        _broker("transaction.max.timeout.ms", _I, 15 * _MINUTE_MS, "Longest transaction timeout allowed.",
                at_least(1)),
        _broker("transaction.abort.timed.out.transaction.cleanup.interval.ms", _I, 10_000,
                "How often open transactions are checked against their timeout.", at_least(1)),
        _broker("transaction.remove.expired.transaction.cleanup.interval.ms", _I, _HOUR_MS,
                "How often transactional ids idle past transactional.id.expiration.ms are removed.",
                at_least(1)),
        _broker("transactional.id.expiration.ms", _I, 7 * 24 * _HOUR_MS,
                "Idle time after which a transactional id expires.", at_least(1)),
        _broker("producer.id.expiration.ms", _I, 24 * _HOUR_MS, "Idle time before a producer id expires.",
                at_least(1), dynamic=True),
        _broker("transaction.partition.verification.enable", _B, True,
                "Check that a partition was added to a transaction before writing to it.", dynamic=True),
    )
}  # fmt: skip

#: Broker configs standing for one setting in several units; the first set one wins (Kafka's order).
_BROKER_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("log.roll.ms", "log.roll.hours"),
    ("log.roll.jitter.ms", "log.roll.jitter.hours"),
    ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
)


def broker_synonyms(name: str) -> tuple[str, ...]:
    """Broker configs that are the same setting as name, highest precedence first (name included)."""
    if name == "log.flush.interval.ms":
        return ("log.flush.interval.ms", "log.flush.scheduler.interval.ms")
    for group in _BROKER_SYNONYM_GROUPS:
        if name in group:
            return group
    return (name,)


# ---------------------------------------------------------------------------------------------- validation
def validate_topic_config(name: str, value: str | None) -> None:
    """Raise ConfigError(INVALID_CONFIG) unless name is a topic config and value a valid value for it."""
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        raise ConfigError(ErrorCode.INVALID_CONFIG, f"Unknown topic config name: {name}")
    if value is None:
        raise ConfigError(ErrorCode.INVALID_CONFIG, f"Null value not supported for topic configs: {name}")
    definition.parse(value)


def validate_topic_configs(
    overrides: Mapping[str, str],
    dynamic_broker: Mapping[str, str],
    static_broker: Mapping[str, str],
    *,
    dynamic_default: Mapping[str, str] | None = None,
) -> None:
    """Validate a topic's whole override set, including rules that relate several configs."""
    for name, value in overrides.items():
        validate_topic_config(name, value)
    effective = effective_topic_properties(
        overrides, dynamic_broker, static_broker, dynamic_default=dynamic_default
    )
    min_lag = TOPIC_CONFIGS["min.compaction.lag.ms"].parse(effective["min.compaction.lag.ms"])
    max_lag = TOPIC_CONFIGS["max.compaction.lag.ms"].parse(effective["max.compaction.lag.ms"])
    if min_lag > max_lag:
        raise ConfigError(
            ErrorCode.INVALID_CONFIG,
            f"conflict topic config setting min.compaction.lag.ms ({min_lag}) > "
            f"max.compaction.lag.ms ({max_lag})",
        )
    if TOPIC_CONFIGS["remote.storage.enable"].parse(effective["remote.storage.enable"]):
        raise ConfigError(
            ErrorCode.INVALID_CONFIG,
            "Tiered Storage functionality is disabled in the broker. "
            "Topic cannot be configured with remote log storage.",
        )


def validate_broker_config(name: str, value: str) -> None:
    """Raise ConfigError(INVALID_CONFIG) if value is not valid for a known broker config.

    Unknown names pass: like Kafka, a broker accepts custom configs (plugins read them).
    """
    definition = BROKER_CONFIGS.get(name)
    if definition is not None:
        definition.parse(value)


def validate_dynamic_broker_configs(configs: Mapping[str, str]) -> None:
    """Validate the dynamic config set of a broker or of the cluster-wide default, as Kafka does.

    Errors are INVALID_REQUEST, which is what Kafka answers for rejected broker config changes.
    """
    static_only = sorted(n for n in configs if n in BROKER_CONFIGS and not BROKER_CONFIGS[n].dynamic)
    if static_only:
        raise ConfigError(
            ErrorCode.INVALID_REQUEST,
            f"Cannot update these configs dynamically: Set({', '.join(static_only)})",
        )
    for name, value in configs.items():
        try:
            validate_broker_config(name, value)
        except ConfigError as exc:
            raise ConfigError(ErrorCode.INVALID_REQUEST, exc.message or "") from None


# ---------------------------------------------------------------------------------------------- resolution
_BROKER_LEVELS = (
    ConfigSource.DYNAMIC_BROKER_CONFIG,
    ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG,
    ConfigSource.STATIC_BROKER_CONFIG,
)


def _broker_chain(
    names: Iterable[str],
    dynamic_broker: Mapping[str, str],
    dynamic_default: Mapping[str, str],
    static_broker: Mapping[str, str],
) -> list[ConfigSynonym]:
    """Every place the broker configs names are set, by precedence: level first, then name order."""
    names = tuple(names)
    chain: list[ConfigSynonym] = []
    for source, layer in zip(_BROKER_LEVELS, (dynamic_broker, dynamic_default, static_broker), strict=True):
        chain.extend(
            ConfigSynonym(name, layer[name], source) for name in names if layer.get(name) is not None
        )
    for name in names:
        definition = BROKER_CONFIGS.get(name)
        if definition is not None and definition.default is not None:
            chain.append(ConfigSynonym(name, definition.default_string, ConfigSource.DEFAULT_CONFIG))
    return chain


def _canonical_or_raw(definition: ConfigDef, raw: str) -> str:
    try:
        return definition.canonical(raw)
    except (ConfigError, ValueError):
        return raw


def resolve_topic_config(
    name: str,
    overrides: Mapping[str, str],
    dynamic_broker: Mapping[str, str],
    static_broker: Mapping[str, str],
    *,
    dynamic_default: Mapping[str, str] | None = None,
) -> ConfigEntry:
    """The effective value of one topic config, where it comes from, and its synonym chain."""
    definition = TOPIC_CONFIGS[name]
    chain: list[ConfigSynonym] = []
    override = overrides.get(name)
    if override is not None:
        chain.append(
            ConfigSynonym(name, _canonical_or_raw(definition, override), ConfigSource.DYNAMIC_TOPIC_CONFIG)
        )
    synonyms = {synonym.name: synonym for synonym in definition.synonyms}
    chain.extend(_broker_chain(synonyms, dynamic_broker, dynamic_default or {}, static_broker))
    if not chain:
        value, source = definition.default_string, ConfigSource.DEFAULT_CONFIG
    elif chain[0].source is ConfigSource.DYNAMIC_TOPIC_CONFIG:
        value, source = chain[0].value, chain[0].source
    else:
        head = chain[0]
        assert head.value is not None
        try:
            value = _canonical_or_raw(definition, synonyms[head.name].convert(head.value))
        except ValueError:
            value = head.value
        source = head.source
    return ConfigEntry(
        name=name,
        value=None if definition.sensitive else value,
        source=source,
        is_default=source is ConfigSource.DEFAULT_CONFIG,
        read_only=False,
        is_sensitive=definition.sensitive,
        config_type=definition.type,
        synonyms=chain,
        documentation=definition.doc,
    )


def resolve_topic_configs(
    overrides: Mapping[str, str],
    dynamic_broker: Mapping[str, str],
    static_broker: Mapping[str, str],
    *,
    dynamic_default: Mapping[str, str] | None = None,
    names: Collection[str] | None = None,
) -> list[ConfigEntry]:
    """Every topic config (or those in names that exist), by name, as DescribeConfigs reports them.

    overrides are the topic's dynamic configs, dynamic_broker this broker's dynamic configs, dynamic_default
    the cluster-wide dynamic broker defaults and static_broker the broker's server.properties values.
    """
    described = [name for name, definition in TOPIC_CONFIGS.items() if not definition.internal]
    wanted = sorted(described if not names else set(names).intersection(described))
    return [
        resolve_topic_config(name, overrides, dynamic_broker, static_broker, dynamic_default=dynamic_default)
        for name in wanted
    ]


def effective_topic_properties(
    overrides: Mapping[str, str],
    dynamic_broker: Mapping[str, str],
    static_broker: Mapping[str, str],
    *,
    dynamic_default: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The value of every topic config for a topic, canonically rendered: what its partition logs obey.

    Internal configs are included only when set.
    """
    entries = (
        resolve_topic_config(name, overrides, dynamic_broker, static_broker, dynamic_default=dynamic_default)
        for name in TOPIC_CONFIGS
    )
    return {entry.name: entry.value for entry in entries if entry.value is not None}


def resolve_broker_configs(
    dynamic_broker: Mapping[str, str],
    static_broker: Mapping[str, str],
    *,
    dynamic_default: Mapping[str, str] | None = None,
    per_broker: bool = True,
    names: Collection[str] | None = None,
) -> list[ConfigEntry]:
    """Broker configs as DescribeConfigs reports them, by name.

    per_broker describes one broker (every known config plus any custom ones that are set); otherwise the
    cluster-wide default resource is described, which lists only the configs set as dynamic defaults.
    """
    dynamic_default = dynamic_default or {}
    if per_broker:
        candidates = set(BROKER_CONFIGS) | set(static_broker) | set(dynamic_default) | set(dynamic_broker)
    else:
        candidates = set(dynamic_default)
    if names:
        candidates &= set(names)
    entries = []
    for name in sorted(candidates):
        definition = BROKER_CONFIGS.get(name)
        chain = _broker_chain(broker_synonyms(name), dynamic_broker, dynamic_default, static_broker)
        # Synonyms of higher precedence but another name (log.retention.ms for log.retention.hours) are not
        # where this config's own value comes from; Kafka leaves them out of its chain.
        while chain and chain[0].name != name:
            chain.pop(0)
        if not per_broker:
            chain = [s for s in chain if s.source is ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG]
        source = chain[0].source if chain else ConfigSource.DEFAULT_CONFIG
        if chain and chain[0].value is not None:
            value: str | None = (
                chain[0].value if definition is None else _canonical_or_raw(definition, chain[0].value)
            )
        else:
            value = None if definition is None else definition.default_string
        sensitive = definition is None or definition.sensitive
        entries.append(
            ConfigEntry(
                name=name,
                value=None if sensitive else value,
                source=source,
                is_default=source is ConfigSource.DEFAULT_CONFIG,
                read_only=definition is None or not definition.dynamic,
                is_sensitive=sensitive,
                config_type=ConfigType.UNKNOWN if definition is None else definition.type,
                synonyms=[s._replace(value=None) for s in chain] if sensitive else chain,
                documentation=None if definition is None else definition.doc,
            )
        )
    return entries
