"""The transactional outbox on SQLite against a real broker: publish after commit (never after rollback),
order per aggregate, retries with backoff, blocking and unblocking, cleanup, and a relay SIGKILLed between
publishing a batch and marking it sent.

The module's broker does not create topics on first use, so a row for a topic that does not exist yet
fails until the test creates it: a failure the test can cause and then cure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, create_engine, select, update
from sqlalchemy.orm import Session

from strom.testing.process import StromProcess
from strom.toolkit.events import Event
from strom.toolkit.outbox import OUTBOX_ID_HEADER, ExponentialBackoff, Outbox, OutboxRelay
from strom.toolkit.publisher import Publisher

WORKER = Path(__file__).with_name("outbox_relay_worker.py")
WAIT_S = 30.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    """This module's broker: topics exist only once created, so a missing topic is a publish failure."""
    process = StromProcess(
        Path(tmp_path_factory.mktemp("strom")) / "data", overrides={"auto.create.topics.enable": "false"}
    ).start()
    yield process
    if process.running:
        process.stop()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


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
    # A topic that does not exist fails its records at once instead of after librdkafka's 30 s of waiting
    # for it to appear, and a topic created later is seen within half a second.
    config = {
        "topic.metadata.propagation.max.ms": 10,
        "topic.metadata.refresh.interval.ms": 500,
        "message.timeout.ms": 10000,
    }
    with Publisher(config, bootstrap_servers=bootstrap) as publisher:
        yield publisher


def add_events(
    engine: Engine, outbox: Outbox, topic: str, events: list[tuple[str, int]], *, commit: bool = True
) -> list[int]:
    """Add ``(aggregate id, sequence number)`` events in one transaction; returns the row ids."""
    with Session(engine) as session:
        ids = [
            outbox.add(
                session,
                topic=topic,
                payload={"aggregate": aggregate, "seq": seq},
                aggregate_type="order",
                aggregate_id=aggregate,
                event_type="order.changed",
            )
            for aggregate, seq in events
        ]
        if commit:
            session.commit()
        else:
            session.rollback()
    return ids


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S:g} s: {what}")
        time.sleep(0.05)


def headers_of(record: Message) -> dict[str, str]:
    return {name: value.decode() for name, value in record.headers() or []}


def sequences_by_key(records: list[Message]) -> dict[str, list[int]]:
    """Per record key, the ``seq`` values in the order the topic holds them."""
    sequences: dict[str, list[int]] = defaultdict(list)
    for record in records:
        sequences[record.key().decode()].append(json.loads(record.value())["seq"])
    return sequences


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result(timeout=15)


