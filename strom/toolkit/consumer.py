"""The consumer framework: handlers declare topics and group; the app polls, dispatches, retries, commits.

A handler is a function decorated with ``@consumer("order.created", group_id="payment-service",
model=OrderCreated)`` or a ``Consumer`` subclass (``get_topic``, ``get_group_id``, ``handle_message``). Either
receives a ``Message[T]`` whose value is already validated into ``T``.

``ConsumerApp`` runs one confluent-kafka consumer per group, shared by that group's handlers. Its poll loop
only polls and dispatches: handlers run on worker threads, so however slow they are the loop keeps calling
``consume``, and the member is never evicted for exceeding ``max.poll.interval.ms``. Records of one partition
are handled in order (or, with ``concurrency=N``, up to N at a time, records of one key still in order). An
offset is committed only once its record and every record before it in the partition are done — handled, or
moved to a retry topic or the DLT (see ``strom.toolkit.retry``) — so a crash redelivers, never skips.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar, cast

import pydantic
from confluent_kafka import Consumer as KafkaConsumer
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient

from strom.toolkit.events import Event
from strom.toolkit.publisher import Publisher
from strom.toolkit.retry import (
    FailedRecord,
    Recoverer,
    RetryPolicy,
    delivery_attempt,
    due_time_ms,
    ensure_topics,
    last_header,
)
from strom.toolkit.serialization import bytes_serializer

log = logging.getLogger(__name__)

T = TypeVar("T")

# Defaults under the user's config. Offsets are committed by the framework after handling, never by a timer.
# A group with no committed offset starts at the earliest record: a service deployed after its first events
# were published must still process them (``latest`` would silently skip them). read_committed hides records
# of aborted transactions and those of open ones until they commit. The session and heartbeat values are the
# ones the reference services use; cooperative-sticky keeps partitions that stay put working through a
# rebalance instead of stopping the whole group.
CONSUMER_DEFAULTS: Mapping[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "session.timeout.ms": 30000,
    "heartbeat.interval.ms": 3000,
    "partition.assignment.strategy": "cooperative-sticky",
}
# The most records taken from the consumer per poll-loop iteration.
_BATCH = 500
# Config keys the publisher for retry topics and DLTs takes from the consumer config (connection, security).
_SHARED_CONFIG_PREFIXES = (
    "bootstrap.servers",
    "security.",
    "sasl.",
    "ssl.",
    "broker.address.",
    "client.dns.",
)


@dataclass(frozen=True)
class Message(Generic[T]):
    """One record as a handler sees it: the validated ``value`` and everything about where it came from.

    ``value`` is ``None`` for a tombstone. ``event`` is the CloudEvents envelope when the record carries one.
    ``attempt`` is the delivery attempt: 1 on the record's own topic, n+1 on its n-th retry topic.
    ``original_topic`` is the topic the record was first published to (not ``topic`` on retry topics).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: T
    raw_value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int  # ms since the epoch, as Kafka gives it (-1 when the record has none)
    event: Event | None
    group_id: str
    original_topic: str
    attempt: int = 1

    def header(self, name: str) -> bytes | None:
        """The last header called ``name``, if any."""
        return last_header(self.headers, name)


Handler = Callable[[Message[Any]], Awaitable[None] | None]


class Consumer:
    """A handler in class form: subclass, implement ``get_topic``, ``get_group_id`` and ``handle_message``.

    ``handle_message`` may be ``async def``. Set ``model`` to validate values (a pydantic model, ``dict``,
    ``str``, ``bytes`` or any type pydantic validates), ``concurrency`` to handle up to that many records of a
    partition at once (records sharing a key stay in order), and ``retry`` to override the app's policy.
    """

    model: ClassVar[Any] = None
    concurrency: ClassVar[int] = 1
    retry: ClassVar[RetryPolicy | None] = None

    def get_topic(self) -> str | Sequence[str]:
        raise NotImplementedError

    def get_group_id(self) -> str:
        raise NotImplementedError

    def handle_message(self, message: Message[Any]) -> Awaitable[None] | None:
        raise NotImplementedError

    def topics(self) -> list[str]:
        """``get_topic()`` as a list."""
        topic = self.get_topic()
        return [topic] if isinstance(topic, str) else list(topic)


