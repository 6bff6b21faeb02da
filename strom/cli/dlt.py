"""``strom dlt``: list, show and replay the records of a dead-letter topic.

Dead letters are records a consumer gave up on, with Spring Kafka's ``kafka_dlt-*`` headers saying where
they came from and why they failed (see :mod:`strom.toolkit.dlt`). Reading assigns partitions without a
consumer group and stops at the end of the log as it was when the command started, so ``list`` and ``show``
leave no trace and always end. ``replay`` republishes dead letters to the topic they came from (or ``--to``)
at least once: running it twice republishes twice, and every republished record carries a
``strom_dlt-replayed-from`` header by which its consumer can recognise the duplicate.
"""

from __future__ import annotations

import argparse
import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from strom.cli.client import (
    CliError,
    add_client_arguments,
    client_config,
    non_negative_int,
    positive_int,
    print_error,
)
from strom.cli.message_format import bytes_field, header_value
from strom.cli.output import MISSING, format_table, print_json
from strom.toolkit.dlt import (
    DeadLetter,
    DeadLetterError,
    DeadLetterFilter,
    DeadLetters,
    ReplayResult,
    Selection,
)

Handler = Callable[[argparse.Namespace, DeadLetters], int]

# The exception message in ``list`` is cut to this many characters; ``show`` prints it whole.
_LIST_MESSAGE_WIDTH = 60
_INDENT = "    "


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``dlt`` actions on the ``dlt`` sub-parser."""
    actions = parser.add_subparsers(dest="dlt_action", required=True, metavar="ACTION")

    list_ = actions.add_parser(
        "list",
        help="list the dead letters of a topic",
        description="List dead letters in partition and offset order: where each came from and what failed.",
    )
    list_.add_argument("topic", metavar="DLT-TOPIC")
    list_.add_argument("--limit", type=positive_int, metavar="N", help="at most N dead letters")
    list_.add_argument(
        "--from-offset",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="skip the records before offset N of each partition",
    )
    list_.add_argument(
        "--exception",
        metavar="TYPE",
        help="only failures with this exception (or cause) class, fully qualified or by its last part",
    )
    list_.add_argument("--json", action="store_true", help="machine-readable output, stack traces included")
    list_.set_defaults(dlt_handler=_list)

    show = actions.add_parser(
        "show",
        help="show one dead letter in full",
        description="Show one dead letter: its origin, exception, message, stack trace, key, value and "
        "headers.",
    )
    show.add_argument("topic", metavar="DLT-TOPIC")
    show.add_argument("position", type=_position, metavar="PARTITION:OFFSET")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(dlt_handler=_show)

    replay = actions.add_parser(
        "replay",
        help="republish dead letters to the topic they came from",
        description="Republish dead letters with their original key, value and headers to the topic and "
        "partition they came from, or to --to. At least once: each republished record carries a "
        "strom_dlt-replayed-from header naming its DLT position, by which consumers can drop duplicates.",
    )
    replay.add_argument("topic", metavar="DLT-TOPIC")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter of every partition")
    which.add_argument(
        "--offset", type=_position, metavar="PARTITION:OFFSET", help="the one dead letter at this position"
    )
    which.add_argument(
        "--range",
        type=_offset_range,
        metavar="PARTITION:FROM-TO",
        help="offsets FROM through TO (both included) of one partition",
    )
    replay.add_argument(
        "--where-exception",
        metavar="TYPE",
        help="only failures with this exception (or cause) class, fully qualified or by its last part",
    )
    replay.add_argument(
        "--where-value", type=_regex, metavar="REGEX", help="only values (as UTF-8) in which REGEX is found"
    )
    replay.add_argument(
        "--where-message",
        type=_regex,
        metavar="REGEX",
        help="only exception messages in which REGEX is found",
    )
    replay.add_argument(
        "--where-original-partition",
        type=non_negative_int,
        metavar="N",
        help="only dead letters that came from partition N of their topic",
    )
    replay.add_argument(
        "--to", metavar="TOPIC", help="republish to TOPIC (partitioned by key) instead of the original topic"
    )
    replay.add_argument("--dry-run", action="store_true", help="only show what would be republished")
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.set_defaults(dlt_handler=_replay)

    for action_parser in (list_, show, replay):
        add_client_arguments(action_parser)


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``dlt`` action; returns the exit status."""
    dead_letters = DeadLetters(client_config(args), args.topic, timeout_s=args.timeout)
    handler: Handler = args.dlt_handler
    try:
        return handler(args, dead_letters)
    except DeadLetterError as exc:
        raise CliError(str(exc)) from None


