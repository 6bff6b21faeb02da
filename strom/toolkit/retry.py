"""Failure handling for consumers: bounded in-process retries, delayed retry topics and the dead-letter topic.

A record whose handler fails is retried in process a few times with exponential backoff (cheap, and enough
for a blip). If it still fails it is *moved on* rather than retried forever, so one poison message never
stalls its partition: to the next retry topic (``<topic>-retry-<n>``, each with its own delay, in the manner
of Spring Kafka's ``@RetryableTopic`` non-blocking retries), and after the last one to the dead-letter topic
(``<topic>.DLT``). Failures that cannot succeed on a retry — undecodable payloads, validation errors,
``NonRetryableError`` — skip the retries and go straight to the DLT.

Records are moved with their original key, value and headers plus provenance headers under Spring Kafka's
names and encodings, so tools written for Spring's dead-letter records read ours, and ours read theirs.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydantic
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

log = logging.getLogger(__name__)

# -- header names --------------------------------------------------------------------------------------------
# Spring Kafka's KafkaHeaders.DLT_*: what a dead-letter record says about where it came from and why.
DLT_ORIGINAL_TOPIC = "kafka_dlt-original-topic"  # UTF-8
DLT_ORIGINAL_PARTITION = "kafka_dlt-original-partition"  # 4-byte big-endian int
DLT_ORIGINAL_OFFSET = "kafka_dlt-original-offset"  # 8-byte big-endian long
DLT_ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"  # 8-byte big-endian long, ms since the epoch
DLT_ORIGINAL_TIMESTAMP_TYPE = "kafka_dlt-original-timestamp-type"  # UTF-8 "CreateTime" / "LogAppendTime"
DLT_ORIGINAL_CONSUMER_GROUP = "kafka_dlt-original-consumer-group"  # UTF-8
DLT_EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"  # UTF-8, e.g. "pydantic_core._pydantic_core.ValidationError"
DLT_EXCEPTION_CAUSE_FQCN = "kafka_dlt-exception-cause-fqcn"  # UTF-8, only when the exception has a cause
DLT_EXCEPTION_MESSAGE = "kafka_dlt-exception-message"  # UTF-8
DLT_EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"  # UTF-8

DLT_HEADERS: tuple[str, ...] = (
    DLT_ORIGINAL_TOPIC,
    DLT_ORIGINAL_PARTITION,
    DLT_ORIGINAL_OFFSET,
    DLT_ORIGINAL_TIMESTAMP,
    DLT_ORIGINAL_TIMESTAMP_TYPE,
    DLT_ORIGINAL_CONSUMER_GROUP,
    DLT_EXCEPTION_FQCN,
    DLT_EXCEPTION_CAUSE_FQCN,
    DLT_EXCEPTION_MESSAGE,
    DLT_EXCEPTION_STACKTRACE,
)

# Spring Kafka's KafkaHeaders.ORIGINAL_* / EXCEPTION_*, which its retry topics carry: set on the first move
# to a retry topic and kept on later ones, so the DLT names the record's true origin, not the last retry.
ORIGINAL_TOPIC = "kafka_original-topic"
ORIGINAL_PARTITION = "kafka_original-partition"
ORIGINAL_OFFSET = "kafka_original-offset"
ORIGINAL_TIMESTAMP = "kafka_original-timestamp"
ORIGINAL_TIMESTAMP_TYPE = "kafka_original-timestamp-type"
ORIGINAL_CONSUMER_GROUP = "kafka_original-consumer-group"
EXCEPTION_FQCN = "kafka_exception-fqcn"
EXCEPTION_MESSAGE = "kafka_exception-message"

# Spring Kafka's RetryTopicHeaders.
RETRY_ATTEMPTS = "retry_topic-attempts"  # the delivery attempt the record is on: 4-byte big-endian int
RETRY_BACKOFF_TIMESTAMP = "retry_topic-backoff-timestamp"  # when it is due, ms: Java BigInteger bytes
RETRY_ORIGINAL_TIMESTAMP = "retry_topic-original-timestamp"  # first record's timestamp: BigInteger bytes

_RETRY_HOP_HEADERS = frozenset({RETRY_ATTEMPTS, RETRY_BACKOFF_TIMESTAMP, EXCEPTION_FQCN, EXCEPTION_MESSAGE})
_TIMESTAMP_TYPE_NAMES = {TIMESTAMP_CREATE_TIME: "CreateTime", TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}
_ORIGINAL_NAMES = (
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_TIMESTAMP_TYPE,
    ORIGINAL_CONSUMER_GROUP,
)
_DLT_ORIGIN_NAMES = (
    DLT_ORIGINAL_TOPIC,
    DLT_ORIGINAL_PARTITION,
    DLT_ORIGINAL_OFFSET,
    DLT_ORIGINAL_TIMESTAMP,
    DLT_ORIGINAL_TIMESTAMP_TYPE,
    DLT_ORIGINAL_CONSUMER_GROUP,
)
# Written on a record's first move to a retry topic, and carried unchanged through the later ones.
_FIRST_MOVE_HEADERS = frozenset({RETRY_ORIGINAL_TIMESTAMP, *_ORIGINAL_NAMES})

Headers = list[tuple[str, bytes]]


class NonRetryableError(Exception):
    """Raise from a handler for a failure that retrying cannot fix: the record goes straight to the DLT."""


# -- header encodings ----------------------------------------------------------------------------------------


def encode_int32(value: int) -> bytes:
    """Java's ``ByteBuffer.putInt``: 4 bytes, big-endian, two's complement."""
    return value.to_bytes(4, "big", signed=True)


def encode_int64(value: int) -> bytes:
    """Java's ``ByteBuffer.putLong``: 8 bytes, big-endian, two's complement."""
    return value.to_bytes(8, "big", signed=True)


def encode_big_integer(value: int) -> bytes:
    """Java's ``BigInteger.toByteArray``: fewest big-endian two's-complement bytes (Spring's timestamps)."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def decode_int(data: bytes) -> int:
    """Read any of the integer encodings above (all are big-endian two's complement, only lengths differ)."""
    return int.from_bytes(data, "big", signed=True)


def last_header(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> bytes | None:
    """The value of the last header called ``name`` (Kafka allows repeats; the last one wins, as in Java)."""
    for header_name, value in reversed(headers or ()):
        if header_name == name:
            return value
    return None


# -- policy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How a consumer retries a failed record, and where it sends records it gives up on.

    Each delivery of a record (from its topic, then from each retry topic) gets ``attempts`` in-process tries
    with exponential backoff (``backoff_s`` doubled per try up to ``max_backoff_s``). Defaults follow Spring
    Kafka's ``@RetryableTopic`` in spirit: three deliveries in all (the topic and two retry topics, 1 s and
    5 s later), within the 3-5 attempts that keep a failing dependency from paralysing the pipeline.
    ``retry_topic_delays_s=()`` disables retry topics (failures go to the DLT after the in-process tries);
    ``dead_letter=False`` drops records that exhausted their retries (logged) instead of dead-lettering them.
    """

    attempts: int = 3
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    retry_topic_delays_s: Sequence[float] = (1.0, 5.0)
    retry_topic_pattern: str = "{topic}-retry-{n}"
    dlt_suffix: str = ".DLT"
    dead_letter: bool = True
    create_topics: bool = True
    non_retryable: tuple[type[BaseException], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1 (the first try counts)")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if any(delay < 0 for delay in self.retry_topic_delays_s):
            raise ValueError("retry topic delays must be >= 0")
        if "{topic}" not in self.retry_topic_pattern or "{n}" not in self.retry_topic_pattern:
            raise ValueError("retry_topic_pattern needs both {topic} and {n}")
        object.__setattr__(self, "retry_topic_delays_s", tuple(self.retry_topic_delays_s))

    def backoff(self, failed_tries: int) -> float:
        """Seconds to wait after the ``failed_tries``-th failed try of one delivery."""
        return min(self.max_backoff_s, self.backoff_s * self.multiplier ** (failed_tries - 1))

    def retry_topic(self, topic: str, hop: int) -> str:
        """The name of retry topic number ``hop`` (1-based) of ``topic``."""
        return self.retry_topic_pattern.format(topic=topic, n=hop)

    def retry_topics(self, topic: str) -> list[str]:
        """All retry topics of ``topic``, in the order a record passes through them."""
        return [self.retry_topic(topic, hop) for hop in range(1, len(self.retry_topic_delays_s) + 1)]

    def dlt_topic(self, topic: str) -> str:
        """The dead-letter topic of ``topic``."""
        return f"{topic}{self.dlt_suffix}"

    def topics_to_create(self, topic: str) -> list[str]:
        """The retry topics and the DLT of ``topic``, as far as this policy uses them."""
        return self.retry_topics(topic) + ([self.dlt_topic(topic)] if self.dead_letter else [])

    def is_retryable(self, error: BaseException) -> bool:
        """Whether trying again could help: not for bad data or errors the handler declared permanent."""
        return not isinstance(error, NON_RETRYABLE_ERRORS + self.non_retryable)


# Bad payloads stay bad however often they are read.
NON_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    NonRetryableError,
    pydantic.ValidationError,
    json.JSONDecodeError,
    UnicodeDecodeError,
)


# -- moving failed records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedRecord:
    """What the recoverer needs of a record that failed: its coordinates, bytes and headers as read."""

    topic: str
    partition: int
    offset: int
    timestamp_type: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    group_id: str
    main_topic: str
    hop: int  # 0 on the main topic, n on retry topic n


class RecordSink(Protocol):
    """Where the recoverer publishes (``strom.toolkit.publisher.Publisher`` with a bytes value serializer)."""

    def publish(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Sequence[tuple[str, str | bytes]] | None = None,
        partition: int | None = None,
        timeout_s: float | None = None,
    ) -> Any: ...


class Recoverer:
    """Moves records that exhausted their in-process tries to the next retry topic or to the DLT."""

    def __init__(self, sink: RecordSink, partition_counts: Mapping[str, int] | None = None) -> None:
        """``partition_counts`` of destination topics lets a record keep its partition number (modulo)."""
        self._sink = sink
        self._partition_counts = dict(partition_counts or {})

    def recover(self, record: FailedRecord, error: BaseException, policy: RetryPolicy) -> str | None:
        """Publish ``record`` where it goes next; returns that topic (``None`` if dropped). Waits for the ack.

        Raises what the publisher raises: the caller must not count the record as done until this returns.
        """
        retryable = policy.is_retryable(error)
        if retryable and record.hop < len(policy.retry_topic_delays_s):
            destination = policy.retry_topic(record.main_topic, record.hop + 1)
            headers = retry_headers(record, error, policy.retry_topic_delays_s[record.hop])
        elif policy.dead_letter:
            destination = policy.dlt_topic(record.main_topic)
            headers = dead_letter_headers(record, error)
        else:
            log.error(
                "dropping %s[%d]@%d after its retries: %s",
                record.topic,
                record.partition,
                record.offset,
                error,
            )
            return None
        self._sink.publish(
            destination,
            record.value,
            key=record.key,
            headers=headers,
            partition=self._destination_partition(destination, record.partition),
        )
        log.warning(
            "moved %s[%d]@%d to %s (%s: %s)",
            record.topic,
            record.partition,
            record.offset,
            destination,
            type(error).__name__,
            error,
        )
        return destination

    def _destination_partition(self, topic: str, partition: int) -> int | None:
        """The same partition number where the topic has it, so per-partition order roughly carries over."""
        count = self._partition_counts.get(topic)
        return partition % count if count else None


def retry_headers(record: FailedRecord, error: BaseException, delay_s: float) -> Headers:
    """The record's headers for its next retry topic: origin (kept from the first move), attempt, due time.

    On the first move (from the record's own topic) any bookkeeping it already carries — say, of an earlier
    life that ended in a DLT and was replayed — is replaced, so it names this delivery.
    """
    first_move = record.hop == 0
    replaced = _RETRY_HOP_HEADERS | (_FIRST_MOVE_HEADERS if first_move else frozenset())
    headers = [(name, value) for name, value in record.headers if name not in replaced]
    if first_move:
        headers.append((RETRY_ORIGINAL_TIMESTAMP, encode_big_integer(record.timestamp)))
        headers += _origin_headers(record, _ORIGINAL_NAMES)
    return headers + [
        (RETRY_ATTEMPTS, encode_int32(record_attempt(record) + 1)),
        (RETRY_BACKOFF_TIMESTAMP, encode_big_integer(int(time.time() * 1000) + round(delay_s * 1000))),
        (EXCEPTION_FQCN, qualified_name(type(error)).encode()),
        (EXCEPTION_MESSAGE, str(error).encode()),
    ]


def dead_letter_headers(record: FailedRecord, error: BaseException) -> Headers:
    """The record's headers plus Spring's ``kafka_dlt-*`` ones, naming the true origin even after retries.

    Earlier ``kafka_dlt-*`` headers (of a record replayed from a DLT that failed again) are replaced.
    """
    dlt_names = set(DLT_HEADERS)
    headers = [(name, value) for name, value in record.headers if name not in dlt_names]
    carried = [last_header(record.headers, name) for name in _ORIGINAL_NAMES]
    if record.hop > 0 and all(value is not None for value in carried):
        origin = [(name, value) for name, value in zip(_DLT_ORIGIN_NAMES, carried, strict=True) if value]
    else:
        origin = _origin_headers(record, _DLT_ORIGIN_NAMES)
    return headers + origin + exception_headers(error)


def exception_headers(error: BaseException) -> Headers:
    """Spring's exception headers; the cause is ``__cause__`` (or the implicit ``__context__``)."""
    headers = [(DLT_EXCEPTION_FQCN, qualified_name(type(error)).encode())]
    cause = error.__cause__ or error.__context__
    if cause is not None:
        headers.append((DLT_EXCEPTION_CAUSE_FQCN, qualified_name(type(cause)).encode()))
    headers.append((DLT_EXCEPTION_MESSAGE, str(error).encode()))
    stacktrace = "".join(traceback.format_exception(error))
    headers.append((DLT_EXCEPTION_STACKTRACE, stacktrace.encode()))
    return headers


def _origin_headers(record: FailedRecord, names: Sequence[str]) -> Headers:
    """Where ``record`` was read, under ``names`` (topic, partition, offset, timestamp, its type, group)."""
    values = (
        record.topic.encode(),
        encode_int32(record.partition),
        encode_int64(record.offset),
        encode_int64(record.timestamp),
        _TIMESTAMP_TYPE_NAMES.get(record.timestamp_type, "NoTimestampType").encode(),
        record.group_id.encode(),
    )
    return list(zip(names, values, strict=True))


def record_attempt(record: FailedRecord) -> int:
    """The delivery attempt ``record`` failed on: 1 on its own topic, whatever stale headers it carries."""
    return delivery_attempt(record.headers) if record.hop > 0 else 1


def delivery_attempt(headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    """Which delivery of the record this is: 1 on its own topic, then as ``retry_topic-attempts`` says.

    Spring Kafka before 3.0 wrote the attempt as a one-byte BigInteger; any length reads the same.
    """
    value = last_header(headers, RETRY_ATTEMPTS)
    return decode_int(value) if value else 1


def due_time_ms(headers: Sequence[tuple[str, bytes | None]] | None) -> int | None:
    """When a record read from a retry topic may be handled (ms since the epoch), if it says."""
    value = last_header(headers, RETRY_BACKOFF_TIMESTAMP)
    return decode_int(value) if value else None


def qualified_name(cls: type) -> str:
    """``module.QualName``, the Python counterpart of a Java fully-qualified class name."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


# -- topics --------------------------------------------------------------------------------------------------


def ensure_topics(
    admin: AdminClient, main_topic: str, policy: RetryPolicy, timeout_s: float = 10.0
) -> dict[str, int]:
    """Create ``main_topic``'s retry topics and DLT where missing; returns their partition counts.

    They get the main topic's partition count when it exists (so a record can keep its partition number),
    else the broker's default, and the broker's default replication factor.
    """
    wanted = policy.topics_to_create(main_topic)
    if not wanted:
        return {}
    metadata = admin.list_topics(timeout=timeout_s)
    main = metadata.topics.get(main_topic)
    partitions = len(main.partitions) if main is not None and main.error is None and main.partitions else -1
    missing = [
        name for name in wanted if name not in metadata.topics or metadata.topics[name].error is not None
    ]
    if missing:
        futures = admin.create_topics(
            [NewTopic(name, num_partitions=partitions) for name in missing], operation_timeout=timeout_s
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
            except Exception as error:  # noqa: BLE001 - inspect the Kafka error inside
                kafka_error = error.args[0] if error.args else None
                if not (
                    isinstance(kafka_error, KafkaError)
                    and kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    raise
                log.debug("%s was created meanwhile", name)
        metadata = admin.list_topics(timeout=timeout_s)
    return {
        name: len(metadata.topics[name].partitions)
        for name in wanted
        if name in metadata.topics and metadata.topics[name].partitions
    }
