"""``strom consume``: print a topic's messages, one line each.

Without ``--group`` the command assigns partitions itself and never commits, so it leaves no trace on the
cluster; it starts at the end unless told otherwise, like Kafka's console consumer. With ``--group`` it joins
the group (or, with ``--partition``, assigns that partition under the group) and resumes from the committed
offsets; ``--from-beginning`` / ``--from-end`` then only choose where to start when the group has no committed
offset, while ``--offset`` and ``--from-timestamp`` override it.

Offsets are stored for commit only after a batch has been written and flushed to stdout, so a message that
did not reach the reader (a closed pipe, Ctrl-C, ``--count`` reached) is never committed as consumed.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_STORED,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.cli.client import (
    DEFAULT_TIMEOUT_S,
    CliError,
    add_client_arguments,
    client_config,
    create_client,
    fetch_metadata,
    kafka_error_text,
    non_negative_int,
    positive_int,
    print_warning,
)
from strom.cli.message_format import OUTPUT_FORMATS, format_message

ISOLATION_LEVELS = ("read_uncommitted", "read_committed")
JSON_FORMAT_HELP = (
    "--format json prints one object per line with topic, partition, offset, timestamp (ms), timestamp_type, "
    "key, value and headers ([name, value] pairs). Bytes that are not valid UTF-8 are base64-encoded under "
    'key_b64 / value_b64 instead of key / value, and as {"b64": ...} for a header value.'
)
# The longest single wait inside the poll loop, so Ctrl-C and the idle deadline are noticed promptly.
_POLL_SLICE_S = 0.5
_MAX_BATCH = 500
_FATAL_CODES = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError._UNKNOWN_TOPIC,
    }
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``consume`` options."""
    parser.epilog = JSON_FORMAT_HELP
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument("-g", "--group", metavar="GROUP", help="consume as a member of this consumer group")
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the earliest message (with --group: when the group has no committed offset)",
    )
    start.add_argument(
        "--from-end", action="store_true", help="start after the latest message (default without --group)"
    )
    start.add_argument("--offset", type=non_negative_int, metavar="N", help="start at offset N")
    start.add_argument(
        "--from-timestamp",
        type=parse_timestamp,
        metavar="MS_OR_ISO8601",
        help="start at the first message at or after this time: epoch milliseconds or ISO 8601 "
        "(local time unless it names a zone, e.g. 2024-05-01T12:00:00Z)",
    )
    parser.add_argument("--partition", type=non_negative_int, metavar="N", help="read only partition N")
    parser.add_argument("--count", type=positive_int, metavar="N", help="exit after N messages")
    parser.add_argument(
        "--format", choices=OUTPUT_FORMATS, default="value", help="output format (default: value)"
    )
    parser.add_argument(
        "--isolation-level",
        choices=ISOLATION_LEVELS,
        default="read_uncommitted",
        help="whether to skip records of open and aborted transactions (default: read_uncommitted)",
    )
    parser.add_argument(
        "--key-separator",
        default="\t",
        metavar="SEP",
        help="between key and value in kv format (default: tab)",
    )
    add_client_arguments(
        parser,
        timeout_help="stop after this many seconds without a message (0 waits forever); also bounds "
        f"waiting for the cluster (default: {DEFAULT_TIMEOUT_S:g})",
    )


@dataclass
class _Tally:
    """Messages written so far; kept outside the loop so Ctrl-C still reports the number."""

    written: int = 0


def run(args: argparse.Namespace) -> int:
    """Print messages until --count is reached, the idle timeout passes, or Ctrl-C."""
    connect_timeout = args.timeout if args.timeout > 0 else DEFAULT_TIMEOUT_S
    config = client_config(args, _consumer_defaults(args))
    consumer = create_client(Consumer, config)
    tally = _Tally()
    interrupted = False
    try:
        partitions = _topic_partitions(consumer, args, connect_timeout)
        if args.group is not None and args.partition is None:
            on_assign = _position_on_assign(args, connect_timeout, _uses_incremental_rebalance(config))
            consumer.subscribe([args.topic], on_assign=on_assign)
        else:
            consumer.assign(_start_positions(consumer, partitions, args, connect_timeout))
        _print_messages(consumer, args, tally)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        consumer.close()
    print(f"Processed a total of {tally.written} messages", file=sys.stderr)
    if args.count is not None and tally.written < args.count and not interrupted:
        raise CliError(
            f"only {tally.written} of {args.count} messages arrived before {args.timeout:g} s passed idle"
        )
    return 0