def _position(text: str) -> tuple[int, int]:
    """argparse type for ``PARTITION:OFFSET``."""
    match = re.fullmatch(r"(\d+):(\d+)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected PARTITION:OFFSET, e.g. 0:42, got {text!r}")
    return int(match[1]), int(match[2])


def _offset_range(text: str) -> Selection:
    """argparse type for ``PARTITION:FROM-TO``, both ends included."""
    match = re.fullmatch(r"(\d+):(\d+)-(\d+)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected PARTITION:FROM-TO, e.g. 0:10-20, got {text!r}")
    partition, first, last = (int(group) for group in match.groups())
    if last < first:
        raise argparse.ArgumentTypeError(f"the range ends before it starts: {text!r}")
    return Selection.range(partition, first, last)


def _regex(text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {exc}") from None


# ------------------------------------------------------------------------------------------------- list


def _list(args: argparse.Namespace, dead_letters: DeadLetters) -> int:
    letters = dead_letters.list(
        limit=args.limit,
        from_offset=args.from_offset,
        filter=DeadLetterFilter(exception_type=args.exception),
    )
    if args.json:
        print_json([dead_letter_json(letter) for letter in letters])
    elif letters:
        rows = [
            (
                letter.partition,
                letter.offset,
                _time_text(letter.timestamp),
                _origin_text(letter),
                letter.exception_type,
                _first_line(letter.exception_message, _LIST_MESSAGE_WIDTH),
            )
            for letter in letters
        ]
        print(format_table(("PARTITION", "OFFSET", "TIMESTAMP", "ORIGIN", "EXCEPTION", "MESSAGE"), rows))
    return 0


# ------------------------------------------------------------------------------------------------- show


def _show(args: argparse.Namespace, dead_letters: DeadLetters) -> int:
    partition, offset = args.position
    letter = dead_letters.get(partition, offset)
    if args.json:
        print_json(dead_letter_json(letter))
    else:
        print(render_dead_letter(letter))
    return 0


def render_dead_letter(letter: DeadLetter) -> str:
    """Every decoded field of a dead letter, one per line; multi-line texts indented beneath their label."""
    original_time = _time_text(letter.original_timestamp)
    if letter.original_timestamp_type is not None:
        original_time += f" ({letter.original_timestamp_type})"
    fields: list[tuple[str, str | None]] = [
        ("Timestamp", _time_text(letter.timestamp)),
        ("Origin", _origin_text(letter)),
        ("Origin time", original_time),
        ("Consumer group", letter.original_group),
        ("Exception", letter.exception_type),
        ("Cause", letter.exception_cause_type),
        ("Message", letter.exception_message),
        ("Key", _bytes_text(letter.key)),
        ("Value", _bytes_text(letter.value)),
    ]
    headers = "\n".join(f"{name}: {_bytes_text(value)}" for name, value in letter.headers)
    fields += [("Headers", headers or None), ("Stack trace", letter.stack_trace)]
    width = max(len(label) for label, _ in fields) + 1
    lines = [f"Dead letter {letter.position}"]
    for label, text in fields:
        lines.extend(_labelled(f"{label}:".ljust(width), text))
    return "\n".join(lines)


def _labelled(label: str, text: str | None) -> list[str]:
    """``  Label: text``, or for text of several lines the label alone and the lines indented below it."""
    if text is None:
        return [f"  {label} {MISSING}"]
    lines = text.rstrip("\n").splitlines() or [""]
    if len(lines) == 1:
        return [f"  {label} {lines[0]}"]
    return [f"  {label.rstrip()}", *(_INDENT + line for line in lines)]


# ----------------------------------------------------------------------------------------------- replay


def _replay(args: argparse.Namespace, dead_letters: DeadLetters) -> int:
    if args.all:
        selection = Selection.all()
    elif args.offset is not None:
        selection = Selection.one(*args.offset)
    else:
        selection = args.range
    where = DeadLetterFilter(
        exception_type=args.where_exception,
        original_partition=args.where_original_partition,
        value_pattern=args.where_value,
        message_pattern=args.where_message,
    )
    result = dead_letters.replay(selection, filter=where, to_topic=args.to, dry_run=args.dry_run)
    if args.offset is not None and result.examined == 0:
        partition, offset = args.offset
        raise CliError(f"no dead letter at offset {offset} of {args.topic}-{partition}")
    if args.json:
        print_json(replay_result_json(result))
    else:
        print(render_replay_result(result))
    for failure in result.failed:
        print_error(f"cannot replay {failure.dead_letter.position}: {failure.reason}")
    return 0 if result.ok else 1


def render_replay_result(result: ReplayResult) -> str:
    """One line per republished dead letter and where it went, then a count."""
    lines = []
    for replayed in result.replayed:
        source = replayed.dead_letter.position
        if replayed.delivery is not None:
            delivery = replayed.delivery
            lines.append(f"replayed {source} -> {delivery.topic}-{delivery.partition}@{delivery.offset}")
        else:
            lines.append(f"would replay {source} -> {replayed.destination}")
    verb = "Would replay" if result.dry_run else "Replayed"
    summary = f"{verb} {len(result.replayed)} of {result.examined} dead letters read"
    details = [f"{result.skipped} not matching"] if result.skipped else []
    if result.failed:
        details.append(f"{len(result.failed)} failed")
    lines.append(summary + (f" ({', '.join(details)})" if details else ""))
    return "\n".join(lines)


def replay_result_json(result: ReplayResult) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "examined": result.examined,
        "skipped": result.skipped,
        "replayed": [
            {
                "dead_letter": _position_json(replayed.dead_letter),
                "topic": replayed.destination,
                "partition": None if replayed.delivery is None else replayed.delivery.partition,
                "offset": None if replayed.delivery is None else replayed.delivery.offset,
            }
            for replayed in result.replayed
        ],
        "failed": [
            {"dead_letter": _position_json(failure.dead_letter), "reason": failure.reason}
            for failure in result.failed
        ],
    }


