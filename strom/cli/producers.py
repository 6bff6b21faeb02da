"""``strom producers describe``: the producers with state on a topic's partitions, as Kafka's
``kafka-transactions.sh describe-producers`` shows them, for finding transactions that hang.

Each partition's leader answers DescribeProducers for it (found with Metadata, so this works on a cluster).
A leader that moved, or a partition not yet led, is asked again with fresh metadata until ``--timeout``, as
Kafka's admin client does; other per-partition errors are reported and make the exit status 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from strom.cli.client import add_client_arguments, non_negative_int, print_error
from strom.cli.errors import CliError
from strom.cli.output import format_table, print_json
from strom.cli.transactions import Broker, RawAdminClient, error_text, wire_failures_as_cli_errors
from strom.protocol.errors import ErrorCode
from strom.protocol.messages import describe_producers

# Partition errors that a retry with fresh metadata may cure: the leader moved, or there is none yet.
_RETRIABLE = frozenset(
    {
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
    }
)
_NO_LEADER = -1


@dataclass(frozen=True)
class ProducerState:
    """One producer with state on one partition; None where the broker reports none (-1 on the wire)."""

    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    last_sequence: int | None
    last_timestamp: int | None
    coordinator_epoch: int | None
    txn_start_offset: int | None


@dataclass(frozen=True)
class ProducersReport:
    """What ``producers describe`` found: the producers, and why some partitions have no answer."""

    producers: list[ProducerState]
    failures: dict[int, str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``producers`` actions on the ``producers`` sub-parser."""
    actions = parser.add_subparsers(dest="producers_action", required=True, metavar="ACTION")
    describe = actions.add_parser(
        "describe",
        help="show the active producers of a topic's partitions",
        description="Show, per partition, each producer with state in the log: its epoch, last sequence "
        "and timestamp, the coordinator epoch of its last transaction marker, and the first offset of its "
        "open transaction (none: '-').",
    )
    describe.add_argument("topic", metavar="TOPIC")
    describe.add_argument(
        "--partition",
        action="append",
        type=non_negative_int,
        default=[],
        metavar="N",
        help="only this partition (repeatable; default: all)",
    )
    describe.add_argument("--json", action="store_true", help="machine-readable output")
    add_client_arguments(describe)


def run(args: argparse.Namespace) -> int:
    """Run ``producers describe``; returns the exit status."""
    with wire_failures_as_cli_errors(), RawAdminClient.from_args(args) as client:
        report = describe_topic_producers(client, args.topic, sorted(set(args.partition)))
    for partition, reason in sorted(report.failures.items()):
        print_error(f"cannot describe the producers of {args.topic}-{partition}: {reason}")
    if args.json:
        print_json([producer_state_json(state) for state in report.producers])
    elif report.producers:
        print(render_producers(report.producers))
    return 1 if report.failures else 0


def describe_topic_producers(
    client: RawAdminClient, topic: str, partitions: Sequence[int]
) -> ProducersReport:
    """DescribeProducers for ``partitions`` of ``topic`` (all when empty) from their leaders; partitions
    whose leader is moving are asked again until the deadline."""
    response = _topic_metadata(client, topic)
    pending = _existing_partitions(response, topic, partitions)
    producers: list[ProducerState] = []
    failures: dict[int, str] = {}
    while True:
        retry: dict[int, str] = {}
        leaders = _by_leader(client.brokers(response), response, topic, pending, retry)
        for leader, led in leaders.items():
            answered = _describe_on(client, leader, topic, led)
            for partition in led:
                outcome = answered.get(partition)
                if outcome is None:
                    failures[partition] = f"broker {leader} did not answer for it"
                elif isinstance(outcome, ErrorCode):
                    message = error_text(outcome)
                    (retry if outcome in _RETRIABLE else failures)[partition] = message
                else:
                    producers.extend(outcome)
        if not retry:
            break
        if not client.wait_to_retry():
            failures.update(retry)
            break
        pending = sorted(retry)
        response = _topic_metadata(client, topic)
    producers.sort(key=lambda state: (state.partition, state.producer_id))
    return ProducersReport(producers, failures)


