"""The transactional outbox: events written in the application's own database transaction, published by a
relay after commit.

A service that updates its database and then publishes to Kafka loses the event when it crashes between
the two, or publishes an event for a change that was rolled back. With the outbox, ``Outbox.add`` inserts
the event as a row in the same transaction as the business change: both commit or neither does. An
``OutboxRelay`` then publishes committed rows and marks them sent::

    outbox = Outbox(Base.metadata)                 # the table joins the application's metadata/migrations
    with Session(engine) as session, session.begin():
        session.add(order)
        outbox.add(session, topic="order.created", payload=order_created,
                   aggregate_type="order", aggregate_id=order.id, event_type="order.created")

    relay = OutboxRelay(engine, Publisher(bootstrap_servers=...), outbox).start()   # a thread; or run()

Delivery is at least once. A relay that dies after the broker acknowledged a batch but before it marked the
rows sent publishes them again when it restarts. Every record therefore carries what a consumer needs to
drop a repeat: the CloudEvents headers (``ce_id`` is the row's event id, kept across re-sends) and
``strom_outbox_id``, the row id. ``strom.toolkit.inbox`` deduplicates on ``ce_id``.

Order. The record key is the aggregate id (unless ``key`` is given), so an aggregate's events share a
partition, and the relay never publishes a row while an earlier row of its aggregate is unsent: a row that
fails holds back the rows after it until it is sent or, after ``max_attempts`` failures, blocked — and then
they wait until it is unblocked. Within one round the relay publishes an aggregate's rows for one topic
together and trusts the producer (idempotent, one partition) to keep them in order; rows for another topic
wait for the next round. The one gap: if the broker rejects a record (not librdkafka before sending, which
stops the aggregate at once) while later records of its aggregate in the same round are stored, those stay
published ahead of it; the relay logs it. Rows are numbered by a database sequence, so "earlier" is the
order in which the rows were inserted; it is the commit order as long as transactions that touch one
aggregate do not overlap, which holds when they update the aggregate's own row (as they normally do).

Several relays. On PostgreSQL (and other databases with ``SELECT ... FOR UPDATE SKIP LOCKED``) any number
of relay processes can share the table. A relay takes an aggregate by locking its earliest unsent row (the
head) with ``FOR UPDATE SKIP LOCKED`` and holds that lock until it has published and marked the rows it
took; another relay skips the locked head and, because the rows after a head are never heads while it is
unsent, every other row of that aggregate too. On SQLite, which has no row locks, run ONE relay per
database; its reads and its short write transactions go on beside the application's (it switches the
database to WAL journaling, in which readers and the writer do not block each other).
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Identity,
    Index,
    Insert,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    bindparam,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import CursorResult, Result
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from strom.toolkit.events import Event
from strom.toolkit.publisher import Delivery, Publisher
from strom.toolkit.serialization import json_serializer

logger = logging.getLogger(__name__)

DEFAULT_TABLE_NAME = "strom_outbox"
DEFAULT_SOURCE = "/strom/outbox"
#: Header carrying the outbox row id, beside the CloudEvents headers (``ce_id`` = the event id).
OUTBOX_ID_HEADER = "strom_outbox_id"
#: Lengths of the text columns: room for UUIDs, ULIDs and composite business keys.
NAME_LENGTH = 255
TOPIC_NAME_LENGTH = 249  # Kafka's limit
# librdkafka's default message.timeout.ms, in seconds.
_LIBRDKAFKA_MESSAGE_TIMEOUT_S = 300.0
# Where a session remembers the outboxes it added rows to, until it commits or rolls back.
_PENDING_OUTBOXES_KEY = "strom_outbox_pending"

HeaderPairs = Sequence[tuple[str, str | bytes]]


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that goes in and comes out as an aware UTC datetime, on every database.

    SQLite has no time zones and hands back naive datetimes; storing naive UTC there and re-attaching UTC
    on the way out keeps comparisons and arithmetic right on both sides.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def outbox_table(metadata: MetaData, name: str = DEFAULT_TABLE_NAME) -> Table:
    """Define the outbox table on ``metadata``.

    The id is a 64-bit integer from a sequence (identity) rather than a UUID: the relay needs the insertion
    order of an aggregate's rows, which an increasing integer gives for free and a random UUID does not
    (and ``created_at`` has ties). The event's own UUID is ``event_id``. On SQLite ``AUTOINCREMENT`` keeps
    ids of deleted rows from being handed out again, so ``strom_outbox_id`` never names two events.
    """
    table = Table(
        name,
        metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), Identity(), primary_key=True),
        Column("event_id", String(NAME_LENGTH), nullable=False),
        Column("aggregate_type", String(NAME_LENGTH), nullable=False),
        Column("aggregate_id", String(NAME_LENGTH), nullable=False),
        Column("event_type", String(NAME_LENGTH), nullable=False),
        Column("topic", String(TOPIC_NAME_LENGTH), nullable=False),
        Column("key", Text, nullable=False),
        Column("payload", JSON(none_as_null=True), nullable=True),
        Column("headers", JSON, nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("sent_at", UtcDateTime(), nullable=True),
        Column("attempts", Integer, nullable=False, default=0, server_default=text("0")),
        Column("next_attempt_at", UtcDateTime(), nullable=True),
        Column("last_error", Text, nullable=True),
        Column("blocked", Boolean, nullable=False, default=False, server_default=false()),
        sqlite_autoincrement=True,
    )
    unsent = table.c.sent_at.is_(None)
    # The relay walks unsent rows in id order and probes each aggregate's unsent rows: both partial, so
    # they stay as small as the backlog however many sent rows the table keeps.
    Index(f"ix_{name}_unsent", table.c.id, postgresql_where=unsent, sqlite_where=unsent)
    Index(
        f"ix_{name}_unsent_by_aggregate",
        table.c.aggregate_type,
        table.c.aggregate_id,
        table.c.id,
        postgresql_where=unsent,
        sqlite_where=unsent,
    )
    return table


def _now() -> datetime:
    return datetime.now(UTC)


def _is_json_content(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


def _header_pairs(headers: Mapping[str, str | bytes] | HeaderPairs | None) -> list[list[str]]:
    """Headers as JSON-storable ``[name, text]`` pairs; values must be text (or UTF-8 bytes)."""
    if headers is None:
        return []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    stored: list[list[str]] = []
    for name, value in pairs:
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"outbox header {name!r} is not UTF-8 text; the table stores text") from None
        stored.append([name, value])
    return stored


class Outbox:
    """The outbox table and the one way to write to it: ``add`` inside the caller's transaction."""

    def __init__(
        self,
        metadata: MetaData | None = None,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        """``metadata``: the application's, so the table joins its migrations (a new one otherwise).
        ``source``: the CloudEvents source of events added without an ``Event`` of their own.
        """
        self.metadata = metadata if metadata is not None else MetaData()
        self.table = outbox_table(self.metadata, table_name)
        self.source = source
        self._commit_listeners: list[Callable[[], None]] = []
        _listen_for_commits()

    def create_table(self, bind: Engine | Connection) -> None:
        """Create the table and its indexes if missing (applications with migrations use those instead)."""
        self.table.create(bind, checkfirst=True)

    def add(
        self,
        session: Session,
        *,
        topic: str,
        payload: Any,
        aggregate_type: str,
        aggregate_id: str | int,
        event_type: str | None = None,
        key: str | None = None,
        headers: Mapping[str, str | bytes] | HeaderPairs | None = None,
        event_id: str | None = None,
    ) -> int:
        """Insert one event in the session's transaction; returns the row id. Publishes nothing itself.

        ``payload`` is anything the JSON serializer takes (a pydantic model, a dataclass, a dict...) or an
        ``Event``, whose attributes become the CloudEvents headers (its ``type`` and ``id`` are the row's
        event type and id). Without an ``Event`` the headers are made from ``event_type`` (required then),
        ``event_id`` (a new UUID by default), this outbox's ``source`` and the aggregate id as subject. The
        record key is ``key`` or else the aggregate id. ``headers`` are added to the CloudEvents ones.
        When the session commits, the relays attached to this outbox are woken.
        """
        statement = self._insert(
            topic, payload, aggregate_type, aggregate_id, event_type, key, headers, event_id
        )
        result = session.execute(statement)
        session.info.setdefault(_PENDING_OUTBOXES_KEY, set()).add(self)
        return _inserted_id(result)

    async def add_async(
        self,
        session: AsyncSession,
        *,
        topic: str,
        payload: Any,
        aggregate_type: str,
        aggregate_id: str | int,
        event_type: str | None = None,
        key: str | None = None,
        headers: Mapping[str, str | bytes] | HeaderPairs | None = None,
        event_id: str | None = None,
    ) -> int:
        """``add`` for an asyncio ``AsyncSession``; its commit wakes the relays all the same."""
        statement = self._insert(
            topic, payload, aggregate_type, aggregate_id, event_type, key, headers, event_id
        )
        result = await session.execute(statement)
        session.info.setdefault(_PENDING_OUTBOXES_KEY, set()).add(self)
        return _inserted_id(result)

    def _insert(
        self,
        topic: str,
        payload: Any,
        aggregate_type: str,
        aggregate_id: str | int,
        event_type: str | None,
        key: str | None,
        headers: Mapping[str, str | bytes] | HeaderPairs | None,
        event_id: str | None,
    ) -> Insert:
        aggregate_id = str(aggregate_id)
        now = _now()
        if isinstance(payload, Event):
            if not _is_json_content(payload.content_type):
                raise ValueError(f"the outbox stores JSON; event content type is {payload.content_type!r}")
            outbox_event = payload
        else:
            if event_type is None:
                raise ValueError("event_type is required unless the payload is an Event")
            outbox_event = Event(
                type=event_type,
                data=payload,
                source=self.source,
                id=event_id or str(uuid.uuid4()),
                time=now,
                subject=aggregate_id,
            )
        data = outbox_event.data
        return insert(self.table).values(
            event_id=outbox_event.id,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            event_type=outbox_event.type,
            topic=topic,
            key=aggregate_id if key is None else key,
            payload=None if data is None else json.loads(json_serializer(data)),
            headers=_header_pairs(outbox_event.to_headers()) + _header_pairs(headers),
            created_at=now,
            attempts=0,
            blocked=False,
        )

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every commit of a session that added rows (relays pass ``wake``)."""
        self._commit_listeners.append(listener)

    def unsubscribe(self, listener: Callable[[], None]) -> None:
        if listener in self._commit_listeners:
            self._commit_listeners.remove(listener)

    def _committed(self) -> None:
        for listener in list(self._commit_listeners):
            try:
                listener()
            except Exception:  # a listener's failure must not fail the application's commit
                logger.exception("outbox commit listener %r failed", listener)


def _inserted_id(result: Result[Any]) -> int:
    row_id = cast(CursorResult[Any], result).inserted_primary_key
    assert row_id is not None
    return int(row_id[0])


def _wake_after_commit(session: Session) -> None:
    for outbox in session.info.pop(_PENDING_OUTBOXES_KEY, ()):
        outbox._committed()


def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_OUTBOXES_KEY, None)


def _listen_for_commits() -> None:
    """Hook every ORM session's commit and rollback once, so rows added by ``Outbox.add`` wake the relay."""
    if not event.contains(Session, "after_commit", _wake_after_commit):
        event.listen(Session, "after_commit", _wake_after_commit)
        event.listen(Session, "after_rollback", _forget_after_rollback)


@dataclass(frozen=True)
class ExponentialBackoff:
    """Delay before the next attempt of a row that failed ``attempts`` times: initial × multiplier^(n-1)."""

    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 300.0

    def __call__(self, attempts: int) -> float:
        return min(self.max_s, self.initial_s * self.multiplier ** max(0, attempts - 1))


@dataclass(frozen=True)
class OutboxRow:
    """One row of the outbox table, as ``OutboxRelay.blocked()`` reports it."""

    id: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    event_type: str
    topic: str
    key: str
    payload: Any
    headers: list[tuple[str, str]]
    created_at: datetime
    sent_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    blocked: bool

    @classmethod
    def from_row(cls, row: Row[Any]) -> OutboxRow:
        fields = row._asdict()
        fields["headers"] = [(name, value) for name, value in fields["headers"]]
        return cls(**fields)


@dataclass(frozen=True)
class _Failure:
    row: Row[Any]
    error: str


@dataclass(frozen=True)
class _Batch:
    rows: list[Row[Any]]
    more_ready: bool  # rows were left for the next round although they may be ready


@dataclass(frozen=True)
class _Round:
    sent: int
    more_ready: bool


class OutboxRelay:
    """Publishes committed outbox rows in order per aggregate and marks them sent.

    Each round takes up to ``batch_size`` rows (the ready ones at the front of each aggregate), publishes
    them all with ``publish_async``, waits for the acks (up to ``publish_timeout_s``), and marks in one
    transaction the rows acknowledged as sent and each aggregate's first failed row as failed: its
    ``attempts`` grows, ``next_attempt_at`` is pushed back by ``backoff(attempts)``, and after
    ``max_attempts`` failures it is ``blocked`` until ``unblock``. The relay runs a round at once when a
    commit added rows (``wake``, hooked to the outbox) and otherwise every ``poll_interval_s`` — which is
    what notices rows committed by other processes and rows whose backoff ran out.

    Values are the stored JSON as UTF-8 bytes and keys are UTF-8 bytes: the publisher's serializers must
    pass bytes through (the toolkit's do). ``publish_timeout_s`` defaults to a little more than the
    publisher's ``message.timeout.ms`` (librdkafka's own deadline, 300 s unless configured), so that a
    record the relay gives up on is one librdkafka gave up on too — rather than one still queued, which a
    later round would publish a second time. Lower ``message.timeout.ms`` to hear sooner of an unreachable
    cluster; on PostgreSQL a round holds its aggregates' locks while it waits.
    """

    def __init__(
        self,
        engine: Engine,
        publisher: Publisher,
        outbox: Outbox | None = None,
        *,
        batch_size: int = 1000,
        poll_interval_s: float = 1.0,
        max_attempts: int = 10,
        backoff: Callable[[int], float] = ExponentialBackoff(),
        publish_timeout_s: float | None = None,
    ) -> None:
        if batch_size < 1 or max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        self.engine = engine
        self.publisher = publisher
        self.outbox = outbox if outbox is not None else Outbox()
        self.table = self.outbox.table
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.publish_timeout_s = (
            publish_timeout_s if publish_timeout_s is not None else _delivery_timeout_s(publisher) + 5.0
        )
        # SQLite has no row locks: the relay there is alone and need not hold a transaction while publishing.
        self._locks_rows = engine.dialect.name != "sqlite"
        #: Rows this relay published and marked sent, since it was made.
        self.sent_count = 0
        self._database_prepared = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running ---------------------------------------------------------------------------------------------

    def wake(self) -> None:
        """Start the next round now instead of at the end of the poll interval."""
        self._wake.set()

    def run(self) -> None:
        """Relay in this thread until ``stop()``: a round whenever woken, at least every ``poll_interval_s``.

        A round that left ready rows behind is followed at once by the next; a round that fails (the
        database is unreachable, say) is logged and retried at the next poll.
        """
        self.outbox.subscribe(self.wake)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    outcome = self._relay_round()
                except Exception:
                    logger.exception("outbox relay round failed; retrying in %g s", self.poll_interval_s)
                    outcome = _Round(sent=0, more_ready=False)
                if not outcome.more_ready:
                    self._wake.wait(self.poll_interval_s)
        finally:
            self.outbox.unsubscribe(self.wake)

    def start(self) -> Self:
        """Run in a background (daemon) thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the relay is already running")
        self._stopping.clear()
        self._thread = threading.Thread(target=self.run, name="strom-outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Finish the current round and stop; the publisher stays open (it belongs to the caller)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def relay_once(self) -> int:
        """One round now, in the calling thread; returns how many rows were published and marked sent."""
        return self._relay_round().sent

    # -- inspecting and repairing ----------------------------------------------------------------------------

    def blocked(self) -> list[OutboxRow]:
        """Unsent rows that failed ``max_attempts`` times, oldest first; their aggregates wait behind them."""
        query = (
            select(self.table)
            .where(self.table.c.blocked.is_(True), self.table.c.sent_at.is_(None))
            .order_by(self.table.c.id)
        )
        with self.engine.connect() as connection:
            return [OutboxRow.from_row(row) for row in connection.execute(query)]

    def unblock(self, ids: Iterable[int]) -> int:
        """Give blocked rows a fresh set of attempts, due now; returns how many rows were unblocked."""
        id_list = list(ids)
        if not id_list:
            return 0
        statement = (
            update(self.table)
            .where(self.table.c.id.in_(id_list), self.table.c.blocked.is_(True))
            .values(blocked=False, attempts=0, next_attempt_at=None)
        )
        with self.engine.begin() as connection:
            unblocked = connection.execute(statement).rowcount
        self.wake()
        return unblocked

    def cleanup(self, older_than: timedelta | datetime) -> int:
        """Delete rows sent before ``older_than`` (a moment, or an age); returns how many were deleted.

        Unsent rows are never deleted. Keep sent rows as long as you may want to see what was published.
        """
        cutoff = _now() - older_than if isinstance(older_than, timedelta) else older_than
        statement = delete(self.table).where(self.table.c.sent_at.is_not(None), self.table.c.sent_at < cutoff)
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount

    def unsent_count(self) -> int:
        """Rows not yet sent, blocked ones included: the backlog."""
        query = select(func.count()).select_from(self.table).where(self.table.c.sent_at.is_(None))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    # -- one round -------------------------------------------------------------------------------------------

    def _relay_round(self) -> _Round:
        """Take, publish and mark one batch."""
        self._prepare_database()
        with self.engine.connect() as connection:
            if self._locks_rows:
                # The heads' locks must outlive publishing, so take, publish and mark in one transaction.
                with connection.begin():
                    batch = self._take(connection)
                    sent_ids, failures = self._publish(batch.rows)
                    self._mark(connection, sent_ids, failures)
            else:
                with connection.begin():
                    batch = self._take(connection)
                sent_ids, failures = self._publish(batch.rows)
                # Marking starts with an UPDATE, so SQLite takes the write lock at once (as BEGIN IMMEDIATE
                # would) and never upgrades a read transaction, which fails with "database is locked".
                with connection.begin():
                    self._mark(connection, sent_ids, failures)
        self.sent_count += len(sent_ids)
        return _Round(sent=len(sent_ids), more_ready=batch.more_ready)

    def _prepare_database(self) -> None:
        if self._database_prepared:
            return
        if self.engine.dialect.name == "sqlite":
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA journal_mode=WAL")
        self._database_prepared = True

    def _take(self, connection: Connection) -> _Batch:
        """The batch: the ready heads of up to ``batch_size`` aggregates (locked where the database can),
        then those aggregates' unsent rows in id order, up to ``batch_size`` of them.

        A head is ready when it is not blocked and its backoff has run out. Only heads are ever failed or
        blocked, so an aggregate whose head is ready has all its unsent rows ready. An aggregate's rows are
        taken only up to its first row for another topic than its head's: a record's failure comes back
        after later records are on their way, and only within one partition does the producer keep them in
        order; the rest waits for the next round, by when the head's fate is known.
        """
        head = self.table.alias("head")
        earlier = self.table.alias("earlier")
        now = _now()
        earlier_unsent = exists().where(
            earlier.c.sent_at.is_(None),
            earlier.c.aggregate_type == head.c.aggregate_type,
            earlier.c.aggregate_id == head.c.aggregate_id,
            earlier.c.id < head.c.id,
        )
        heads_query = (
            select(head.c.id)
            .where(
                head.c.sent_at.is_(None),
                head.c.blocked.is_(False),
                or_(head.c.next_attempt_at.is_(None), head.c.next_attempt_at <= now),
                ~earlier_unsent,
            )
            .order_by(head.c.id)
            .limit(self.batch_size)
        )
        if self._locks_rows:
            heads_query = heads_query.with_for_update(skip_locked=True, of=head)
        head_ids = list(connection.execute(heads_query).scalars())
        if not head_ids:
            return _Batch(rows=[], more_ready=False)
        aggregate_key = tuple_(self.table.c.aggregate_type, self.table.c.aggregate_id)
        # A semi-join on the heads' ids: PostgreSQL plans a list of (type, id) pairs as a long OR.
        heads_aggregates = select(head.c.aggregate_type, head.c.aggregate_id).where(head.c.id.in_(head_ids))
        # The payload as the JSON text it is stored as: it goes out as is, without a decode and re-encode.
        columns = [column for column in self.table.c if column.name != "payload"]
        rows_query = (
            select(*columns, self.table.c.payload.cast(Text).label("payload"))
            .where(self.table.c.sent_at.is_(None), aggregate_key.in_(heads_aggregates))
            .order_by(self.table.c.id)
            .limit(self.batch_size)
        )
        rows = list(connection.execute(rows_query))
        topics: dict[tuple[str, str], str] = {}
        held_back: set[tuple[str, str]] = set()
        batch: list[Row[Any]] = []
        for row in rows:
            aggregate = (row.aggregate_type, row.aggregate_id)
            if aggregate not in held_back and topics.setdefault(aggregate, row.topic) == row.topic:
                batch.append(row)
            else:
                held_back.add(aggregate)
        return _Batch(rows=batch, more_ready=bool(held_back) or len(rows) == self.batch_size)

    def _mark(self, connection: Connection, sent_ids: list[int], failures: list[_Failure]) -> None:
        """Record a round's outcome: one UPDATE for the rows sent, one executemany for the failures."""
        now = _now()
        if sent_ids:
            connection.execute(
                update(self.table)
                .where(self.table.c.id.in_(sent_ids))
                .values(sent_at=now, attempts=self.table.c.attempts + 1, next_attempt_at=None)
            )
        if failures:
            connection.execute(
                update(self.table).where(self.table.c.id == bindparam("row_id")),
                [self._failure_values(failure, now) for failure in failures],
            )

    def _failure_values(self, failure: _Failure, now: datetime) -> dict[str, Any]:
        attempts = failure.row.attempts + 1
        blocked = attempts >= self.max_attempts
        if blocked:
            logger.error(
                "outbox row %d (%s %s) blocked after %d attempts: %s; later rows of its aggregate wait",
                failure.row.id, failure.row.aggregate_type, failure.row.aggregate_id, attempts, failure.error,
            )  # fmt: skip
        else:
            logger.warning("outbox row %d failed (attempt %d): %s", failure.row.id, attempts, failure.error)
        return {
            "row_id": failure.row.id,
            "attempts": attempts,
            "last_error": failure.error,
            "blocked": blocked,
            "next_attempt_at": now + timedelta(seconds=self.backoff(attempts)),
        }

    def _publish(self, rows: list[Row[Any]]) -> tuple[list[int], list[_Failure]]:
        """Publish all rows at once, then sort the outcomes: the ids sent, and each aggregate's first failure.

        A row that librdkafka refuses outright (too large, say) stops its aggregate for this round: the
        rows after it are not even published. A row the broker rejects after later rows of its aggregate
        were already acknowledged leaves those in the topic; they are marked sent (publishing them again
        would only add duplicates) and logged, as the one case where order cannot be kept.
        """
        pending: list[tuple[Row[Any], concurrent.futures.Future[Delivery] | str]] = []
        refused: set[tuple[str, str]] = set()
        for row in rows:
            aggregate = (row.aggregate_type, row.aggregate_id)
            if aggregate in refused:
                continue
            headers = [(name, value) for name, value in row.headers]
            headers.append((OUTBOX_ID_HEADER, str(row.id)))
            try:
                future = self.publisher.publish_async(
                    row.topic,
                    None if row.payload is None else row.payload.encode("utf-8"),
                    key=row.key.encode("utf-8"),
                    headers=headers,
                )
            except Exception as exc:
                refused.add(aggregate)
                pending.append((row, _describe(exc)))
                continue
            if future.done() and future.exception() is not None:  # refused before it was sent
                refused.add(aggregate)
            pending.append((row, future))
        futures = [outcome for _, outcome in pending if not isinstance(outcome, str)]
        # The batch is complete: a flush without waiting has librdkafka send it now rather than after
        # linger.ms (waiting is left to the futures; a blocking flush wakes up later than they settle).
        self.publisher.flush(0)
        concurrent.futures.wait(futures, timeout=self.publish_timeout_s)

        sent_ids: list[int] = []
        failures: list[_Failure] = []
        failed_aggregates: set[tuple[str, str]] = set()
        for row, outcome in pending:
            aggregate = (row.aggregate_type, row.aggregate_id)
            error = _error_of(outcome, self.publish_timeout_s)
            if error is None:
                if aggregate in failed_aggregates:
                    logger.warning(
                        "outbox row %d was published after an earlier row of %s %s failed",
                        row.id, row.aggregate_type, row.aggregate_id,
                    )  # fmt: skip
                sent_ids.append(row.id)
            elif aggregate not in failed_aggregates:
                failed_aggregates.add(aggregate)
                failures.append(_Failure(row, error))
        return sent_ids, failures


def _delivery_timeout_s(publisher: Publisher) -> float:
    """How long librdkafka tries to deliver a record before failing it (``message.timeout.ms``)."""
    for name in ("message.timeout.ms", "delivery.timeout.ms"):
        if name in publisher.config:
            return float(publisher.config[name]) / 1000
    return _LIBRDKAFKA_MESSAGE_TIMEOUT_S


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _error_of(outcome: concurrent.futures.Future[Delivery] | str, timeout_s: float) -> str | None:
    """Why a row was not sent, or ``None`` if the broker acknowledged it."""
    if isinstance(outcome, str):
        return outcome
    if not outcome.done():
        return f"TimeoutError: no ack within {timeout_s:g} s (the record may still arrive)"
    error = outcome.exception()
    return None if error is None else _describe(error)


__all__ = [
    "DEFAULT_TABLE_NAME",
    "OUTBOX_ID_HEADER",
    "ExponentialBackoff",
    "Outbox",
    "OutboxRelay",
    "OutboxRow",
    "UtcDateTime",
    "outbox_table",
]
