"""``strom transactions`` and ``strom producers`` against a real broker, with transactions left behind by
confluent-kafka producers: one transactional id whose transaction committed, one whose transaction is open."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from cli_results import Strom, as_json, one_error_line, run_strom, strom_against, succeeded
from confluent_kafka import Producer
from scenario import CLIENT_TIMEOUT_S, create_topic_with_confluent

from strom.testing.process import StromProcess

# Long enough that the open transaction outlives the module; the broker would abort it after this.
OPEN_TRANSACTION_TIMEOUT_MS = 600_000
PARTITIONS = 2
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Transactions:
    """What the module's producers left: ``committed`` wrote partition 0 and committed, then ``open`` wrote
    partitions 0 and 1 and did not end its transaction."""

    topic: str
    committed: str
    open: str


@pytest.fixture(scope="module")
def transactions(strom_broker: StromProcess) -> Iterator[Transactions]:
    suffix = uuid.uuid4().hex[:8]
    scene = Transactions(topic=f"txn-cli-{suffix}", committed=f"committed-{suffix}", open=f"open-{suffix}")
    create_topic_with_confluent(strom_broker.bootstrap, scene.topic, partitions=PARTITIONS)
    committed = _transactional_producer(strom_broker.bootstrap, scene.committed)
    committed.begin_transaction()
    committed.produce(scene.topic, b"committed", partition=0)
    committed.commit_transaction(CLIENT_TIMEOUT_S)
    still_open = _transactional_producer(strom_broker.bootstrap, scene.open)
    still_open.begin_transaction()
    for partition in range(PARTITIONS):
        still_open.produce(scene.topic, b"open", partition=partition)
    assert still_open.flush(CLIENT_TIMEOUT_S) == 0
    yield scene
    still_open.abort_transaction(CLIENT_TIMEOUT_S)


def _transactional_producer(bootstrap: str, transactional_id: str) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "transaction.timeout.ms": OPEN_TRANSACTION_TIMEOUT_MS,
        }
    )
    producer.init_transactions(CLIENT_TIMEOUT_S)
    return producer


@pytest.fixture
def strom(strom_broker: StromProcess) -> Strom:
    """``strom(ARGS...)`` against the module's broker, named with --bootstrap-server."""
    return strom_against(strom_broker.bootstrap)


