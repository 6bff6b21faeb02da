"""Exactly-once consume-transform-produce with Kafka transactions (KIP-98, KIP-447).

Each transaction carries both the transformed records and the consumed input offsets: the producer sends the
offsets with ``send_offsets_to_transaction`` and the consumer group's metadata (KIP-447), so the group's
progress and the output become visible together or not at all. Input is read ``read_committed``, so a
pipeline never reads another transaction's aborted records. A pipeline that dies mid-transaction leaves it
open until a successor with the same ``transactional.id`` calls ``init_transactions`` (which aborts it) or the
transaction times out; the successor resumes from the group's committed offsets, so each input record's
output appears exactly once to ``read_committed`` readers downstream.

Transactions are committed every ``commit_every_records`` records or ``commit_every_ms`` milliseconds,
whichever comes first (Kafka Streams commits every 100 ms under exactly-once). When ``transform`` raises, or
Kafka tells the producer the transaction must be aborted, the pipeline aborts it and rewinds the input to
where the transaction began (the offsets committed with the previous one), then tries again up to
``max_retries`` times in a row before giving up. A fenced producer (another instance took over the
``transactional.id``, or the group moved on) is fatal: ``run()`` stops and raises ``PipelineFencedError``.

``stop()`` (or SIGINT/SIGTERM under ``run_pipeline``) finishes cleanly: the open transaction is committed,
then the consumer leaves its group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from strom.toolkit.serialization import Serializer, bytes_serializer

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long one transactional call (init, send offsets, commit, abort) may block before it counts as failed.
DEFAULT_CALL_TIMEOUT_S = 30.0
#: How many times a transactional call that failed with a retriable error is tried before giving up.
CALL_ATTEMPTS = 5
#: Kafka Streams' commit.interval.ms under exactly-once.
DEFAULT_COMMIT_EVERY_MS = 100
#: Bounds a transaction (and the work redone after an abort) when records arrive faster than the time bound.
DEFAULT_COMMIT_EVERY_RECORDS = 1000
#: How many records one consume() call may return.
CONSUME_BATCH = 500


class Output(NamedTuple):
    """One record for ``transform`` to produce; key and value go through the pipeline's serializers."""

    topic: str
    value: Any
    key: Any = None
    headers: Sequence[tuple[str, str | bytes | None]] | None = None
    partition: int | None = None


Transform = Callable[[Message], Output | Iterable[Output] | None]


class PipelineError(RuntimeError):
    """The pipeline stopped because it could not make progress (see ``__cause__``)."""


class PipelineFencedError(PipelineError):
    """Another producer with the same ``transactional.id``, or a newer group generation, fenced this one."""


@dataclass
class PipelineStats:
    """Counters of a pipeline's run, for logs, metrics and tests; they include the work of aborted
    transactions (records read again after a rewind count again)."""

    records_consumed: int = 0
    records_produced: int = 0
    transactions_committed: int = 0
    transactions_aborted: int = 0


@dataclass
class _Transaction:
    """The open transaction: where each input partition began (to rewind to) and where it got to."""

    started_at: float
    start_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    records: int = 0


