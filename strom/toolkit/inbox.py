"""The inbox: an idempotent consumer, so a redelivered or re-published event takes effect once.

Kafka delivers at least once: a consumer that crashes between its side effects and its offset commit sees
the same records again, and a publisher that retries (or an outbox relay that re-sends) may write an event
twice. The inbox records each processed event, keyed by (consumer group, event id), in the same database
transaction as the handler's side effects. Either both commit or neither does, so a second delivery of the
event finds its row and is skipped, and a handler that failed leaves no row and runs again next time.

The id is the CloudEvents ``ce_id`` header by default (publishers keep an event's id when they re-send it),
or whatever ``event_id_of`` derives from the message, e.g. a business key. Typical use::

    inbox = Inbox(Base.metadata)                       # the table joins the application's metadata

    @inbox.handler(Session, group="billing")
    def on_order_placed(message, session):
        session.add(Invoice(order_id=message.value["order_id"]))

    on_order_placed(message)   # True: handled; False: this group had processed the event already

Rows stay until ``purge`` removes those older than any redelivery the application expects.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast, overload

from sqlalchemy import Column, DateTime, Insert, MetaData, String, Table, delete, exists, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from strom.toolkit.events import ID_HEADER

M = TypeVar("M")

#: Room for a UUID, a ULID or a composite business key; Kafka group ids have no limit, but 255 is plenty.
KEY_LENGTH = 255
#: Dialects whose INSERT has ``ON CONFLICT DO NOTHING``, so a duplicate costs no savepoint.
_ON_CONFLICT_INSERTS: Mapping[str, Callable[[Table], Any]] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}


class HandlerDecorator(Protocol):
    """What ``Inbox.handler`` returns without a handler: a decorator for ``handle(message, session)``."""

    def __call__(self, handle: Callable[[M, Session], object], /) -> Callable[[M], bool]: ...


class AsyncHandlerDecorator(Protocol):
    """What ``Inbox.async_handler`` returns: a decorator for ``async handle(message, session)``."""

    def __call__(
        self, handle: Callable[[M, AsyncSession], Awaitable[object]], /
    ) -> Callable[[M], Awaitable[bool]]: ...


class MissingEventIdError(ValueError):
    """The message carries no event id to deduplicate on (no ``ce_id`` header, or an empty one)."""


def cloudevent_id(message: Any) -> str:
    """The CloudEvents id of a consumed message: the toolkit's ``Message`` (its ``event``, else its
    ``headers``) or a confluent-kafka ``Message`` (``headers()``). Raises ``MissingEventIdError`` if absent.
    """
    event = getattr(message, "event", None)
    if event is not None and getattr(event, "id", None):
        return str(event.id)
    headers = message.headers
    if callable(headers):
        headers = headers()
    event_id = _header_value(headers, ID_HEADER)
    if not event_id:
        raise MissingEventIdError(f"message has no {ID_HEADER} header to deduplicate on; pass event_id_of")
    return event_id


def _header_value(
    headers: Mapping[str, bytes | str | None] | Sequence[tuple[str, bytes | str | None]] | None, name: str
) -> str | None:
    """The last value of header ``name`` (case-insensitive, as CloudEvents attribute names are), as text."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    found: str | None = None
    for key, raw in pairs:
        if key.lower() == name and raw is not None:
            found = raw if isinstance(raw, str) else bytes(raw).decode("utf-8", errors="replace")
    return found


