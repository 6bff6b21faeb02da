"""What every client compatibility test sends, and one definition of "it came back intact".

Each client module produces these message sets with its own client, turns what its consumer returns into
``Record``s, and hands both to ``verify_round_trip``. Keeping the expectations here means a behaviour is
judged the same way whichever client exercised it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka import Message as ConfluentMessage
from confluent_kafka.admin import AdminClient, NewTopic

PARTITION_COUNT = 3
MESSAGE_COUNT = 1000
COMPRESSED_MESSAGE_COUNT = 300
COMPRESSION_TYPES = ("gzip", "snappy", "lz4", "zstd")

# Kafka's default max.message.bytes (1 MiB + 12 bytes of record-batch log overhead) and a message that
# fits under it with room for the batch framing.
DEFAULT_MAX_MESSAGE_BYTES = "1048588"
LARGE_MESSAGE_SIZE = 900 * 1024

# A topic is created with one retention.ms override, which is later altered: both are per-topic values,
# so Kafka reports them with source DYNAMIC_TOPIC_CONFIG, while untouched configs report DEFAULT_CONFIG.
DEFAULT_RETENTION_MS = "604800000"
CREATED_RETENTION_MS = "3600000"
ALTERED_RETENTION_MS = "86400000"

# Explicit CreateTime timestamps, one second apart, for the offsets-for-times checks. They start an hour
# back: far enough to differ from the time of producing, recent enough that time-based retention (7 days by
# default, judged by record timestamps) keeps them.
TIMESTAMP_BASE_MS = (int(time.time()) - 3600) * 1000
TIMESTAMP_STEP_MS = 1000
TIMESTAMPED_COUNT = 10

READ_TIMEOUT_S = 60.0

Header = tuple[str, bytes]


@dataclass(frozen=True)
class Message:
    """A message as the test hands it to a producer."""

    key: bytes
    value: bytes
    headers: tuple[Header, ...] = ()
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Delivery:
    """What the broker acknowledged for one message: the partition the producer chose and the offset."""

    message: Message
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """A consumed record reduced to what every client exposes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    timestamp_ms: int


def keyed_messages(
    count: int = MESSAGE_COUNT, *, text_only: bool = False, shared_headers: tuple[Header, ...] | None = None
) -> list[Message]:
    """Build ``count`` distinct keyed messages spread over a few dozen keys.

    Values carry their index so each message is unique and the send order can be recovered. Unless
    ``text_only`` (for tools that read lines), values and headers hold every byte value, so a broker that
    re-encodes anything is caught. ``shared_headers`` gives every message the same headers, which is all a
    command-line producer can express.
    """
    messages = []
    for index in range(count):
        key = f"customer-{index % 37:02d}".encode()
        body = f"order {index:05d} for customer-{index % 37:02d}".encode()
        digest = hashlib.sha256(body).digest()
        if text_only:
            value = body + b" " + digest.hex().encode()
        else:
            value = body + b"\x00" + bytes(range(256))[index % 256 :] + digest
        if shared_headers is not None:
            headers = shared_headers
        else:
            headers = (("seq", str(index).encode()), ("trace", digest), ("origin", b"compat"))
        messages.append(Message(key=key, value=value, headers=headers))
    return messages