class FunctionConsumer(Consumer):
    """A function registered with ``@consumer``; still callable as the plain function."""

    def __init__(
        self,
        function: Handler,
        topics: str | Sequence[str],
        group_id: str,
        model: Any,
        concurrency: int,
        retry: RetryPolicy | None,
    ) -> None:
        self.function = function
        self._topics = topics
        self._group_id = group_id
        self.model = model  # type: ignore[misc]  # an instance may narrow the class defaults
        self.concurrency = concurrency  # type: ignore[misc]
        self.retry = retry  # type: ignore[misc]
        self.__name__ = getattr(function, "__name__", type(self).__name__)
        self.__doc__ = function.__doc__

    def get_topic(self) -> str | Sequence[str]:
        return self._topics

    def get_group_id(self) -> str:
        return self._group_id

    def handle_message(self, message: Message[Any]) -> Awaitable[None] | None:
        return self.function(message)

    def __call__(self, message: Message[Any]) -> Awaitable[None] | None:
        return self.function(message)

    def __repr__(self) -> str:
        return f"<consumer {self.__name__} of {self._topics!r} in group {self._group_id!r}>"


def consumer(
    topics: str | Sequence[str],
    group_id: str,
    *,
    model: Any = None,
    concurrency: int = 1,
    retry: RetryPolicy | None = None,
) -> Callable[[Handler], FunctionConsumer]:
    """Make a function (sync or async, taking a ``Message[T]``) the handler of ``topics`` in ``group_id``."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")

    def register(function: Handler) -> FunctionConsumer:
        return FunctionConsumer(function, topics, group_id, model, concurrency, retry)

    return register


# -- decoding ------------------------------------------------------------------------------------------------


class _Decoder:
    """Turns record bytes into the handler's model; failures here are bad data, never worth a retry."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self._adapter: pydantic.TypeAdapter[Any] | None = None
        if model not in (None, bytes, str) and not _is_pydantic_model(model):
            self._adapter = pydantic.TypeAdapter(model)

    def decode(self, raw: bytes | None) -> Any:
        if raw is None or self._model in (None, bytes):
            return raw
        if self._model is str:
            return raw.decode("utf-8")
        if self._adapter is not None:
            return self._adapter.validate_json(raw)
        return self._model.model_validate_json(raw)


def _is_pydantic_model(model: Any) -> bool:
    return isinstance(model, type) and issubclass(model, pydantic.BaseModel)


# -- per-partition bookkeeping -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Route:
    """What a subscribed topic leads to: its handler, its policy, and which hop of a retry chain it is."""

    handler: Consumer
    decoder: _Decoder
    policy: RetryPolicy
    main_topic: str
    hop: int

    @property
    def is_retry_topic(self) -> bool:
        """Records of retry topics wait for their due time."""
        return self.hop > 0