# ---------------------------------------------------------------------------------------------- helpers


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: bytes as UTF-8 text, or base64 under ``key_b64`` / ``value_b64`` / ``{"b64"}``
    where they are not valid UTF-8, as ``strom consume --format json`` writes them."""
    document: dict[str, Any] = {**_position_json(letter), "timestamp": letter.timestamp}
    document.update(bytes_field("key", letter.key))
    document.update(bytes_field("value", letter.value))
    document["original"] = {
        "topic": letter.original_topic,
        "partition": letter.original_partition,
        "offset": letter.original_offset,
        "timestamp": letter.original_timestamp,
        "timestamp_type": letter.original_timestamp_type,
        "consumer_group": letter.original_group,
    }
    document["exception"] = {
        "type": letter.exception_type,
        "cause_type": letter.exception_cause_type,
        "message": letter.exception_message,
        "stack_trace": letter.stack_trace,
    }
    document["headers"] = [[name, header_value(value)] for name, value in letter.headers]
    return document


def _position_json(letter: DeadLetter) -> dict[str, Any]:
    return {"topic": letter.topic, "partition": letter.partition, "offset": letter.offset}


def _bytes_text(data: bytes | None) -> str:
    """UTF-8 text as is, ``null`` for null, anything else as ``base64:...``."""
    if data is None:
        return "null"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode("ascii")


def _origin_text(letter: DeadLetter) -> str | None:
    """``topic-partition@offset``, Kafka's way of naming a record's place."""
    if letter.original_topic is None:
        return None
    partition = MISSING if letter.original_partition is None else letter.original_partition
    offset = MISSING if letter.original_offset is None else letter.original_offset
    return f"{letter.original_topic}-{partition}@{offset}"


def _time_text(epoch_ms: int | None) -> str:
    if epoch_ms is None or epoch_ms < 0:
        return MISSING
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _first_line(text: str | None, width: int) -> str | None:
    """The first line of ``text``, cut to ``width`` characters with ``...`` where anything was left out."""
    if text is None:
        return None
    lines = text.strip().splitlines() or [""]
    line = lines[0]
    if len(line) > width or len(lines) > 1:
        return line[: width - 3].rstrip() + "..."
    return line