def _topic_metadata(client: RawAdminClient, topic: str) -> Any:
    """Metadata naming the topic's partitions and their leaders; asked again while the cluster answers with
    a passing error (a topic still being created), a CliError for a topic that does not exist."""
    while True:
        response = client.metadata([topic])
        error = ErrorCode.from_code(_topic_answer(response, topic).error_code)
        if error == ErrorCode.NONE:
            return response
        if error == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
            raise CliError(f"topic '{topic}' does not exist")
        reason = f"cannot read the metadata of topic '{topic}': {error_text(error)}"
        if not error.retriable:
            raise CliError(reason)
        client.back_off(reason)


def _existing_partitions(response: Any, topic: str, wanted: Sequence[int]) -> list[int]:
    """The partitions to describe (``wanted``, or all), checked to exist."""
    existing = {partition.partition_index for partition in _topic_answer(response, topic).partitions}
    missing = sorted(set(wanted) - existing)
    if missing:
        raise CliError(f"topic '{topic}' has no partition {', '.join(map(str, missing))}")
    return sorted(wanted or existing)


def _by_leader(
    brokers: dict[int, Broker],
    response: Any,
    topic: str,
    partitions: Sequence[int],
    no_leader: dict[int, str],
) -> dict[Broker, list[int]]:
    """The partitions grouped by their leader; those without a known leader go into ``no_leader``."""
    leaders = {
        partition.partition_index: partition.leader_id
        for partition in _topic_answer(response, topic).partitions
    }
    grouped: dict[Broker, list[int]] = {}
    for partition in partitions:
        leader = brokers.get(leaders.get(partition, _NO_LEADER))
        if leader is None:
            no_leader[partition] = error_text(ErrorCode.LEADER_NOT_AVAILABLE)
        else:
            grouped.setdefault(leader, []).append(partition)
    return grouped


def _topic_answer(response: Any, topic: str) -> Any:
    for answer in response.topics:
        if answer.name == topic:
            return answer
    raise CliError(f"the cluster's metadata leaves out topic '{topic}'")


def _describe_on(
    client: RawAdminClient, leader: Broker, topic: str, partitions: list[int]
) -> dict[int, list[ProducerState] | ErrorCode]:
    """One leader's answer per partition: its producers, or the error it gave."""
    request = describe_producers.DescribeProducersRequest(
        topics=[
            describe_producers.DescribeProducersRequest.TopicRequest(name=topic, partition_indexes=partitions)
        ]
    )
    version = client.negotiate(leader.address, describe_producers.API_KEY)
    response = client.call(leader.address, describe_producers.API_KEY, version, request)
    answered: dict[int, list[ProducerState] | ErrorCode] = {}
    for topic_answer in response.topics:
        if topic_answer.name != topic:
            continue
        for partition in topic_answer.partitions:
            error = ErrorCode.from_code(partition.error_code)
            if error != ErrorCode.NONE:
                answered[partition.partition_index] = error
                continue
            answered[partition.partition_index] = [
                ProducerState(
                    topic=topic,
                    partition=partition.partition_index,
                    producer_id=producer.producer_id,
                    producer_epoch=producer.producer_epoch,
                    last_sequence=_known(producer.last_sequence),
                    last_timestamp=_known(producer.last_timestamp),
                    coordinator_epoch=_known(producer.coordinator_epoch),
                    txn_start_offset=_known(producer.current_txn_start_offset),
                )
                for producer in partition.active_producers
            ]
    return answered


def render_producers(producers: Sequence[ProducerState]) -> str:
    """The producers as an aligned table, one row per partition and producer."""
    rows = [
        (
            state.partition,
            state.producer_id,
            state.producer_epoch,
            state.last_sequence,
            state.last_timestamp,
            state.coordinator_epoch,
            state.txn_start_offset,
        )
        for state in producers
    ]
    headers = (
        "PARTITION",
        "PRODUCER-ID",
        "EPOCH",
        "LAST-SEQUENCE",
        "LAST-TIMESTAMP",
        "COORDINATOR-EPOCH",
        "TXN-START-OFFSET",
    )
    return format_table(headers, rows)


def producer_state_json(state: ProducerState) -> dict[str, Any]:
    """JSON document for one producer of one partition; values the broker does not know are null."""
    return {
        "topic": state.topic,
        "partition": state.partition,
        "producer_id": state.producer_id,
        "producer_epoch": state.producer_epoch,
        "last_sequence": state.last_sequence,
        "last_timestamp": state.last_timestamp,
        "coordinator_epoch": state.coordinator_epoch,
        "txn_start_offset": state.txn_start_offset,
    }


def _known(value: int) -> int | None:
    """Kafka writes -1 (any negative number) for "none"."""
    return None if value < 0 else value
