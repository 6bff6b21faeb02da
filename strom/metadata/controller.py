"""The controller: validates metadata requests, turns them into record batches, and commits them.

Committing a batch means appending it to the metadata log (durably), applying it to the image, then telling
listeners. The controller is sans-I/O apart from the log append: handlers call it with request data and
get per-item results back, with Kafka's error codes and, where Kafka has them, its error messages.

A single node is a quorum of one: this controller is the only writer of the log.
"""

from __future__ import annotations

import base64
import logging
import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from strom.metadata.configs import (
    BROKER_CONFIGS,
    TOPIC_CONFIGS,
    AlterConfigOp,
    ConfigEntry,
    ConfigResourceType,
    ConfigType,
    effective_topic_properties,
    resolve_broker_configs,
    resolve_topic_configs,
    validate_dynamic_broker_configs,
    validate_topic_configs,
)
from strom.metadata.image import MetadataImage, collision_key
from strom.metadata.log import MetadataLog, MetadataStorageError
from strom.metadata.properties import BrokerConfig
from strom.metadata.records import (
    BROKER_RESOURCE,
    TOPIC_RESOURCE,
    ConfigRecord,
    MetadataRecord,
    PartitionRecord,
    ProducerIdsRecord,
    RegisterBrokerRecord,
    RemoveTopicRecord,
    TopicRecord,
)
from strom.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

#: Kafka refuses a single operation that would need more records than this.
MAX_RECORDS_PER_OPERATION = 10000
MAX_TOPIC_NAME_LENGTH = 249
NO_TOPIC_ID = uuid.UUID(int=0)
LONG_MAX = 2**63 - 1

MetadataListener = Callable[[Sequence[MetadataRecord]], None]
"""Called with each committed batch, after the image has applied it."""

_NO_CONFIGS: Mapping[str, str | None] = MappingProxyType({})
_TOO_LARGE = "Unable to perform excessively large batch operation."


# ---------------------------------------------------------------------------------------------- requests
class NewTopic(NamedTuple):
    """A topic to create. -1 means the broker default; assignments map partition index -> replica ids
    (a mapping, or (index, replicas) pairs, which may repeat an index and so be rejected like Kafka does)."""

    name: str
    num_partitions: int = -1
    replication_factor: int = -1
    assignments: Mapping[int, Sequence[int]] | Sequence[tuple[int, Sequence[int]]] = ()
    configs: Mapping[str, str | None] = _NO_CONFIGS


class AlterConfigsResource(NamedTuple):
    """Legacy AlterConfigs: the resource's complete new set of dynamic configs."""

    resource_type: int
    resource_name: str
    configs: Mapping[str, str | None]


class ConfigOp(NamedTuple):
    name: str
    op: int  # AlterConfigOp
    value: str | None


class IncrementalAlterConfigsResource(NamedTuple):
    resource_type: int
    resource_name: str
    ops: Sequence[ConfigOp]


