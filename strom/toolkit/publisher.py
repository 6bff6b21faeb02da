"""Publishing records and events with confluent-kafka, blocking or from asyncio.

Both forms share one design: a confluent-kafka ``Producer`` whose delivery reports are served by a
background poll thread, each report settling a future made for its message. ``Publisher`` hands out
``concurrent.futures.Future`` objects; ``AsyncPublisher`` hands out asyncio futures, settled on their event
loop through ``call_soon_threadsafe`` because the reports arrive on the poll thread.

The defaults favour not losing or duplicating records over latency: ``acks=all`` waits until every in-sync
replica has the record, so an acknowledged record survives the loss of the leader, and
``enable.idempotence=true`` lets the producer retry a batch whose ack was lost without writing it twice or
out of order. ``linger.ms=5`` trades a few milliseconds for batching when many records are published at
once. The user's config wins over all of them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, NamedTuple, Self

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, KafkaError, KafkaException, Producer

from strom.toolkit.events import Event
from strom.toolkit.serialization import Serializer, bytes_serializer, json_serializer

logger = logging.getLogger(__name__)

DEFAULT_CONFIG: Mapping[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "client.id": "strom-publisher",
}
DEFAULT_TIMEOUT_S = 10.0
# How long the poll thread blocks in one poll; it bounds how late close() notices the stop request.
_POLL_INTERVAL_S = 0.1
# How long to wait before retrying a produce refused because librdkafka's local queue is full.
_QUEUE_FULL_BACKOFF_S = 0.01
# After purging what close() could not flush, how long to wait for the purged messages' reports.
_PURGE_REPORT_TIMEOUT_S = 1.0

HeaderValue = str | bytes | None
Headers = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]]
_EncodedHeaders = list[tuple[str, bytes | None]]


class Delivery(NamedTuple):
    """Where the broker stored a record. ``timestamp`` is in ms since the epoch, ``None`` if unknown."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None