def large_message(size: int = LARGE_MESSAGE_SIZE, *, text_only: bool = False) -> Message:
    """One ``size``-byte message of random content, so compression cannot shrink it much.

    ``text_only`` draws the content from hex digits, for tools that read one message per line.
    """
    noise = random.Random(size)
    value = noise.randbytes(size // 2).hex().encode() if text_only else noise.randbytes(size)
    return Message(key=b"large", value=value, headers=(("kind", b"large"),))


def timestamped_messages() -> list[Message]:
    """Messages with explicit, increasing CreateTime timestamps, all for one partition."""
    return [
        Message(
            key=f"tick-{index}".encode(),
            value=f"tick {index}".encode(),
            timestamp_ms=TIMESTAMP_BASE_MS + index * TIMESTAMP_STEP_MS,
        )
        for index in range(TIMESTAMPED_COUNT)
    ]


def offset_for_timestamp_cases() -> dict[int, int | None]:
    """Timestamp queried → offset ListOffsets must answer for ``timestamped_messages`` in one partition.

    Kafka returns the first offset whose timestamp is at or after the target, and no offset (-1 on the
    wire) when every record is older.
    """
    last_ms = TIMESTAMP_BASE_MS + (TIMESTAMPED_COUNT - 1) * TIMESTAMP_STEP_MS
    return {
        TIMESTAMP_BASE_MS - 1: 0,
        TIMESTAMP_BASE_MS: 0,
        TIMESTAMP_BASE_MS + 2 * TIMESTAMP_STEP_MS + TIMESTAMP_STEP_MS // 2: 3,
        last_ms: TIMESTAMPED_COUNT - 1,
        last_ms + 1: None,
    }


def verify_round_trip(
    sent: Sequence[Message],
    consumed: Sequence[Record],
    *,
    deliveries: Sequence[Delivery] | None = None,
    partition_for_key: Callable[[bytes], int] | None = None,
    check_timestamps: bool = False,
) -> None:
    """Assert the consumed records are exactly the sent messages, each once, in send order per partition.

    ``deliveries`` (what the producer was acknowledged) pins every message to its partition and offset;
    ``partition_for_key`` is the producing client's own partitioner, to show keyed messages landed where the
    client chose.
    """
    send_index = {message: index for index, message in enumerate(sent)}
    assert len(send_index) == len(sent), "the scenario must send distinct messages"

    got = Counter(_as_message(record, with_timestamp=check_timestamps) for record in consumed)
    expected = Counter(message if check_timestamps else _without_timestamp(message) for message in sent)
    missing = expected - got
    unexpected = got - expected
    assert not missing and not unexpected, (
        f"{sum(missing.values())} sent messages missing (e.g. {_sample(missing)}), "
        f"{sum(unexpected.values())} unexpected records (e.g. {_sample(unexpected)})"
    )

    by_partition: dict[int, list[Record]] = defaultdict(list)
    for record in consumed:
        by_partition[record.partition].append(record)
    plain_index = {_without_timestamp(message): index for message, index in send_index.items()}
    for partition, records in by_partition.items():
        records.sort(key=lambda record: record.offset)
        offsets = [record.offset for record in records]
        assert len(set(offsets)) == len(offsets), f"partition {partition} returned an offset twice"
        order = [plain_index[_as_message(record, with_timestamp=False)] for record in records]
        assert order == sorted(order), f"partition {partition} returned messages out of send order"

    partitions_of_key: dict[bytes | None, set[int]] = defaultdict(set)
    for record in consumed:
        partitions_of_key[record.key].add(record.partition)
    spread = {key: parts for key, parts in partitions_of_key.items() if len(parts) > 1}
    assert not spread, f"keys found on more than one partition: {spread}"

    if partition_for_key is not None:
        wrong = {
            record.key: (record.partition, partition_for_key(record.key))
            for record in consumed
            if record.key is not None and record.partition != partition_for_key(record.key)
        }
        assert not wrong, f"key → (partition read, partition the partitioner picks): {wrong}"

    if deliveries is not None:
        at_position = {(record.partition, record.offset): record for record in consumed}
        for delivery in deliveries:
            found = at_position.get((delivery.partition, delivery.offset))
            assert found is not None, f"nothing read at acknowledged {delivery.partition}@{delivery.offset}"
            assert _as_message(found, with_timestamp=False) == _without_timestamp(delivery.message), (
                f"record at {delivery.partition}@{delivery.offset} is not the message acknowledged there"
            )


class ReadProgress:
    """Collects records until every partition has been read up to its end offset.

    The deadline only stops a broken run from hanging; it is not a performance threshold.
    """

    def __init__(
        self, end_offsets: Mapping[int, int], *, start_offsets: Mapping[int, int] | None = None
    ) -> None:
        self.end_offsets = dict(end_offsets)
        self.next_offsets = {partition: 0 for partition in end_offsets}
        if start_offsets is not None:
            self.next_offsets.update(start_offsets)
        self.records: list[Record] = []
        self._deadline = time.monotonic() + READ_TIMEOUT_S

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            self.records.append(record)
            self.next_offsets[record.partition] = max(self.next_offsets[record.partition], record.offset + 1)

    @property
    def complete(self) -> bool:
        return all(self.next_offsets[partition] >= end for partition, end in self.end_offsets.items())

    def keep_reading(self) -> bool:
        """True while records are still owed; fails the test once the deadline passes."""
        if self.complete:
            return False
        assert time.monotonic() < self._deadline, (
            f"read stalled: next offsets {self.next_offsets}, end offsets {self.end_offsets}"
        )
        return True


# confluent-kafka is the reference client: the tests of tools that cannot do a step themselves (kcat has no
# admin API, kafkajs reads only through a consumer group) and the durability test use it for that step.

CLIENT_TIMEOUT_S = 30.0


def confluent_admin(bootstrap: str) -> AdminClient:
    """An admin client; keep a reference to it until its futures are resolved, or they fail with _DESTROY."""
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic_with_confluent(
    bootstrap: str, topic: str, *, partitions: int = PARTITION_COUNT, config: Mapping[str, str] | None = None
) -> None:
    admin = confluent_admin(bootstrap)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=dict(config or {}))],
        operation_timeout=CLIENT_TIMEOUT_S,
        request_timeout=CLIENT_TIMEOUT_S,
    )
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)


