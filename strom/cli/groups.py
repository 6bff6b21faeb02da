"""``strom groups``: list, describe, reset offsets of and delete consumer groups.

Like the other client commands this talks to the cluster through confluent-kafka's admin API, so it works
against Apache Kafka as well; the rules follow Kafka's ``kafka-consumer-groups`` tool: offsets can be reset
only while a group is inactive (Empty, or unknown), ``--to-offset`` and ``--shift-by`` are clamped to the log,
``--to-datetime`` falls back to the log end where no record is that recent, and a reset is a dry run unless
``--execute`` is given. confluent-kafka has no call for OffsetDelete, so ``delete-offsets`` sends that one
request itself (plaintext listeners only) with Strom's raw protocol client.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    OFFSET_INVALID,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from strom.cli.client import (
    CliError,
    add_client_arguments,
    client_config,
    create_client,
    fetch_metadata,
    kafka_error_of,
    kafka_error_text,
    non_negative_int,
    print_error,
    print_warning,
    wait_future,
)
from strom.cli.consume import parse_timestamp
from strom.cli.output import MISSING, format_table, print_json
from strom.protocol.client import BrokerConnection, BrokerConnectionError, UnsupportedApiError
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import find_coordinator, offset_delete

# Kafka's names for the classic group states (librdkafka spells the rebalancing ones differently).
STATE_NAMES = {
    ConsumerGroupState.UNKNOWN: "Unknown",
    ConsumerGroupState.PREPARING_REBALANCING: "PreparingRebalance",
    ConsumerGroupState.COMPLETING_REBALANCING: "CompletingRebalance",
    ConsumerGroupState.STABLE: "Stable",
    ConsumerGroupState.DEAD: "Dead",
    ConsumerGroupState.EMPTY: "Empty",
}
_STATES_BY_NAME = {
    name.lower(): state for state, name in STATE_NAMES.items() if state is not ConsumerGroupState.UNKNOWN
}
# A group may have its offsets reset only in these states: nobody is consuming, so nobody overwrites them.
INACTIVE_STATES = frozenset({ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD})

FIND_COORDINATOR_KEY = 10
OFFSET_DELETE_KEY = 47

Handler = Callable[[argparse.Namespace, AdminClient, Any], int]
Partition = tuple[str, int]


# ------------------------------------------------------------------------------------------- what is shown


@dataclass(frozen=True)
class MemberState:
    """One member of a group as DescribeGroups reports it."""

    member_id: str
    instance_id: str | None
    client_id: str
    host: str
    assignment: list[Partition]


@dataclass(frozen=True)
class PartitionProgress:
    """How far a group has read one partition; None where nothing is committed or the cluster cannot say."""

    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    member_id: str | None

    @property
    def lag(self) -> int | None:
        """Messages between the committed offset and the log end, Kafka's consumer lag."""
        if self.committed is None or self.log_end is None:
            return None
        return self.log_end - self.committed


@dataclass(frozen=True)
class GroupState:
    """Everything ``groups describe`` reports about one group."""

    group: str
    state: str
    assignor: str
    coordinator: str | None
    members: list[MemberState]
    partitions: list[PartitionProgress]

    @property
    def total_lag(self) -> int:
        return sum(progress.lag for progress in self.partitions if progress.lag is not None)


@dataclass(frozen=True)
class OffsetReset:
    """One partition's committed offset before and after a reset."""

    topic: str
    partition: int
    current: int | None
    new: int


@dataclass(frozen=True)
class ResetTarget:
    """Where ``reset-offsets`` moves each partition: a ``kind`` of earliest, latest, datetime, offset or
    shift, with ``value`` the epoch milliseconds, offset or shift (0 for earliest and latest)."""

    kind: str
    value: int = 0


@dataclass(frozen=True)
class LogBounds:
    """What a reset plan reads from the cluster for each partition."""

    earliest: dict[Partition, int]
    latest: dict[Partition, int]
    committed: dict[Partition, int]
    at_time: dict[Partition, int | None]