def test_add_inserts_in_the_callers_transaction_and_publishes_nothing(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    [row_id] = add_events(engine, outbox, topic, [("o-1", 1)])
    add_events(engine, outbox, topic, [("o-2", 1)], commit=False)

    with engine.connect() as connection:
        rows = connection.execute(select(outbox.table)).all()
    assert [(row.id, row.aggregate_id, row.key, row.payload, row.sent_at) for row in rows] == [
        (row_id, "o-1", "o-1", {"aggregate": "o-1", "seq": 1}, None)
    ]
    assert rows[0].created_at.tzinfo is not None
    assert read_topic(topic) == []


def test_relay_publishes_right_after_commit_and_never_a_rolled_back_row(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    wakes: list[str] = []
    outbox.subscribe(lambda: wakes.append("woken"))
    # An hour between polls: after its first (empty) round, only a commit's wake-up gets rows out.
    relay = OutboxRelay(engine, publisher, outbox, poll_interval_s=3600).start()
    try:
        add_events(engine, outbox, topic, [("o-1", 1)], commit=False)
        assert wakes == []
        [committed_id] = add_events(engine, outbox, topic, [("o-2", 1)])
        assert wakes == ["woken"]
        wait_until(lambda: relay.unsent_count() == 0, "the committed row is sent")
    finally:
        relay.stop()

    records = read_topic(topic)
    assert [(record.key(), json.loads(record.value())) for record in records] == [
        (b"o-2", {"aggregate": "o-2", "seq": 1})
    ]
    assert headers_of(records[0])[OUTBOX_ID_HEADER] == str(committed_id)


def test_records_carry_cloudevents_headers_and_an_event_keeps_its_own(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    event = Event(type="payment.completed", data={"amount": 12}, source="/payments", subject="p-9")
    with Session(engine) as session, session.begin():
        plain_id = outbox.add(
            session,
            topic=topic,
            payload={"total": 3},
            aggregate_type="order",
            aggregate_id=7,
            event_type="order.created",
            event_id="evt-1",
            headers={"trace": "abc"},
        )
        event_row_id = outbox.add(
            session, topic=topic, payload=event, aggregate_type="payment", aggregate_id="p-9", key="k-9"
        )
    assert OutboxRelay(engine, publisher, outbox).relay_once() == 2

    plain, from_event = read_topic(topic)
    assert plain.key() == b"7" and json.loads(plain.value()) == {"total": 3}
    plain_headers = headers_of(plain)
    assert {name: plain_headers[name] for name in ("ce_id", "ce_type", "ce_subject", "trace")} == {
        "ce_id": "evt-1",
        "ce_type": "order.created",
        "ce_subject": "7",
        "trace": "abc",
    }
    assert plain_headers[OUTBOX_ID_HEADER] == str(plain_id)
    decoded = Event.from_kafka(from_event.headers(), from_event.value())
    assert decoded is not None
    assert (decoded.id, decoded.type, decoded.source, decoded.data) == (
        event.id,
        "payment.completed",
        "/payments",
        {"amount": 12},
    )
    assert from_event.key() == b"k-9"
    assert headers_of(from_event)[OUTBOX_ID_HEADER] == str(event_row_id)


def test_order_per_aggregate_is_kept_across_batches_and_partitions(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic(partitions=3)
    aggregates = [f"o-{n}" for n in range(6)]
    for chunk in range(4):
        add_events(
            engine,
            outbox,
            topic,
            [(aggregate, chunk * 10 + n) for n in range(10) for aggregate in aggregates],
        )
    relay = OutboxRelay(engine, publisher, outbox, batch_size=7)
    while relay.relay_once():
        pass

    assert relay.unsent_count() == 0
    expected = list(range(40))
    assert sequences_by_key(read_topic(topic)) == dict.fromkeys(aggregates, expected)


def test_a_failing_row_is_retried_with_backoff_and_holds_back_its_aggregate(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    missing = f"missing-{uuid.uuid4().hex}"
    [failing, waiting] = add_events(engine, outbox, missing, [("o-1", 1)]) + add_events(
        engine, outbox, topic, [("o-1", 2)]
    )
    add_events(engine, outbox, topic, [("o-2", 1)])
    relay = OutboxRelay(engine, publisher, outbox, backoff=ExponentialBackoff(initial_s=3600, max_s=3600))

    assert relay.relay_once() == 1  # o-2's row; o-1's first fails
    assert relay.relay_once() == 0  # the failed row is not due for an hour, and o-1's second waits for it

    with engine.connect() as connection:
        rows = {row.id: row for row in connection.execute(select(outbox.table))}
    assert rows[failing].attempts == 1 and not rows[failing].blocked
    assert "UNKNOWN_TOPIC" in rows[failing].last_error
    assert rows[failing].next_attempt_at - rows[failing].created_at >= timedelta(minutes=59)
    assert rows[waiting].attempts == 0 and rows[waiting].sent_at is None
    assert [json.loads(record.value())["aggregate"] for record in read_topic(topic)] == ["o-2"]


def test_a_row_is_blocked_after_max_attempts_and_unblocking_releases_its_aggregate(
    engine: Engine, outbox: Outbox, publisher: Publisher, bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    [failing] = add_events(engine, outbox, missing, [("o-1", 1)])
    [waiting] = add_events(engine, outbox, missing, [("o-1", 2)])
    relay = OutboxRelay(engine, publisher, outbox, max_attempts=3, backoff=lambda attempts: 0.0)

    sent = [relay.relay_once() for _ in range(4)]

    assert sent == [0, 0, 0, 0]
    [blocked] = relay.blocked()
    assert (blocked.id, blocked.attempts, blocked.blocked) == (failing, 3, True)
    assert blocked.last_error is not None and "UNKNOWN_TOPIC" in blocked.last_error
    with engine.connect() as connection:
        waiting_row = connection.execute(select(outbox.table).where(outbox.table.c.id == waiting)).one()
    assert (waiting_row.attempts, waiting_row.blocked, waiting_row.sent_at) == (0, False, None)

    create_topic(bootstrap, missing)  # the cause, fixed
    assert relay.unblock([failing]) == 1
    assert relay.blocked() == []
    # Until the publisher's metadata shows the new topic, the row fails again: keep retrying until then.
    patient = OutboxRelay(engine, publisher, outbox, max_attempts=1000, backoff=lambda attempts: 0.1)
    with patient:
        wait_until(lambda: patient.unsent_count() == 0, "both rows are sent once the topic exists")
    assert sequences_by_key(read_topic(missing)) == {"o-1": [1, 2]}


def test_a_record_refused_by_the_client_stops_its_aggregate_for_the_round(
    engine: Engine, outbox: Outbox, bootstrap: str, new_topic: Any, read_topic: Any
) -> None:
    topic = new_topic()
    with Session(engine) as session, session.begin():
        too_large = outbox.add(
            session, topic=topic, payload="x" * 5000, aggregate_type="a", aggregate_id="o-1", event_type="t"
        )
        for seq in (2, 3):
            outbox.add(
                session,
                topic=topic,
                payload={"seq": seq},
                aggregate_type="a",
                aggregate_id="o-1",
                event_type="t",
            )
    with Publisher({"message.max.bytes": 2000}, bootstrap_servers=bootstrap) as small_publisher:
        relay = OutboxRelay(engine, small_publisher, outbox, max_attempts=1)
        assert relay.relay_once() == 0

    [blocked] = relay.blocked()
    assert blocked.id == too_large and "MSG_SIZE_TOO_LARGE" in (blocked.last_error or "")
    assert relay.unsent_count() == 3
    assert read_topic(topic) == []


def test_cleanup_deletes_sent_rows_only(
    engine: Engine, outbox: Outbox, publisher: Publisher, new_topic: Any
) -> None:
    topic = new_topic()
    add_events(engine, outbox, topic, [("o-1", 1), ("o-2", 1)])
    relay = OutboxRelay(engine, publisher, outbox)
    assert relay.relay_once() == 2
    [unsent] = add_events(engine, outbox, topic, [("o-3", 1)])

    assert relay.cleanup(timedelta(hours=1)) == 0
    assert relay.cleanup(timedelta(0)) == 2
    with engine.connect() as connection:
        assert connection.execute(select(outbox.table.c.id)).scalars().all() == [unsent]


def test_blocked_lists_only_rows_still_unsent(engine: Engine, outbox: Outbox, publisher: Publisher) -> None:
    [row_id] = add_events(engine, outbox, "t", [("o-1", 1)])
    with engine.begin() as connection:
        connection.execute(update(outbox.table).values(blocked=True, attempts=3))
    relay = OutboxRelay(engine, publisher, outbox)
    assert [row.id for row in relay.blocked()] == [row_id]
    with engine.begin() as connection:
        connection.execute(update(outbox.table).values(sent_at=outbox.table.c.created_at))
    assert relay.blocked() == []


def start_worker(database_url: str, bootstrap: str, *extra: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, str(WORKER), "--url", database_url, "--bootstrap", bootstrap, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    return worker


def test_a_relay_killed_after_publishing_republishes_on_restart_and_loses_nothing(
    engine: Engine,
    outbox: Outbox,
    publisher: Publisher,
    database_url: str,
    bootstrap: str,
    new_topic: Any,
    read_topic: Any,
) -> None:
    topic = new_topic(partitions=2)
    events = [(f"o-{n % 10}", n // 10) for n in range(500)]
    row_ids = add_events(engine, outbox, topic, events)
    event_of_row = dict(zip(row_ids, events, strict=True))

    stalled = start_worker(database_url, bootstrap, "--stall-before-mark", "--batch-size", "100")
    assert stalled.stdout is not None
    published_line = stalled.stdout.readline().split()
    stalled.send_signal(signal.SIGKILL)
    stalled.wait()
    assert published_line[0] == "published"
    published_before_kill = [int(row_id) for row_id in published_line[1:]]
    assert len(published_before_kill) == 100
    relay = OutboxRelay(engine, publisher, outbox)
    assert relay.unsent_count() == 500  # published, but the kill came before they were marked sent

    worker = start_worker(database_url, bootstrap, "--batch-size", "100")
    try:
        wait_until(lambda: relay.unsent_count() == 0, "the restarted relay sends every row")
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=WAIT_S) == 0

    records = read_topic(topic)
    outbox_ids = [int(headers_of(record)[OUTBOX_ID_HEADER]) for record in records]
    assert sorted(set(outbox_ids)) == row_ids  # none lost
    assert sorted(outbox_ids) == sorted(row_ids + published_before_kill)  # the killed batch, twice
    # Per key: the killed batch's part of the aggregate, then (published again from there) all of it.
    expected: dict[str, list[int]] = defaultdict(list)
    for row_id in published_before_kill:
        aggregate, seq = event_of_row[row_id]
        expected[aggregate].append(seq)
    for aggregate in expected:
        expected[aggregate] += list(range(50))
    assert sequences_by_key(records) == expected