@dataclass(frozen=True)
class _Record:
    """A consumed record with the optional parts of confluent-kafka's ``Message`` settled once."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp_type: int
    timestamp: int

    @classmethod
    def of(cls, message: KafkaMessage) -> _Record:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            raise ValueError(f"record without coordinates: {topic}[{partition}]@{offset}")
        raw_headers = message.headers() or []
        pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
        timestamp_type, timestamp = message.timestamp()
        return cls(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=[
                (name, value.encode() if isinstance(value, str) else value or b"") for name, value in pairs
            ],
            timestamp_type=timestamp_type,
            timestamp=timestamp,
        )

    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class _Partition:
    """A partition's records between ``consume`` and commit. Touched only under the group's lock."""

    topic: str
    partition: int
    route: _Route
    pending: deque[_Record] = field(default_factory=deque)  # consumed, not started
    outstanding: deque[int] = field(default_factory=deque)  # offsets consumed and not yet done, in order
    done: set[int] = field(default_factory=set)
    running_keys: list[bytes | None] = field(default_factory=list)
    next_commit: int | None = None  # offset to commit: after the last of a contiguous run of done records
    committed: int | None = None
    last_accepted: int | None = None
    paused: bool = False
    revoked: bool = False
    not_before_ms: int | None = None  # the head record's due time, while it waits (retry topics)

    def mark_done(self, offset: int) -> None:
        self.done.add(offset)
        while self.outstanding and self.outstanding[0] in self.done:
            head = self.outstanding.popleft()
            self.done.discard(head)
            self.next_commit = head + 1

    def uncommitted(self) -> int | None:
        """The offset to commit, if it moved since the last commit."""
        if self.next_commit is not None and self.next_commit != self.committed:
            return self.next_commit
        return None


# -- the app -------------------------------------------------------------------------------------------------


class ConsumerApp:
    """Runs consumers: one Kafka consumer per group, handlers on a thread pool, retries and dead letters.

    ``config`` is confluent-kafka consumer config (at least ``bootstrap.servers``; a plain string is taken as
    the bootstrap servers); the framework's defaults (``CONSUMER_DEFAULTS``) sit under it and each group's id
    comes from its handlers. ``run()`` blocks until ``stop()`` (or SIGTERM/SIGINT when called from the main
    thread); ``start()`` runs it on a background thread; ``run_async()`` runs it from asyncio, with ``async``
    handlers on the caller's event loop.

    Handlers of all groups share ``max_workers`` threads. A partition whose handlers fall
    ``max_buffered_per_partition`` records behind is paused (its fetching, not the member) until they catch
    up, and a retry-topic partition is paused while its next record is not yet due. ``shutdown_timeout_s``
    bounds how long a revocation or ``stop()`` waits for running handlers before committing what is done.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | str,
        consumers: Iterable[Consumer | type[Consumer]],
        retry: RetryPolicy | None = None,
        *,
        publisher: Publisher | None = None,
        max_workers: int = 8,
        max_buffered_per_partition: int = 100,
        poll_timeout_s: float = 0.1,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._config = {"bootstrap.servers": config} if isinstance(config, str) else dict(config)
        self._policy = retry if retry is not None else RetryPolicy()
        self._handlers = [c() if isinstance(c, type) else c for c in consumers]
        if not self._handlers:
            raise ValueError("no consumers to run")
        self._groups = _group_handlers(self._handlers)
        self._given_publisher = publisher
        self._max_workers = max_workers
        self._settings = _Settings(max_buffered_per_partition, poll_timeout_s, shutdown_timeout_s)
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until ``stop()`` (or SIGTERM/SIGINT, on the main thread). Re-raises fatal errors."""
        self._stopped.clear()
        restore = self._install_signal_handlers()
        publisher = self._given_publisher or Publisher(
            self._publisher_config(), value_serializer=bytes_serializer
        )
        owns_publisher = self._given_publisher is None
        executor = ThreadPoolExecutor(self._max_workers, thread_name_prefix="strom-handler")
        runners: list[_GroupRunner] = []
        try:
            if owns_publisher:
                publisher.start()
            recoverer = Recoverer(publisher, self._create_retry_topics())
            runners = [
                _GroupRunner(
                    group_id,
                    self._routes(handlers),
                    self._consumer_config(group_id),
                    _Services(recoverer, executor, self._stopping, self._call_handler, self._settings),
                )
                for group_id, handlers in self._groups.items()
            ]
            threads = [threading.Thread(target=r.run, name=f"strom-consumer-{r.group_id}") for r in runners]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # short joins keep the main thread responsive to signals
            errors = [runner.error for runner in runners if runner.error is not None]
            if errors:
                raise errors[0]
        finally:
            self._stopping.set()
            executor.shutdown(wait=False, cancel_futures=True)
            if owns_publisher:
                publisher.close()
            restore()
            self._stopped.set()

    def start(self) -> ConsumerApp:
        """Run on a background thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the app is already running")
        self._stopping.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run_logged, name="strom-consumer-app", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop polling, let running handlers finish (up to the shutdown timeout), commit, leave groups."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(
                timeout_s if timeout_s is not None else self._settings.shutdown_timeout_s + 10.0
            )

    async def run_async(self) -> None:
        """``run()`` for asyncio: ``async`` handlers run on this event loop; cancelling stops the app."""
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._stopped.clear()
        try:
            await asyncio.shield(asyncio.to_thread(self.run))
        except asyncio.CancelledError:
            self._stopping.set()
            await asyncio.to_thread(self._stopped.wait)
            raise
        finally:
            self._loop = None

    def __enter__(self) -> ConsumerApp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        """Whether the app is stopping: long handlers may check it to give up early."""
        return self._stopping.is_set()

    @property
    def error(self) -> BaseException | None:
        """Why the app stopped by itself, when it ran with ``start()`` and failed (``run()`` raises it)."""
        return self._error

    # -- internals -------------------------------------------------------------------------------------------

    def _run_logged(self) -> None:
        try:
            self.run()
        except Exception as error:
            log.exception("consumer app failed")
            self._error = error

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self._stopping.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _publisher_config(self) -> dict[str, Any]:
        return {k: v for k, v in self._config.items() if k.startswith(_SHARED_CONFIG_PREFIXES)}

    def _create_retry_topics(self) -> dict[str, int]:
        """Create missing retry topics and DLTs; returns the partition counts of all of them."""
        wanted = [
            (topic, self._policy_of(handler)) for handler in self._handlers for topic in handler.topics()
        ]
        wanted = [(topic, policy) for topic, policy in wanted if policy.create_topics]
        if not wanted:
            return {}
        admin = AdminClient(self._publisher_config())
        counts: dict[str, int] = {}
        for topic, policy in wanted:
            counts.update(ensure_topics(admin, topic, policy))
        return counts

    def _policy_of(self, handler: Consumer) -> RetryPolicy:
        return handler.retry if handler.retry is not None else self._policy

    def _routes(self, handlers: list[Consumer]) -> dict[str, _Route]:
        """Each subscribed topic, retry topics included, and what its records lead to."""
        routes: dict[str, _Route] = {}
        for handler in handlers:
            policy = self._policy_of(handler)
            decoder = _Decoder(handler.model)
            for topic in handler.topics():
                routes[topic] = _Route(handler, decoder, policy, topic, 0)
                for hop, retry_topic in enumerate(policy.retry_topics(topic), start=1):
                    routes[retry_topic] = _Route(handler, decoder, policy, topic, hop)
        return routes

    def _consumer_config(self, group_id: str) -> dict[str, Any]:
        return {**CONSUMER_DEFAULTS, **self._config, "group.id": group_id}

    def _call_handler(self, handler: Consumer, message: Message[Any]) -> None:
        """Call the handler on this worker thread; coroutines run on the app's loop or this thread's."""
        result = handler.handle_message(message)
        if not inspect.isawaitable(result):
            return
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(_as_coroutine(result), self._loop).result()
        else:
            _thread_event_loop().run_until_complete(result)


