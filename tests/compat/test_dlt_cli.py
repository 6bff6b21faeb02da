"""``strom dlt list|show|replay`` against a real broker, on dead letters written by confluent-kafka with
Spring Kafka's ``kafka_dlt-*`` headers."""

from __future__ import annotations

import contextlib
import socket
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cli_results import Strom, as_json, one_error_line, run_strom, strom_against, succeeded
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from scenario import CLIENT_TIMEOUT_S, create_topic_with_confluent

from strom.testing.process import StromProcess

STACK_TRACE = "Traceback (most recent call last):\n  File \"shop.py\", line 12, in handle\nKeyError: 'sku'\n"
VALIDATION_MESSAGE = "1 validation error for Order\nquantity\n  Input should be greater than 0"


@dataclass(frozen=True)
class DeadLetterScene:
    """Three dead letters of ``origin`` in ``dlt``: partition 0 holds offsets 0 (KeyError from origin
    partition 1) and 1 (ValidationError from partition 2), partition 1 holds offset 0 (KeyError, partition 0).
    """

    origin: str
    dlt: str


def dlt_headers(
    origin: str, partition: int, offset: int, exception: str, message: str
) -> list[tuple[str, bytes]]:
    return [
        ("ce_id", f"evt-{offset}".encode()),
        ("kafka_dlt-original-topic", origin.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", 1_764_000_000_000)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"shop"),
        ("kafka_dlt-exception-fqcn", exception.encode()),
        ("kafka_dlt-exception-message", message.encode()),
        ("kafka_dlt-exception-stacktrace", STACK_TRACE.encode()),
    ]


@pytest.fixture(scope="module")
def scene(strom_broker: StromProcess) -> DeadLetterScene:
    suffix = uuid.uuid4().hex[:8]
    scene = DeadLetterScene(origin=f"orders-{suffix}", dlt=f"orders-{suffix}.DLT")
    create_topic_with_confluent(strom_broker.bootstrap, scene.origin, partitions=3)
    create_topic_with_confluent(strom_broker.bootstrap, scene.dlt, partitions=2)
    producer = Producer({"bootstrap.servers": strom_broker.bootstrap})
    for partition, key, value, headers in (
        (0, b"o-1", b'{"sku": null}', dlt_headers(scene.origin, 1, 10, "KeyError", "'sku'")),
        (
            0,
            b"o-2",
            b'{"sku": "A", "quantity": 0}',
            dlt_headers(
                scene.origin, 2, 20, "pydantic_core._pydantic_core.ValidationError", VALIDATION_MESSAGE
            ),
        ),
        (1, b"o-3", b"\xff\xfe", dlt_headers(scene.origin, 0, 30, "KeyError", "'sku'")),
    ):
        producer.produce(scene.dlt, value, key=key, partition=partition, headers=headers)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    return scene


@pytest.fixture
def strom(strom_broker: StromProcess) -> Strom:
    """``strom(ARGS...)`` against the module's broker, named with --bootstrap-server."""
    return strom_against(strom_broker.bootstrap)


@pytest.fixture
def target(strom_broker: StromProcess, unique_topic: str) -> str:
    """An empty one-partition topic to replay into."""
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic, partitions=1)
    return unique_topic


@contextlib.contextmanager
def refusing_address() -> Iterator[str]:
    """A 127.0.0.1 address that refuses connections: a port bound but never listened on."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        host, port = bound.getsockname()
        yield f"{host}:{port}"


def read_all(bootstrap: str, topic: str, partitions: int = 1) -> list[Message]:
    """Every record of the topic, without a group, by partition then offset."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlt-cli-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, 0) for partition in range(partitions)])
        records: list[Message] = []
        ends = 0
        while ends < partitions:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"{topic}: nothing within {CLIENT_TIMEOUT_S:g} s"
            if message.error() is not None:
                ends += 1  # end of a partition
            else:
                records.append(message)
        return sorted(records, key=lambda record: (record.partition(), record.offset()))
    finally:
        consumer.close()


# ------------------------------------------------------------------------------------------------- list


