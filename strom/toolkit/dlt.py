"""Read and re-drive dead-letter topics.

A dead-letter topic (DLT) holds the records a consumer gave up on: the original key, value and headers, plus
Spring Kafka's ``kafka_dlt-*`` headers saying where the record came from and what went wrong (written by
:mod:`strom.toolkit.retry`, or by Spring Kafka's own DeadLetterPublishingRecoverer). :class:`DeadLetters`
reads them back as :class:`DeadLetter` objects and, once the cause is fixed, republishes chosen ones to the
topic they came from.

Reading leaves no trace on the cluster: partitions are assigned by hand (no group membership, no commits) and
read up to the high watermark seen when the call started, so a call ends even while new dead letters arrive.
Records of aborted transactions are skipped (``read_committed``), as a transactional consumer would have
rolled back the dead-lettering with them.

Replaying is at-least-once. A record is republished first and nothing marks it as replayed afterwards, so a
replay that is repeated, or interrupted and run again, republishes the same dead letter again. A consumer
recognises such duplicates by the original headers, which are kept (an inbox deduplicating on the CloudEvents
``ce_id`` needs nothing more), or by the ``strom_dlt-replayed-from`` header every republished record
carries: its place in the DLT, ``<dlt topic>/<partition>/<offset>``, the same on every repeat.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import islice
from typing import Any, NamedTuple

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.toolkit.publisher import Delivery, Publisher, PublishError
from strom.toolkit.retry import (
    DLT_EXCEPTION_CAUSE_FQCN,
    DLT_EXCEPTION_FQCN,
    DLT_EXCEPTION_MESSAGE,
    DLT_EXCEPTION_STACKTRACE,
    DLT_ORIGINAL_CONSUMER_GROUP,
    DLT_ORIGINAL_OFFSET,
    DLT_ORIGINAL_PARTITION,
    DLT_ORIGINAL_TIMESTAMP,
    DLT_ORIGINAL_TIMESTAMP_TYPE,
    DLT_ORIGINAL_TOPIC,
    decode_int,
)
from strom.toolkit.serialization import bytes_serializer

logger = logging.getLogger(__name__)

REPLAYED_FROM_HEADER = "strom_dlt-replayed-from"
DLT_HEADER_PREFIX = "kafka_dlt-"
# Spring Kafka's header families for failure bookkeeping (dead letters, retry topics). A replayed record
# carries none of them, so a new failure starts its retries afresh and names the replayed record as origin.
FAILURE_HEADER_PREFIXES = (DLT_HEADER_PREFIX, "kafka_original-", "kafka_exception-", "retry_topic-")

DEFAULT_TIMEOUT_S = 10.0
CLIENT_ID = "strom-dlt"
# How many replayed records may await their acknowledgement at once; bounds memory on a large replay.
_MAX_IN_FLIGHT = 1000
# The longest single wait inside the read loop, so a stalled read is noticed within the timeout.
_POLL_SLICE_S = 0.5
_FATAL_READ_ERRORS = frozenset(
    {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError.TOPIC_AUTHORIZATION_FAILED}
)
_TIMESTAMP_TYPE_NAMES = {TIMESTAMP_CREATE_TIME: "CreateTime", TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}

Header = tuple[str, bytes | None]


class DeadLetterError(Exception):
    """The DLT cannot be read: the cluster is unreachable, the topic is missing, a read stalled."""


class DeadLetterNotFound(DeadLetterError, LookupError):
    """No dead letter at the requested partition and offset."""


@dataclass(frozen=True)
class DeadLetter:
    """One DLT record with its ``kafka_dlt-*`` headers decoded; any of them may be missing (``None``).

    ``timestamp`` is the DLT record's own (when the consumer gave up), ``original_timestamp`` the failed
    record's, both in epoch milliseconds. ``exception_type`` is the failure's fully qualified class name and
    ``exception_cause_type`` that of its cause (Spring Kafka wraps listener exceptions, so the cause is often
    the interesting one). ``headers`` are all the other headers in record order: the original record's.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp: int | None
    original_timestamp_type: str | None
    original_group: str | None
    exception_type: str | None
    exception_cause_type: str | None
    exception_message: str | None
    stack_trace: str | None
    headers: tuple[Header, ...]

    @property
    def position(self) -> str:
        """``<dlt topic>/<partition>/<offset>``: unambiguous, as topic names cannot contain ``/``."""
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to take; every criterion given must hold.

    ``exception_type`` matches the exception's or its cause's class name, fully qualified
    (``json.decoder.JSONDecodeError``) or by its last part (``JSONDecodeError``). The patterns are regular
    expressions searched anywhere in the text (so a plain word matches as a substring): ``value_pattern`` in
    the value decoded as UTF-8 (undecodable bytes replaced), ``message_pattern`` in the exception message.
    """

    exception_type: str | None = None
    original_partition: int | None = None
    value_pattern: str | re.Pattern[str] | None = None
    message_pattern: str | re.Pattern[str] | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.exception_type is not None and not any(
            _names_class(name, self.exception_type)
            for name in (letter.exception_type, letter.exception_cause_type)
        ):
            return False
        if self.original_partition is not None and letter.original_partition != self.original_partition:
            return False
        if self.value_pattern is not None and (
            letter.value is None
            or re.search(self.value_pattern, letter.value.decode("utf-8", errors="replace")) is None
        ):
            return False
        return self.message_pattern is None or (
            letter.exception_message is not None
            and re.search(self.message_pattern, letter.exception_message) is not None
        )


@dataclass(frozen=True)
class Selection:
    """The DLT records a replay reads: every partition whole, one record, or an inclusive offset range."""

    partition: int | None = None
    first: int = 0
    last: int | None = None

    def __post_init__(self) -> None:
        if self.partition is not None and self.partition < 0:
            raise ValueError(f"partition cannot be negative: {self.partition}")
        if self.first < 0 or (self.last is not None and self.last < self.first):
            raise ValueError(f"not an offset range: {self.first}-{self.last}")

    @classmethod
    def all(cls) -> Selection:
        return cls()

    @classmethod
    def one(cls, partition: int, offset: int) -> Selection:
        return cls(partition, offset, offset)

    @classmethod
    def range(cls, partition: int, first: int, last: int) -> Selection:
        """Offsets ``first`` through ``last`` of one partition, both included."""
        return cls(partition, first, last)


class Replayed(NamedTuple):
    """A dead letter republished to ``destination``; ``delivery`` is None in a dry run."""

    dead_letter: DeadLetter
    destination: str
    delivery: Delivery | None


class ReplayFailure(NamedTuple):
    """A dead letter that could not be republished, and why."""

    dead_letter: DeadLetter
    reason: str


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: ``examined`` records read, ``skipped`` of them not matching the filter."""

    replayed: list[Replayed]
    failed: list[ReplayFailure]
    examined: int
    skipped: int
    dry_run: bool

    @property
    def ok(self) -> bool:
        return not self.failed


