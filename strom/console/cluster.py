"""The console's view of a Kafka cluster: every read and change the web pages make, as blocking calls.

`ClusterView` talks to the cluster only through the Kafka protocol (confluent-kafka's admin client, consumer
and producer, and Strom's raw protocol client for DescribeLogDirs), so the console works against Apache Kafka
as well as Strom. Its answers are dataclasses of JSON-ready values (``dataclasses.asdict`` gives the JSON
document); its failures are `ConsoleError`, which carries the HTTP status and a Kafka error name for the
web layer to pass on.

Reading messages leaves no trace on the cluster: consumers only ever assign partitions (the group id
librdkafka requires is never joined) and never commit. Group offset resets follow Kafka's
``kafka-consumer-groups`` tool, whose rules `strom.cli.groups` already implements and this module reuses.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from confluent_kafka import (
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from strom.cli.errors import CliError
from strom.cli.groups import (
    INACTIVE_STATES,
    STATE_NAMES,
    LogBounds,
    ResetTarget,
    plan_offset_reset,
)
from strom.cli.topics import INTERNAL_TOPICS
from strom.protocol.client import BrokerConnection, BrokerConnectionError, UnsupportedApiError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_log_dirs
from strom.toolkit.dlt import (
    DeadLetter,
    DeadLetterError,
    DeadLetterNotFound,
    DeadLetters,
    ReplayResult,
    Selection,
)

logger = logging.getLogger(__name__)

CLIENT_ID = "strom-console"
DLT_SUFFIXES = (".DLT", "-dlt")
BROWSE_STARTS = ("earliest", "latest", "offset", "timestamp")
RESET_TARGETS = ("earliest", "latest", "offset", "timestamp", "shift")
MAX_BROWSE_LIMIT = 10_000
# A filtered browse stops after reading this many records, so a filter that matches nothing in a huge topic
# answers in bounded time; ``next_offsets`` tells where to go on.
MAX_SCANNED_RECORDS = 100_000
_POLL_SLICE_S = 0.2
_MAX_BATCH = 500
# Idle browse consumers kept for reuse: creating one costs a connection and a metadata round trip.
_IDLE_CONSUMERS = 4
_BROWSE_FETCH_WAIT_MS = 10
_TIMESTAMP_TYPE_NAMES = {TIMESTAMP_CREATE_TIME: "CreateTime", TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}
# librdkafka's own (negative) error codes, named as the Kafka error a Java client would report.
_LOCAL_ERROR_NAMES = {
    KafkaError._UNKNOWN_TOPIC: "UNKNOWN_TOPIC_OR_PARTITION",
    KafkaError._UNKNOWN_PARTITION: "UNKNOWN_TOPIC_OR_PARTITION",
    KafkaError._TIMED_OUT: "REQUEST_TIMED_OUT",
    KafkaError._MSG_TIMED_OUT: "REQUEST_TIMED_OUT",
    KafkaError._TRANSPORT: "NETWORK_EXCEPTION",
    KafkaError._ALL_BROKERS_DOWN: "NETWORK_EXCEPTION",
    KafkaError._INVALID_ARG: "INVALID_REQUEST",
    KafkaError.MSG_SIZE_TOO_LARGE: "MESSAGE_TOO_LARGE",
}
_HTTP_STATUS_BY_ERROR = {
    "UNKNOWN_TOPIC_OR_PARTITION": 404,
    "GROUP_ID_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "TOPIC_ALREADY_EXISTS": 409,
    "NON_EMPTY_GROUP": 409,
    "MESSAGE_TOO_LARGE": 413,
    "RECORD_LIST_TOO_LARGE": 413,
    "TOPIC_AUTHORIZATION_FAILED": 403,
    "GROUP_AUTHORIZATION_FAILED": 403,
    "CLUSTER_AUTHORIZATION_FAILED": 403,
    "TOPIC_DELETION_DISABLED": 403,
    "REQUEST_TIMED_OUT": 504,
    "NETWORK_EXCEPTION": 503,
}

Partition = tuple[str, int]
BrowseStart = Literal["earliest", "latest", "offset", "timestamp"]
ResetTo = Literal["earliest", "latest", "offset", "timestamp", "shift"]
T = TypeVar("T")


class ConsoleError(Exception):
    """A request the cluster refused or the console could not carry out, as the web layer reports it."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code
        self.message = message


# ------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class BrokerInfo:
    id: int
    host: str
    port: int
    rack: str | None
    controller: bool


@dataclass(frozen=True)
class ClusterOverview:
    cluster_id: str | None
    controller_id: int | None
    brokers: list[BrokerInfo]
    topics: int
    partitions: int
    messages: int
    size_bytes: int | None
    groups: int


@dataclass(frozen=True)
class TopicSummary:
    """One row of the topics page; ``messages`` is the sum of end minus start offsets (compacted or
    transactional topics hold fewer records), ``size_bytes`` None where the cluster cannot say."""

    name: str
    partitions: int
    replication_factor: int
    messages: int
    size_bytes: int | None
    internal: bool


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]
    start_offset: int | None
    end_offset: int | None

    @property
    def messages(self) -> int:
        if self.start_offset is None or self.end_offset is None:
            return 0
        return self.end_offset - self.start_offset


@dataclass(frozen=True)
class TopicConfig:
    name: str
    value: str | None
    source: str
    default: bool
    read_only: bool
    sensitive: bool


@dataclass(frozen=True)
class TopicDetails:
    name: str
    internal: bool
    partitions: list[PartitionInfo]
    configs: list[TopicConfig]


@dataclass(frozen=True)
class Payload:
    """A key, value or header value made safe for a page: ``encoding`` is ``null`` (``text`` None), ``json``
    (UTF-8 text that parses as JSON, for the page to pretty-print), ``text`` (other UTF-8) or ``base64``
    (binary). ``size`` is the byte length."""

    encoding: Literal["null", "json", "text", "base64"]
    text: str | None
    size: int


