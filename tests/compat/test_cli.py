"""The ``strom`` command, run as a subprocess against a real broker process."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka.partitioner.default import murmur2

from strom.testing.process import StromProcess

COMMAND_TIMEOUT_S = 120
# How long consume waits for more messages; only tests that expect nothing more wait it out in full.
IDLE_S = "2"
OLD_TIMESTAMP_MS = 1_700_000_000_000
# Records this old are past the default retention.ms, so their topics must keep records forever.
KEEP_FOREVER = ("--config", "retention.ms=-1")
NEW_TIMESTAMP_MS = OLD_TIMESTAMP_MS + 100_000
BETWEEN_MS = OLD_TIMESTAMP_MS + 50_000


def run_strom(
    *args: str, bootstrap: str | None = None, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``strom ARGS``; the bootstrap address travels in STROM_BOOTSTRAP unless -b is among ARGS."""
    environment = {**os.environ, **(env or {})}
    if bootstrap is not None:
        environment["STROM_BOOTSTRAP"] = bootstrap
    return subprocess.run(
        [sys.executable, "-m", "strom.cli.main", *args],
        input=stdin,
        capture_output=True,
        env=environment,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def succeeded(result: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
    assert result.returncode == 0, (
        f"exit {result.returncode}; stderr: {result.stderr.decode(errors='replace')}"
    )
    return result


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The command failed with exit 1 and said why on one ``error:`` line, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == 1, f"exit {result.returncode}; stderr: {err}"
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    return error_lines[0]


def json_lines(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode().splitlines()]


@pytest.fixture
def strom(strom_broker: StromProcess) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """``strom(ARGS...)`` against the module's broker."""

    def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return run_strom(*args, bootstrap=strom_broker.bootstrap, stdin=stdin)

    return run


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """An address on 127.0.0.1 that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def describe(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], topic: str, *options: str
) -> dict[str, Any]:
    (document,) = json.loads(succeeded(strom("topics", "describe", topic, "--json", *options)).stdout)
    assert isinstance(document, dict)
    return document


def listed_names(strom: Callable[..., subprocess.CompletedProcess[bytes]], *options: str) -> list[str]:
    return [
        topic["name"] for topic in json.loads(succeeded(strom("topics", "list", "--json", *options)).stdout)
    ]


def java_partition(key: bytes, partition_count: int) -> int:
    """The partition Kafka's Java producer picks for a key: positive murmur2 modulo the partition count."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


def produce_at(bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None, int]]) -> None:
    """Write (key, value, timestamp) records to partition 0 with an ordinary client, timestamps included."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, timestamp_ms in records:
        producer.produce(topic, key=key, value=value, partition=0, timestamp=timestamp_ms)
    assert producer.flush(30) == 0


# -- topics ------------------------------------------------------------------------------------------


def test_topic_life_cycle(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    created = succeeded(
        strom("topics", "create", unique_topic, "--partitions", "3", "--config", "retention.ms=3600000")
    )
    assert created.stdout.decode() == f"Created topic {unique_topic}.\n"

    assert unique_topic in listed_names(strom)
    table = succeeded(strom("topics", "list")).stdout.decode().splitlines()
    assert table[0].split() == ["TOPIC", "PARTITIONS", "REPLICATION"]
    assert [unique_topic, "3", "1"] in [line.split() for line in table]

    document = describe(strom, unique_topic)
    assert (document["partition_count"], document["replication_factor"], document["internal"]) == (
        3,
        1,
        False,
    )
    assert document["configs"] == {"retention.ms": "3600000"}
    for number, partition in enumerate(document["partitions"]):
        assert partition["partition"] == number
        assert partition["replicas"] == [partition["leader"]] == partition["isr"]
        assert (partition["low_watermark"], partition["high_watermark"]) == (0, 0)
    everything = describe(strom, unique_topic, "--all-configs")["configs"]
    assert everything["retention.ms"] == "3600000"
    assert everything["cleanup.policy"] == "delete"

    text = succeeded(strom("topics", "describe", unique_topic)).stdout.decode()
    assert text.startswith(f"Topic: {unique_topic}\n")
    assert "retention.ms" in text and "cleanup.policy" not in text
    assert "PARTITION" in text and "HIGH" in text

    deleted = succeeded(strom("topics", "delete", unique_topic))
    assert deleted.stdout.decode() == f"Deleted topic {unique_topic}.\n"
    assert unique_topic not in listed_names(strom)


def test_create_with_broker_defaults(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic))
    document = describe(strom, unique_topic)
    assert document["partition_count"] >= 1
    assert document["configs"] == {}


def test_creating_an_existing_topic(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    error = one_error_line(strom("topics", "create", unique_topic, "--partitions", "1"))
    assert error.startswith(f"error: cannot create topic '{unique_topic}': TOPIC_ALREADY_EXISTS")
    quiet = succeeded(strom("topics", "create", unique_topic, "--if-not-exists"))
    assert quiet.stdout.decode() == f"Topic {unique_topic} already exists.\n"


def test_alter_partitions_and_configs(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(
        strom("topics", "create", unique_topic, "--partitions", "2", "--config", "retention.ms=3600000")
    )

    altered = succeeded(
        strom("topics", "alter", unique_topic, "--partitions", "4", "--set", "max.message.bytes=2000000")
    )
    assert altered.stdout.decode().splitlines() == [
        f"Updated configs of topic {unique_topic}.",
        f"Topic {unique_topic} now has 4 partitions.",
    ]
    document = describe(strom, unique_topic)
    assert document["partition_count"] == 4
    assert document["configs"] == {"retention.ms": "3600000", "max.message.bytes": "2000000"}

    succeeded(strom("topics", "alter", unique_topic, "--delete-config", "retention.ms"))
    assert describe(strom, unique_topic)["configs"] == {"max.message.bytes": "2000000"}

    error = one_error_line(strom("topics", "alter", unique_topic, "--partitions", "3"))
    assert error.startswith(f"error: cannot add partitions to topic '{unique_topic}': INVALID_PARTITIONS")


def test_bad_config_values_are_invalid_config(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    error = one_error_line(strom("topics", "create", unique_topic, "--config", "retention.ms=soon"))
    assert error.startswith(f"error: cannot create topic '{unique_topic}': INVALID_CONFIG")
    assert unique_topic not in listed_names(strom)

    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    error = one_error_line(strom("topics", "alter", unique_topic, "--set", "cleanup.policy=sometimes"))
    assert error.startswith(f"error: cannot alter configs of topic '{unique_topic}': INVALID_CONFIG")
    assert describe(strom, unique_topic)["configs"] == {}


def test_unknown_topics(strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str) -> None:
    missing = f"{unique_topic}-missing"
    assert one_error_line(strom("topics", "describe", missing)) == f"error: topic '{missing}' does not exist"
    error = one_error_line(strom("topics", "delete", missing))
    assert error.startswith(f"error: cannot delete topic '{missing}': UNKNOWN_TOPIC_OR_PART")
    error = one_error_line(strom("topics", "alter", missing, "--set", "retention.ms=1000"))
    assert error == f"error: topic '{missing}' does not exist"
    error = one_error_line(strom("consume", missing, "--from-beginning", "--timeout", IDLE_S))
    assert error == f"error: topic '{missing}' does not exist"

    # describe reports the topics it knows and fails for the one it does not.
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    result = strom("topics", "describe", unique_topic, missing, "--json")
    assert one_error_line(result) == f"error: topic '{missing}' does not exist"
    assert [document["name"] for document in json.loads(result.stdout)] == [unique_topic]


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "list"],
        ["topics", "create", "never-created"],
        ["produce", "never-created"],
        ["consume", "never-created", "--from-beginning"],
    ],
)
def test_unreachable_broker(command: list[str], refusing_address: str) -> None:
    result = run_strom(*command, "-b", refusing_address, "--timeout", "1")
    error = one_error_line(result)
    assert error.startswith(f"error: could not reach the cluster at {refusing_address} within 1 s")
    assert result.stdout == b""


def test_bad_client_property(strom: Callable[..., subprocess.CompletedProcess[bytes]]) -> None:
    error = one_error_line(strom("topics", "list", "-X", "no.such.property=1"))
    assert error.startswith("error: invalid client configuration:")


def test_usage_errors_exit_2(strom: Callable[..., subprocess.CompletedProcess[bytes]]) -> None:
    result = strom("topics", "create")
    assert result.returncode == 2
    assert b"usage:" in result.stderr


# -- produce and consume ----------------------------------------------------------------------------


def test_keys_and_headers_from_stdin_round_trip_as_json(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    lines = "k1:first\nk2:second\r\nk3:value:with:colons\n:empty key\n주문:완료\n".encode()
    headers = ["--header", "source=cli", "--header", "trace=a=b"]
    produced = succeeded(strom("produce", unique_topic, "--key-separator", ":", *headers, stdin=lines))
    assert produced.stderr.decode().splitlines()[-1] == f"Delivered 5 of 5 messages to {unique_topic}."

    result = succeeded(
        strom(
            "consume", unique_topic, "--from-beginning", "--count", "5", "--format", "json", "--timeout", "30"
        )
    )
    documents = json_lines(result.stdout)
    assert [(d["key"], d["value"]) for d in documents] == [
        ("k1", "first"),
        ("k2", "second"),
        ("k3", "value:with:colons"),
        ("", "empty key"),
        ("주문", "완료"),
    ]
    assert [d["offset"] for d in documents] == [0, 1, 2, 3, 4]
    for document in documents:
        assert (document["topic"], document["partition"]) == (unique_topic, 0)
        assert document["headers"] == [["source", "cli"], ["trace", "a=b"]]
        assert document["timestamp_type"] == "CreateTime"
        assert isinstance(document["timestamp"], int) and document["timestamp"] > 0
    assert result.stderr.decode().splitlines()[-1] == "Processed a total of 5 messages"


def test_file_input_and_every_output_format(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str, tmp_path: Path
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    source = tmp_path / "lines.txt"
    source.write_bytes(b"alpha\tone\nbeta\ttwo\ngamma\tthree")  # no newline after the last line
    produced = succeeded(
        strom("produce", unique_topic, "--file", str(source), "--key-separator", "\t", "--progress")
    )
    assert f"Delivered 3 of 3 messages to {unique_topic}." in produced.stderr.decode()

    def consume(*options: str) -> bytes:
        return succeeded(strom("consume", unique_topic, "--from-beginning", "--count", "3", *options)).stdout

    assert consume() == b"one\ntwo\nthree\n"
    assert consume("--format", "kv") == b"alpha\tone\nbeta\ttwo\ngamma\tthree\n"
    assert consume("--format", "kv", "--key-separator", " = ") == b"alpha = one\nbeta = two\ngamma = three\n"
    assert [d["key"] for d in json_lines(consume("--format", "json"))] == ["alpha", "beta", "gamma"]


def test_lines_without_a_key_have_null_keys(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    succeeded(strom("produce", unique_topic, stdin=b"a\n\nc\n"))
    output = succeeded(
        strom("consume", unique_topic, "--from-beginning", "--count", "3", "--format", "kv")
    ).stdout
    assert output == b"null\ta\nnull\t\nnull\tc\n"


def test_producer_settings_are_accepted(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "2"))
    lines = b"".join(b"key-%d|value-%d\n" % (n, n) for n in range(200))
    for acks, compression in [("all", "gzip"), ("1", "zstd"), ("0", "lz4"), ("all", "snappy")]:
        produced = strom(
            "produce", unique_topic, "--key-separator", "|", "--acks", acks, "--compression", compression,
            "--linger-ms", "5", "--batch-size", "16384", stdin=lines,
        )  # fmt: skip
        assert f"Delivered 200 of 200 messages to {unique_topic}." in succeeded(produced).stderr.decode()
    output = succeeded(strom("consume", unique_topic, "--from-beginning", "--count", "800")).stdout
    assert sorted(output.splitlines()) == sorted(b"value-%d" % n for n in range(200) for _ in range(4))


def test_same_key_same_partition_as_java_clients(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    keys = ["a", "b", "f", "g"]  # spread over all three partitions, and not as librdkafka's CRC32 would
    succeeded(strom("topics", "create", unique_topic, "--partitions", "3"))
    succeeded(
        strom(
            "produce", unique_topic, "--key-separator", "=", stdin="".join(f"{k}=v\n" for k in keys).encode()
        )
    )
    documents = json_lines(
        succeeded(
            strom("consume", unique_topic, "--from-beginning", "--count", "4", "--format", "json")
        ).stdout
    )
    assert {d["key"]: d["partition"] for d in documents} == {k: java_partition(k.encode(), 3) for k in keys}


def test_missing_key_separator_stops_after_delivering_earlier_lines(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    result = strom("produce", unique_topic, "--key-separator", ":", stdin=b"k:v\nno separator\nk2:v2\n")
    assert one_error_line(result) == "error: no key separator found on line 2: b'no separator'"
    assert f"Delivered 1 of 1 messages to {unique_topic}." in result.stderr.decode()


def test_produce_and_consume_one_partition_from_an_offset(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "2"))
    succeeded(strom("produce", unique_topic, "--partition", "1", stdin=b"m0\nm1\nm2\nm3\nm4\n"))

    tail = succeeded(strom("consume", unique_topic, "--partition", "1", "--offset", "3", "--count", "2"))
    assert tail.stdout == b"m3\nm4\n"
    empty = succeeded(
        strom("consume", unique_topic, "--partition", "0", "--from-beginning", "--timeout", IDLE_S)
    )
    assert empty.stdout == b""
    assert describe(strom, unique_topic)["partitions"][1]["high_watermark"] == 5

    error = one_error_line(strom("produce", unique_topic, "--partition", "7", stdin=b"x\n"))
    assert error == f"error: topic '{unique_topic}' has no partition 7 (2 in all)"
    error = one_error_line(strom("consume", unique_topic, "--partition", "7", "--timeout", IDLE_S))
    assert error == f"error: topic '{unique_topic}' has no partition 7 (2 in all)"


def test_consume_from_timestamp(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], strom_broker: StromProcess, unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1", *KEEP_FOREVER))
    produce_at(
        strom_broker.bootstrap,
        unique_topic,
        [
            (b"k", b"old-1", OLD_TIMESTAMP_MS),
            (b"k", b"old-2", OLD_TIMESTAMP_MS + 1),
            (b"k", b"new", NEW_TIMESTAMP_MS),
        ],
    )
    by_number = strom(
        "consume", unique_topic, "--from-timestamp", str(BETWEEN_MS), "--count", "1", "--format", "json"
    )
    (document,) = json_lines(succeeded(by_number).stdout)
    assert (document["value"], document["offset"], document["timestamp"]) == ("new", 2, NEW_TIMESTAMP_MS)

    iso = "2023-11-14T22:13:20.001Z"  # OLD_TIMESTAMP_MS + 1
    by_iso = succeeded(strom("consume", unique_topic, "--from-timestamp", iso, "--count", "2"))
    assert by_iso.stdout == b"old-2\nnew\n"

    after_everything = str(NEW_TIMESTAMP_MS + 1)
    nothing = succeeded(
        strom("consume", unique_topic, "--from-timestamp", after_everything, "--timeout", IDLE_S)
    )
    assert nothing.stdout == b""


def test_binary_and_null_payloads_in_json(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], strom_broker: StromProcess, unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1", *KEEP_FOREVER))
    binary = b"\x00\xff\xfe\x80"
    produce_at(
        strom_broker.bootstrap,
        unique_topic,
        [(binary, binary, OLD_TIMESTAMP_MS), (b"gone", None, OLD_TIMESTAMP_MS)],
    )
    documents = json_lines(
        succeeded(
            strom("consume", unique_topic, "--from-beginning", "--count", "2", "--format", "json")
        ).stdout
    )
    encoded = base64.b64encode(binary).decode()
    assert (documents[0]["key_b64"], documents[0]["value_b64"]) == (encoded, encoded)
    assert "key" not in documents[0] and "value" not in documents[0]
    assert (documents[1]["key"], documents[1]["value"]) == ("gone", None)


def test_group_resumes_after_what_it_printed(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    succeeded(strom("produce", unique_topic, stdin=b"".join(b"m%d\n" % n for n in range(6))))
    group = f"{unique_topic}-group"

    first = succeeded(strom("consume", unique_topic, "--group", group, "--from-beginning", "--count", "2"))
    assert first.stdout == b"m0\nm1\n"
    rest = succeeded(strom("consume", unique_topic, "--group", group, "--count", "4"))
    assert rest.stdout == b"m2\nm3\nm4\nm5\n"
    replay = succeeded(strom("consume", unique_topic, "--group", group, "--offset", "1", "--count", "1"))
    assert replay.stdout == b"m1\n"

    # Group members' offsets live in an internal topic, which only --internal lists.
    assert not any(name.startswith("__") for name in listed_names(strom))
    assert set(listed_names(strom)) <= set(listed_names(strom, "--internal"))


def test_too_few_messages_for_count_is_an_error(
    strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    succeeded(strom("produce", unique_topic, stdin=b"only\ntwo\n"))
    result = strom("consume", unique_topic, "--from-beginning", "--count", "5", "--timeout", IDLE_S)
    assert one_error_line(result) == f"error: only 2 of 5 messages arrived before {IDLE_S} s passed idle"
    assert result.stdout == b"only\ntwo\n"


def test_consumer_output_survives_a_pipe(
    strom_broker: StromProcess, strom: Callable[..., subprocess.CompletedProcess[bytes]], unique_topic: str
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "3"))
    count = 3000
    succeeded(strom("produce", unique_topic, stdin=b"".join(b"%d\n" % n for n in range(count))))
    command = [
        "consume",
        unique_topic,
        "--from-beginning",
        "--count",
        str(count),
        "-b",
        strom_broker.bootstrap,
    ]
    consumer = subprocess.Popen(
        [sys.executable, "-m", "strom.cli.main", *command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert consumer.stdout is not None
    with consumer.stdout:
        counter = subprocess.run(["wc", "-l"], stdin=consumer.stdout, capture_output=True, check=True)
    assert consumer.wait(timeout=COMMAND_TIMEOUT_S) == 0
    assert int(counter.stdout) == count


def test_consumer_stops_quietly_when_the_reader_goes_away(
    strom_broker: StromProcess,
    strom: Callable[..., subprocess.CompletedProcess[bytes]],
    unique_topic: str,
    tmp_path: Path,
) -> None:
    succeeded(strom("topics", "create", unique_topic, "--partitions", "1"))
    # Far more output than a pipe buffers, so the consumer is still writing when `head` exits.
    padding = b"x" * 200
    succeeded(strom("produce", unique_topic, stdin=b"".join(b"%d %s\n" % (n, padding) for n in range(5000))))
    head = subprocess.run(
        f"{sys.executable} -m strom.cli.main consume {unique_topic} --from-beginning --count 5000 "
        f"-b {strom_broker.bootstrap} 2>stderr.txt | head -n 1; echo ${{PIPESTATUS[0]}} > status.txt",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        check=True,
        cwd=tmp_path,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert head.stdout == b"0 " + padding + b"\n"
    assert (tmp_path / "status.txt").read_text().strip() == "141"
    assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