class TransactionalPipeline:
    """Read ``input_topics`` as ``group_id``, ``transform`` each record, write its outputs, exactly once.

    ``config`` is confluent-kafka configuration shared by the consumer and the producer
    (``bootstrap.servers``, security, ``group.instance.id`` for static membership,
    ``transaction.timeout.ms``...); the pipeline sets
    what exactly-once needs (``isolation.level=read_committed``, no auto-commit, ``transactional.id``) and
    drops consumer-only and producer-only keys from the other client. ``transform`` returns an ``Output``,
    an iterable of them, or None for nothing.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        input_topics: Sequence[str],
        group_id: str,
        transactional_id: str,
        transform: Transform,
        *,
        commit_every_records: int = DEFAULT_COMMIT_EVERY_RECORDS,
        commit_every_ms: int = DEFAULT_COMMIT_EVERY_MS,
        value_serializer: Serializer = bytes_serializer,
        key_serializer: Serializer = bytes_serializer,
        max_retries: int = 3,
        retry_backoff_s: float = 1.0,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        poll_timeout_s: float = 0.1,
    ) -> None:
        if commit_every_records < 1 or commit_every_ms < 1:
            raise ValueError("commit_every_records and commit_every_ms must be positive")
        self.input_topics = list(input_topics)
        self.group_id = group_id
        self.transactional_id = transactional_id
        self.transform = transform
        self.commit_every_records = commit_every_records
        self.commit_every_ms = commit_every_ms
        self.value_serializer = value_serializer
        self.key_serializer = key_serializer
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.call_timeout_s = call_timeout_s
        self.poll_timeout_s = poll_timeout_s
        self.stats = PipelineStats()
        self._consumer_config = _consumer_config(config, group_id)
        self._producer_config = _producer_config(config, transactional_id)
        self._stop_requested = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._transaction: _Transaction | None = None
        self._failures_in_a_row = 0

    # -- lifecycle -------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Process records until ``stop()``; commits what is open before returning.

        Raises ``PipelineFencedError`` when fenced, ``PipelineError`` when retries are exhausted (the open
        transaction is aborted first, so nothing half-done stays visible).
        """
        # The producer first: its init_transactions aborts what a dead predecessor left open, whose pending
        # offsets would otherwise hold up the consumer's committed-offset fetch.
        try:
            producer = self._producer = Producer(self._producer_config)
            self._call(lambda: producer.init_transactions(self.call_timeout_s), "init_transactions")
            self._consumer = Consumer(self._consumer_config)
            self._consumer.subscribe(self.input_topics, on_revoke=self._on_revoke, on_lost=self._on_lost)
            while not self._stop_requested.is_set():
                self._process(self._consumer.consume(CONSUME_BATCH, self.poll_timeout_s))
                if self._commit_due():
                    self._commit_or_rewind()
            if self._transaction is not None:
                self._commit_or_rewind()
        except PipelineFencedError:
            self._transaction = None  # a fenced producer can neither commit nor abort
            raise
        except BaseException:
            self._abort_quietly()
            raise
        finally:
            self._close()

    def stop(self) -> None:
        """Ask ``run()`` to commit what it has and return; safe from any thread or a signal handler."""
        self._stop_requested.set()

    # -- the loop --------------------------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        records: list[tuple[Message, str, int, int]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._consumer_error(error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            records.append((message, topic, partition, offset))
        for index, (message, topic, partition, offset) in enumerate(records):
            transaction = self._transaction
            if transaction is None or index == 0:
                transaction = transaction or self._begin()
                # The rest of the batch joins the transaction up front, so that a rewind covers it too.
                for _, later_topic, later_partition, later_offset in records[index:]:
                    transaction.start_offsets.setdefault((later_topic, later_partition), later_offset)
            try:
                for output in _as_outputs(self.transform(message)):
                    self._produce(output)
            except Exception as exc:
                log.warning("transform failed at %s[%d]@%d: %r", topic, partition, offset, exc)
                self._abort_and_rewind(exc)
                return  # the rest of the batch is read again after the rewind
            transaction.next_offsets[(topic, partition)] = offset + 1
            transaction.records += 1
            self.stats.records_consumed += 1
            if transaction.records >= self.commit_every_records and not self._commit_or_rewind():
                return

    def _commit_due(self) -> bool:
        """The time bound; the record bound is checked after each record."""
        transaction = self._transaction
        return (
            transaction is not None
            and (time.monotonic() - transaction.started_at) * 1000 >= self.commit_every_ms
        )

    def _begin(self) -> _Transaction:
        self._call(self._require_producer().begin_transaction, "begin_transaction", retry=False)
        self._transaction = _Transaction(started_at=time.monotonic())
        return self._transaction

    def _produce(self, output: Output) -> None:
        producer = self._require_producer()
        arguments: dict[str, Any] = {
            "value": self.value_serializer(output.value),
            "key": self.key_serializer(output.key),
        }
        if output.headers is not None:
            arguments["headers"] = list(output.headers)
        if output.partition is not None:
            arguments["partition"] = output.partition
        while True:
            try:
                producer.produce(output.topic, **arguments)
                break
            except BufferError:  # the local queue is full: let deliveries drain, then try again
                producer.poll(self.poll_timeout_s)
        producer.poll(0)
        self.stats.records_produced += 1

    def _commit_or_rewind(self) -> bool:
        """Commit the open transaction with its input offsets; on an abortable error, abort and rewind.

        Returns whether it committed."""
        transaction = self._transaction
        if transaction is None:
            return True
        producer, consumer = self._require_producer(), self._require_consumer()
        offsets = [TopicPartition(t, p, offset) for (t, p), offset in transaction.next_offsets.items()]
        try:
            if offsets:
                self._call(
                    lambda: producer.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), self.call_timeout_s
                    ),
                    "send_offsets_to_transaction",
                )
            self._call(lambda: producer.commit_transaction(self.call_timeout_s), "commit_transaction")
        except _AbortRequired as exc:
            self._abort_and_rewind(exc.__cause__ or exc)
            return False
        self._transaction = None
        self._failures_in_a_row = 0
        self.stats.transactions_committed += 1
        return True

    def _abort_and_rewind(self, cause: BaseException) -> None:
        """Abort the open transaction and seek back to where it began, or give up after max_retries."""
        transaction = self._abort()
        if transaction is not None:
            self._rewind(transaction.start_offsets)
        self._failures_in_a_row += 1
        if self._failures_in_a_row > self.max_retries:
            raise PipelineError(
                f"gave up after {self._failures_in_a_row} aborted transactions in a row: {cause!r}"
            ) from cause
        self._stop_requested.wait(self.retry_backoff_s)  # a stop() cuts the back-off short

    def _abort(self) -> _Transaction | None:
        """Abort the open transaction, if any; returns it."""
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            producer = self._require_producer()
            self._call(lambda: producer.abort_transaction(self.call_timeout_s), "abort_transaction")
            self.stats.transactions_aborted += 1
        return transaction

    def _rewind(self, start_offsets: Mapping[tuple[str, int], int]) -> None:
        consumer = self._require_consumer()
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (topic, partition), offset in start_offsets.items():
            if (topic, partition) in assigned:
                consumer.seek(TopicPartition(topic, partition, offset))

    # -- rebalances ------------------------------------------------------------------------------------------

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit before the partitions go, while this member's generation may still commit offsets."""
        if self._transaction is not None:
            self._commit_or_rewind()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The partitions belong to others already: the open transaction's offsets would be rejected."""
        self._abort()

    # -- errors ----------------------------------------------------------------------------------------------

    def _call(self, call: Callable[[], T], name: str, *, retry: bool = True) -> T:
        """Run a transactional call; retry retriable errors, map fatal ones to PipelineFencedError/Error."""
        for attempt in range(1, CALL_ATTEMPTS + 1):
            try:
                return call()
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal():
                    if error.code() in _FENCED_CODES:
                        raise PipelineFencedError(f"{name}: {error.str()}") from exc
                    raise PipelineError(f"{name}: fatal error {error.str()}") from exc
                if error.txn_requires_abort():
                    raise _AbortRequired(name) from exc
                if not (retry and error.retriable()) or attempt == CALL_ATTEMPTS:
                    raise PipelineError(f"{name} failed: {error.str()}") from exc
                log.info("%s failed (%s); retrying", name, error.str())
        raise AssertionError("unreachable")

    def _consumer_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            code = error.code()
            exception = PipelineFencedError if code in _FENCED_CODES else PipelineError
            raise exception(f"consumer: {error.str()}")
        log.warning("consumer: %s", error.str())

    def _abort_quietly(self) -> None:
        """On the way out after an error: abort what is open, so nothing waits for its timeout."""
        try:
            self._abort()
        except PipelineError as exc:
            log.warning("could not abort the open transaction: %s", exc)

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing the consumer failed: %s", exc)
            self._consumer = None
        self._producer = None

    def _require_producer(self) -> Producer:
        if self._producer is None:
            raise PipelineError("pipeline not running")
        return self._producer

    def _require_consumer(self) -> Consumer:
        if self._consumer is None:
            raise PipelineError("pipeline not running")
        return self._consumer


