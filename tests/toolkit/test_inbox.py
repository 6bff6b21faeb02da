"""The inbox on SQLite and PostgreSQL: claims, handlers that run once per event, and real Kafka redelivery."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from strom.toolkit import inbox as inbox_module
from strom.toolkit.events import Event
from strom.toolkit.inbox import Inbox, MissingEventIdError, cloudevent_id

CLIENT_TIMEOUT_S = 15.0
GROUP = "billing"


class Database:
    """An engine with the inbox and a side-effect table (``invoices``) created on it."""

    def __init__(self, engine: Engine, table_name: str) -> None:
        self.engine = engine
        self.metadata = MetaData()
        self.inbox = Inbox(self.metadata, table_name=f"{table_name}_inbox")
        self.invoices = Table(
            f"{table_name}_invoices",
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("order_id", String(64), nullable=False),
        )
        self.metadata.create_all(engine)
        self.sessions = sessionmaker(engine)

    def add_invoice(self, session: Session, order_id: str) -> None:
        session.execute(self.invoices.insert().values(order_id=order_id))

    def invoice_orders(self) -> list[str]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(self.invoices.c.order_id).order_by(self.invoices.c.id))
            return [row[0] for row in rows]

    def inbox_rows(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(self.inbox.table)).scalar_one())


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    from strom.testing.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
    yield Database(engine, f"t_{uuid.uuid4().hex[:10]}")
    engine.dispose()


def test_the_table_joins_the_given_metadata_under_its_name() -> None:
    metadata = MetaData()
    inbox = Inbox(metadata, table_name="processed_events")
    assert metadata.tables["processed_events"] is inbox.table
    assert [column.name for column in inbox.table.primary_key] == ["consumer_group", "event_id"]
    assert Inbox().metadata is not metadata


def test_a_claim_succeeds_once_per_group_and_event(database: Database) -> None:
    inbox = database.inbox
    with database.sessions.begin() as session:
        assert inbox.claim(session, GROUP, "event-1")
    with database.sessions.begin() as session:
        assert not inbox.claim(session, GROUP, "event-1")
        assert inbox.claim(session, "shipping", "event-1")
        assert inbox.claim(session, GROUP, "event-2")
    with database.sessions() as session:
        assert inbox.is_processed(session, GROUP, "event-2")
        assert not inbox.is_processed(session, GROUP, "event-3")
    assert database.inbox_rows() == 3


def test_a_duplicate_claim_leaves_the_transaction_usable(database: Database) -> None:
    with database.sessions.begin() as session:
        database.inbox.claim(session, GROUP, "event-1")
    with database.sessions.begin() as session:
        assert not database.inbox.claim(session, GROUP, "event-1")
        database.add_invoice(session, "after the duplicate")
    assert database.invoice_orders() == ["after the duplicate"]


def test_a_rolled_back_claim_is_gone(database: Database) -> None:
    with database.sessions() as session:
        assert database.inbox.claim(session, GROUP, "event-1")
        session.rollback()
    with database.sessions.begin() as session:
        assert database.inbox.claim(session, GROUP, "event-1")


def test_the_savepoint_fallback_for_dialects_without_on_conflict(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "_ON_CONFLICT_INSERTS", {})
    with database.sessions.begin() as session:
        database.add_invoice(session, "before")
        assert database.inbox.claim(session, GROUP, "event-1")
        assert not database.inbox.claim(session, GROUP, "event-1")
        database.add_invoice(session, "after")
    assert database.invoice_orders() == ["before", "after"]
    assert database.inbox_rows() == 1


def test_empty_and_overlong_ids_are_refused(database: Database) -> None:
    with database.sessions() as session:
        with pytest.raises(MissingEventIdError):
            database.inbox.claim(session, GROUP, "")
        with pytest.raises(ValueError, match="255"):
            database.inbox.claim(session, GROUP, "x" * 256)
        assert database.inbox.claim(session, GROUP, "x" * 255)


def test_purge_removes_only_older_rows(database: Database) -> None:
    with database.sessions.begin() as session:
        database.inbox.claim(session, GROUP, "old")
        session.execute(
            database.inbox.table.update().values(processed_at=datetime.now(UTC) - timedelta(days=30))
        )
        database.inbox.claim(session, GROUP, "new")
    with database.sessions.begin() as session:
        assert database.inbox.purge(session, datetime.now(UTC) - timedelta(days=7)) == 1
    with database.sessions() as session:
        assert database.inbox.is_processed(session, GROUP, "new")
        assert not database.inbox.is_processed(session, GROUP, "old")


def order_message(event_id: str, order_id: str) -> SimpleNamespace:
    """Stands in for a consumed message carrying a CloudEvent (what the handler reads of it)."""
    event = Event(type="order.placed", data={"order_id": order_id}, source="shop", id=event_id)
    return SimpleNamespace(event=event, value={"order_id": order_id}, headers=event.to_headers())


def test_a_handler_runs_once_per_event_and_commits_with_its_claim(database: Database) -> None:
    @database.inbox.handler(database.sessions, GROUP)
    def on_order_placed(message: SimpleNamespace, session: Session) -> None:
        database.add_invoice(session, message.value["order_id"])

    assert on_order_placed(order_message("e-1", "order-1"))
    assert not on_order_placed(order_message("e-1", "order-1"))
    assert on_order_placed(order_message("e-2", "order-2"))
    assert database.invoice_orders() == ["order-1", "order-2"]
    assert on_order_placed.__name__ == "on_order_placed"


def test_a_failing_handler_rolls_back_its_effects_and_its_claim(database: Database) -> None:
    attempts: list[str] = []

    def on_order_placed(message: SimpleNamespace, session: Session) -> None:
        database.add_invoice(session, message.value["order_id"])
        attempts.append(message.value["order_id"])
        if len(attempts) == 1:
            raise RuntimeError("payment service down")

    handle = database.inbox.handler(database.sessions, GROUP, on_order_placed)
    with pytest.raises(RuntimeError, match="payment service down"):
        handle(order_message("e-1", "order-1"))
    assert database.invoice_orders() == []
    assert handle(order_message("e-1", "order-1"))
    assert database.invoice_orders() == ["order-1"]
    assert attempts == ["order-1", "order-1"]


def test_a_custom_event_id(database: Database) -> None:
    seen: list[str] = []

    def record(message: dict[str, str], session: Session) -> None:
        seen.append(message["order_id"])

    def order_key(message: dict[str, str]) -> str:
        return f"order:{message['order_id']}"

    handle = database.inbox.handler(database.sessions, GROUP, record, event_id_of=order_key)
    results = [handle({"order_id": "7"}), handle({"order_id": "7"}), handle({"order_id": "8"})]
    assert results == [True, False, True]
    assert seen == ["7", "8"]


def test_event_ids_come_from_the_event_or_the_ce_id_header() -> None:
    assert cloudevent_id(order_message("from-event", "1")) == "from-event"
    assert cloudevent_id(SimpleNamespace(event=None, headers=[("CE_ID", b"from-header")])) == "from-header"
    assert cloudevent_id(SimpleNamespace(headers=lambda: [("ce_id", b"method-headers")])) == "method-headers"
    assert cloudevent_id(SimpleNamespace(headers={"ce_id": "mapping"})) == "mapping"
    with pytest.raises(MissingEventIdError, match="ce_id"):
        cloudevent_id(SimpleNamespace(headers=lambda: None))
    with pytest.raises(MissingEventIdError):
        cloudevent_id(SimpleNamespace(event=None, headers=[("ce_type", b"x")]))


def test_concurrent_claims_of_one_event_let_one_transaction_win(postgres_url: str) -> None:
    """PostgreSQL: the second claim waits for the first transaction and then loses, or wins if it aborts."""
    engine = create_engine(postgres_url)
    database = Database(engine, f"t_{uuid.uuid4().hex[:10]}")
    try:
        for first_commits, second_wins in ((True, False), (False, True)):
            event_id = f"contended-{first_commits}"
            results: list[bool] = []
            with database.sessions() as first:
                assert database.inbox.claim(first, GROUP, event_id)
                second = threading.Thread(target=claim_in_own_transaction, args=(database, event_id, results))
                second.start()
                if first_commits:
                    first.commit()
                else:
                    first.rollback()
                second.join(CLIENT_TIMEOUT_S)
            assert results == [second_wins]
    finally:
        engine.dispose()


def claim_in_own_transaction(database: Database, event_id: str, results: list[bool]) -> None:
    with database.sessions.begin() as session:
        results.append(database.inbox.claim(session, GROUP, event_id))


def test_async_claims_and_handlers(postgres_url: str) -> None:
    database = Database(create_engine(postgres_url), f"t_{uuid.uuid4().hex[:10]}")
    database.engine.dispose()
    handled: list[str] = []

    async def scenario() -> list[bool]:
        engine = create_async_engine(postgres_url)
        sessions = async_sessionmaker(engine)
        try:
            async with sessions.begin() as session:
                assert await database.inbox.claim_async(session, GROUP, "async-1")
                assert not await database.inbox.claim_async(session, GROUP, "async-1")

            @database.inbox.async_handler(sessions, GROUP)
            async def on_order_placed(message: SimpleNamespace, session: AsyncSession) -> None:
                await session.execute(database.invoices.insert().values(order_id=message.value["order_id"]))
                handled.append(message.value["order_id"])

            return [
                await on_order_placed(order_message("async-2", "a")),
                await on_order_placed(order_message("async-2", "a")),
            ]
        finally:
            await engine.dispose()

    assert asyncio.run(scenario()) == [True, False]
    assert handled == ["a"]
    assert database.invoice_orders() == ["a"]


# ------------------------------------------------------------------------------ real redelivery through Kafka


def consume(bootstrap: str, topic: str, count: int) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        messages: list[Message] = []
        while len(messages) < count:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"only {len(messages)} of {count} records arrived"
            assert message.error() is None, message.error()
            messages.append(message)
        return messages
    finally:
        consumer.close()


def test_a_republished_event_is_handled_once(
    database: Database, bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic()
    placed = Event(type="order.placed", data={"order_id": "o-1"}, source="shop")
    cancelled = Event(type="order.cancelled", data={"order_id": "o-1"}, source="shop")
    producer = Producer({"bootstrap.servers": bootstrap})
    for event in (placed, placed, cancelled):  # the second is a publisher's retry of the first
        headers: list[tuple[str, str | bytes | None]] = [*event.to_headers()]
        producer.produce(topic, value=event.encode_data(), headers=headers)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0

    def handle(message: Message, session: Session) -> Any:
        event = Event.from_kafka(message.headers(), message.value())
        assert event is not None
        database.add_invoice(session, event.type)

    handle_once = database.inbox.handler(database.sessions, GROUP, handle)
    results = [handle_once(message) for message in consume(bootstrap, topic, 3)]
    assert results == [True, False, True]
    assert database.invoice_orders() == ["order.placed", "order.cancelled"]