@dataclass(frozen=True)
class MessageHeader:
    name: str
    value: Payload


@dataclass(frozen=True)
class ConsoleMessage:
    partition: int
    offset: int
    timestamp: int | None
    timestamp_type: str | None
    key: Payload
    value: Payload
    headers: list[MessageHeader]


@dataclass(frozen=True)
class BrowseResult:
    """Messages (of one partition in offset order, of several merged by timestamp), and per partition number
    the offset to read on from: the next browse's ``offset`` or ``tail``'s ``from_offsets``."""

    messages: list[ConsoleMessage]
    next_offsets: dict[int, int]


class ProduceResult(NamedTuple):
    """Where a produced record was stored; unpacks as ``partition, offset``."""

    partition: int
    offset: int


@dataclass(frozen=True)
class GroupSummary:
    group_id: str
    state: str
    members: int
    topics: list[str]
    total_lag: int


@dataclass(frozen=True)
class GroupMember:
    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    assignment: dict[str, list[int]]


@dataclass(frozen=True)
class GroupPartition:
    topic: str
    partition: int
    committed: int | None
    end_offset: int | None
    lag: int | None
    member_id: str | None


@dataclass(frozen=True)
class GroupDetails:
    group_id: str
    state: str
    assignor: str
    coordinator: BrokerInfo | None
    members: list[GroupMember]
    partitions: list[GroupPartition]
    total_lag: int


@dataclass(frozen=True)
class OffsetResetRow:
    topic: str
    partition: int
    current: int | None
    new: int


@dataclass(frozen=True)
class DltTopic:
    name: str
    partitions: int
    messages: int


@dataclass(frozen=True)
class DeadLetterRecord:
    """A dead letter with its Spring Kafka failure headers decoded; ``headers`` are the original record's."""

    partition: int
    offset: int
    timestamp: int | None
    key: Payload
    value: Payload
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp: int | None
    original_group: str | None
    exception_type: str | None
    exception_cause_type: str | None
    exception_message: str | None
    stack_trace: str | None
    headers: list[MessageHeader]


@dataclass(frozen=True)
class ReplayedRecord:
    partition: int
    offset: int
    destination: str
    destination_partition: int | None = None
    destination_offset: int | None = None


@dataclass(frozen=True)
class ReplayFailed:
    partition: int
    offset: int
    reason: str


@dataclass(frozen=True)
class ReplayOutcome:
    replayed: list[ReplayedRecord] = field(default_factory=list)
    failed: list[ReplayFailed] = field(default_factory=list)


@dataclass(frozen=True)
class GroupOffsets:
    """What the metrics sampler reads in one go: every group's committed offsets and the log ends."""

    committed: dict[str, dict[Partition, int]]
    end_offsets: dict[Partition, int]


@dataclass(frozen=True)
class _Filters:
    """Case-insensitive substring filters; a header filter matches a header's name or value."""

    key: str | None
    value: str | None
    header: str | None

    def __bool__(self) -> bool:
        return any((self.key, self.value, self.header))

    def matches(self, message: Message) -> bool:
        if self.key and not _contains(message.key(), self.key):
            return False
        if self.value and not _contains(message.value(), self.value):
            return False
        if self.header:
            wanted = self.header.lower()
            return any(
                wanted in name.lower() or _contains(value, wanted) for name, value in _header_pairs(message)
            )
        return True


# --------------------------------------------------------------------------------------------- the view