class _AbortRequired(Exception):
    """Kafka says the transaction can only be aborted (txn_requires_abort)."""


_FENCED_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.FENCED_INSTANCE_ID,
    }
)

#: Settings that are only the consumer's or only the producer's; each client warns about the others'.
_CONSUMER_ONLY = frozenset(
    {
        "group.instance.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "auto.offset.reset",
        "partition.assignment.strategy",
        "group.protocol",
        "fetch.min.bytes",
        "fetch.wait.max.ms",
        "fetch.max.bytes",
        "max.partition.fetch.bytes",
        "isolation.level",
        "enable.auto.commit",
        "enable.partition.eof",
    }
)
_PRODUCER_ONLY = frozenset(
    {
        "transaction.timeout.ms",
        "linger.ms",
        "batch.size",
        "batch.num.messages",
        "compression.type",
        "acks",
        "enable.idempotence",
        "delivery.timeout.ms",
        "message.timeout.ms",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
    }
)


def _consumer_config(config: Mapping[str, Any], group_id: str) -> dict[str, Any]:
    settings = {key: value for key, value in config.items() if key not in _PRODUCER_ONLY}
    settings.setdefault("auto.offset.reset", "earliest")
    settings.update({"group.id": group_id, "isolation.level": "read_committed", "enable.auto.commit": False})
    settings.pop("transactional.id", None)
    return settings


def _producer_config(config: Mapping[str, Any], transactional_id: str) -> dict[str, Any]:
    settings = {key: value for key, value in config.items() if key not in _CONSUMER_ONLY}
    settings.pop("group.id", None)
    settings["transactional.id"] = transactional_id
    return settings


def _as_outputs(result: Output | Iterable[Output] | None) -> Iterable[Output]:
    if result is None:
        return ()
    if isinstance(result, Output):
        return (result,)
    return result


def run_pipeline(
    config: Mapping[str, Any],
    input_topics: Sequence[str],
    group_id: str,
    transactional_id: str,
    transform: Transform,
    **options: Any,
) -> PipelineStats:
    """Run a ``TransactionalPipeline`` in the foreground until SIGINT or SIGTERM, then stop cleanly.

    ``options`` are ``TransactionalPipeline``'s keyword arguments. Signal handlers are installed only when
    called from the main thread (Python allows no other), and the previous ones are restored on return.
    """
    pipeline = TransactionalPipeline(config, input_topics, group_id, transactional_id, transform, **options)
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signum, _frame: pipeline.stop())
    try:
        pipeline.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return pipeline.stats
