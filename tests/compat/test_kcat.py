"""kcat (librdkafka's command-line client) against a real Strom broker process.

kcat has no admin commands, so topics are created and deleted with confluent-kafka; kcat produces,
consumes, lists metadata and queries offsets. It reads one message per line, so the message sets here are
text and every message carries the same headers (all ``-H`` can express).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from scenario import (
    COMPRESSED_MESSAGE_COUNT,
    COMPRESSION_TYPES,
    PARTITION_COUNT,
    TIMESTAMP_BASE_MS,
    TIMESTAMP_STEP_MS,
    TIMESTAMPED_COUNT,
    Message,
    Record,
    create_topic_with_confluent,
    delete_topic_with_confluent,
    keyed_messages,
    large_message,
    offset_for_timestamp_cases,
    produce_with_confluent,
    timestamped_messages,
    verify_round_trip,
)

KCAT = shutil.which("kcat")
KCAT_TIMEOUT_S = 60
SHARED_HEADERS = (("origin", b"kcat"), ("format", b"text"))

pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (Debian package kcat)")


def kcat(broker: Any, *arguments: str, stdin: bytes | None = None) -> bytes:
    assert KCAT is not None
    completed = subprocess.run(
        [KCAT, "-b", broker.bootstrap, *arguments],
        input=stdin,
        capture_output=True,
        timeout=KCAT_TIMEOUT_S,
    )
    assert completed.returncode == 0, (
        f"kcat {' '.join(arguments)} failed: {completed.stderr.decode()[-4000:]}"
    )
    return completed.stdout


def librdkafka_partition(key: bytes) -> int:
    """kcat produces with librdkafka's default ``consistent_random`` partitioner: CRC32 of the key."""
    return zlib.crc32(key) % PARTITION_COUNT


def produce(broker: Any, topic: str, messages: Sequence[Message], *options: str) -> None:
    """Pipe ``key<TAB>value`` lines into ``kcat -P``; every message must carry the same headers."""
    (headers,) = {message.headers for message in messages}
    header_options = [f"-H{name}={value.decode()}" for name, value in headers]
    lines = b"".join(message.key + b"\t" + message.value + b"\n" for message in messages)
    kcat(broker, "-P", "-t", topic, "-K", "\t", "-X", "acks=all", *header_options, *options, stdin=lines)


def consume(broker: Any, topic: str, *options: str, start: str = "beginning") -> list[Record]:
    """Read with ``kcat -C -J`` from ``start`` until the end of every partition (``-e``)."""
    output = kcat(broker, "-C", "-t", topic, "-o", start, "-J", "-e", "-q", *options)
    records = []
    for line in output.decode().splitlines():
        envelope = json.loads(line)
        flat_headers = envelope.get("headers") or []
        records.append(
            Record(
                partition=envelope["partition"],
                offset=envelope["offset"],
                key=None if envelope["key"] is None else envelope["key"].encode(),
                value=None if envelope["payload"] is None else envelope["payload"].encode(),
                headers=tuple(
                    zip(flat_headers[0::2], (value.encode() for value in flat_headers[1::2]), strict=True)
                ),
                timestamp_ms=envelope["ts"],
            )
        )
    return records


def topic_metadata(broker: Any) -> dict[str, dict[str, Any]]:
    listing = json.loads(kcat(broker, "-L", "-J"))
    return {topic["topic"]: topic for topic in listing["topics"]}


def query_offset(broker: Any, topic: str, partition: int, timestamp: int) -> int:
    """``kcat -Q``: ListOffsets for one partition; -1 and -2 ask for the latest and earliest offsets."""
    answer = json.loads(kcat(broker, "-Q", "-J", "-t", f"{topic}:{partition}:{timestamp}"))
    return int(answer[topic][str(partition)]["offset"])


def test_metadata_lists_topic_with_three_partitions(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    topic = topic_metadata(strom_broker)[unique_topic]

    assert sorted(partition["partition"] for partition in topic["partitions"]) == list(range(PARTITION_COUNT))


def test_keyed_messages_with_headers_round_trip(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = keyed_messages(text_only=True, shared_headers=SHARED_HEADERS)

    produce(strom_broker, unique_topic, messages)
    consumed = consume(strom_broker, unique_topic)

    verify_round_trip(messages, consumed, partition_for_key=librdkafka_partition)


@pytest.mark.parametrize("compression", COMPRESSION_TYPES)
def test_compressed_batches_round_trip(strom_broker, unique_topic, compression):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = keyed_messages(COMPRESSED_MESSAGE_COUNT, text_only=True, shared_headers=SHARED_HEADERS)

    produce(
        strom_broker, unique_topic, messages, "-X", f"compression.codec={compression}", "-X", "linger.ms=50"
    )
    consumed = consume(strom_broker, unique_topic)

    verify_round_trip(messages, consumed, partition_for_key=librdkafka_partition)


def test_900_kb_message_round_trip(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    message = large_message(text_only=True)

    produce(strom_broker, unique_topic, [message])
    consumed = consume(strom_broker, unique_topic)

    verify_round_trip([message], consumed)


def test_watermarks_and_offsets_for_times(strom_broker, unique_topic):
    """kcat cannot set timestamps, so confluent-kafka writes them and kcat queries."""
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    messages = timestamped_messages()
    produce_with_confluent(strom_broker.bootstrap, unique_topic, messages, partition=0)

    earliest = [
        query_offset(strom_broker, unique_topic, partition, -2) for partition in range(PARTITION_COUNT)
    ]
    latest = [query_offset(strom_broker, unique_topic, partition, -1) for partition in range(PARTITION_COUNT)]
    by_time = {ts: query_offset(strom_broker, unique_topic, 0, ts) for ts in offset_for_timestamp_cases()}
    start = TIMESTAMP_BASE_MS + 2 * TIMESTAMP_STEP_MS + 1
    from_time = consume(strom_broker, unique_topic, "-p", "0", start=f"s@{start}")

    assert earliest == [0, 0, 0]
    assert latest == [TIMESTAMPED_COUNT, 0, 0]
    # librdkafka shows Kafka's "no such offset" as -1.
    assert by_time == {
        ts: -1 if offset is None else offset for ts, offset in offset_for_timestamp_cases().items()
    }
    assert [record.offset for record in from_time] == list(range(3, TIMESTAMPED_COUNT))
    assert [record.timestamp_ms for record in from_time] == [message.timestamp_ms for message in messages[3:]]


def test_deleted_topic_disappears_from_metadata(strom_broker, unique_topic):
    create_topic_with_confluent(strom_broker.bootstrap, unique_topic)
    produce(strom_broker, unique_topic, keyed_messages(10, text_only=True, shared_headers=SHARED_HEADERS))
    assert unique_topic in topic_metadata(strom_broker)

    delete_topic_with_confluent(strom_broker.bootstrap, unique_topic)

    assert unique_topic not in topic_metadata(strom_broker)


def test_restart_keeps_topics_and_messages(fresh_broker, unique_topic):
    create_topic_with_confluent(fresh_broker.bootstrap, unique_topic)
    messages = keyed_messages(text_only=True, shared_headers=SHARED_HEADERS)
    produce(fresh_broker, unique_topic, messages)

    fresh_broker.restart()

    assert len(topic_metadata(fresh_broker)[unique_topic]["partitions"]) == PARTITION_COUNT
    verify_round_trip(messages, consume(fresh_broker, unique_topic), partition_for_key=librdkafka_partition)