# ------------------------------------------------------------------------------------------------ arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``groups`` actions on the ``groups`` sub-parser."""
    actions = parser.add_subparsers(dest="groups_action", required=True, metavar="ACTION")

    list_ = actions.add_parser(
        "list", help="list consumer groups", description="List the consumer groups of the cluster."
    )
    list_.add_argument(
        "--state",
        action="append",
        type=_group_states,
        default=[],
        metavar="STATE[,STATE...]",
        help="only groups in these states (repeatable): "
        + ", ".join(STATE_NAMES[state] for state in _STATES_BY_NAME.values()),
    )
    list_.add_argument("--json", action="store_true", help="machine-readable output")
    list_.set_defaults(groups_handler=_list)

    describe = actions.add_parser(
        "describe",
        help="show state, members, committed offsets and lag of groups",
        description="Show each group's state, assignor and members (client id, host, assignment), and per "
        "partition the committed offset, the log end offset and the lag.",
    )
    describe.add_argument("groups", nargs="+", metavar="GROUP")
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    describe.set_defaults(groups_handler=_describe)

    reset = actions.add_parser(
        "reset-offsets",
        help="move a group's committed offsets (a dry run unless --execute)",
        description="Move the committed offsets of an inactive group. Prints the plan; only --execute "
        "applies it. Refused while the group has active members, as Kafka's tool does.",
    )
    reset.add_argument("group", metavar="GROUP")
    scope = reset.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--topic",
        action="append",
        type=_topic_partitions,
        metavar="TOPIC[:P,...]",
        help="a topic, or some of its partitions (repeatable)",
    )
    scope.add_argument(
        "--all-topics", action="store_true", help="every partition the group has committed offsets for"
    )
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="to the first offset of each partition")
    target.add_argument("--to-latest", action="store_true", help="to the log end of each partition")
    target.add_argument(
        "--to-datetime",
        type=parse_timestamp,
        metavar="ISO8601",
        help="to the first record at or after this time: ISO 8601 (local time unless it names a zone) or "
        "epoch milliseconds",
    )
    target.add_argument("--to-offset", type=non_negative_int, metavar="N", help="to offset N")
    target.add_argument(
        "--shift-by", type=int, metavar="N", help="by N from the committed offset (N < 0: back)"
    )
    reset.add_argument("--execute", action="store_true", help="apply the plan (default: only show it)")
    reset.add_argument("--json", action="store_true", help="machine-readable output")
    reset.set_defaults(groups_handler=_reset_offsets)

    delete = actions.add_parser(
        "delete", help="delete inactive groups", description="Delete groups that have no active members."
    )
    delete.add_argument("groups", nargs="+", metavar="GROUP")
    delete.set_defaults(groups_handler=_delete)

    delete_offsets = actions.add_parser(
        "delete-offsets",
        help="delete a group's committed offsets for a topic",
        description="Delete the committed offsets of a group for one topic (all its partitions unless "
        "--partition is given). Refused for topics the group's active members are subscribed to.",
    )
    delete_offsets.add_argument("group", metavar="GROUP")
    delete_offsets.add_argument("--topic", required=True, metavar="TOPIC")
    delete_offsets.add_argument(
        "--partition",
        action="append",
        type=non_negative_int,
        default=[],
        metavar="N",
        help="only this partition (repeatable)",
    )
    delete_offsets.set_defaults(groups_handler=_delete_offsets)

    for action_parser in (list_, describe, reset, delete, delete_offsets):
        add_client_arguments(action_parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``groups`` action; returns the exit status."""
    admin = create_client(AdminClient, client_config(args))
    metadata = fetch_metadata(admin, args)
    handler: Handler = args.groups_handler
    return handler(args, admin, metadata)


def _group_states(text: str) -> set[ConsumerGroupState]:
    """argparse type for ``--state``: comma-separated Kafka state names, any case."""
    states: set[ConsumerGroupState] = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        state = _STATES_BY_NAME.get(name.lower())
        if state is None:
            known = ", ".join(STATE_NAMES[state] for state in _STATES_BY_NAME.values())
            raise argparse.ArgumentTypeError(f"unknown group state {name!r}; expected one of {known}")
        states.add(state)
    return states


def _topic_partitions(text: str) -> tuple[str, list[int] | None]:
    """argparse type for ``--topic``: ``TOPIC`` (every partition) or ``TOPIC:P,P,...``."""
    topic, separator, partitions = text.partition(":")
    if not topic:
        raise argparse.ArgumentTypeError(f"expected TOPIC or TOPIC:P,P,..., got {text!r}")
    if not separator:
        return topic, None
    try:
        numbers = [int(part) for part in partitions.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TOPIC:P,P,... with partition numbers, got {text!r}"
        ) from None
    if any(number < 0 for number in numbers):
        raise argparse.ArgumentTypeError(f"partition numbers cannot be negative: {text!r}")
    return topic, sorted(set(numbers))


# ------------------------------------------------------------------------------------------------- list


def _list(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    states: set[ConsumerGroupState] = set().union(*args.state)
    options: dict[str, Any] = {"request_timeout": args.timeout}
    if states:
        options["states"] = states
    result = _admin_result(admin.list_consumer_groups(**options), args, "cannot list groups")
    for error in result.errors:
        print_warning(f"some groups could not be listed: {kafka_error_text(error)}")
    listings = sorted(result.valid, key=lambda listing: listing.group_id)
    rows = [(listing.group_id, _state_name(listing.state)) for listing in listings]
    if args.json:
        print_json([{"group": group, "state": state} for group, state in rows])
    elif rows:
        print(format_table(("GROUP", "STATE"), rows))
    return 0


# --------------------------------------------------------------------------------------------- describe


def _describe(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    groups = list(dict.fromkeys(args.groups))
    futures = admin.describe_consumer_groups(groups, request_timeout=args.timeout)
    status = 0
    states = []
    for group in groups:
        try:
            description = wait_future(futures[group], args)
        except KafkaException as exc:
            print_error(f"cannot describe group '{group}': {kafka_error_text(exc)}")
            status = 1
            continue
        if description.state is ConsumerGroupState.DEAD:
            # Kafka describes a group it does not know as Dead rather than answering with an error.
            print_error(f"group '{group}' does not exist")
            status = 1
            continue
        states.append(_group_state(admin, description, args))
    if args.json:
        print_json([group_state_json(state) for state in states])
    elif states:
        print("\n\n".join(render_group_state(state) for state in states))
    return status


def _group_state(admin: AdminClient, description: Any, args: argparse.Namespace) -> GroupState:
    """Combine a group's description, its committed offsets and the log end of every partition involved."""
    members = [
        MemberState(
            member_id=member.member_id,
            instance_id=member.group_instance_id,
            client_id=member.client_id,
            host=member.host,
            assignment=sorted((tp.topic, tp.partition) for tp in member.assignment.topic_partitions),
        )
        for member in description.members
    ]
    owner = {partition: member.member_id for member in members for partition in member.assignment}
    committed = _committed_offsets(admin, description.group_id, args)
    partitions = sorted({*owner, *committed})
    log_end = _log_offsets(admin, partitions, OffsetSpec.latest(), args)
    coordinator = description.coordinator
    return GroupState(
        group=description.group_id,
        state=_state_name(description.state),
        assignor=description.partition_assignor or "",
        coordinator=None
        if coordinator is None
        else f"{coordinator.id} ({coordinator.host}:{coordinator.port})",
        members=sorted(members, key=lambda member: (member.assignment[:1], member.member_id)),
        partitions=[
            PartitionProgress(
                topic=topic,
                partition=partition,
                committed=committed.get((topic, partition)),
                log_end=log_end.get((topic, partition)),
                member_id=owner.get((topic, partition)),
            )
            for topic, partition in partitions
        ],
    )


def render_group_state(state: GroupState) -> str:
    """Aligned text for one described group."""
    lines = [
        f"Group: {state.group}",
        f"  State: {state.state}  Assignor: {state.assignor or MISSING}  "
        f"Coordinator: {state.coordinator or MISSING}  Members: {len(state.members)}",
    ]
    if state.members:
        member_rows = [
            (member.member_id, member.instance_id, member.client_id, member.host, _assignment_text(member))
            for member in state.members
        ]
        lines.append(
            format_table(
                ("MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"), member_rows, indent="  "
            )
        )
    if state.partitions:
        partition_rows = [
            (
                progress.topic,
                progress.partition,
                progress.committed,
                progress.log_end,
                progress.lag,
                progress.member_id,
            )
            for progress in state.partitions
        ]
        lines.append(
            format_table(
                ("TOPIC", "PARTITION", "COMMITTED", "LOG-END", "LAG", "MEMBER-ID"),
                partition_rows,
                indent="  ",
            )
        )
    else:
        lines.append("  No partitions assigned or committed.")
    lines.append(f"  Total lag: {state.total_lag}")
    return "\n".join(lines)


def group_state_json(state: GroupState) -> dict[str, Any]:
    """JSON document for one described group; unknown offsets and lags are null."""
    return {
        "group": state.group,
        "state": state.state,
        "assignor": state.assignor,
        "coordinator": state.coordinator,
        "members": [
            {
                "member_id": member.member_id,
                "instance_id": member.instance_id,
                "client_id": member.client_id,
                "host": member.host,
                "assignment": _assignment_by_topic(member.assignment),
            }
            for member in state.members
        ],
        "partitions": [
            {
                "topic": progress.topic,
                "partition": progress.partition,
                "committed": progress.committed,
                "log_end": progress.log_end,
                "lag": progress.lag,
                "member_id": progress.member_id,
            }
            for progress in state.partitions
        ],
        "total_lag": state.total_lag,
    }


def _assignment_by_topic(assignment: Iterable[Partition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(assignment):
        by_topic.setdefault(topic, []).append(partition)
    return by_topic


def _assignment_text(member: MemberState) -> str:
    """``topic:0,1;other:2``, Kafka's tool's way of writing an assignment."""
    by_topic = _assignment_by_topic(member.assignment)
    return ";".join(f"{topic}:{','.join(map(str, partitions))}" for topic, partitions in by_topic.items())


# ---------------------------------------------------------------------------------------- reset-offsets


def _reset_offsets(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    _require_inactive(admin, args.group, args)
    committed = _committed_offsets(admin, args.group, args)
    if args.all_topics:
        partitions = sorted(committed)
        if not partitions:
            raise CliError(f"group '{args.group}' has no committed offsets to reset")
    else:
        partitions = _named_partitions(args.topic, metadata)
    bounds = LogBounds(
        earliest=_log_offsets(admin, partitions, OffsetSpec.earliest(), args, required=True),
        latest=_log_offsets(admin, partitions, OffsetSpec.latest(), args, required=True),
        committed=committed,
        at_time={},
    )
    target = _reset_target(args)
    if target.kind == "datetime":
        bounds.at_time.update(_offsets_at_time(admin, partitions, target.value, args))
    plan, warnings = plan_offset_reset(partitions, target, bounds)
    for warning in warnings:
        print_warning(warning)

    if args.json:
        print_json(
            [
                {"topic": row.topic, "partition": row.partition, "current": row.current, "new": row.new}
                for row in plan
            ]
        )
    else:
        rows = [(args.group, row.topic, row.partition, row.current, row.new) for row in plan]
        print(format_table(("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"), rows))
    if not args.execute:
        print_warning("dry run: nothing was changed; add --execute to apply these offsets")
        return 0
    _alter_offsets(admin, args.group, plan, args)
    if not args.json:
        print(f"Reset offsets of group {args.group} for {len(plan)} partition(s).")
    return 0


def _reset_target(args: argparse.Namespace) -> ResetTarget:
    if args.to_earliest:
        return ResetTarget("earliest")
    if args.to_latest:
        return ResetTarget("latest")
    if args.to_datetime is not None:
        return ResetTarget("datetime", args.to_datetime)
    if args.to_offset is not None:
        return ResetTarget("offset", args.to_offset)
    return ResetTarget("shift", args.shift_by)


def plan_offset_reset(
    partitions: Sequence[Partition], target: ResetTarget, bounds: LogBounds
) -> tuple[list[OffsetReset], list[str]]:
    """The new offset of each partition, and warnings about offsets that had to be adjusted.

    Kafka's rules: an explicit offset or shift outside the log is clamped to its first or end offset; a time
    later than every record falls back to the log end; a shift needs a committed offset to start from.
    """
    plan = []
    warnings = []
    for topic, partition in partitions:
        key = (topic, partition)
        earliest, latest = bounds.earliest[key], bounds.latest[key]
        current = bounds.committed.get(key)
        if target.kind == "earliest":
            new = earliest
        elif target.kind == "latest":
            new = latest
        elif target.kind == "datetime":
            found = bounds.at_time.get(key)
            if found is None:
                warnings.append(f"{topic}-{partition} has no record at or after that time; using its log end")
                new = latest
            else:
                new = found
        else:
            if target.kind == "shift":
                if current is None:
                    raise CliError(
                        f"cannot shift the offset of {topic}-{partition}: the group has no committed offset "
                        "for it"
                    )
                requested = current + target.value
            else:
                requested = target.value
            new = min(max(requested, earliest), latest)
            if new != requested:
                edge = "log end" if requested > latest else "first offset"
                warnings.append(f"offset {requested} is outside {topic}-{partition}; using its {edge} {new}")
        plan.append(OffsetReset(topic, partition, current, new))
    return plan, warnings


def _require_inactive(admin: AdminClient, group: str, args: argparse.Namespace) -> None:
    """Refuse to touch the offsets of a group whose members are consuming, as Kafka's tool does."""
    future = admin.describe_consumer_groups([group], request_timeout=args.timeout)[group]
    try:
        description = wait_future(future, args)
    except KafkaException as exc:
        error = kafka_error_of(exc)
        if error is not None and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return
        raise CliError(f"cannot describe group '{group}': {kafka_error_text(exc)}") from None
    if description.state not in INACTIVE_STATES:
        raise CliError(
            f"cannot reset offsets of group '{group}': it is {_state_name(description.state)} with "
            f"{len(description.members)} active member(s); offsets can be reset only while the group is "
            "inactive, so stop its consumers first"
        )


def _named_partitions(topics: list[tuple[str, list[int] | None]], metadata: Any) -> list[Partition]:
    """The partitions ``--topic`` names, all checked to exist."""
    partitions: set[Partition] = set()
    for topic, numbers in topics:
        if topic not in metadata.topics:
            raise CliError(f"topic '{topic}' does not exist")
        existing = set(metadata.topics[topic].partitions)
        missing = sorted(set(numbers or ()) - existing)
        if missing:
            raise CliError(f"topic '{topic}' has no partition {', '.join(map(str, missing))}")
        partitions.update((topic, number) for number in (numbers if numbers is not None else existing))
    return sorted(partitions)


def _alter_offsets(admin: AdminClient, group: str, plan: list[OffsetReset], args: argparse.Namespace) -> None:
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(row.topic, row.partition, row.new) for row in plan]
    )
    future = admin.alter_consumer_group_offsets([request], request_timeout=args.timeout)[group]
    result = _admin_result(future, args, f"cannot reset offsets of group '{group}'")
    failed = [tp for tp in result.topic_partitions if tp.error is not None]
    if failed:
        details = ", ".join(f"{tp.topic}-{tp.partition}: {kafka_error_text(tp.error)}" for tp in failed)
        raise CliError(f"cannot reset offsets of group '{group}': {details}")


# ------------------------------------------------------------------------------------------------ delete


def _delete(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    groups = list(dict.fromkeys(args.groups))
    futures = admin.delete_consumer_groups(groups, request_timeout=args.timeout)
    status = 0
    for group in groups:
        try:
            wait_future(futures[group], args)
        except KafkaException as exc:
            print_error(f"cannot delete group '{group}': {kafka_error_text(exc)}")
            status = 1
        else:
            print(f"Deleted group {group}.")
    return status


# ---------------------------------------------------------------------------------------- delete-offsets


def _delete_offsets(args: argparse.Namespace, admin: AdminClient, metadata: Any) -> int:
    if args.partition:
        partitions = sorted(set(args.partition))
    elif args.topic in metadata.topics:
        partitions = sorted(metadata.topics[args.topic].partitions)
    else:
        raise CliError(f"topic '{args.topic}' does not exist")
    brokers = [(broker.host, broker.port) for broker in metadata.brokers.values()]
    if not brokers:
        raise CliError("the cluster named no brokers")
    _require_plaintext(args)
    errors = OffsetDeleter(brokers, args.timeout).delete(args.group, args.topic, partitions)
    rows = [
        (args.topic, partition, "deleted" if code == ErrorCode.NONE else f"error: {_error_text(code)}")
        for partition, code in sorted(errors.items())
    ]
    print(format_table(("TOPIC", "PARTITION", "STATUS"), rows))
    return 0 if all(code == ErrorCode.NONE for code in errors.values()) else 1


def _require_plaintext(args: argparse.Namespace) -> None:
    protocol = dict(args.client_properties).get("security.protocol", "plaintext")
    if protocol.lower() != "plaintext":
        raise CliError(f"delete-offsets speaks only to plaintext listeners, not security.protocol={protocol}")


class OffsetDeleter:
    """Sends one OffsetDelete request to a group's coordinator, found with FindCoordinator.

    Coordinator errors that go away by themselves (loading, moved, not yet available) are retried until
    the deadline; any other group-level error ends the command.
    """

    _CLIENT_ID = "strom-cli"
    _GROUP_KEY_TYPE = 0
    _RETRY_BACKOFF_S = 0.2
    _RETRIABLE = frozenset(
        {
            ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
            ErrorCode.COORDINATOR_NOT_AVAILABLE,
            ErrorCode.NOT_COORDINATOR,
        }
    )

    def __init__(self, brokers: Sequence[tuple[str, int]], timeout: float) -> None:
        self._brokers = list(brokers)
        self._deadline = time.monotonic() + timeout
        self._timeout = timeout

    def delete(self, group: str, topic: str, partitions: Sequence[int]) -> dict[int, ErrorCode]:
        """Each partition's outcome (NONE when its offset is gone)."""
        request = offset_delete.OffsetDeleteRequest(
            group_id=group,
            topics=[
                offset_delete.OffsetDeleteRequest.OffsetDeleteRequestTopic(
                    name=topic,
                    partitions=[
                        offset_delete.OffsetDeleteRequest.OffsetDeleteRequestPartition(partition)
                        for partition in partitions
                    ],
                )
            ],
        )
        with _wire_failures_as_cli_errors():
            while True:
                host, port = self._find_coordinator(group)
                with self._connect(host, port) as connection:
                    version = connection.negotiate(OFFSET_DELETE_KEY)
                    response = connection.call(OFFSET_DELETE_KEY, version, request)
                error = ErrorCode.from_code(response.error_code)
                if error in self._RETRIABLE:
                    self._back_off(f"the coordinator of group '{group}' did not answer: {_error_text(error)}")
                    continue
                if error not in (ErrorCode.NONE, ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC):
                    raise CliError(f"cannot delete offsets of group '{group}': {_error_text(error)}")
                outcome = {partition: ErrorCode.NONE for partition in partitions}
                for answered in response.topics:
                    for result in answered.partitions:
                        outcome[result.partition_index] = ErrorCode.from_code(result.error_code)
                return outcome

    def _find_coordinator(self, group: str) -> tuple[str, int]:
        while True:
            answer = self._ask_any_broker(group)
            error = ErrorCode.from_code(answer.error_code)
            if error == ErrorCode.NONE:
                return answer.host, answer.port
            if error not in self._RETRIABLE:
                raise CliError(f"cannot find the coordinator of group '{group}': {_error_text(error)}")
            self._back_off(f"the coordinator of group '{group}' is not available: {_error_text(error)}")

    def _ask_any_broker(self, group: str) -> Any:
        """FindCoordinator's answer for the group (host, port, error_code) from the first broker that can
        be reached."""
        unreachable: BrokerConnectionError | None = None
        for host, port in self._brokers:
            try:
                connection = self._connect(host, port)
            except BrokerConnectionError as exc:
                unreachable = exc
                continue
            with connection:
                version = connection.negotiate(FIND_COORDINATOR_KEY)
                # v4 (KIP-699) asks for a list of keys instead of one; each version may carry only its own.
                if version >= 4:
                    request = find_coordinator.FindCoordinatorRequest(
                        key_type=self._GROUP_KEY_TYPE, coordinator_keys=[group]
                    )
                else:
                    request = find_coordinator.FindCoordinatorRequest(
                        key=group, key_type=self._GROUP_KEY_TYPE
                    )
                response = connection.call(FIND_COORDINATOR_KEY, version, request)
            if version >= 4:
                (answer,) = response.coordinators
                return answer
            return response
        assert unreachable is not None
        raise unreachable

    def _connect(self, host: str, port: int) -> BrokerConnection:
        return BrokerConnection(host, port, timeout=self._remaining(), client_id=self._CLIENT_ID)

    def _remaining(self) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise CliError(f"no answer from the cluster within {self._timeout:g} s")
        return remaining

    def _back_off(self, reason: str) -> None:
        if time.monotonic() + self._RETRY_BACKOFF_S >= self._deadline:
            raise CliError(reason)
        time.sleep(self._RETRY_BACKOFF_S)


@contextlib.contextmanager
def _wire_failures_as_cli_errors() -> Iterator[None]:
    """The raw client's failures (unreachable, hung up, silent, no common API version) as the one-line
    errors the CLI prints."""
    try:
        yield
    except (BrokerConnectionError, UnsupportedApiError) as exc:
        raise CliError(str(exc)) from None


# ---------------------------------------------------------------------------------------------- helpers


def _admin_result(future: Any, args: argparse.Namespace, failure: str) -> Any:
    try:
        return wait_future(future, args)
    except KafkaException as exc:
        raise CliError(f"{failure}: {kafka_error_text(exc)}") from None


def _committed_offsets(admin: AdminClient, group: str, args: argparse.Namespace) -> dict[Partition, int]:
    """The group's committed offset of every partition it has one for."""
    request = ConsumerGroupTopicPartitions(group)
    future = admin.list_consumer_group_offsets([request], request_timeout=args.timeout)[group]
    result = _admin_result(future, args, f"cannot read the committed offsets of group '{group}'")
    committed = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            print_warning(
                f"cannot read the committed offset of {tp.topic}-{tp.partition}: {kafka_error_text(tp.error)}"
            )
        elif tp.offset != OFFSET_INVALID:
            committed[(tp.topic, tp.partition)] = tp.offset
    return committed


def _log_offsets(
    admin: AdminClient,
    partitions: Sequence[Partition],
    spec: OffsetSpec,
    args: argparse.Namespace,
    *,
    required: bool = False,
) -> dict[Partition, int]:
    """An offset per partition (first, end or by time); a partition the cluster cannot answer for is left
    out with a warning, or ends the command when ``required``."""
    if not partitions:
        return {}
    futures = admin.list_offsets(
        {TopicPartition(topic, partition): spec for topic, partition in partitions},
        request_timeout=args.timeout,
    )
    offsets = {}
    for tp, future in futures.items():
        try:
            offsets[(tp.topic, tp.partition)] = wait_future(future, args).offset
        except KafkaException as exc:
            message = f"cannot read offsets of {tp.topic}-{tp.partition}: {kafka_error_text(exc)}"
            if required:
                raise CliError(message) from None
            print_warning(message)
    return offsets


def _offsets_at_time(
    admin: AdminClient, partitions: Sequence[Partition], timestamp_ms: int, args: argparse.Namespace
) -> dict[Partition, int | None]:
    """First offset at or after the time per partition; None where every record is older (-1 on the wire)."""
    offsets = _log_offsets(admin, partitions, OffsetSpec.for_timestamp(timestamp_ms), args, required=True)
    return {partition: None if offset < 0 else offset for partition, offset in offsets.items()}


def _state_name(state: ConsumerGroupState | None) -> str:
    return STATE_NAMES.get(state, "Unknown") if state is not None else "Unknown"


def _error_text(error: ErrorCode) -> str:
    return f"{error.name}: {error.message}" if error.message else error.name