class DeadLetters:
    """The dead letters of one DLT: list them, fetch one, replay a selection.

    ``bootstrap_or_config`` is a bootstrap address or a librdkafka configuration (connection and security
    properties; they serve both the reading consumer and the replaying producer). Each call opens its own
    short-lived clients, so an instance holds no connections and needs no closing.
    """

    def __init__(
        self,
        bootstrap_or_config: str | Mapping[str, Any],
        dlt_topic: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if isinstance(bootstrap_or_config, str):
            self._config: dict[str, Any] = {"bootstrap.servers": bootstrap_or_config}
        else:
            self._config = dict(bootstrap_or_config)
        self.topic = dlt_topic
        self._timeout_s = timeout_s

    def list(
        self,
        limit: int | None = None,
        from_offset: int = 0,
        filter: DeadLetterFilter | None = None,
    ) -> list[DeadLetter]:
        """Dead letters in partition then offset order, from ``from_offset`` of each partition on; at most
        ``limit`` of those matching ``filter``."""
        with contextlib.closing(self._read(Selection(first=from_offset))) as letters:
            matching = (letter for letter in letters if filter is None or filter.matches(letter))
            return list(islice(matching, limit))

    def get(self, partition: int, offset: int) -> DeadLetter:
        """The dead letter at ``partition``/``offset``; DeadLetterNotFound if there is none."""
        with contextlib.closing(self._read(Selection.one(partition, offset))) as letters:
            for letter in letters:
                return letter
        raise DeadLetterNotFound(f"no dead letter at offset {offset} of {self.topic}-{partition}")

    def replay(
        self,
        selection: Selection,
        *,
        filter: DeadLetterFilter | None = None,
        to_topic: str | None = None,
        publisher: Publisher | None = None,
        dry_run: bool = False,
    ) -> ReplayResult:
        """Republish the selected dead letters that match ``filter``, at least once each.

        Each goes to its original topic, into the partition it came from (so it sits with its key's other
        records again), or to ``to_topic`` where the producer's partitioner places it by key. Key, value and
        headers are the original ones, without the failure bookkeeping (``kafka_dlt-*``, ``retry_topic-*``,
        ...) so that a consumer treats the record as new rather than as an exhausted retry, and with a
        ``strom_dlt-replayed-from`` header. ``publisher`` must pass bytes through unchanged (as its default
        serializers do); without one, a publisher is opened for the call. ``dry_run`` only reports what
        would be republished. Dead letters with no original topic fail unless ``to_topic`` is given.
        """
        replayed: list[Replayed] = []
        failed: list[ReplayFailure] = []
        in_flight: list[_InFlight] = []
        examined = skipped = 0
        with contextlib.ExitStack() as cleanup:
            if publisher is None and not dry_run:
                publisher = cleanup.enter_context(self._publisher())
            letters = cleanup.enter_context(contextlib.closing(self._read(selection)))
            for letter in letters:
                examined += 1
                if filter is not None and not filter.matches(letter):
                    skipped += 1
                    continue
                destination = to_topic or letter.original_topic
                if destination is None:
                    failed.append(
                        ReplayFailure(letter, "no original topic header; name a topic to replay to")
                    )
                elif dry_run or publisher is None:
                    replayed.append(Replayed(letter, destination, None))
                else:
                    try:
                        future = publisher.publish_async(
                            destination,
                            letter.value,
                            key=letter.key,
                            headers=replay_headers(letter),
                            partition=letter.original_partition if to_topic is None else None,
                        )
                    except (PublishError, TimeoutError) as exc:
                        failed.append(ReplayFailure(letter, str(exc)))
                        continue
                    in_flight.append(_InFlight(letter, destination, future))
                    if len(in_flight) >= _MAX_IN_FLIGHT:
                        _settle(in_flight, replayed, failed, self._timeout_s)
            _settle(in_flight, replayed, failed, self._timeout_s)
        return ReplayResult(replayed, failed, examined, skipped, dry_run)

    # ------------------------------------------------------------------------------------------ reading

    def _read(self, selection: Selection) -> Generator[DeadLetter, None, None]:
        """The selected records in partition then offset order, each partition up to its high watermark
        when the call began."""
        consumer = self._consumer()
        try:
            bounds = [
                (partition, *self._watermarks(consumer, partition))
                for partition in self._partitions(consumer, selection.partition)
            ]
            for partition, low, high in bounds:
                start = max(low, selection.first)
                end = high if selection.last is None else min(high, selection.last + 1)
                if start < end:
                    yield from self._read_partition(consumer, partition, start, end)
        finally:
            consumer.close()

    def _read_partition(
        self, consumer: Consumer, partition: int, start: int, end: int
    ) -> Iterator[DeadLetter]:
        """Records of ``start`` <= offset < ``end``; ends early at the readable end of the log (records past
        an open transaction are not readable yet)."""
        consumer.assign([TopicPartition(self.topic, partition, start)])
        stall_deadline = time.monotonic() + self._timeout_s
        while True:
            message = consumer.poll(_POLL_SLICE_S)
            if message is None:
                if time.monotonic() >= stall_deadline:
                    raise DeadLetterError(
                        f"no records from {self.topic}-{partition} within {self._timeout_s:g} s, "
                        f"though offsets up to {end - 1} exist"
                    )
                continue
            stall_deadline = time.monotonic() + self._timeout_s
            if message.partition() != partition:
                continue  # left over from the partition read before
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                if error.fatal() or error.code() in _FATAL_READ_ERRORS:
                    raise DeadLetterError(f"cannot read {self.topic}-{partition}: {error.str()}")
                continue
            offset = message.offset() or 0
            if offset >= end:
                return
            yield _dead_letter(message)
            if offset >= end - 1:
                return

    # The method ``list`` hides the built-in in this class's annotations.
    def _partitions(self, consumer: Consumer, only: int | None) -> builtins.list[int]:
        try:
            metadata = consumer.list_topics(self.topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise DeadLetterError(f"cannot read the metadata of '{self.topic}': {_error_text(exc)}") from None
        topic = metadata.topics.get(self.topic)
        if topic is None or (
            topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            raise DeadLetterError(f"dead-letter topic '{self.topic}' does not exist")
        if topic.error is not None and not topic.partitions:
            raise DeadLetterError(f"cannot read dead-letter topic '{self.topic}': {topic.error.str()}")
        partitions = sorted(topic.partitions)
        if only is None:
            return partitions
        if only not in topic.partitions:
            raise DeadLetterNotFound(f"dead-letter topic '{self.topic}' has no partition {only}")
        return [only]

    def _watermarks(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        try:
            return consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self._timeout_s, cached=False
            )
        except KafkaException as exc:
            raise DeadLetterError(
                f"cannot read the offsets of {self.topic}-{partition}: {_error_text(exc)}"
            ) from None

    def _consumer(self) -> Consumer:
        """A consumer that only ever assigns: the group id is required by the client but never joined."""
        config = {
            "client.id": CLIENT_ID,
            "logger": logger,
            **self._config,
            "group.id": f"{CLIENT_ID}-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
        try:
            return Consumer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise DeadLetterError(f"invalid client configuration: {_error_text(exc)}") from None

    # ---------------------------------------------------------------------------------------- replaying

    def _publisher(self) -> Publisher:
        """A publisher that writes dead letters' bytes as they are."""
        try:
            return Publisher(
                {"client.id": CLIENT_ID, "logger": logger, **self._config},
                value_serializer=bytes_serializer,
                key_serializer=bytes_serializer,
                timeout_s=self._timeout_s,
            ).start()
        except (KafkaException, ValueError, TypeError) as exc:
            raise DeadLetterError(f"invalid client configuration: {_error_text(exc)}") from None


class _InFlight(NamedTuple):
    """A republished dead letter awaiting its acknowledgement."""

    dead_letter: DeadLetter
    destination: str
    delivery: Future[Delivery]


def _settle(
    in_flight: list[_InFlight], replayed: list[Replayed], failed: list[ReplayFailure], timeout_s: float
) -> None:
    """Wait for the acknowledgements of ``in_flight`` and sort its records into replayed and failed.

    A record not acknowledged within ``timeout_s`` counts as failed, though the broker may still store it:
    replaying it again is safe, as the replayed-from header lets a consumer drop the duplicate.
    """
    for letter, destination, delivery in in_flight:
        try:
            replayed.append(Replayed(letter, destination, delivery.result(timeout_s)))
        except PublishError as exc:
            failed.append(ReplayFailure(letter, str(exc)))
        except TimeoutError:
            failed.append(
                ReplayFailure(
                    letter, f"no ack from {destination!r} within {timeout_s:g} s; it may still arrive"
                )
            )
    in_flight.clear()


def replay_headers(letter: DeadLetter) -> list[Header]:
    """The headers a replayed record carries: the original ones without retry bookkeeping, and where it was
    replayed from (replacing the mark of an earlier replay)."""
    kept = [
        (name, value)
        for name, value in letter.headers
        if not name.startswith(FAILURE_HEADER_PREFIXES) and name != REPLAYED_FROM_HEADER
    ]
    return [*kept, (REPLAYED_FROM_HEADER, letter.position.encode())]


def _dead_letter(message: Message) -> DeadLetter:
    """Decode a DLT record. Provenance headers keep their first occurrence (a record dead-lettered via
    retry topics can carry several; the first names the topic it was first consumed from), exception
    headers their last (the latest failure)."""
    first: dict[str, bytes | None] = {}
    last: dict[str, bytes | None] = {}
    others: list[Header] = []
    for name, value in _headers(message):
        if name.startswith(DLT_HEADER_PREFIX):
            first.setdefault(name, value)
            last[name] = value
        else:
            others.append((name, value))
    timestamp_type, timestamp = message.timestamp()
    return DeadLetter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=timestamp if timestamp_type in _TIMESTAMP_TYPE_NAMES else None,
        key=message.key(),
        value=message.value(),
        original_topic=_text(first.get(DLT_ORIGINAL_TOPIC)),
        original_partition=_integer(first.get(DLT_ORIGINAL_PARTITION)),
        original_offset=_integer(first.get(DLT_ORIGINAL_OFFSET)),
        original_timestamp=_integer(first.get(DLT_ORIGINAL_TIMESTAMP)),
        original_timestamp_type=_text(first.get(DLT_ORIGINAL_TIMESTAMP_TYPE)),
        original_group=_text(first.get(DLT_ORIGINAL_CONSUMER_GROUP)),
        exception_type=_text(last.get(DLT_EXCEPTION_FQCN)),
        exception_cause_type=_text(last.get(DLT_EXCEPTION_CAUSE_FQCN)),
        exception_message=_text(last.get(DLT_EXCEPTION_MESSAGE)),
        stack_trace=_text(last.get(DLT_EXCEPTION_STACKTRACE)),
        headers=tuple(others),
    )


def _headers(message: Message) -> list[Header]:
    """The record's headers as (name, bytes) pairs; a consumed record's values are bytes already."""
    headers = message.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(name, value.encode() if isinstance(value, str) else value) for name, value in pairs]


def _error_text(exc: Exception) -> str:
    """The description inside a KafkaException, rather than its KafkaError{...} representation."""
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return error.str() if isinstance(error, KafkaError) else str(exc)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")


def _integer(value: bytes | None) -> int | None:
    """A big-endian Java int or long (``ByteBuffer.putInt`` / ``putLong``); None if absent or no number."""
    if not value or len(value) > 8:
        return None
    return decode_int(value)


def _names_class(qualified_name: str | None, wanted: str) -> bool:
    """``json.decoder.JSONDecodeError`` is named by itself and by ``JSONDecodeError``."""
    return qualified_name is not None and (qualified_name == wanted or qualified_name.endswith("." + wanted))
