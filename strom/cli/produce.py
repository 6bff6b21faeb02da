"""``strom produce``: send one message per input line, then report how many were delivered.

Lines are read as bytes, so any encoding passes through unchanged; only the line ending (``\\n`` or
``\\r\\n``) is removed. Keys are hashed with murmur2 by default, as Java clients do, so a key lands on the
same partition whichever client wrote it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from tqdm import tqdm

from strom.cli.client import (
    CliError,
    add_client_arguments,
    client_config,
    create_client,
    fetch_metadata,
    kafka_error_text,
    key_value,
    non_negative_int,
    positive_int,
    print_error,
)

COMPRESSION_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
ACKS_CHOICES = ("0", "1", "all", "-1")

# How long to let librdkafka send while its local queue is full before trying to enqueue again.
_QUEUE_FULL_WAIT_S = 0.1
_FLUSH_SLICE_S = 1.0


class DeliveryReport:
    """Counts delivery outcomes; used as the producer's delivery callback."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.record_failure(kafka_error_text(error))

    def record_failure(self, description: str) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = description


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``produce`` options."""
    parser.add_argument("topic", metavar="TOPIC")
    parser.add_argument("--file", type=Path, metavar="PATH", help="read lines from PATH instead of stdin")
    parser.add_argument(
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value (a line without SEP is an error)",
    )
    parser.add_argument(
        "--header",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="header added to every message (repeatable)",
    )
    parser.add_argument(
        "--partition",
        type=non_negative_int,
        metavar="N",
        help="send every message to this partition (default: by key)",
    )
    parser.add_argument("--acks", choices=ACKS_CHOICES, default="all", help="acknowledgements (default: all)")
    parser.add_argument(
        "--compression", choices=COMPRESSION_CODECS, default="none", help="codec (default: none)"
    )
    parser.add_argument(
        "--linger-ms", type=non_negative_int, metavar="MS", help="wait this long to fill batches"
    )
    parser.add_argument("--batch-size", type=positive_int, metavar="BYTES", help="largest batch in bytes")
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar even when stderr is not a terminal"
    )
    add_client_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Produce every input line; exit status 1 if any message was not delivered."""
    separator = _key_separator(args.key_separator)
    headers = [(key, value.encode()) for key, value in args.header]
    report = DeliveryReport()
    with _open_input(args.file) as (stream, size):
        producer = create_client(Producer, client_config(args, _producer_defaults(args)))
        _check_topic(producer, args)
        show_progress = args.progress or (args.file is not None and sys.stderr.isatty())
        with tqdm(
            total=size, unit="B", unit_scale=True, file=sys.stderr, disable=not show_progress, leave=False
        ) as progress:
            input_error = _send_lines(producer, args, stream, separator, headers, report, progress)
            _flush(producer)

    total = report.delivered + report.failed
    print(f"Delivered {report.delivered} of {total} messages to {args.topic}.", file=sys.stderr)
    status = 0
    if report.failed:
        print_error(f"{report.failed} messages failed; first failure: {report.first_error}")
        status = 1
    if input_error is not None:
        print_error(input_error)
        status = 1
    return status


def strip_line_ending(line: bytes) -> bytes:
    """The line without its ``\\n`` or ``\\r\\n`` ending."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def split_key(line: bytes, separator: bytes | None) -> tuple[bytes | None, bytes]:
    """(key, value) of a line; without a separator the key is null. Raises ValueError if SEP is missing."""
    if separator is None:
        return None, line
    key, found, value = line.partition(separator)
    if not found:
        raise ValueError("no key separator")
    return key, value


def _send_lines(
    producer: Producer,
    args: argparse.Namespace,
    stream: BinaryIO,
    separator: bytes | None,
    headers: list[tuple[str, bytes]],
    report: DeliveryReport,
    progress: tqdm,
) -> str | None:
    """Enqueue one message per line; returns why reading stopped early, or None at end of input.

    Ctrl-C stops reading but still delivers what was read, as Kafka's console producer does on close.
    """
    try:
        for line_number, raw_line in enumerate(_lines(stream), start=1):
            progress.update(len(raw_line))
            line = strip_line_ending(raw_line)
            try:
                key, value = split_key(line, separator)
            except ValueError:
                return f"no key separator found on line {line_number}: {line[:80]!r}"
            _enqueue(producer, args, key, value, headers, report)
    except KeyboardInterrupt:
        return "interrupted; stopped reading input"
    return None


def _enqueue(
    producer: Producer,
    args: argparse.Namespace,
    key: bytes | None,
    value: bytes,
    headers: list[tuple[str, bytes]],
    report: DeliveryReport,
) -> None:
    """Hand one message to librdkafka, waiting while its local queue is full."""
    options: dict[str, Any] = {"key": key, "value": value, "on_delivery": report}
    if headers:
        options["headers"] = headers
    if args.partition is not None:
        options["partition"] = args.partition
    while True:
        try:
            producer.produce(args.topic, **options)
        except BufferError:
            producer.poll(_QUEUE_FULL_WAIT_S)
            continue
        except KafkaException as exc:
            report.record_failure(kafka_error_text(exc))
        break
    producer.poll(0)


def _flush(producer: Producer) -> None:
    """Wait until every queued message is delivered or has failed (librdkafka's message timeout bounds it)."""
    while producer.flush(_FLUSH_SLICE_S) > 0:
        pass


def _lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines as they arrive: readline() so an interactive producer sends each line when Enter is pressed."""
    while line := stream.readline():
        yield line


def _check_topic(producer: Producer, args: argparse.Namespace) -> None:
    """Fail before reading input if the cluster is unreachable, the topic missing or --partition wrong."""
    metadata = fetch_metadata(producer, args, topic=args.topic)
    topic = metadata.topics.get(args.topic)
    error = None if topic is None else topic.error
    if topic is None or (error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        raise CliError(f"topic '{args.topic}' does not exist")
    if error is not None and error.code() != KafkaError.LEADER_NOT_AVAILABLE:
        raise CliError(f"cannot produce to topic '{args.topic}': {kafka_error_text(error)}")
    if error is None and args.partition is not None and args.partition not in topic.partitions:
        raise CliError(
            f"topic '{args.topic}' has no partition {args.partition} ({len(topic.partitions)} in all)"
        )


def _producer_defaults(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {
        "acks": args.acks,
        "compression.type": args.compression,
        "partitioner": "murmur2_random",
    }
    if args.linger_ms is not None:
        config["linger.ms"] = args.linger_ms
    if args.batch_size is not None:
        config["batch.size"] = args.batch_size
    return config


def _key_separator(text: str | None) -> bytes | None:
    if text is None:
        return None
    if not text:
        raise CliError("--key-separator must not be empty", exit_code=2)
    return text.encode()


@contextlib.contextmanager
def _open_input(path: Path | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """(binary stream, size in bytes or None) for --file, or stdin when no file is given."""
    if path is None:
        yield sys.stdin.buffer, None
        return
    try:
        file = path.open("rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        yield file, os.fstat(file.fileno()).st_size