def test_list_shows_each_dead_letter_with_origin_and_exception(strom: Strom, scene: DeadLetterScene) -> None:
    lines = succeeded(strom("dlt", "list", scene.dlt)).stdout.splitlines()

    assert lines[0].split() == ["PARTITION", "OFFSET", "TIMESTAMP", "ORIGIN", "EXCEPTION", "MESSAGE"]
    rows = [line.split()[:5] for line in lines[1:]]
    assert [(row[0], row[1], row[3], row[4]) for row in rows] == [
        ("0", "0", f"{scene.origin}-1@10", "KeyError"),
        ("0", "1", f"{scene.origin}-2@20", "pydantic_core._pydantic_core.ValidationError"),
        ("1", "0", f"{scene.origin}-0@30", "KeyError"),
    ]
    assert lines[2].endswith("1 validation error for Order...")


def test_list_filters_by_exception_and_limits(strom: Strom, scene: DeadLetterScene) -> None:
    listed = as_json(strom("dlt", "list", scene.dlt, "--exception", "KeyError", "--json"))
    assert [(entry["partition"], entry["offset"]) for entry in listed] == [(0, 0), (1, 0)]

    limited = as_json(strom("dlt", "list", scene.dlt, "--exception", "KeyError", "--limit", "1", "--json"))
    assert [(entry["partition"], entry["offset"]) for entry in limited] == [(0, 0)]


def test_list_json_decodes_headers_and_marks_binary_values(strom: Strom, scene: DeadLetterScene) -> None:
    entries = as_json(strom("dlt", "list", scene.dlt, "--json"))

    binary = entries[2]
    assert binary["original"] == {
        "topic": scene.origin,
        "partition": 0,
        "offset": 30,
        "timestamp": 1_764_000_000_000,
        "timestamp_type": "CreateTime",
        "consumer_group": "shop",
    }
    assert binary["exception"] == {
        "type": "KeyError",
        "cause_type": None,
        "message": "'sku'",
        "stack_trace": STACK_TRACE,
    }
    assert (binary["key"], binary["value_b64"]) == ("o-3", "//4=")
    assert binary["headers"] == [["ce_id", "evt-30"]]


def test_list_of_a_missing_topic_fails_with_one_line(strom: Strom) -> None:
    assert "does not exist" in one_error_line(strom("dlt", "list", f"missing-{uuid.uuid4().hex[:8]}"))


def test_list_of_an_unreachable_cluster_fails_with_one_line() -> None:
    with refusing_address() as address:
        error = one_error_line(run_strom("dlt", "list", "any.DLT", "-b", address, "--timeout", "2"))
    assert "any.DLT" in error


# ------------------------------------------------------------------------------------------------- show


def test_show_prints_every_field_and_the_stack_trace(strom: Strom, scene: DeadLetterScene) -> None:
    text = succeeded(strom("dlt", "show", scene.dlt, "0:1")).stdout

    assert text.startswith(f"Dead letter {scene.dlt}/0/1\n")
    assert f"Origin:         {scene.origin}-2@20\n" in text
    assert "Origin time:    2025-11-24T16:00:00.000Z (CreateTime)\n" in text
    assert "Consumer group: shop\n" in text
    assert "Message:\n    1 validation error for Order\n    quantity\n" in text
    assert "Key:            o-2\n" in text
    assert "ce_id: evt-20" in text
    assert "Stack trace:\n    Traceback (most recent call last):\n" in text
    assert "kafka_dlt-" not in text


def test_show_json_is_one_document(strom: Strom, scene: DeadLetterScene) -> None:
    document = as_json(strom("dlt", "show", scene.dlt, "1:0", "--json"))

    assert (document["topic"], document["partition"], document["offset"]) == (scene.dlt, 1, 0)
    assert document["exception"]["stack_trace"] == STACK_TRACE


def test_show_of_a_missing_position_fails_with_one_line(strom: Strom, scene: DeadLetterScene) -> None:
    assert "no dead letter at offset 9" in one_error_line(strom("dlt", "show", scene.dlt, "0:9"))