def parse_timestamp(text: str) -> int:
    """argparse type: epoch milliseconds, or an ISO 8601 time (local time when it names no zone)."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epoch milliseconds or an ISO 8601 time, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _print_messages(consumer: Consumer, args: argparse.Namespace, tally: _Tally) -> None:
    """Write batches to stdout until --count or the idle timeout; offsets are stored after each flush."""
    out = sys.stdout.buffer
    separator = args.key_separator.encode()
    idle_deadline = time.monotonic() + args.timeout
    while args.count is None or tally.written < args.count:
        wait = _POLL_SLICE_S
        if args.timeout > 0:
            remaining = idle_deadline - time.monotonic()
            if remaining <= 0:
                return
            wait = min(wait, remaining)
        limit = _MAX_BATCH if args.count is None else min(_MAX_BATCH, args.count - tally.written)
        batch = [
            message for message in consumer.consume(num_messages=limit, timeout=wait) if _is_record(message)
        ]
        if not batch:
            continue
        out.write(b"".join(format_message(message, args.format, separator) for message in batch))
        out.flush()
        tally.written += len(batch)
        if args.group is not None:
            _store_offsets(consumer, batch)
        idle_deadline = time.monotonic() + args.timeout


def _is_record(message: Message) -> bool:
    """True for a record; consumer errors either stop the command or become a warning."""
    error = message.error()
    if error is None:
        return True
    if error.code() == KafkaError._PARTITION_EOF:
        return False
    if error.fatal() or error.code() in _FATAL_CODES:
        raise CliError(f"cannot consume from '{message.topic()}': {kafka_error_text(error)}")
    print_warning(kafka_error_text(error))
    return False


def _store_offsets(consumer: Consumer, batch: list[Message]) -> None:
    """Mark the batch as consumed, so the group's next commit covers exactly what was written."""
    last_by_partition = {(message.topic(), message.partition()): message for message in batch}
    for message in last_by_partition.values():
        # A partition revoked meanwhile refuses the store; its new owner reads these messages again.
        with contextlib.suppress(KafkaException):
            consumer.store_offsets(message=message)


def _topic_partitions(consumer: Consumer, args: argparse.Namespace, timeout: float) -> list[int]:
    """Partition ids to read; fails clearly when the cluster, the topic or the partition is missing."""
    metadata = fetch_metadata(consumer, args, topic=args.topic, timeout=timeout)
    topic = metadata.topics.get(args.topic)
    error = None if topic is None else topic.error
    if topic is None or (error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        raise CliError(f"topic '{args.topic}' does not exist")
    if error is not None and not topic.partitions:
        raise CliError(f"cannot consume from '{args.topic}': {kafka_error_text(error)}")
    partition_ids = sorted(topic.partitions)
    if args.partition is None:
        return partition_ids
    if args.partition not in topic.partitions:
        raise CliError(
            f"topic '{args.topic}' has no partition {args.partition} ({len(partition_ids)} in all)"
        )
    return [args.partition]


def _start_positions(
    consumer: Consumer, partition_ids: list[int], args: argparse.Namespace, timeout: float
) -> list[TopicPartition]:
    """Where a self-assigned consumer starts in each partition."""
    partitions = [TopicPartition(args.topic, partition_id) for partition_id in partition_ids]
    if args.from_timestamp is not None:
        return _offsets_at_time(consumer, partitions, args.from_timestamp, timeout)
    if args.offset is not None:
        offset = args.offset
    elif args.group is not None:
        offset = OFFSET_STORED
    elif args.from_beginning:
        offset = OFFSET_BEGINNING
    else:
        offset = OFFSET_END
    return [TopicPartition(partition.topic, partition.partition, offset) for partition in partitions]


def _position_on_assign(
    args: argparse.Namespace, timeout: float, incremental: bool
) -> Callable[[Consumer, list[TopicPartition]], None]:
    """Rebalance callback that moves newly assigned partitions to --offset / --from-timestamp.

    Without either option it does nothing, and the client starts from the committed offsets.
    """

    def on_assign(consumer: Consumer, assigned: list[TopicPartition]) -> None:
        if not assigned or (args.offset is None and args.from_timestamp is None):
            return
        if args.from_timestamp is not None:
            positioned = _offsets_at_time(consumer, assigned, args.from_timestamp, timeout)
        else:
            positioned = [TopicPartition(tp.topic, tp.partition, args.offset) for tp in assigned]
        if incremental:
            consumer.incremental_assign(positioned)
        else:
            consumer.assign(positioned)

    return on_assign


def _offsets_at_time(
    consumer: Consumer, partitions: list[TopicPartition], timestamp_ms: int, timeout: float
) -> list[TopicPartition]:
    """First offset at or after the time in each partition; the end when no message is that recent."""
    query = [TopicPartition(tp.topic, tp.partition, timestamp_ms) for tp in partitions]
    try:
        found = consumer.offsets_for_times(query, timeout=timeout)
    except KafkaException as exc:
        raise CliError(
            f"cannot look up offsets for timestamp {timestamp_ms}: {kafka_error_text(exc)}"
        ) from None
    positions = []
    for tp in found:
        if tp.error is not None:
            raise CliError(
                f"cannot look up offsets for timestamp {timestamp_ms} in {tp.topic}-{tp.partition}: "
                f"{kafka_error_text(tp.error)}"
            )
        positions.append(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END))
    return positions


def _consumer_defaults(args: argparse.Namespace) -> dict[str, Any]:
    """Without --group the client still needs a group.id, but never commits or joins under it."""
    return {
        "group.id": args.group if args.group is not None else f"strom-cli-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": args.group is not None,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
        "isolation.level": args.isolation_level,
    }


def _uses_incremental_rebalance(config: dict[str, Any]) -> bool:
    """Cooperative assignors and the KIP-848 protocol hand out partitions incrementally."""
    strategy = str(config.get("partition.assignment.strategy", ""))
    return "cooperative" in strategy or str(config.get("group.protocol", "")).lower() == "consumer"