class Inbox:
    """The processed-events table and the claim that makes a handler run once per (group, event id).

    ``metadata`` is the application's ``MetaData`` (so its migrations and ``create_all`` include the table);
    without one the inbox keeps its own, and ``create_table`` creates it.
    """

    def __init__(self, metadata: MetaData | None = None, table_name: str = "inbox") -> None:
        self.metadata = metadata if metadata is not None else MetaData()
        self.table = Table(
            table_name,
            self.metadata,
            Column("consumer_group", String(KEY_LENGTH), primary_key=True),
            Column("event_id", String(KEY_LENGTH), primary_key=True),
            Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
        )

    def create_table(self, bind: Engine | Connection) -> None:
        """Create the table if it does not exist (``bind``: an Engine or Connection); for apps without
        migrations, and tests."""
        self.table.create(bind, checkfirst=True)

    # -- the claim -------------------------------------------------------------------------------------------

    def claim(self, session: Session, group: str, event_id: str) -> bool:
        """Record the event as processed by ``group`` in the session's transaction.

        True: the event is new to the group, so the caller goes on with its side effects and commits them
        together with the claim. False: the group processed it already (committed), so the caller skips it.
        The session stays usable either way. On PostgreSQL a concurrent claim of the same event waits for the
        other transaction and returns False if that one commits.
        """
        statement = self._claim_statement(session.get_bind().dialect.name, group, event_id)
        if statement is not None:
            return session.execute(statement).first() is not None
        try:
            with session.begin_nested():
                session.execute(self._plain_insert(group, event_id))
        except IntegrityError:
            return False
        return True

    async def claim_async(self, session: AsyncSession, group: str, event_id: str) -> bool:
        """``claim`` for an ``AsyncSession``."""
        statement = self._claim_statement(session.get_bind().dialect.name, group, event_id)
        if statement is not None:
            return (await session.execute(statement)).first() is not None
        try:
            async with session.begin_nested():
                await session.execute(self._plain_insert(group, event_id))
        except IntegrityError:
            return False
        return True

    def is_processed(self, session: Session, group: str, event_id: str) -> bool:
        """Whether ``group`` has a committed (or, in this session, pending) claim on the event."""
        table = self.table
        query = select(exists().where(table.c.consumer_group == group, table.c.event_id == event_id))
        return bool(session.execute(query).scalar())

    def purge(self, session: Session, older_than: datetime) -> int:
        """Delete the rows of events processed before ``older_than``; returns how many went.

        Only safe for events that can no longer be redelivered: past the input topics' retention, and past
        the window in which publishers may re-send.
        """
        result = session.execute(delete(self.table).where(self.table.c.processed_at < older_than))
        return _rows_affected(result)

    # -- wrapping handlers -----------------------------------------------------------------------------------

    @overload
    def handler(
        self,
        session_factory: Callable[[], Session],
        group: str,
        handle: Callable[[M, Session], object],
        *,
        event_id_of: Callable[[M], str] = ...,
    ) -> Callable[[M], bool]: ...

    @overload
    def handler(
        self,
        session_factory: Callable[[], Session],
        group: str,
        handle: None = None,
        *,
        event_id_of: Callable[[Any], str] = ...,
    ) -> HandlerDecorator: ...

    def handler(
        self,
        session_factory: Callable[[], Session],
        group: str,
        handle: Callable[[Any, Session], object] | None = None,
        *,
        event_id_of: Callable[[Any], str] = cloudevent_id,
    ) -> Callable[[Any], bool] | HandlerDecorator:
        """Make ``handle(message, session)`` run once per event for ``group``; usable as a decorator.

        The wrapped function opens a session, claims the event and runs ``handle`` in one transaction, and
        commits; it returns True if ``handle`` ran, False for a duplicate. An exception from ``handle``
        rolls back its side effects and the claim alike and propagates, so the consumer's retry policy sees
        it and a later delivery runs the handler again.
        """

        def wrap(handle: Callable[[Any, Session], object]) -> Callable[[Any], bool]:
            @functools.wraps(handle)
            def handle_once(message: Any) -> bool:
                event_id = event_id_of(message)
                with session_factory() as session, session.begin():
                    if not self.claim(session, group, event_id):
                        return False
                    handle(message, session)
                return True

            return handle_once

        return wrap if handle is None else wrap(handle)

    def async_handler(
        self,
        session_factory: Callable[[], AsyncSession],
        group: str,
        *,
        event_id_of: Callable[[Any], str] = cloudevent_id,
    ) -> AsyncHandlerDecorator:
        """``handler`` for coroutine handlers and an ``async_sessionmaker``; a decorator."""

        def wrap(
            handle: Callable[[Any, AsyncSession], Awaitable[object]],
        ) -> Callable[[Any], Awaitable[bool]]:
            @functools.wraps(handle)
            async def handle_once(message: Any) -> bool:
                event_id = event_id_of(message)
                async with session_factory() as session, session.begin():
                    if not await self.claim_async(session, group, event_id):
                        return False
                    await handle(message, session)
                return True

            return handle_once

        return wrap

    # -- statements ------------------------------------------------------------------------------------------

    def _row(self, group: str, event_id: str) -> dict[str, Any]:
        if not event_id:
            raise MissingEventIdError("an empty event id cannot be deduplicated")
        if len(group) > KEY_LENGTH or len(event_id) > KEY_LENGTH:
            raise ValueError(f"group and event id are limited to {KEY_LENGTH} characters in the inbox")
        return {"consumer_group": group, "event_id": event_id, "processed_at": datetime.now(UTC)}

    def _claim_statement(self, dialect_name: str, group: str, event_id: str) -> ReturningInsert[Any] | None:
        """INSERT .. ON CONFLICT DO NOTHING RETURNING where the dialect has it (a row back means claimed),
        else None (use a savepoint). RETURNING, because some drivers report no rowcount for it."""
        make_insert = _ON_CONFLICT_INSERTS.get(dialect_name)
        if make_insert is None:
            return None
        statement: Any = make_insert(self.table).values(self._row(group, event_id))
        table = self.table
        return statement.on_conflict_do_nothing(  # type: ignore[no-any-return]
            index_elements=[table.c.consumer_group, table.c.event_id]
        ).returning(table.c.event_id)

    def _plain_insert(self, group: str, event_id: str) -> Insert:
        return insert(self.table).values(self._row(group, event_id))


def _rows_affected(result: Result[Any]) -> int:
    """Rows an INSERT or DELETE changed (DML statements give a CursorResult)."""
    return int(cast(CursorResult[Any], result).rowcount)