class ClusterView:
    """Blocking calls for the console's pages; safe to use from several threads at once.

    ``config`` is a librdkafka configuration (security settings and the like) applied to every client;
    ``timeout_s`` bounds each call's waits on the cluster.
    """

    def __init__(
        self, bootstrap_servers: str, *, config: Mapping[str, Any] | None = None, timeout_s: float = 10.0
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self._config: dict[str, Any] = {
            "client.id": CLIENT_ID,
            "logger": logger,
            **(config or {}),
            "bootstrap.servers": bootstrap_servers,
        }
        self._timeout_s = timeout_s
        # Asking for a missing topic's metadata must not create it (librdkafka's admin client is a producer,
        # whose default is to allow that).
        self._admin = AdminClient({**self._config, "allow.auto.create.topics": False})
        self._producer_lock = threading.Lock()
        self._producer: Producer | None = None
        self._idle_consumers: queue.LifoQueue[Consumer] = queue.LifoQueue(maxsize=_IDLE_CONSUMERS)

    def close(self) -> None:
        """Flush and close the clients this view keeps open."""
        with self._producer_lock:
            if self._producer is not None:
                self._producer.flush(self._timeout_s)
                self._producer = None
        while True:
            try:
                self._idle_consumers.get_nowait().close()
            except queue.Empty:
                return

    # ---------------------------------------------------------------------------------------- cluster

    def overview(self) -> ClusterOverview:
        """Brokers, cluster id and totals for the overview page."""
        cluster = self._wait(self._admin.describe_cluster(request_timeout=self._timeout_s), "the cluster")
        controller_id = cluster.controller.id if cluster.controller is not None else None
        brokers = sorted(
            (
                BrokerInfo(node.id, node.host, node.port, node.rack, node.id == controller_id)
                for node in cluster.nodes
            ),
            key=lambda broker: broker.id,
        )
        topics = self.list_topics()
        groups = self._wait(self._admin.list_consumer_groups(request_timeout=self._timeout_s), "groups")
        return ClusterOverview(
            cluster_id=cluster.cluster_id,
            controller_id=controller_id,
            brokers=brokers,
            topics=len(topics),
            partitions=sum(topic.partitions for topic in topics),
            messages=sum(topic.messages for topic in topics),
            size_bytes=_sum_if_known(topic.size_bytes for topic in topics),
            groups=len(groups.valid),
        )

    # ----------------------------------------------------------------------------------------- topics

    def list_topics(self, search: str | None = None, include_internal: bool = True) -> list[TopicSummary]:
        """Topics by name; ``search`` keeps those whose name contains it (any case)."""
        metadata = self._metadata()
        wanted = (search or "").lower()
        topics = [
            topic
            for name, topic in sorted(metadata.topics.items())
            if wanted in name.lower() and (include_internal or name not in INTERNAL_TOPICS)
        ]
        partitions = [(topic.topic, number) for topic in topics for number in topic.partitions]
        start, end = self._log_offsets_for(partitions, [OffsetSpec.earliest(), OffsetSpec.latest()])
        sizes = self._partition_sizes(metadata)
        summaries = []
        for topic in topics:
            keys = [(topic.topic, number) for number in topic.partitions]
            summaries.append(
                TopicSummary(
                    name=topic.topic,
                    partitions=len(topic.partitions),
                    replication_factor=max((len(p.replicas) for p in topic.partitions.values()), default=0),
                    messages=sum(max(end.get(key, 0) - start.get(key, 0), 0) for key in keys),
                    size_bytes=None if sizes is None else sum(sizes.get(key, 0) for key in keys),
                    internal=topic.topic in INTERNAL_TOPICS,
                )
            )
        return summaries

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
    ) -> TopicDetails:
        """Create a topic (``replication_factor`` -1: the broker's default) and describe it."""
        new_topic = NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config={key: str(value) for key, value in (configs or {}).items()},
        )
        futures = self._admin.create_topics([new_topic], request_timeout=self._timeout_s)
        self._wait(futures[name], f"topic '{name}'")
        return self._await_topic(name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and wait (within the timeout) until the metadata no longer lists it, so a page
        reloaded right after does not show it again."""
        self._require_topic(name)
        futures = self._admin.delete_topics([name], request_timeout=self._timeout_s)
        self._wait(futures[name], f"topic '{name}'")
        deadline = time.monotonic() + self._timeout_s
        while name in self._metadata().topics and time.monotonic() < deadline:
            time.sleep(_POLL_SLICE_S)

    def describe_topic(self, name: str) -> TopicDetails:
        """Partitions with placement and offsets, and every config with where its value comes from."""
        topic = self._require_topic(name)
        keys = [(name, number) for number in sorted(topic.partitions)]
        start, end = self._log_offsets_for(keys, [OffsetSpec.earliest(), OffsetSpec.latest()])
        partitions = [
            PartitionInfo(
                partition=number,
                leader=topic.partitions[number].leader,
                replicas=list(topic.partitions[number].replicas),
                isr=list(topic.partitions[number].isrs),
                start_offset=start.get((name, number)),
                end_offset=end.get((name, number)),
            )
            for number in sorted(topic.partitions)
        ]
        return TopicDetails(name, name in INTERNAL_TOPICS, partitions, self._topic_configs(name))

    def alter_topic_configs(self, name: str, changes: Mapping[str, str | None]) -> TopicDetails:
        """Set configs (a value) or return them to their default (None), all in one incremental request."""
        self._require_topic(name)
        if not changes:
            raise ConsoleError(400, "INVALID_REQUEST", "no config changes given")
        entries = [
            ConfigEntry(
                key,
                None if value is None else str(value),
                incremental_operation=AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET,
            )
            for key, value in changes.items()
        ]
        resource = ConfigResource(ResourceType.TOPIC, name, incremental_configs=entries)
        futures = self._admin.incremental_alter_configs([resource], request_timeout=self._timeout_s)
        self._wait(futures[resource], f"configs of topic '{name}'")
        return self.describe_topic(name)

    # --------------------------------------------------------------------------------------- messages

    def browse(
        self,
        topic: str,
        *,
        partition: int | None = None,
        start: BrowseStart = "earliest",
        offset: int | None = None,
        timestamp_ms: int | None = None,
        limit: int = 100,
        key_filter: str | None = None,
        value_filter: str | None = None,
        header_filter: str | None = None,
    ) -> BrowseResult:
        """Up to ``limit`` messages matching the filters, from ``start`` of one partition or all of them.

        ``earliest``, ``offset`` and ``timestamp`` read forwards from that point; ``latest`` reads the last
        ``limit`` records of each partition and keeps the newest ``limit`` that match.
        """
        if start not in BROWSE_STARTS:
            raise ConsoleError(400, "INVALID_REQUEST", f"start must be one of {', '.join(BROWSE_STARTS)}")
        if start == "offset" and (offset is None or offset < 0):
            raise ConsoleError(400, "INVALID_REQUEST", "start=offset needs a non-negative offset")
        if start == "timestamp" and timestamp_ms is None:
            raise ConsoleError(400, "INVALID_REQUEST", "start=timestamp needs a timestamp in epoch ms")
        limit = _checked_limit(limit)
        numbers = self._partitions_of(topic, partition)
        keys = [(topic, number) for number in numbers]
        specs = [OffsetSpec.earliest(), OffsetSpec.latest()]
        if start == "timestamp":
            assert timestamp_ms is not None
            specs.append(OffsetSpec.for_timestamp(timestamp_ms))
        low, high, *at_time = self._log_offsets_for(keys, specs)
        starts: dict[int, int] = {}
        for key in keys:
            first, end = low.get(key, 0), high.get(key, 0)
            if start == "earliest":
                position = first
            elif start == "latest":
                position = max(first, end - limit)
            elif start == "offset":
                assert offset is not None
                position = offset
            else:
                at = at_time[0].get(key, -1)
                position = end if at < 0 else at
            starts[key[1]] = min(max(position, first), end)
        ends = {key[1]: high.get(key, 0) for key in keys}
        filters = _Filters(key_filter, value_filter, header_filter)
        if start == "latest":
            # Every partition's tail is read, then the newest matches kept.
            messages, next_offsets = self._read(topic, starts, ends, None, filters)
            messages = messages[-limit:]
        else:
            messages, next_offsets = self._read(topic, starts, ends, limit, filters)
        return BrowseResult(messages, next_offsets)

    def tail(
        self,
        topic: str,
        from_offsets: Mapping[int, int],
        *,
        limit: int = 500,
        key_filter: str | None = None,
        value_filter: str | None = None,
        header_filter: str | None = None,
    ) -> BrowseResult:
        """Messages that arrived since ``from_offsets`` (a browse's ``next_offsets``); returns at once, with
        nothing new an empty list and the same offsets. Partitions not named start at their current end."""
        numbers = self._partitions_of(topic, None)
        keys = [(topic, number) for number in numbers]
        high = self._log_offsets(keys, OffsetSpec.latest())
        ends = {number: high.get((topic, number), 0) for number in numbers}
        starts = {number: min(from_offsets.get(number, ends[number]), ends[number]) for number in numbers}
        filters = _Filters(key_filter, value_filter, header_filter)
        messages, next_offsets = self._read(topic, starts, ends, _checked_limit(limit), filters)
        return BrowseResult(messages, next_offsets)

    def produce(
        self,
        topic: str,
        key: str | bytes | None,
        value: str | bytes | None,
        headers: Sequence[tuple[str, str | bytes | None]] = (),
        partition: int | None = None,
    ) -> ProduceResult:
        """Write one record and wait for its acknowledgement; returns where it was stored."""
        self._partitions_of(topic, partition)
        delivered: Future[Message] = Future()

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                delivered.set_exception(KafkaException(error))
            else:
                delivered.set_result(message)

        producer = self._shared_producer()
        options: dict[str, Any] = {"partition": partition} if partition is not None else {}
        try:
            producer.produce(
                topic,
                value=value,
                key=key,
                headers=list(headers),
                on_delivery=on_delivery,
                **options,
            )
        except KafkaException as exc:
            raise _console_error(exc, f"cannot produce to '{topic}'") from None
        except BufferError:
            raise ConsoleError(503, "NETWORK_EXCEPTION", "the producer's queue is full; try again") from None
        deadline = time.monotonic() + self._timeout_s
        while not delivered.done() and time.monotonic() < deadline:
            producer.poll(_POLL_SLICE_S)
        if not delivered.done():
            raise ConsoleError(504, "REQUEST_TIMED_OUT", f"no acknowledgement from '{topic}' in time")
        try:
            message = delivered.result()
        except KafkaException as exc:
            raise _console_error(exc, f"cannot produce to '{topic}'") from None
        return ProduceResult(message.partition() or 0, message.offset() or 0)

    # ----------------------------------------------------------------------------------------- groups

    def list_groups(self) -> list[GroupSummary]:
        """Every consumer group with its state, member count, topics and total lag."""
        listing = self._wait(self._admin.list_consumer_groups(request_timeout=self._timeout_s), "groups")
        group_ids = sorted(group.group_id for group in listing.valid)
        if not group_ids:
            return []
        descriptions = self._describe_groups(group_ids)
        committed = self._committed_offsets(group_ids)
        keys = sorted({key for offsets in committed.values() for key in offsets})
        end = self._log_offsets(keys, OffsetSpec.latest())
        summaries = []
        for group_id in group_ids:
            description = descriptions.get(group_id)
            offsets = committed.get(group_id, {})
            assigned = _assignments(description)
            summaries.append(
                GroupSummary(
                    group_id=group_id,
                    state=_state_name(description.state if description is not None else None),
                    members=len(description.members) if description is not None else 0,
                    topics=sorted({topic for topic, _ in (*offsets, *assigned)}),
                    total_lag=group_lag(offsets, end),
                )
            )
        return summaries

    def describe_group(self, group_id: str) -> GroupDetails:
        """Members and their assignments, and per partition the committed offset, log end and lag."""
        description = self._describe_groups([group_id]).get(group_id)
        if description is None or description.state is ConsumerGroupState.DEAD:
            raise ConsoleError(404, "GROUP_ID_NOT_FOUND", f"group '{group_id}' does not exist")
        members = [
            GroupMember(
                member_id=member.member_id,
                instance_id=member.group_instance_id,
                client_id=member.client_id,
                host=member.host,
                assignment=_by_topic((tp.topic, tp.partition) for tp in member.assignment.topic_partitions),
            )
            for member in description.members
        ]
        owner = {
            (topic, number): member.member_id
            for member in members
            for topic, numbers in member.assignment.items()
            for number in numbers
        }
        committed = self._committed_offsets([group_id]).get(group_id, {})
        keys = sorted({*owner, *committed})
        end = self._log_offsets(keys, OffsetSpec.latest())
        partitions = []
        for key in keys:
            current, log_end = committed.get(key), end.get(key)
            lag = None if current is None or log_end is None else max(log_end - current, 0)
            partitions.append(GroupPartition(key[0], key[1], current, log_end, lag, owner.get(key)))
        coordinator = description.coordinator
        return GroupDetails(
            group_id=group_id,
            state=_state_name(description.state),
            assignor=description.partition_assignor or "",
            coordinator=None
            if coordinator is None
            else BrokerInfo(coordinator.id, coordinator.host, coordinator.port, coordinator.rack, False),
            members=sorted(members, key=lambda member: member.member_id),
            partitions=partitions,
            total_lag=sum(row.lag for row in partitions if row.lag is not None),
        )

    def reset_group_offsets(
        self,
        group_id: str,
        topic: str,
        partitions: Sequence[int] | None = None,
        to: ResetTo = "earliest",
        value: int | None = None,
        dry_run: bool = True,
    ) -> list[OffsetResetRow]:
        """The offsets a reset moves the group to (``value``: the offset, epoch ms or shift), applied unless
        ``dry_run``. Refused while the group has members, as Kafka's tool does; out-of-range targets are
        clamped to the log and a time past every record goes to the log end, as there."""
        if to not in RESET_TARGETS:
            raise ConsoleError(400, "INVALID_REQUEST", f"'to' must be one of {', '.join(RESET_TARGETS)}")
        if to in ("offset", "timestamp", "shift") and value is None:
            raise ConsoleError(400, "INVALID_REQUEST", f"resetting to '{to}' needs a value")
        if to == "offset" and value is not None and value < 0:
            raise ConsoleError(400, "INVALID_REQUEST", "an offset cannot be negative")
        self._require_inactive(group_id)
        existing = self._partitions_of(topic, None)
        chosen = sorted(set(partitions)) if partitions else existing
        missing = sorted(set(chosen) - set(existing))
        if missing:
            raise ConsoleError(
                404,
                "UNKNOWN_TOPIC_OR_PARTITION",
                f"topic '{topic}' has no partition {', '.join(map(str, missing))}",
            )
        keys = [(topic, number) for number in chosen]
        target = ResetTarget("datetime" if to == "timestamp" else to, value or 0)
        bounds = LogBounds(
            earliest=self._log_offsets(keys, OffsetSpec.earliest(), required=True),
            latest=self._log_offsets(keys, OffsetSpec.latest(), required=True),
            committed=self._committed_offsets([group_id]).get(group_id, {}),
            at_time={},
        )
        if to == "timestamp":
            assert value is not None
            found = self._log_offsets(keys, OffsetSpec.for_timestamp(value), required=True)
            bounds.at_time.update({key: None if offset < 0 else offset for key, offset in found.items()})
        try:
            plan, _ = plan_offset_reset(keys, target, bounds)
        except CliError as exc:
            raise ConsoleError(400, "INVALID_REQUEST", str(exc)) from None
        rows = [OffsetResetRow(row.topic, row.partition, row.current, row.new) for row in plan]
        if not dry_run:
            self._alter_group_offsets(group_id, rows)
        return rows

    # ------------------------------------------------------------------------------------ dead letters

    def list_dlt_topics(self) -> list[DltTopic]:
        """Dead-letter topics, recognised by Spring Kafka's ``.DLT`` or the ``-dlt`` suffix."""
        return [
            DltTopic(topic.name, topic.partitions, topic.messages)
            for topic in self.list_topics(include_internal=False)
            if topic.name.endswith(DLT_SUFFIXES)
        ]

    def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetterRecord]:
        """The first ``limit`` dead letters of a DLT, in partition then offset order."""
        self._require_topic(topic)
        try:
            letters = self._dead_letter_topic(topic).list(limit=_checked_limit(limit))
        except DeadLetterError as exc:
            raise _dead_letter_error(exc) from None
        return [_dead_letter_record(letter) for letter in letters]

    def replay_dead_letters(
        self,
        topic: str,
        selection: Literal["all"] | Sequence[tuple[int, int]],
        to_topic: str | None = None,
    ) -> ReplayOutcome:
        """Republish dead letters to their original topic (or ``to_topic``): ``"all"`` of them or the
        ``(partition, offset)`` pairs given. At least once: a repeated replay republishes again."""
        self._require_topic(topic)
        if to_topic is not None:
            self._require_topic(to_topic)
        dead_letters = self._dead_letter_topic(topic)
        if selection == "all":
            return _replay_outcome(self._replay(dead_letters, Selection.all(), to_topic))
        if not selection:
            raise ConsoleError(400, "INVALID_REQUEST", "no dead letters selected")
        replayed: list[ReplayedRecord] = []
        failed: list[ReplayFailed] = []
        missing = 0
        for partition, offset in selection:
            try:
                chosen = Selection.one(partition, offset)
            except ValueError as exc:
                raise ConsoleError(400, "INVALID_REQUEST", str(exc)) from None
            try:
                outcome = _replay_outcome(self._replay(dead_letters, chosen, to_topic))
            except ConsoleError as exc:
                if exc.http_status != 404:
                    raise
                outcome = ReplayOutcome()
            if not outcome.replayed and not outcome.failed:
                missing += 1
                outcome.failed.append(ReplayFailed(partition, offset, "no dead letter at this position"))
            replayed.extend(outcome.replayed)
            failed.extend(outcome.failed)
        if missing == len(selection):
            raise ConsoleError(404, "NOT_FOUND", f"none of the selected dead letters is in '{topic}'")
        return ReplayOutcome(replayed, failed)

    def _replay(self, dead_letters: DeadLetters, chosen: Selection, to_topic: str | None) -> ReplayResult:
        try:
            return dead_letters.replay(chosen, to_topic=to_topic)
        except DeadLetterError as exc:
            raise _dead_letter_error(exc) from None

    # -------------------------------------------------------------------------------------- sampling

    def group_offsets(self) -> GroupOffsets:
        """Every group's committed offsets and every partition's log end, for the metrics sampler."""
        metadata = self._metadata()
        keys = [(name, number) for name, topic in metadata.topics.items() for number in topic.partitions]
        end = self._log_offsets(keys, OffsetSpec.latest())
        listing = self._wait(self._admin.list_consumer_groups(request_timeout=self._timeout_s), "groups")
        committed = self._committed_offsets(sorted(group.group_id for group in listing.valid))
        return GroupOffsets(committed, end)

    # -------------------------------------------------------------------------------------- internals

    def _wait(self, future: Future[T], subject: str) -> T:
        """A future's result, or the ConsoleError its failure means."""
        try:
            return future.result(timeout=self._timeout_s + 1)
        except KafkaException as exc:
            raise _console_error(exc, f"cannot access {subject}") from None
        except TimeoutError:
            raise ConsoleError(504, "REQUEST_TIMED_OUT", f"no answer about {subject} in time") from None

    def _metadata(self, topic: str | None = None) -> Any:
        try:
            return self._admin.list_topics(topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise _console_error(exc, "cannot read the cluster's metadata") from None

    def _require_topic(self, name: str) -> Any:
        """The topic's metadata; ConsoleError 404 if it does not exist."""
        topic = self._metadata(name).topics.get(name)
        if topic is None or (topic.error is not None and not topic.partitions):
            raise ConsoleError(404, "UNKNOWN_TOPIC_OR_PARTITION", f"topic '{name}' does not exist")
        return topic

    def _await_topic(self, name: str) -> TopicDetails:
        """A just-created topic's details, once its partitions have leaders."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                details = self.describe_topic(name)
            except ConsoleError:
                if time.monotonic() >= deadline:
                    raise
            else:
                if all(p.leader >= 0 for p in details.partitions) or time.monotonic() >= deadline:
                    return details
            time.sleep(_POLL_SLICE_S)

    def _partitions_of(self, topic: str, partition: int | None) -> list[int]:
        numbers = sorted(self._require_topic(topic).partitions)
        if partition is None:
            return numbers
        if partition not in numbers:
            raise ConsoleError(
                404, "UNKNOWN_TOPIC_OR_PARTITION", f"topic '{topic}' has no partition {partition}"
            )
        return [partition]

    def _topic_configs(self, name: str) -> list[TopicConfig]:
        resource = ConfigResource(ResourceType.TOPIC, name)
        futures = self._admin.describe_configs([resource], request_timeout=self._timeout_s)
        entries = self._wait(futures[resource], f"configs of topic '{name}'")
        configs = []
        for entry in sorted(entries.values(), key=lambda entry: entry.name):
            source = ConfigSource(entry.source)
            configs.append(
                TopicConfig(
                    name=entry.name,
                    value=None if entry.is_sensitive else entry.value,
                    source=source.name,
                    default=bool(entry.is_default) or source is ConfigSource.DEFAULT_CONFIG,
                    read_only=bool(entry.is_read_only),
                    sensitive=bool(entry.is_sensitive),
                )
            )
        return configs

    def _log_offsets(
        self, keys: Sequence[Partition], spec: OffsetSpec, *, required: bool = False
    ) -> dict[Partition, int]:
        """An offset per partition; see `_log_offsets_for`."""
        (offsets,) = self._log_offsets_for(keys, [spec], required=required)
        return offsets

    def _log_offsets_for(
        self, keys: Sequence[Partition], specs: Sequence[OffsetSpec], *, required: bool = False
    ) -> list[dict[Partition, int]]:
        """An offset per partition for each spec (first, end, by time), all asked for at once; partitions
        the cluster cannot answer for are left out, or fail the call when ``required``."""
        if not keys:
            return [{} for _ in specs]
        requests = [
            self._admin.list_offsets(
                {TopicPartition(topic, number): spec for topic, number in keys},
                request_timeout=self._timeout_s,
            )
            for spec in specs
        ]
        answers = []
        for futures in requests:
            offsets = {}
            for tp, future in futures.items():
                try:
                    offsets[(tp.topic, tp.partition)] = future.result(timeout=self._timeout_s + 1).offset
                except (KafkaException, TimeoutError) as exc:
                    if required:
                        raise _console_error(
                            exc, f"cannot read offsets of {tp.topic}-{tp.partition}"
                        ) from None
                    logger.debug("cannot read offsets of %s-%d: %s", tp.topic, tp.partition, exc)
            answers.append(offsets)
        return answers

    def _partition_sizes(self, metadata: Any) -> dict[Partition, int] | None:
        """Bytes on disk per partition (the leader's copy), from DescribeLogDirs sent to every broker with
        the raw client; None when that is not possible (not a plaintext listener, or a broker refused)."""
        protocol = str(self._config.get("security.protocol", "plaintext")).lower()
        if protocol != "plaintext":
            return None
        leaders = {
            (name, number): partition.leader
            for name, topic in metadata.topics.items()
            for number, partition in topic.partitions.items()
        }
        sizes: dict[Partition, int] = {}
        request = describe_log_dirs.DescribeLogDirsRequest(topics=None)
        for broker in metadata.brokers.values():
            try:
                with BrokerConnection(
                    broker.host, broker.port, timeout=self._timeout_s, client_id=CLIENT_ID
                ) as connection:
                    version = connection.negotiate(describe_log_dirs.API_KEY)
                    response = connection.call(describe_log_dirs.API_KEY, version, request)
            except (BrokerConnectionError, UnsupportedApiError) as exc:
                logger.debug("no log dir sizes from broker %d: %s", broker.id, exc)
                return None
            for result in response.results:
                for topic in result.topics:
                    for partition in topic.partitions:
                        key = (topic.name, partition.partition_index)
                        if leaders.get(key) == broker.id and not partition.is_future_key:
                            sizes[key] = sizes.get(key, 0) + partition.partition_size
        return sizes

    def _shared_producer(self) -> Producer:
        with self._producer_lock:
            if self._producer is None:
                self._producer = Producer(
                    {
                        **self._config,
                        "linger.ms": 0,
                        "enable.idempotence": True,
                        "acks": "all",
                        "allow.auto.create.topics": False,
                    }
                )
            return self._producer

    def warm_up(self) -> None:
        """Open a browse consumer and its connection now, so the first messages page a user opens is as
        quick as the ones after it (creating a consumer costs a few hundred milliseconds)."""
        with self._browse_consumer() as consumer:
            consumer.list_topics(timeout=self._timeout_s)

    @contextmanager
    def _browse_consumer(self) -> Iterator[Consumer]:
        """An assign-only consumer, reused across calls: it never joins its group nor commits."""
        try:
            consumer = self._idle_consumers.get_nowait()
        except queue.Empty:
            consumer = Consumer(
                {
                    **self._config,
                    "group.id": f"{CLIENT_ID}-browse-{uuid.uuid4().hex[:12]}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "enable.partition.eof": True,
                    # A fetch waiting at a log end would hold up the next call's assignment this long.
                    "fetch.wait.max.ms": _BROWSE_FETCH_WAIT_MS,
                    "isolation.level": "read_committed",
                    "auto.offset.reset": "earliest",
                }
            )
        try:
            yield consumer
        except BaseException:
            consumer.close()
            raise
        consumer.unassign()
        try:
            self._idle_consumers.put_nowait(consumer)
        except queue.Full:
            consumer.close()

    def _read(
        self,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int],
        limit: int | None,
        filters: _Filters,
    ) -> tuple[list[ConsoleMessage], dict[int, int]]:
        """Matching records from ``starts`` up to (not including) ``ends`` per partition, at most ``limit``
        of them; and where each partition's reading stopped. Records read are either returned or filtered
        out, so reading on from the returned offsets misses nothing."""
        positions = dict(starts)
        pending = {number for number in starts if starts[number] < ends[number]}
        messages: list[ConsoleMessage] = []
        if not pending:
            return messages, positions
        deadline = time.monotonic() + self._timeout_s
        scanned = 0
        with self._browse_consumer() as consumer:
            try:
                # A reused consumer knows nothing of a new topic and would find its leaders only on its next
                # periodic metadata refresh; asking now saves that wait.
                consumer.list_topics(topic, timeout=self._timeout_s)
            except KafkaException as exc:
                raise _console_error(exc, f"cannot read '{topic}'") from None
            consumer.assign([TopicPartition(topic, number, starts[number]) for number in sorted(pending)])
            while pending and (limit is None or len(messages) < limit) and scanned < MAX_SCANNED_RECORDS:
                if time.monotonic() >= deadline:
                    break
                for message in _next_messages(consumer):
                    number = message.partition()
                    if number is None or number not in pending:
                        continue
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            pending.discard(number)
                            positions[number] = max(positions[number], message.offset() or 0)
                        elif error.fatal() or error.code() in (
                            KafkaError.UNKNOWN_TOPIC_OR_PART,
                            KafkaError._UNKNOWN_TOPIC,
                            KafkaError.TOPIC_AUTHORIZATION_FAILED,
                        ):
                            raise _console_error(KafkaException(error), f"cannot read '{topic}'")
                        continue
                    record_offset = message.offset() or 0
                    if record_offset < positions[number]:
                        continue  # before the start: a fetched batch may begin earlier than asked
                    scanned += 1
                    positions[number] = record_offset + 1
                    if record_offset + 1 >= ends[number]:
                        pending.discard(number)
                    if filters.matches(message):
                        messages.append(_console_message(message))
                        if limit is not None and len(messages) >= limit:
                            break
        # One partition reads in offset order; several are merged by time, as a reader of the topic sees it.
        if len(starts) > 1:
            messages.sort(key=lambda message: (message.timestamp or 0, message.partition, message.offset))
        return messages, positions

    def _describe_groups(self, group_ids: Sequence[str]) -> dict[str, Any]:
        futures = self._admin.describe_consumer_groups(list(group_ids), request_timeout=self._timeout_s)
        descriptions = {}
        for group_id, future in futures.items():
            try:
                descriptions[group_id] = future.result(timeout=self._timeout_s + 1)
            except KafkaException as exc:
                error = _kafka_error(exc)
                if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    continue
                raise _console_error(exc, f"cannot describe group '{group_id}'") from None
        return descriptions

    def _committed_offsets(self, group_ids: Sequence[str]) -> dict[str, dict[Partition, int]]:
        """Each group's committed offsets; the admin API takes one group per request, so all are sent
        before any answer is awaited."""
        futures = {
            group_id: self._admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group_id)], request_timeout=self._timeout_s
            )[group_id]
            for group_id in group_ids
        }
        committed: dict[str, dict[Partition, int]] = {}
        for group_id, future in futures.items():
            result = self._wait(future, f"the offsets of group '{group_id}'")
            committed[group_id] = {
                (tp.topic, tp.partition): tp.offset
                for tp in result.topic_partitions
                if tp.error is None and tp.offset != OFFSET_INVALID
            }
        return committed

    def _require_inactive(self, group_id: str) -> None:
        description = self._describe_groups([group_id]).get(group_id)
        if description is not None and description.state not in INACTIVE_STATES:
            raise ConsoleError(
                409,
                "NON_EMPTY_GROUP",
                f"cannot reset offsets of group '{group_id}': it is {_state_name(description.state)} with "
                f"{len(description.members)} active member(s); stop its consumers first",
            )

    def _alter_group_offsets(self, group_id: str, rows: Sequence[OffsetResetRow]) -> None:
        request = ConsumerGroupTopicPartitions(
            group_id, [TopicPartition(row.topic, row.partition, row.new) for row in rows]
        )
        futures = self._admin.alter_consumer_group_offsets([request], request_timeout=self._timeout_s)
        result = self._wait(futures[group_id], f"the offsets of group '{group_id}'")
        failed = [tp for tp in result.topic_partitions if tp.error is not None]
        if failed:
            raise _console_error(KafkaException(failed[0].error), f"cannot reset offsets of '{group_id}'")

    def _dead_letter_topic(self, topic: str) -> DeadLetters:
        config = {key: value for key, value in self._config.items() if key != "logger"}
        return DeadLetters(config, topic, timeout_s=self._timeout_s)


# -------------------------------------------------------------------------------------------- helpers


def payload(data: bytes | str | None) -> Payload:
    """How a page may show some bytes: JSON, text, or base64 when they are not UTF-8."""
    if data is None:
        return Payload("null", None, 0)
    raw = data.encode() if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Payload("base64", base64.b64encode(raw).decode("ascii"), len(raw))
    try:
        json.loads(text)
    except ValueError:
        return Payload("text", text, len(raw))
    return Payload("json", text, len(raw))


def _next_messages(consumer: Consumer) -> list[Message]:
    """What the consumer has fetched already, or else the next message within a poll slice (``consume``
    alone would wait out its timeout for a full batch)."""
    batch = consumer.consume(_MAX_BATCH, 0)
    if batch:
        return batch
    message = consumer.poll(_POLL_SLICE_S)
    return [] if message is None else [message]


def _console_message(message: Message) -> ConsoleMessage:
    timestamp_type, timestamp = message.timestamp()
    type_name = _TIMESTAMP_TYPE_NAMES.get(timestamp_type)
    return ConsoleMessage(
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=timestamp if type_name is not None else None,
        timestamp_type=type_name,
        key=payload(message.key()),
        value=payload(message.value()),
        headers=[MessageHeader(name, payload(value)) for name, value in _header_pairs(message)],
    )


def _replay_outcome(result: ReplayResult) -> ReplayOutcome:
    return ReplayOutcome(
        replayed=[
            ReplayedRecord(
                letter.partition,
                letter.offset,
                destination,
                None if delivery is None else delivery.partition,
                None if delivery is None else delivery.offset,
            )
            for letter, destination, delivery in result.replayed
        ],
        failed=[ReplayFailed(f.dead_letter.partition, f.dead_letter.offset, f.reason) for f in result.failed],
    )


def _dead_letter_record(letter: DeadLetter) -> DeadLetterRecord:
    return DeadLetterRecord(
        partition=letter.partition,
        offset=letter.offset,
        timestamp=letter.timestamp,
        key=payload(letter.key),
        value=payload(letter.value),
        original_topic=letter.original_topic,
        original_partition=letter.original_partition,
        original_offset=letter.original_offset,
        original_timestamp=letter.original_timestamp,
        original_group=letter.original_group,
        exception_type=letter.exception_type,
        exception_cause_type=letter.exception_cause_type,
        exception_message=letter.exception_message,
        stack_trace=letter.stack_trace,
        headers=[MessageHeader(name, payload(value)) for name, value in letter.headers],
    )


def _header_pairs(message: Message) -> list[tuple[str, bytes | str | None]]:
    headers = message.headers() or []
    return list(headers.items() if isinstance(headers, dict) else headers)


def _contains(data: bytes | str | None, wanted: str) -> bool:
    if data is None:
        return False
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return wanted.lower() in text.lower()


def group_lag(committed: Mapping[Partition, int], end_offsets: Mapping[Partition, int]) -> int:
    """A group's total lag: log end minus committed offset, over the partitions it has committed."""
    return sum(max(end_offsets[key] - offset, 0) for key, offset in committed.items() if key in end_offsets)


def _sum_if_known(values: Iterable[int | None]) -> int | None:
    """The sum, or None if any value is unknown (a partial total would mislead)."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_BROWSE_LIMIT:
        raise ConsoleError(400, "INVALID_REQUEST", f"limit must be between 1 and {MAX_BROWSE_LIMIT}")
    return limit


def _assignments(description: Any) -> set[Partition]:
    if description is None:
        return set()
    return {
        (tp.topic, tp.partition)
        for member in description.members
        for tp in member.assignment.topic_partitions
    }


def _by_topic(partitions: Iterable[Partition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, number in sorted(partitions):
        by_topic.setdefault(topic, []).append(number)
    return by_topic


def _state_name(state: ConsumerGroupState | None) -> str:
    return STATE_NAMES.get(state, "Unknown") if state is not None else "Unknown"


def _kafka_error(exc: BaseException) -> KafkaError | None:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error if isinstance(error, KafkaError) else None


def error_name(error: KafkaError) -> str:
    """Kafka's name for an error (UNKNOWN_TOPIC_OR_PARTITION), also for librdkafka's local ones."""
    code = error.code()
    if code in _LOCAL_ERROR_NAMES:
        return _LOCAL_ERROR_NAMES[code]
    if code >= 0:
        try:
            return ErrorCode.from_code(code).name
        except ValueError:
            pass
    return error.name().lstrip("_")


def _console_error(exc: BaseException, context: str) -> ConsoleError:
    """The ConsoleError for a client failure: its Kafka error name and the fitting HTTP status."""
    error = _kafka_error(exc)
    if error is None:
        if isinstance(exc, TimeoutError):
            return ConsoleError(504, "REQUEST_TIMED_OUT", f"{context}: no answer in time")
        return ConsoleError(500, "UNKNOWN_SERVER_ERROR", f"{context}: {exc}")
    name = error_name(error)
    status = _HTTP_STATUS_BY_ERROR.get(name)
    if status is None:
        status = 400 if name.startswith(("INVALID_", "POLICY_", "UNSUPPORTED_")) else 500
    return ConsoleError(status, name, f"{context}: {error.str()}")


def _dead_letter_error(exc: DeadLetterError) -> ConsoleError:
    if isinstance(exc, DeadLetterNotFound) or "does not exist" in str(exc):
        return ConsoleError(404, "NOT_FOUND", str(exc))
    return ConsoleError(503, "NETWORK_EXCEPTION", str(exc))