def _group_handlers(handlers: list[Consumer]) -> dict[str, list[Consumer]]:
    """Handlers by group; one topic has one handler per group (else which one gets a record is arbitrary)."""
    groups: dict[str, list[Consumer]] = {}
    claimed: dict[tuple[str, str], Consumer] = {}
    for handler in handlers:
        group_id = handler.get_group_id()
        for topic in handler.topics():
            other = claimed.setdefault((group_id, topic), handler)
            if other is not handler:
                raise ValueError(
                    f"{topic!r} has two handlers in group {group_id!r}: {other!r} and {handler!r}"
                )
        groups.setdefault(group_id, []).append(handler)
    return groups


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


_thread_state = threading.local()


def _thread_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop per worker thread, kept so async handlers' loop-bound resources outlive one call."""
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_state.loop = loop
    return cast(asyncio.AbstractEventLoop, loop)


# -- one group -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    max_buffered_per_partition: int
    poll_timeout_s: float
    shutdown_timeout_s: float


@dataclass(frozen=True)
class _Services:
    """What the app lends each group runner."""

    recoverer: Recoverer
    executor: ThreadPoolExecutor
    stopping: threading.Event
    call_handler: Callable[[Consumer, Message[Any]], None]
    settings: _Settings


class _GroupRunner:
    """The poll loop of one group's consumer and the bookkeeping of its partitions.

    The loop thread alone calls the Kafka consumer (consume, pause, resume, commit). Worker threads run the
    handlers and, when one finishes, start the partition's next record themselves so a partition never waits
    for the loop between records. ``_lock`` guards the partitions; ``_changed`` wakes waits on them.
    """

    def __init__(
        self, group_id: str, routes: dict[str, _Route], config: dict[str, Any], services: _Services
    ) -> None:
        self.group_id = group_id
        self.error: BaseException | None = None
        self._routes = routes
        self._config = config
        self._services = services
        self._settings = services.settings
        self._stopping = services.stopping
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- poll loop -------------------------------------------------------------------------------------------

    def run(self) -> None:
        kafka: KafkaConsumer | None = None
        try:
            kafka = KafkaConsumer(self._config, logger=log)
            kafka.subscribe(
                list(self._routes),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self._stopping.is_set():
                self._poll_once(kafka)
            self._shut_down(kafka)
        except BaseException as error:  # noqa: BLE001 - reported by ConsumerApp.run
            log.exception("consumer of group %s failed", self.group_id)
            self.error = error
            self._stopping.set()
            if kafka is not None:
                kafka.close()

    def _poll_once(self, kafka: KafkaConsumer) -> None:
        # consume() waits for a full batch or the whole timeout; poll() returns with the first record, and
        # consume(timeout=0) then takes what else has arrived, so a lone record is not held back.
        first = kafka.poll(self._poll_timeout())
        records = [] if first is None else [first, *kafka.consume(num_messages=_BATCH - 1, timeout=0)]
        with self._lock:
            for record in records:
                self._accept(record)
            for state in self._partitions.values():
                self._dispatch(state)
            to_pause, to_resume = self._flow_control()
        if to_pause:
            kafka.pause(to_pause)
        if to_resume:
            kafka.resume(to_resume)
        self._commit(kafka, asynchronous=True)

    def _poll_timeout(self) -> float:
        """The poll timeout, cut short when a delayed record falls due sooner (no sleeping, no busy loop)."""
        timeout = self._settings.poll_timeout_s
        with self._lock:
            dues = [s.not_before_ms for s in self._partitions.values() if s.not_before_ms is not None]
        if dues:
            timeout = min(timeout, max(0.0, (min(dues) - time.time() * 1000) / 1000))
        return timeout

    def _accept(self, message: KafkaMessage) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer of group %s: %s", self.group_id, error)
            return
        record = _Record.of(message)
        state = self._partitions.get((record.topic, record.partition))
        if state is None or state.revoked:
            return  # fetched before its partition was revoked; its new owner reads it
        if state.last_accepted is not None and record.offset <= state.last_accepted:
            return  # a re-fetch of a record already taken (the framework never seeks back)
        state.last_accepted = record.offset
        state.pending.append(record)
        state.outstanding.append(record.offset)

    def _flow_control(self) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """Pause partitions with a full backlog or a record waiting for its due time; resume the rest."""
        to_pause: list[TopicPartition] = []
        to_resume: list[TopicPartition] = []
        for state in self._partitions.values():
            hold = (
                state.not_before_ms is not None
                or len(state.pending) >= self._settings.max_buffered_per_partition
            )
            if hold != state.paused:
                state.paused = hold
                (to_pause if hold else to_resume).append(TopicPartition(state.topic, state.partition))
        return to_pause, to_resume

    # -- dispatch (under the lock) ---------------------------------------------------------------------------

    def _dispatch(self, state: _Partition) -> None:
        """Start what may start: the head record, or with concurrency N up to N records of distinct keys."""
        limit = state.route.handler.concurrency
        blocked_keys = set(state.running_keys)
        state.not_before_ms = None  # set again below while the head still waits
        index = 0
        while index < len(state.pending) and len(state.running_keys) < limit and not self._stopping.is_set():
            record = state.pending[index]
            if state.route.is_retry_topic and not self._due(state, record):
                return
            key = record.key
            if key in blocked_keys:
                index += 1
                continue
            del state.pending[index]
            blocked_keys.add(key)
            state.running_keys.append(key)
            self._services.executor.submit(self._work, state, record)
            if limit == 1:
                return

    def _due(self, state: _Partition, record: _Record) -> bool:
        due = due_time_ms(record.headers)
        if due is not None and due > time.time() * 1000:
            state.not_before_ms = due
            return False
        state.not_before_ms = None
        return True

    # -- workers ---------------------------------------------------------------------------------------------

    def _work(self, state: _Partition, record: _Record) -> None:
        finished = False
        try:
            finished = self._handle(state.route, record)
        except BaseException:  # noqa: BLE001 - a worker must always release its partition
            log.exception("handling %s failed", record.where())
        with self._lock:
            state.running_keys.remove(record.key)
            if finished:
                state.mark_done(record.offset)
                if not state.revoked:
                    self._dispatch(state)
            self._changed.notify_all()

    def _handle(self, route: _Route, record: _Record) -> bool:
        """Handle with in-process retries, then move the record on; False if abandoned (stopping)."""
        policy = route.policy
        try:
            message = self._message(route, record)
        except Exception as error:  # noqa: BLE001 - undecodable: bad data, straight to the DLT
            return self._recover(route, record, error, retryable=False)
        failed_tries = 0
        while True:
            try:
                self._services.call_handler(route.handler, message)
                return True
            except Exception as error:  # noqa: BLE001 - classified below
                failed_tries += 1
                if not policy.is_retryable(error) or failed_tries >= policy.attempts:
                    return self._recover(route, record, error, retryable=policy.is_retryable(error))
                log.info("retrying %s: %s", record.where(), error)
                if self._stopping.wait(policy.backoff(failed_tries)):
                    return False

    def _recover(self, route: _Route, record: _Record, error: BaseException, *, retryable: bool) -> bool:
        """Move the record on, retrying the publish itself until it is acknowledged or the app stops."""
        failed = FailedRecord(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_type=record.timestamp_type,
            timestamp=record.timestamp,
            key=record.key,
            value=record.value,
            headers=record.headers,
            group_id=self.group_id,
            main_topic=route.main_topic,
            hop=route.hop,
        )
        policy = route.policy if retryable else replace(route.policy, retry_topic_delays_s=())
        failures = 0
        while True:
            try:
                self._services.recoverer.recover(failed, error, policy)
                return True
            except Exception as publish_error:  # noqa: BLE001 - the record must not be lost: try again
                failures += 1
                log.error("could not move %s: %s", record.where(), publish_error)
                if self._stopping.wait(policy.backoff(failures)):
                    return False

    def _message(self, route: _Route, record: _Record) -> Message[Any]:
        return Message(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=route.decoder.decode(record.value),
            raw_value=record.value,
            headers=list(record.headers),
            timestamp=record.timestamp,
            event=Event.from_kafka(record.headers, record.value),
            group_id=self.group_id,
            original_topic=route.main_topic,
            attempt=delivery_attempt(record.headers) if route.is_retry_topic else 1,
        )

    # -- commits and rebalances (loop thread) ---------------------------------------------------------------

    def _commit(
        self, kafka: KafkaConsumer, *, asynchronous: bool, only: Iterable[_Partition] | None = None
    ) -> None:
        with self._lock:
            states = list(self._partitions.values()) if only is None else list(only)
            offsets = []
            for state in states:
                # A synchronous commit (revocation, shutdown) repeats offsets an async one may have lost.
                offset = state.next_commit if not asynchronous else state.uncommitted()
                if offset is not None:
                    offsets.append(TopicPartition(state.topic, state.partition, offset))
                    state.committed = offset
        if not offsets:
            return
        try:
            if asynchronous:
                kafka.commit(offsets=offsets, asynchronous=True)
            else:
                kafka.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            # A failed commit is redelivery later, not loss; the next commit carries the offsets again.
            log.warning("commit for group %s failed: %s", self.group_id, error)
            with self._lock:
                for tp in offsets:
                    state_or_none = self._partitions.get((tp.topic, tp.partition))
                    if state_or_none is not None:
                        state_or_none.committed = None

    def _on_assign(self, kafka: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                route = self._routes.get(tp.topic)
                if route is not None and (tp.topic, tp.partition) not in self._partitions:
                    self._partitions[(tp.topic, tp.partition)] = _Partition(tp.topic, tp.partition, route)
        log.info("group %s assigned %s", self.group_id, _names(partitions))

    def _on_revoke(self, kafka: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Let the revoked partitions' running handlers finish (bounded), commit what is done, forget them."""
        states = self._release(partitions)
        self._wait_idle(states, self._settings.shutdown_timeout_s)
        self._commit(kafka, asynchronous=False, only=states)
        log.info("group %s revoked %s", self.group_id, _names(partitions))

    def _on_lost(self, kafka: KafkaConsumer, partitions: list[TopicPartition]) -> None:
        """Lost partitions belong to someone else already: committing for them would fail or clobber."""
        self._release(partitions)
        log.warning("group %s lost %s", self.group_id, _names(partitions))

    def _release(self, partitions: list[TopicPartition]) -> list[_Partition]:
        with self._lock:
            states = [self._partitions.pop((tp.topic, tp.partition), None) for tp in partitions]
            released = [state for state in states if state is not None]
            for state in released:
                state.revoked = True
                state.pending.clear()
        return released

    def _wait_idle(self, states: list[_Partition], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while any(state.running_keys for state in states):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.warning(
                        "group %s: handlers still running after %.0f s; not waiting", self.group_id, timeout_s
                    )
                    return
                self._changed.wait(remaining)

    def _shut_down(self, kafka: KafkaConsumer) -> None:
        with self._lock:
            states = list(self._partitions.values())
            for state in states:
                state.pending.clear()
        self._wait_idle(states, self._settings.shutdown_timeout_s)
        self._commit(kafka, asynchronous=False)
        kafka.close()


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"