class PublishError(Exception):
    """The record was not stored. ``code`` is confluent-kafka's ``KafkaError`` code.

    ``retriable`` says whether publishing the same record again may succeed (a leader election, a broker
    restart); a record too large or a topic that does not exist will fail again.
    """

    def __init__(self, message: str, *, code: int, retriable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retriable = retriable

    @classmethod
    def from_kafka_error(cls, error: KafkaError, topic: str) -> PublishError:
        """Wrap a delivery report's or ``produce()``'s error, naming the topic for the log reader."""
        return cls(
            f"publishing to {topic!r} failed: {error.str()} ({error.name()})",
            code=error.code(),
            retriable=error.retriable(),
        )


def producer_config(config: Mapping[str, Any] | None, bootstrap_servers: str | None) -> dict[str, Any]:
    """The producer config: the defaults, then the user's config, then ``bootstrap_servers`` if given."""
    merged = {**DEFAULT_CONFIG, "logger": logger, **(config or {})}
    if bootstrap_servers is not None:
        merged["bootstrap.servers"] = bootstrap_servers
    if not merged.get("bootstrap.servers"):
        raise ValueError("a publisher needs bootstrap.servers (in config or as bootstrap_servers=)")
    return merged


OnDelivered = Callable[[Delivery | PublishError], None]


class _ProducerCore:
    """One confluent-kafka producer and the thread that serves its delivery reports."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        self._closed = False

    def start(self) -> None:
        """Create the producer and its poll thread; later calls do nothing."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> Producer:
        if self._closed:
            raise RuntimeError("the publisher is closed")
        if self._producer is None:
            self._producer = Producer(self._config)
            self._poller = threading.Thread(
                target=self._poll_until_stopped,
                args=(self._producer,),
                name="strom-publisher-poll",
                daemon=True,
            )
            self._poller.start()
        return self._producer

    def _poll_until_stopped(self, producer: Producer) -> None:
        while not self._stop_polling.is_set():
            # Keep serving whatever one poll raises (a failing log handler, say): if this thread died,
            # every later future would wait in vain.
            try:
                producer.poll(_POLL_INTERVAL_S)
            except Exception:
                logger.exception("serving the producer's delivery reports failed")

    def produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: _EncodedHeaders | None,
        partition: int | None,
        on_delivered: OnDelivered,
    ) -> None:
        """Queue one record; ``on_delivered`` runs on the poll thread with its outcome.

        Raises ``BufferError`` when librdkafka's local queue is full (the caller decides how to wait) and
        ``PublishError`` when librdkafka refuses the record outright, e.g. when it is larger than
        ``message.max.bytes``. Starts the producer on first use.
        """

        def report(error: KafkaError | None, message: Any) -> None:
            if error is not None:
                on_delivered(PublishError.from_kafka_error(error, topic))
                return
            timestamp_type, timestamp = message.timestamp()
            on_delivered(
                Delivery(
                    topic=message.topic(),
                    partition=message.partition(),
                    offset=message.offset(),
                    timestamp=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
                )
            )

        arguments: dict[str, Any] = {"value": value, "key": key, "on_delivery": report}
        if headers:
            arguments["headers"] = headers
        if partition is not None:
            arguments["partition"] = partition
        # Held while producing so that close() cannot slip between the closed check and produce().
        with self._lock:
            producer = self._start_locked()
            try:
                producer.produce(topic, **arguments)
            except KafkaException as exc:
                raise PublishError.from_kafka_error(exc.args[0], topic) from exc

    def flush(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for queued records to be acknowledged; returns how many remain."""
        producer = self._producer
        return 0 if producer is None else producer.flush(timeout_s)

    def close(self, timeout_s: float) -> None:
        """Flush for up to ``timeout_s``, fail whatever is left with a purge error, and stop.

        Purging rather than abandoning the leftovers settles every future handed out, so no caller waits
        forever on a record that will never be sent.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer = self._producer
        if producer is None:
            return
        if producer.flush(timeout_s) > 0:
            producer.purge()
            producer.flush(_PURGE_REPORT_TIMEOUT_S)
        self._stop_polling.set()
        if self._poller is not None:
            self._poller.join()
        producer.close()
        self._producer = None


def _queue_full(topic: str) -> TimeoutError:
    return TimeoutError(f"librdkafka's local queue stayed full; nothing was published to {topic!r}")


def _encode_headers(headers: Headers | None) -> _EncodedHeaders | None:
    if headers is None:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return [(name, value.encode("utf-8") if isinstance(value, str) else value) for name, value in pairs]


class _PublisherBase:
    """What both publishers share: configuration, serialization and the producer core."""

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        bootstrap_servers: str | None = None,
        value_serializer: Serializer = json_serializer,
        key_serializer: Serializer = bytes_serializer,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.config = producer_config(config, bootstrap_servers)
        self.value_serializer = value_serializer
        self.key_serializer = key_serializer
        self.timeout_s = timeout_s
        self._core = _ProducerCore(self.config)

    def _timeout(self, timeout_s: float | None) -> float:
        return self.timeout_s if timeout_s is None else timeout_s

    def _encode(self, value: Any, key: Any) -> tuple[bytes | None, bytes | None]:
        """Serialize value and key; ``None`` stays ``None`` (a tombstone value, an unkeyed record)."""
        return (
            None if value is None else self.value_serializer(value),
            None if key is None else self.key_serializer(key),
        )


class Publisher(_PublisherBase):
    """A blocking, thread-safe publisher. ``start()`` is optional: the first publish starts it.

    ``publish`` waits for the broker's ack; ``publish_async`` returns at once with a future, for callers
    that publish many records and then wait for all of them.
    """

    def start(self) -> Self:
        self._core.start()
        return self

    def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued (up to the timeout), fail what is left with ``PublishError``, and stop."""
        self._core.close(self._timeout(timeout_s))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def publish(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Publish one record and wait for its ack.

        Raises ``PublishError`` if the broker or librdkafka rejected it, ``TimeoutError`` if no answer came
        in time — in which case the record may still be delivered later.
        """
        timeout = self._timeout(timeout_s)
        deadline = time.monotonic() + timeout
        encoded_value, encoded_key = self._encode(value, key)
        future = self._send(topic, encoded_value, encoded_key, _encode_headers(headers), partition, deadline)
        return _await_delivery(future, topic, deadline, timeout)

    def publish_async(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timeout_s: float | None = None,
    ) -> concurrent.futures.Future[Delivery]:
        """Queue one record and return a future of its ``Delivery``.

        As Kafka's ``KafkaProducer.send``, failures arrive through the future: ``PublishError`` (also when
        librdkafka refuses the record before sending it) or ``TimeoutError``. Only waits, up to the timeout,
        while librdkafka's local queue is full (as Kafka's ``max.block.ms``). The future cannot be cancelled.
        """
        deadline = time.monotonic() + self._timeout(timeout_s)
        encoded_value, encoded_key = self._encode(value, key)
        return self._send(topic, encoded_value, encoded_key, _encode_headers(headers), partition, deadline)

    def publish_event(
        self,
        topic: str,
        event: Event,
        *,
        key: Any = None,
        headers: Headers | None = None,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Publish a CloudEvent in binary mode: its data as the value, its attributes as headers."""
        timeout = self._timeout(timeout_s)
        deadline = time.monotonic() + timeout
        encoded_key = None if key is None else self.key_serializer(key)
        all_headers = event.to_headers() + (_encode_headers(headers) or [])
        future = self._send(topic, event.encode_data(), encoded_key, all_headers, None, deadline)
        return _await_delivery(future, topic, deadline, timeout)

    def flush(self, timeout_s: float | None = None) -> int:
        """Wait for queued records to be acknowledged; returns how many are still queued."""
        return self._core.flush(self._timeout(timeout_s))

    def _send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: _EncodedHeaders | None,
        partition: int | None,
        deadline: float,
    ) -> concurrent.futures.Future[Delivery]:
        future: concurrent.futures.Future[Delivery] = concurrent.futures.Future()
        # A produced record cannot be taken back, so its future must not be cancellable.
        future.set_running_or_notify_cancel()

        def settle(outcome: Delivery | PublishError) -> None:
            if isinstance(outcome, PublishError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        while True:
            try:
                self._core.produce(topic, value, key, headers, partition, settle)
                return future
            except PublishError as error:
                future.set_exception(error)
                return future
            except BufferError:
                if time.monotonic() >= deadline:
                    future.set_exception(_queue_full(topic))
                    return future
                time.sleep(_QUEUE_FULL_BACKOFF_S)


def _await_delivery(
    future: concurrent.futures.Future[Delivery], topic: str, deadline: float, timeout: float
) -> Delivery:
    try:
        return future.result(max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        if future.done():  # the future's own failure: the local queue stayed full
            raise
        raise TimeoutError(
            f"no ack from {topic!r} within {timeout:g} s; the record may still be delivered"
        ) from None


class AsyncPublisher(_PublisherBase):
    """The asyncio form of ``Publisher``: the same producer and options, with coroutines.

    Producing never blocks the event loop (librdkafka queues the record); flushing and closing do, so they
    run in a worker thread.
    """

    async def start(self) -> Self:
        self._core.start()
        return self

    async def close(self, timeout_s: float | None = None) -> None:
        """Deliver what is queued (up to the timeout), fail what is left with ``PublishError``, and stop."""
        await asyncio.to_thread(self._core.close, self._timeout(timeout_s))

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish(
        self,
        topic: str,
        value: Any,
        *,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Publish one record and wait for its ack; raises ``PublishError`` or ``TimeoutError``."""
        encoded_value, encoded_key = self._encode(value, key)
        return await self._send(
            topic, encoded_value, encoded_key, _encode_headers(headers), partition, self._timeout(timeout_s)
        )

    async def publish_event(
        self,
        topic: str,
        event: Event,
        *,
        key: Any = None,
        headers: Headers | None = None,
        timeout_s: float | None = None,
    ) -> Delivery:
        """Publish a CloudEvent in binary mode: its data as the value, its attributes as headers."""
        encoded_key = None if key is None else self.key_serializer(key)
        all_headers = event.to_headers() + (_encode_headers(headers) or [])
        return await self._send(
            topic, event.encode_data(), encoded_key, all_headers, None, self._timeout(timeout_s)
        )

    async def flush(self, timeout_s: float | None = None) -> int:
        """Wait for queued records to be acknowledged; returns how many are still queued."""
        return await asyncio.to_thread(self._core.flush, self._timeout(timeout_s))

    async def _send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: _EncodedHeaders | None,
        partition: int | None,
        timeout: float,
    ) -> Delivery:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def settle_on_loop(outcome: Delivery | PublishError) -> None:
            if future.done():  # the caller timed out or was cancelled
                return
            if isinstance(outcome, PublishError):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        def settle(outcome: Delivery | PublishError) -> None:
            # A closed loop raises RuntimeError: nobody is waiting for this record any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle_on_loop, outcome)

        deadline = loop.time() + timeout
        while True:
            try:
                self._core.produce(topic, value, key, headers, partition, settle)
                break
            except BufferError:
                if loop.time() >= deadline:
                    raise _queue_full(topic) from None
                await asyncio.sleep(_QUEUE_FULL_BACKOFF_S)
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise TimeoutError(
                f"no ack from {topic!r} within {timeout:g} s; the record may still be delivered"
            ) from None