_Resource = TypeVar("_Resource", AlterConfigsResource, IncrementalAlterConfigsResource)


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class CreateTopicResult:
    name: str
    error_code: ErrorCode
    error_message: str | None = None
    topic_id: uuid.UUID = NO_TOPIC_ID
    num_partitions: int = -1
    replication_factor: int = -1
    configs: list[ConfigEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeleteTopicResult:
    name: str | None
    topic_id: uuid.UUID
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class CreatePartitionsResult:
    name: str
    error_code: ErrorCode
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class AlterConfigsResult:
    resource_type: int
    resource_name: str
    error_code: ErrorCode
    error_message: str | None = None


_Result = TypeVar("_Result", CreateTopicResult, DeleteTopicResult, CreatePartitionsResult, AlterConfigsResult)


@dataclass(frozen=True, slots=True)
class DescribeConfigsResult:
    resource_type: int
    resource_name: str
    error_code: ErrorCode
    error_message: str | None = None
    configs: list[ConfigEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProducerIdBlock:
    """Producer ids first_id .. first_id + size - 1, now owned by one broker."""

    broker_id: int
    first_id: int
    size: int


# ---------------------------------------------------------------------------------------------- helpers
def topic_name_error(name: str) -> str | None:
    """Why name is not a legal topic name (Kafka's rules and wording), or None if it is."""
    if not name:
        reason = "the empty string is not allowed"
    elif name in (".", ".."):
        reason = f"'{name}' is not allowed"
    elif len(name) > MAX_TOPIC_NAME_LENGTH:
        reason = f"the length of '{name}' is longer than the max allowed length {MAX_TOPIC_NAME_LENGTH}"
    elif not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        reason = f"'{name}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'"
    else:
        return None
    return f"Topic name is invalid: {reason}"


def new_topic_id() -> uuid.UUID:
    """A random topic id; like Kafka, never one whose base64 form starts with '-' (it reads as a CLI flag)."""
    while True:
        topic_id = uuid.uuid4()
        if not base64.urlsafe_b64encode(topic_id.bytes).startswith(b"-"):
            return topic_id


def assign_replicas(
    brokers: Sequence[int],
    num_partitions: int,
    replication_factor: int,
    *,
    first_partition: int = 0,
    rng: random.Random,
) -> list[list[int]]:
    """Kafka's round-robin replica assignment: leaders spread from a random broker, followers shifted.

    The caller has checked 0 < replication_factor <= len(brokers).
    """
    ordered = sorted(brokers)
    count = len(ordered)
    start = rng.randrange(count)
    shift = rng.randrange(count)
    assignment = []
    for partition in range(first_partition, first_partition + num_partitions):
        if partition > 0 and partition % count == 0:
            shift += 1
        first = (partition + start) % count
        replicas = [ordered[first]]
        for follower in range(replication_factor - 1):
            replicas.append(ordered[(first + 1 + (shift + follower) % (count - 1)) % count])
        assignment.append(replicas)
    return assignment


def _assignment_error(
    replicas: Sequence[int], registered: Collection[int], expected_factor: int | None
) -> str | None:
    """Why a manual replica list is unacceptable (Kafka's wording), or None."""
    if not replicas:
        return "The manual partition assignment includes an empty replica list."
    previous = None
    for broker_id in sorted(replicas):
        if broker_id not in registered:
            return (
                f"The manual partition assignment includes broker {broker_id}, "
                "but no such broker is registered."
            )
        if broker_id == previous:
            return f"The manual partition assignment includes the broker {broker_id} more than once."
        previous = broker_id
    if expected_factor is not None and len(replicas) != expected_factor:
        return (
            f"The manual partition assignment includes a partition with {len(replicas)} replica(s), "
            f"but this is not consistent with previous partitions, which have {expected_factor} replica(s)."
        )
    return None


# ---------------------------------------------------------------------------------------------- controller
class Controller:
    """The only writer of metadata: validates, appends to the log, applies to the image, notifies."""

    def __init__(
        self,
        image: MetadataImage,
        log: MetadataLog,
        static_broker_config: BrokerConfig,
        node_id: int,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.image = image
        self.log = log
        self.config = static_broker_config
        self.node_id = node_id
        self._rng = rng or random.Random()
        self._listeners: list[MetadataListener] = []

    # ------------------------------------------------------------------ listeners and commits
    def add_listener(self, listener: MetadataListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: MetadataListener) -> None:
        self._listeners.remove(listener)

    def _commit(self, records: list[MetadataRecord]) -> None:
        last_offset = self.log.append(records)
        first_offset = last_offset - len(records) + 1
        for index, record in enumerate(records):
            self.image.apply(first_offset + index, record)
        for listener in list(self._listeners):
            try:
                listener(records)
            except Exception:  # the batch is committed; a failing listener must not undo the response
                log.exception("metadata listener %r failed", listener)

    def _commit_all_or_fail(self, records: list[MetadataRecord], results: list[_Result]) -> list[_Result]:
        """Commit the records of a request; when the metadata log cannot take them (a full disk), none of
        the request's changes happened: each result that was to succeed carries the storage error instead."""
        try:
            self._commit(records)
        except MetadataStorageError as exc:
            return [
                replace(r, error_code=exc.code, error_message=exc.message)
                if r.error_code is ErrorCode.NONE
                else r
                for r in results
            ]
        return results

    # ------------------------------------------------------------------ config layers
    def dynamic_broker_configs(self) -> Mapping[str, str]:
        return self.image.broker_configs(self.node_id)

    def dynamic_default_configs(self) -> Mapping[str, str]:
        return self.image.broker_configs("")

    def topic_properties(self, topic: str | None) -> dict[str, str]:
        """Every topic config's effective value for a topic (None: a topic without overrides)."""
        return effective_topic_properties(
            self.image.topic_configs(topic) if topic is not None else {},
            self.dynamic_broker_configs(),
            self.config,
            dynamic_default=self.dynamic_default_configs(),
        )

    def _validate_topic_configs(self, overrides: Mapping[str, str]) -> None:
        validate_topic_configs(
            overrides,
            self.dynamic_broker_configs(),
            self.config,
            dynamic_default=self.dynamic_default_configs(),
        )

    # ------------------------------------------------------------------ topics
    @staticmethod
    def new_topic(
        name: str,
        num_partitions: int = -1,
        replication_factor: int = -1,
        assignments: Mapping[int, Sequence[int]] | None = None,
        configs: Mapping[str, str | None] | None = None,
    ) -> NewTopic:
        return NewTopic(name, num_partitions, replication_factor, assignments or {}, configs or _NO_CONFIGS)

    def create_topics(
        self, topics: Sequence[NewTopic], validate_only: bool = False
    ) -> list[CreateTopicResult]:
        """Create topics (or, validate_only, check they could be created); one result per request entry."""
        name_counts = Counter(topic.name for topic in topics)
        records: list[MetadataRecord] = []
        results: list[CreateTopicResult] = []
        created: dict[str, str] = {}  # collision key -> name, for topics earlier in this request
        for topic in topics:
            if name_counts[topic.name] > 1:
                results.append(
                    CreateTopicResult(topic.name, ErrorCode.INVALID_REQUEST, "Duplicate topic name.")
                )
                continue
            try:
                result, topic_records = self._create_topic(topic, created, len(records))
            except KafkaError as rejected:
                results.append(CreateTopicResult(topic.name, rejected.code, rejected.message))
                continue
            created[collision_key(topic.name)] = topic.name
            records.extend(topic_records)
            results.append(result)
        if records and not validate_only:
            return self._commit_all_or_fail(records, results)
        return results

    def _create_topic(
        self, topic: NewTopic, created: Mapping[str, str], records_so_far: int
    ) -> tuple[CreateTopicResult, list[MetadataRecord]]:
        name = topic.name
        name_error = topic_name_error(name)
        if name_error is not None:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, name_error)
        if self.image.topic(name) is not None:
            raise KafkaError(ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        colliding = self.image.colliding_topic(name) or created.get(collision_key(name))
        if colliding is not None:
            raise KafkaError(
                ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic '{name}' collides with existing topic: {colliding}"
            )

        null_configs = [key for key, value in topic.configs.items() if value is None]
        if null_configs:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                "Null value not supported for topic configs: " + ",".join(null_configs),
            )
        configs = {key: value for key, value in topic.configs.items() if value is not None}
        self._validate_topic_configs(configs)  # raises ConfigError, a KafkaError
        assignment = self._new_topic_assignment(topic, records_so_far + len(configs) + 1)
        topic_id = new_topic_id()
        records: list[MetadataRecord] = [TopicRecord(name, topic_id)]
        records.extend(
            ConfigRecord(TOPIC_RESOURCE, name, key, value) for key, value in sorted(configs.items())
        )
        records.extend(
            PartitionRecord(topic_id, index, list(replicas), list(replicas), replicas[0])
            for index, replicas in enumerate(assignment)
        )
        entries = resolve_topic_configs(
            configs,
            self.dynamic_broker_configs(),
            self.config,
            dynamic_default=self.dynamic_default_configs(),
        )
        result = CreateTopicResult(
            name=name,
            error_code=ErrorCode.NONE,
            topic_id=topic_id,
            num_partitions=len(assignment),
            replication_factor=len(assignment[0]),
            configs=entries,
        )
        return result, records

    def _new_topic_assignment(self, topic: NewTopic, records_so_far: int) -> list[list[int]]:
        """Replica lists of the new topic's partitions, in partition order."""
        if topic.assignments:
            return self._manual_assignment(topic, records_so_far)
        if topic.replication_factor < -1 or topic.replication_factor == 0:
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            )
        if topic.num_partitions < -1 or topic.num_partitions == 0:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS, "Number of partitions was set to an invalid non-positive value."
            )
        num_partitions = (
            self.config.get_int("num.partitions") if topic.num_partitions == -1 else topic.num_partitions
        )
        factor = (
            self.config.get_int("default.replication.factor")
            if topic.replication_factor == -1
            else topic.replication_factor
        )
        if records_so_far + num_partitions > MAX_RECORDS_PER_OPERATION:
            raise KafkaError(ErrorCode.POLICY_VIOLATION, _TOO_LARGE)
        return self._place(num_partitions, factor, first_partition=0)

    def _manual_assignment(self, topic: NewTopic, records_so_far: int) -> list[list[int]]:
        if topic.replication_factor != -1:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            )
        if topic.num_partitions != -1:
            raise KafkaError(
                ErrorCode.INVALID_REQUEST,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            )
        pairs = topic.assignments.items() if isinstance(topic.assignments, Mapping) else topic.assignments
        if records_so_far + len(pairs) > MAX_RECORDS_PER_OPERATION:
            raise KafkaError(ErrorCode.POLICY_VIOLATION, _TOO_LARGE)
        registered = self._live_brokers()
        by_partition: dict[int, list[int]] = {}
        factor: int | None = None
        for index, replicas in pairs:
            if index in by_partition:
                raise KafkaError(
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                    f"Found multiple manual partition assignments for partition {index}",
                )
            problem = _assignment_error(replicas, registered, factor)
            if problem is not None:
                raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, problem)
            factor = len(replicas)
            by_partition[index] = list(replicas)
        if sorted(by_partition) != list(range(len(by_partition))):
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                "partitions should be a consecutive 0-based integer sequence",
            )
        return [by_partition[index] for index in range(len(by_partition))]

    def _live_brokers(self) -> list[int]:
        """Registered brokers; before this node has registered, just this node."""
        return [broker.node_id for broker in self.image.brokers()] or [self.node_id]

    def _place(self, num_partitions: int, factor: int, first_partition: int) -> list[list[int]]:
        brokers = self._live_brokers()
        if factor < 1:  # only reachable through a bad default.replication.factor
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Unable to replicate the partition {factor} time(s): Invalid replication factor {factor}: "
                "the replication factor must be positive.",
            )
        if factor > len(brokers):
            raise KafkaError(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"Unable to replicate the partition {factor} time(s): "
                f"The target replication factor of {factor} cannot be reached because only "
                f"{len(brokers)} broker(s) are registered.",
            )
        return assign_replicas(
            brokers, num_partitions, factor, first_partition=first_partition, rng=self._rng
        )

    def delete_topics(self, topics: Sequence[str | uuid.UUID]) -> list[DeleteTopicResult]:
        """Delete topics given by name or id; one result per distinct request entry."""
        if not self.config.get_bool("delete.topic.enable"):
            return [
                DeleteTopicResult(
                    *self._ref_name_and_id(ref),
                    ErrorCode.TOPIC_DELETION_DISABLED,
                    "Topic deletion is disabled.",
                )
                for ref in topics
            ]
        counts = Counter(topics)
        results: list[DeleteTopicResult] = []
        records: list[MetadataRecord] = []
        chosen: set[uuid.UUID] = set()
        for ref in dict.fromkeys(topics):
            name, ref_id = self._ref_name_and_id(ref)
            if counts[ref] > 1:
                message = "Duplicate topic id." if isinstance(ref, uuid.UUID) else "Duplicate topic name."
                results.append(DeleteTopicResult(name, ref_id, ErrorCode.INVALID_REQUEST, message))
                continue
            if isinstance(ref, uuid.UUID):
                if ref == NO_TOPIC_ID:
                    results.append(
                        DeleteTopicResult(
                            None, ref, ErrorCode.INVALID_REQUEST, "Neither topic name nor id were specified."
                        )
                    )
                    continue
                topic = self.image.topic_by_id(ref)
                if topic is None:
                    results.append(DeleteTopicResult(None, ref, ErrorCode.UNKNOWN_TOPIC_ID))
                    continue
            else:
                topic = self.image.topic(ref)
                if topic is None:
                    results.append(DeleteTopicResult(ref, NO_TOPIC_ID, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
                    continue
            if topic.topic_id in chosen:
                results.append(
                    DeleteTopicResult(
                        topic.name,
                        topic.topic_id,
                        ErrorCode.INVALID_REQUEST,
                        "The provided topic name maps to an ID that was already supplied.",
                    )
                )
                continue
            chosen.add(topic.topic_id)
            records.append(RemoveTopicRecord(topic.topic_id))
            results.append(DeleteTopicResult(topic.name, topic.topic_id, ErrorCode.NONE))
        if len(records) > MAX_RECORDS_PER_OPERATION:
            return [
                DeleteTopicResult(r.name, r.topic_id, ErrorCode.POLICY_VIOLATION, _TOO_LARGE)
                if r.error_code == ErrorCode.NONE
                else r
                for r in results
            ]
        if records:
            return self._commit_all_or_fail(records, results)
        return results

    @staticmethod
    def _ref_name_and_id(ref: str | uuid.UUID) -> tuple[str | None, uuid.UUID]:
        return (None, ref) if isinstance(ref, uuid.UUID) else (ref, NO_TOPIC_ID)

    def create_partitions(
        self,
        topic: str,
        new_total: int,
        assignments: Sequence[Sequence[int]] | None = None,
        validate_only: bool = False,
    ) -> CreatePartitionsResult:
        """Grow a topic to new_total partitions; assignments, if given, list the new partitions' replicas."""
        try:
            records = self._new_partitions(topic, new_total, assignments)
        except KafkaError as rejected:
            return CreatePartitionsResult(topic, rejected.code, rejected.message)
        result = CreatePartitionsResult(topic, ErrorCode.NONE)
        if not validate_only:
            return self._commit_all_or_fail(records, [result])[0]
        return result

    def _new_partitions(
        self, name: str, new_total: int, assignments: Sequence[Sequence[int]] | None
    ) -> list[MetadataRecord]:
        topic = self.image.topic(name)
        if topic is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist.")
        current = len(topic.partitions)
        if new_total == current:
            raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"Topic already has {current} partition(s).")
        if new_total < current:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"The topic {name} currently has {current} partition(s); "
                f"{new_total} would not be an increase.",
            )
        additional = new_total - current
        if assignments is not None and len(assignments) != additional:
            raise KafkaError(
                ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                f"Attempted to add {additional} additional partition(s), but only {len(assignments)} "
                "assignment(s) were specified.",
            )
        if additional > MAX_RECORDS_PER_OPERATION:
            raise KafkaError(ErrorCode.POLICY_VIOLATION, _TOO_LARGE)
        factor = len(next(iter(topic.partitions.values())).replicas)
        if assignments is None:
            new_assignment = self._place(additional, factor, first_partition=current)
        else:
            registered = self._live_brokers()
            for replicas in assignments:
                problem = _assignment_error(replicas, registered, factor)
                if problem is not None:
                    raise KafkaError(ErrorCode.INVALID_REPLICA_ASSIGNMENT, problem)
            new_assignment = [list(replicas) for replicas in assignments]
        return [
            PartitionRecord(topic.topic_id, current + offset, replicas, list(replicas), replicas[0])
            for offset, replicas in enumerate(new_assignment)
        ]

    # ------------------------------------------------------------------ configs
    def describe_configs(
        self, resource_type: int, resource_name: str, names: Collection[str] | None = None
    ) -> DescribeConfigsResult:
        """Configs of a topic or broker ("" = cluster-wide defaults); names limits which are returned."""

        def result(
            code: ErrorCode, message: str | None = None, entries: list[ConfigEntry] | None = None
        ) -> DescribeConfigsResult:
            return DescribeConfigsResult(resource_type, resource_name, code, message, entries or [])

        if resource_type == ConfigResourceType.TOPIC:
            name_error = topic_name_error(resource_name)
            if name_error is not None:
                return result(ErrorCode.INVALID_TOPIC_EXCEPTION, name_error)
            if self.image.topic(resource_name) is None:
                return result(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            entries = resolve_topic_configs(
                self.image.topic_configs(resource_name),
                self.dynamic_broker_configs(),
                self.config,
                dynamic_default=self.dynamic_default_configs(),
                names=names,
            )
            return result(ErrorCode.NONE, None, entries)
        if resource_type == ConfigResourceType.BROKER:
            per_broker = resource_name != ""
            if per_broker:
                if not _is_int(resource_name):
                    return result(
                        ErrorCode.INVALID_REQUEST, f"Broker id must be an integer, but it is: {resource_name}"
                    )
                if int(resource_name) != self.node_id:
                    return result(
                        ErrorCode.INVALID_REQUEST,
                        f"Unexpected broker id, expected {self.node_id} or empty string, "
                        f"but received {resource_name}",
                    )
            entries = resolve_broker_configs(
                self.dynamic_broker_configs(),
                self.config,
                dynamic_default=self.dynamic_default_configs(),
                per_broker=per_broker,
                names=names,
            )
            return result(ErrorCode.NONE, None, entries)
        return result(ErrorCode.INVALID_REQUEST, f"Unsupported resource type: {resource_type}")

    def alter_configs(
        self, resources: Sequence[AlterConfigsResource], validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        """Legacy AlterConfigs: each resource's dynamic configs are replaced by the given set."""
        duplicates = _duplicate_resources((r.resource_type, r.resource_name) for r in resources)

        def plan(resource: AlterConfigsResource) -> list[MetadataRecord]:
            null_values = [name for name, value in resource.configs.items() if value is None]
            if null_values:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(null_values)
                )
            new_configs = {name: value for name, value in resource.configs.items() if value is not None}
            return self._config_changes(
                resource.resource_type, resource.resource_name, new_configs, new_configs
            )

        return self._alter(resources, duplicates, plan, validate_only)

    def incremental_alter_configs(
        self, resources: Sequence[IncrementalAlterConfigsResource], validate_only: bool = False
    ) -> list[AlterConfigsResult]:
        """IncrementalAlterConfigs: SET, DELETE, APPEND or SUBTRACT individual configs of each resource."""
        duplicates = _duplicate_resources((r.resource_type, r.resource_name) for r in resources)

        def plan(resource: IncrementalAlterConfigsResource) -> list[MetadataRecord]:
            names = [op.name for op in resource.ops]
            if len(set(names)) != len(names):
                raise KafkaError(ErrorCode.INVALID_REQUEST, "Error due to duplicate config keys")
            null_values = [
                op.name for op in resource.ops if op.value is None and op.op != AlterConfigOp.DELETE
            ]
            if null_values:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST, "Null value not supported for : " + ", ".join(null_values)
                )
            current = self._current_configs(resource.resource_type, resource.resource_name)
            new_configs = dict(current)
            for op in resource.ops:
                self._apply_op(resource.resource_type, new_configs, op)
            touched = {op.name: new_configs.get(op.name) for op in resource.ops}
            return self._config_changes(resource.resource_type, resource.resource_name, new_configs, touched)

        return self._alter(resources, duplicates, plan, validate_only)

    def _alter(
        self,
        resources: Sequence[_Resource],
        duplicates: set[tuple[int, str]],
        plan: Callable[[_Resource], list[MetadataRecord]],
        validate_only: bool,
    ) -> list[AlterConfigsResult]:
        results: list[AlterConfigsResult] = []
        records: list[MetadataRecord] = []
        for resource in resources:
            if (resource.resource_type, resource.resource_name) in duplicates:
                code, message = ErrorCode.INVALID_REQUEST, "Each resource must appear at most once."
            else:
                try:
                    records.extend(plan(resource))
                    code, message = ErrorCode.NONE, None
                except KafkaError as rejected:
                    code, message = rejected.code, rejected.message
            results.append(AlterConfigsResult(resource.resource_type, resource.resource_name, code, message))
        if len(records) > MAX_RECORDS_PER_OPERATION:
            return [
                AlterConfigsResult(r.resource_type, r.resource_name, ErrorCode.POLICY_VIOLATION, _TOO_LARGE)
                if r.error_code == ErrorCode.NONE
                else r
                for r in results
            ]
        if records and not validate_only:
            return self._commit_all_or_fail(records, results)
        return results

    def _current_configs(self, resource_type: int, resource_name: str) -> Mapping[str, str]:
        if resource_type == ConfigResourceType.TOPIC:
            return self.image.topic_configs(resource_name)
        if resource_type == ConfigResourceType.BROKER:
            return self.image.broker_configs(resource_name)
        return {}

    @staticmethod
    def _apply_op(resource_type: int, configs: dict[str, str], op: ConfigOp) -> None:
        if op.op == AlterConfigOp.SET:
            assert op.value is not None
            configs[op.name] = op.value
        elif op.op == AlterConfigOp.DELETE:
            configs.pop(op.name, None)
        elif op.op in (AlterConfigOp.APPEND, AlterConfigOp.SUBTRACT):
            verb = AlterConfigOp(op.op).name
            definitions = TOPIC_CONFIGS if resource_type == ConfigResourceType.TOPIC else BROKER_CONFIGS
            definition = definitions.get(op.name)
            if definition is None or definition.type is not ConfigType.LIST:
                raise KafkaError(
                    ErrorCode.INVALID_CONFIG, f"Can't {verb} to key {op.name} because its type is not LIST."
                )
            items = _list_items(configs.get(op.name, definition.default_string))
            for item in _list_items(op.value):
                if op.op == AlterConfigOp.APPEND and item not in items:
                    items.append(item)
                elif op.op == AlterConfigOp.SUBTRACT and item in items:
                    items.remove(item)
            configs[op.name] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown operations type {op.op}")

    def _config_changes(
        self,
        resource_type: int,
        resource_name: str,
        new_configs: Mapping[str, str],
        touched: Mapping[str, str | None],
    ) -> list[MetadataRecord]:
        """Validate a resource's new dynamic config set; the ConfigRecords that get there from now.

        touched are the configs the request named: for brokers, each gets a record even if unchanged,
        which is how Kafka makes brokers reload a config.
        """
        current = self._current_configs(resource_type, resource_name)
        if resource_type == ConfigResourceType.TOPIC:
            self._check_topic_configs(resource_name, new_configs)
            record_type = TOPIC_RESOURCE
            changed = {name: value for name, value in touched.items() if current.get(name) != value}
        elif resource_type == ConfigResourceType.BROKER:
            self._check_broker_configs(resource_name, new_configs)
            record_type = BROKER_RESOURCE
            changed = dict(touched)
        else:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Unknown resource type {resource_type}")
        for name in current:
            if name not in new_configs:
                changed[name] = None
        return [
            ConfigRecord(record_type, resource_name, name, value) for name, value in sorted(changed.items())
        ]

    def _check_topic_configs(self, name: str, new_configs: Mapping[str, str]) -> None:
        if name == "":
            raise KafkaError(ErrorCode.INVALID_REQUEST, "Default topic resources are not allowed.")
        name_error = topic_name_error(name)
        if name_error is not None:
            raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, name_error)
        self._validate_topic_configs(new_configs)
        if self.image.topic(name) is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")

    def _check_broker_configs(self, name: str, new_configs: Mapping[str, str]) -> None:
        if name != "":
            if not _is_int(name):
                raise KafkaError(ErrorCode.INVALID_REQUEST, f"Node id must be an integer, but it is: {name}")
            if int(name) != self.node_id:
                raise KafkaError(
                    ErrorCode.INVALID_REQUEST,
                    f"Unexpected broker id, expected {self.node_id}, but received {name}",
                )
        validate_dynamic_broker_configs(new_configs)

    # ------------------------------------------------------------------ brokers and producer ids
    def register_broker(
        self,
        broker_id: int,
        host: str,
        port: int,
        rack: str | None = None,
        listener_name: str = "PLAINTEXT",
        security_protocol: int = 0,
    ) -> int:
        """Register (or re-register) a broker's endpoint; returns its broker epoch.

        Re-registering unchanged details writes nothing, so restarts do not grow the log.
        """
        record = RegisterBrokerRecord(broker_id, host, port, rack, listener_name, security_protocol)
        existing = self.image.broker(broker_id)
        if existing is not None and (
            existing.host,
            existing.port,
            existing.rack,
            existing.listener_name,
            existing.security_protocol,
        ) == (host, port, rack, listener_name, security_protocol):
            return existing.epoch
        self._commit([record])
        broker = self.image.broker(broker_id)
        assert broker is not None
        return broker.epoch

    def allocate_producer_ids(self, broker_id: int, count: int = 1000) -> ProducerIdBlock:
        """Hand a broker the next block of producer ids (for idempotent and transactional producers)."""
        if count <= 0:
            raise KafkaError(ErrorCode.INVALID_REQUEST, f"Cannot allocate {count} producer ids")
        first = self.image.next_producer_id
        if first + count > LONG_MAX:
            raise KafkaError(
                ErrorCode.UNKNOWN_SERVER_ERROR,
                "Exhausted all producerIds as the next block's end producerId "
                "has exceeded the int64 type limit",
            )
        self._commit([ProducerIdsRecord(broker_id, first + count)])
        return ProducerIdBlock(broker_id, first, count)


def _duplicate_resources(keys: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    return {key for key, count in Counter(keys).items() if count > 1}


def _list_items(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _is_int(text: str) -> bool:
    """Whether Java's Integer.parseInt would accept text."""
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None and -(2**31) <= int(text) < 2**31