def delete_topic_with_confluent(bootstrap: str, topic: str) -> None:
    admin = confluent_admin(bootstrap)
    futures = admin.delete_topics(
        [topic], operation_timeout=CLIENT_TIMEOUT_S, request_timeout=CLIENT_TIMEOUT_S
    )
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)


def produce_with_confluent(
    bootstrap: str,
    topic: str,
    messages: Sequence[Message],
    *,
    partition: int | None = None,
    config: Mapping[str, str | int] | None = None,
) -> list[Delivery]:
    """Produce ``messages`` in order and return what the broker acknowledged; fails on any delivery error."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", **(config or {})})
    deliveries: list[Delivery] = []
    errors: list[str] = []

    def acknowledge(message: Message) -> Callable[[KafkaError | None, ConfluentMessage], None]:
        def on_delivery(error: KafkaError | None, delivered: ConfluentMessage) -> None:
            if error is not None:
                errors.append(f"{error.name()}: {error.str()}")
            else:
                partition, offset = delivered.partition(), delivered.offset()
                assert partition is not None and offset is not None
                deliveries.append(Delivery(message, partition, offset))

        return on_delivery

    for message in messages:
        producer.produce(
            topic,
            key=message.key,
            value=message.value,
            headers=list(message.headers),
            # -1 lets the partitioner choose; 0 lets the producer stamp the time.
            partition=-1 if partition is None else partition,
            timestamp=message.timestamp_ms or 0,
            on_delivery=acknowledge(message),
        )
        producer.poll(0)
    unsent = producer.flush(CLIENT_TIMEOUT_S)
    assert unsent == 0, f"{unsent} messages still unacknowledged"
    assert not errors, f"delivery failed: {errors[:3]}"
    return deliveries


def read_with_confluent(bootstrap: str, topic: str) -> list[Record]:
    """Read every partition from its low to its high watermark without joining a group.

    confluent-kafka insists on a group.id, but with explicit assigned offsets and no commits the consumer
    needs only Metadata, ListOffsets and Fetch.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"compat-reader-{topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        watermarks = {
            partition: consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=CLIENT_TIMEOUT_S, cached=False
            )
            for partition in range(PARTITION_COUNT)
        }
        consumer.assign([TopicPartition(topic, partition, low) for partition, (low, _) in watermarks.items()])
        progress = ReadProgress(
            {partition: high for partition, (_, high) in watermarks.items()},
            start_offsets={partition: low for partition, (low, _) in watermarks.items()},
        )
        while progress.keep_reading():
            progress.add(_record_from_confluent(message) for message in consumer.consume(1000, timeout=1.0))
        return progress.records
    finally:
        consumer.close()


def _record_from_confluent(message: ConfluentMessage) -> Record:
    error = message.error()
    assert error is None, f"consumer error: {error}"
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    raw_headers = message.headers() or []
    assert isinstance(raw_headers, list)
    headers: list[Header] = []
    for name, value in raw_headers:
        assert isinstance(value, bytes), f"header {name} came back as {value!r}"
        headers.append((name, value))
    return Record(
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        headers=tuple(headers),
        timestamp_ms=message.timestamp()[1],
    )


def _as_message(record: Record, *, with_timestamp: bool) -> Message:
    return Message(
        key=record.key if record.key is not None else b"",
        value=record.value if record.value is not None else b"",
        headers=record.headers,
        timestamp_ms=record.timestamp_ms if with_timestamp else None,
    )


def _without_timestamp(message: Message) -> Message:
    return Message(key=message.key, value=message.value, headers=message.headers)


def _sample(counter: Counter[Message]) -> str:
    first = next(iter(counter), None)
    if first is None:
        return "none"
    return f"key={first.key[:40]!r} value={first.value[:40]!r} headers={len(first.headers)}"
