"""The transactional outbox on PostgreSQL: several relay processes at once, each row published once and each
aggregate's rows in order in the topic; blocking and unblocking where rows are locked.

The cluster is a throwaway one (``strom.testing.postgres.PostgresServer``); without PostgreSQL's server
binaries these tests fail, saying what to install.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from strom.testing import postgres as postgres_module
from strom.testing.postgres import PostgresNotFoundError, PostgresServer
from strom.toolkit.outbox import OUTBOX_ID_HEADER, Outbox, OutboxRelay
from strom.toolkit.publisher import Publisher

WORKER = Path(__file__).with_name("outbox_relay_worker.py")
WAIT_S = 30.0


def add_events(engine: Engine, outbox: Outbox, topic: str, events: list[tuple[str, int]]) -> list[int]:
    """Add ``(aggregate id, sequence number)`` events in one transaction; returns the row ids."""
    with Session(engine) as session, session.begin():
        return [
            outbox.add(
                session,
                topic=topic,
                payload={"seq": seq},
                aggregate_type="order",
                aggregate_id=aggregate,
                event_type="order.changed",
            )
            for aggregate, seq in events
        ]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        time.sleep(0.05)


def sequences_by_key(records: list[Message]) -> dict[str, list[int]]:
    """Per record key, the ``seq`` values in the order the topic holds them."""
    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        sequences[record.key().decode()].append(json.loads(record.value())["seq"])
    return sequences


def outbox_id_of(record: Message) -> int:
    return int(dict(record.headers() or [])[OUTBOX_ID_HEADER])


def start_worker(database_url: str, bootstrap: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "--url", database_url, "--bootstrap", bootstrap, "--batch-size", "100"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    return postgres.create_database(f"outbox_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def outbox(engine: Engine) -> Outbox:
    outbox = Outbox()
    outbox.create_table(engine)
    return outbox


@pytest.fixture
def publisher(bootstrap: str) -> Iterator[Publisher]:
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        yield publisher


def test_three_relay_processes_publish_every_row_once_in_order_per_aggregate(
    engine: Engine, outbox: Outbox, publisher: Publisher, database_url: str, bootstrap: str, new_topic: Any,
    read_topic: Any,
) -> None:  # fmt: skip
    topic = new_topic(partitions=6)
    aggregates = [f"o-{n}" for n in range(50)]
    rows_per_aggregate = 60
    # Half the rows wait when the relays start; the other half arrive, in small transactions, while they run.
    first_half = [(aggregate, seq) for seq in range(30) for aggregate in aggregates]
    row_ids = add_events(engine, outbox, topic, first_half)
    relays = [start_worker(database_url, bootstrap) for _ in range(3)]
    try:
        for seq in range(30, rows_per_aggregate):
            row_ids += add_events(engine, outbox, topic, [(aggregate, seq) for aggregate in aggregates])
        relay = OutboxRelay(engine, publisher, outbox)
        wait_until(lambda: relay.unsent_count() == 0, "the relays send all 3,000 rows")
    finally:
        for worker in relays:
            worker.send_signal(signal.SIGTERM)
        outputs = [worker.communicate(timeout=WAIT_S)[0] for worker in relays]
    assert [worker.returncode for worker in relays] == [0, 0, 0]
    # Each row was marked sent by exactly one relay.
    assert sum(int(output.split()[-1]) for output in outputs) == len(row_ids)

    records = read_topic(topic)
    assert sorted(outbox_id_of(record) for record in records) == sorted(row_ids)
    assert sequences_by_key(records) == dict.fromkeys(aggregates, list(range(rows_per_aggregate)))


def test_relay_threads_wake_on_commit_and_share_the_aggregates(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic(partitions=2)
    relays = [
        OutboxRelay(engine, publisher, outbox, batch_size=20, poll_interval_s=3600).start() for _ in "ab"
    ]
    try:
        writers = [
            threading.Thread(
                target=add_events,
                args=(engine, outbox, topic, [(f"w{writer}-{n % 5}", n // 5) for n in range(100)]),
            )
            for writer in range(3)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        wait_until(lambda: relays[0].unsent_count() == 0, "the relays send all rows")
    finally:
        for relay in relays:
            relay.stop()

    expected = {f"w{writer}-{n}": list(range(20)) for writer in range(3) for n in range(5)}
    assert sequences_by_key(read_topic(topic)) == expected


def test_blocking_and_unblocking_on_postgres(
    engine: Engine, outbox: Outbox, bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    with Session(engine) as session, session.begin():
        too_large = outbox.add(
            session, topic=topic, payload="x" * 5000, aggregate_type="a", aggregate_id="o-1", event_type="t"
        )
        outbox.add(
            session, topic=topic, payload={"seq": 2}, aggregate_type="a", aggregate_id="o-1", event_type="t"
        )
        outbox.add(
            session, topic=topic, payload={"seq": 1}, aggregate_type="a", aggregate_id="o-2", event_type="t"
        )
    with Publisher({"message.max.bytes": 2000}, bootstrap_servers=bootstrap) as small_publisher:
        relay = OutboxRelay(engine, small_publisher, outbox, max_attempts=2, backoff=lambda attempts: 0.0)
        assert [relay.relay_once() for _ in range(3)] == [1, 0, 0]
    [blocked] = relay.blocked()
    assert (blocked.id, blocked.attempts, blocked.blocked) == (too_large, 2, True)

    assert relay.unblock([too_large]) == 1
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        assert OutboxRelay(engine, publisher, outbox).relay_once() == 2
    assert [json.loads(record.value()) for record in read_topic(topic)] == [
        {"seq": 1},
        "x" * 5000,
        {"seq": 2},
    ]


def test_add_async_writes_in_an_asyncio_session_and_its_commit_wakes_the_relays(
    engine: Engine, outbox: Outbox, publisher: Publisher, database_url: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    wakes: list[str] = []
    outbox.subscribe(lambda: wakes.append("woken"))

    async def write(commit: bool) -> int:
        async_engine = create_async_engine(database_url)
        try:
            async with AsyncSession(async_engine) as session:
                row_id = await outbox.add_async(
                    session,
                    topic=topic,
                    payload={"seq": 1},
                    aggregate_type="order",
                    aggregate_id="o-1",
                    event_type="order.created",
                )
                await (session.commit() if commit else session.rollback())
                return row_id
        finally:
            await async_engine.dispose()

    asyncio.run(write(commit=False))
    assert wakes == []
    row_id = asyncio.run(write(commit=True))
    assert wakes == ["woken"]

    assert OutboxRelay(engine, publisher, outbox).relay_once() == 1
    [record] = read_topic(topic)
    assert (record.key(), json.loads(record.value()), outbox_id_of(record)) == (b"o-1", {"seq": 1}, row_id)


def test_without_postgresql_binaries_the_server_fails_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(postgres_module.BIN_DIR_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgres_module, "_DEBIAN_BIN_DIRS", tmp_path / "no-postgresql")

    with pytest.raises(PostgresNotFoundError, match="apt-get install postgresql"):
        PostgresServer().start()