def table(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    """The printed table's lines split into cells (no cell here holds a space)."""
    return [line.split() for line in succeeded(result).stdout.splitlines()]


def listed(strom: Strom, *options: str) -> dict[str, dict[str, Any]]:
    """``transactions list --json`` by transactional id."""
    return {
        entry["transactional_id"]: entry
        for entry in as_json(strom("transactions", "list", "--json", *options))
    }


def producers_of(strom: Strom, topic: str, *options: str) -> list[dict[str, Any]]:
    return list(as_json(strom("producers", "describe", topic, "--json", *options)))


# ------------------------------------------------------------------------------------- transactions list


def test_list_reports_every_transactional_id_with_producer_id_and_state(
    strom: Strom, transactions: Transactions
) -> None:
    entries = listed(strom)
    assert entries[transactions.committed]["state"] == "CompleteCommit"
    assert entries[transactions.open]["state"] == "Ongoing"
    assert entries[transactions.committed]["producer_id"] != entries[transactions.open]["producer_id"]
    assert all(isinstance(entry["coordinator"], int) for entry in entries.values())


def test_list_prints_a_table(strom: Strom, transactions: Transactions) -> None:
    entries = listed(strom)
    header, *rows = table(strom("transactions", "list"))
    assert header == ["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"]
    for transactional_id in (transactions.committed, transactions.open):
        entry = entries[transactional_id]
        assert [transactional_id, str(entry["producer_id"]), entry["state"]] in rows


def test_list_filters_by_state_producer_id_and_duration(strom: Strom, transactions: Transactions) -> None:
    committed_producer = listed(strom)[transactions.committed]["producer_id"]
    assert transactions.open in listed(strom, "--state", "ongoing")
    assert transactions.committed not in listed(strom, "--state", "ongoing")
    assert transactions.committed in listed(strom, "--state", "Empty,CompleteCommit")
    assert set(listed(strom, "--producer-id", str(committed_producer))) == {transactions.committed}
    assert transactions.open in listed(strom, "--min-duration-ms", "0")
    assert transactions.open not in listed(strom, "--min-duration-ms", str(DAY_MS))


def test_list_warns_of_states_the_cluster_does_not_know(strom: Strom, transactions: Transactions) -> None:
    result = succeeded(strom("transactions", "list", "--json", "--state", "Sleeping"))
    assert json.loads(result.stdout) == []
    assert "warning:" in result.stderr
    assert "Sleeping" in result.stderr


# --------------------------------------------------------------------------------- transactions describe


def test_describe_an_open_transaction(strom: Strom, transactions: Transactions) -> None:
    producer_id = listed(strom)[transactions.open]["producer_id"]
    (described,) = as_json(strom("transactions", "describe", transactions.open, "--json"))
    assert described["transactional_id"] == transactions.open
    assert described["state"] == "Ongoing"
    assert described["producer_id"] == producer_id
    assert described["producer_epoch"] >= 0
    assert described["timeout_ms"] == OPEN_TRANSACTION_TIMEOUT_MS
    assert described["partitions"] == {transactions.topic: list(range(PARTITIONS))}
    started = datetime.fromisoformat(described["start_time"])
    assert round(started.timestamp() * 1000) == described["start_time_ms"]
    assert described["duration_ms"] >= 0


def test_describe_a_committed_transaction(strom: Strom, transactions: Transactions) -> None:
    (described,) = as_json(strom("transactions", "describe", transactions.committed, "--json"))
    assert described["state"] == "CompleteCommit"
    assert described["partitions"] == {}
    assert described["duration_ms"] is None  # nothing is open; the start time is the finished one's


def test_describe_prints_text(strom: Strom, transactions: Transactions) -> None:
    text = succeeded(strom("transactions", "describe", transactions.open)).stdout
    assert f"Transactional id: {transactions.open}" in text
    assert "State: Ongoing" in text
    assert f"Timeout: {OPEN_TRANSACTION_TIMEOUT_MS} ms" in text
    assert f"Partitions: {transactions.topic}:0,1" in text


def test_describe_an_unknown_id_fails_with_kafkas_error_name(
    strom: Strom, transactions: Transactions
) -> None:
    result = strom("transactions", "describe", "no-such-transactional-id", transactions.committed)
    error = one_error_line(result)
    assert "no-such-transactional-id" in error
    assert "TRANSACTIONAL_ID_NOT_FOUND" in error
    assert f"Transactional id: {transactions.committed}" in result.stdout


# ------------------------------------------------------------------------------------- producers describe


def test_producers_describe_shows_open_and_finished_transactions(
    strom: Strom, transactions: Transactions
) -> None:
    ids = listed(strom)
    committed, still_open = ids[transactions.committed]["producer_id"], ids[transactions.open]["producer_id"]
    rows = {(row["partition"], row["producer_id"]): row for row in producers_of(strom, transactions.topic)}
    assert set(rows) == {(0, committed), (0, still_open), (1, still_open)}
    # The committed transaction's marker ended it; the open one started after that marker (offset 1).
    assert rows[(0, committed)]["txn_start_offset"] is None
    assert rows[(0, committed)]["coordinator_epoch"] is not None
    assert rows[(0, still_open)]["txn_start_offset"] == 2
    assert rows[(1, still_open)]["txn_start_offset"] == 0
    assert all(row["topic"] == transactions.topic and row["last_sequence"] == 0 for row in rows.values())


def test_producers_describe_prints_a_table_of_the_chosen_partitions(
    strom: Strom, transactions: Transactions
) -> None:
    still_open = listed(strom)[transactions.open]["producer_id"]
    header, *rows = table(strom("producers", "describe", transactions.topic, "--partition", "1"))
    assert header == [
        "PARTITION",
        "PRODUCER-ID",
        "EPOCH",
        "LAST-SEQUENCE",
        "LAST-TIMESTAMP",
        "COORDINATOR-EPOCH",
        "TXN-START-OFFSET",
    ]
    assert len(rows) == 1
    partition, producer_id, _epoch, last_sequence, _timestamp, _coordinator_epoch, start_offset = rows[0]
    assert (partition, producer_id, last_sequence, start_offset) == ("1", str(still_open), "0", "0")


def test_producers_describe_refuses_unknown_topics_and_partitions(
    strom: Strom, transactions: Transactions
) -> None:
    assert "topic 'no-such-topic' does not exist" in one_error_line(
        strom("producers", "describe", "no-such-topic")
    )
    missing = one_error_line(strom("producers", "describe", transactions.topic, "--partition", "7"))
    assert f"topic '{transactions.topic}' has no partition 7" in missing


# ------------------------------------------------------------------------------------------- no cluster


def test_an_unreachable_cluster_is_one_error_line() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    for command in (("transactions", "list"), ("producers", "describe", "orders")):
        error = one_error_line(run_strom(*command, "--bootstrap-server", address, "--timeout", "2"))
        assert f"could not reach the cluster at {address}" in error