def test_show_rejects_a_malformed_position(strom: Strom, scene: DeadLetterScene) -> None:
    result = strom("dlt", "show", scene.dlt, "0-1")
    assert result.returncode == 2 and "PARTITION:OFFSET" in result.stderr


# ----------------------------------------------------------------------------------------------- replay


def test_replay_one_returns_it_to_its_topic_and_partition(
    strom: Strom, strom_broker: StromProcess, scene: DeadLetterScene
) -> None:
    before = len(read_all(strom_broker.bootstrap, scene.origin, partitions=3))
    result = succeeded(strom("dlt", "replay", scene.dlt, "--offset", "0:1"))

    assert result.stdout.splitlines()[0].startswith(f"replayed {scene.dlt}/0/1 -> {scene.origin}-2@")
    records = read_all(strom_broker.bootstrap, scene.origin, partitions=3)
    assert len(records) == before + 1
    (replayed,) = [record for record in records if record.key() == b"o-2"][-1:]
    assert replayed.partition() == 2
    assert replayed.value() == b'{"sku": "A", "quantity": 0}'
    assert replayed.headers() == [
        ("ce_id", b"evt-20"),
        ("strom_dlt-replayed-from", f"{scene.dlt}/0/1".encode()),
    ]


def test_replay_with_filters_and_to_another_topic(
    strom: Strom, strom_broker: StromProcess, scene: DeadLetterScene, target: str
) -> None:
    report = as_json(
        strom(
            "dlt",
            "replay",
            scene.dlt,
            "--all",
            "--where-exception",
            "KeyError",
            "--where-value",
            "sku",
            "--to",
            target,
            "--json",
        )
    )

    assert (report["examined"], report["skipped"], report["failed"]) == (3, 2, [])
    assert [entry["dead_letter"] for entry in report["replayed"]] == [
        {"topic": scene.dlt, "partition": 0, "offset": 0}
    ]
    assert [record.value() for record in read_all(strom_broker.bootstrap, target)] == [b'{"sku": null}']


def test_replay_range_dry_run_publishes_nothing(
    strom: Strom, strom_broker: StromProcess, scene: DeadLetterScene, target: str
) -> None:
    result = succeeded(strom("dlt", "replay", scene.dlt, "--range", "0:0-1", "--to", target, "--dry-run"))

    assert result.stdout.splitlines() == [
        f"would replay {scene.dlt}/0/0 -> {target}",
        f"would replay {scene.dlt}/0/1 -> {target}",
        "Would replay 2 of 2 dead letters read",
    ]
    assert read_all(strom_broker.bootstrap, target) == []


def test_replay_filters_by_message_and_original_partition(strom: Strom, scene: DeadLetterScene) -> None:
    def chosen(*where: str) -> list[tuple[int, int]]:
        report = as_json(strom("dlt", "replay", scene.dlt, "--all", "--dry-run", "--json", *where))
        return [
            (entry["dead_letter"]["partition"], entry["dead_letter"]["offset"])
            for entry in report["replayed"]
        ]

    assert chosen("--where-message", "greater than") == [(0, 1)]
    assert chosen("--where-original-partition", "0") == [(1, 0)]
    assert chosen("--where-original-partition", "0", "--where-exception", "ValidationError") == []


def test_replay_of_a_missing_offset_fails_with_one_line(strom: Strom, scene: DeadLetterScene) -> None:
    assert "no dead letter at offset 5" in one_error_line(
        strom("dlt", "replay", scene.dlt, "--offset", "1:5")
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--range", "0:5-2"],
        ["--range", "0:5"],
        ["--all", "--offset", "0:1"],
        [],
        ["--all", "--where-value", "("],
    ],
    ids=["backwards-range", "range-without-end", "two-selections", "no-selection", "bad-regex"],
)
def test_replay_rejects_bad_arguments(strom: Strom, scene: DeadLetterScene, arguments: list[str]) -> None:
    result = strom("dlt", "replay", scene.dlt, *arguments)
    assert result.returncode == 2 and "usage:" in result.stderr
