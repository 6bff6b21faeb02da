"""Reading and replaying dead-letter topics (strom.toolkit.dlt) against a real broker.

The dead letters are written here with a plain confluent-kafka producer and Spring Kafka's header encodings
(big-endian int partition, long offset and timestamp), so these tests pin the format, not whatever the retry
module happens to write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from confluent_kafka import Message, Producer

from strom.toolkit.dlt import (
    REPLAYED_FROM_HEADER,
    DeadLetter,
    DeadLetterError,
    DeadLetterFilter,
    DeadLetterNotFound,
    DeadLetters,
    Selection,
    replay_headers,
)
from strom.toolkit.publisher import Publisher
from strom.toolkit.serialization import bytes_serializer

NewTopic = Callable[..., str]
ReadTopic = Callable[[str], list[Message]]
Headers = list[tuple[str, str | bytes | None]]

CLIENT_TIMEOUT_S = 15.0
STACK_TRACE = 'Traceback (most recent call last):\n  File "app.py", line 1, in handle\nValueError: bad\n'


def spring_headers(
    original_topic: str | None,
    original_partition: int,
    original_offset: int,
    *,
    exception: str = "ValueError",
    message: str = "bad",
    cause: str | None = None,
) -> Headers:
    """The ``kafka_dlt-*`` headers as Spring Kafka's DeadLetterPublishingRecoverer encodes them."""
    headers: Headers = []
    if original_topic is not None:
        headers.append(("kafka_dlt-original-topic", original_topic.encode()))
    headers += [
        ("kafka_dlt-original-partition", struct.pack(">i", original_partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", original_offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", 1_700_000_000_000 + original_offset)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"billing"),
        ("kafka_dlt-exception-fqcn", exception.encode()),
    ]
    if cause is not None:
        headers.append(("kafka_dlt-exception-cause-fqcn", cause.encode()))
    headers += [
        ("kafka_dlt-exception-message", message.encode()),
        ("kafka_dlt-exception-stacktrace", STACK_TRACE.encode()),
    ]
    return headers


def write(bootstrap: str, topic: str, records: Sequence[tuple[int, bytes | None, bytes, Headers]]) -> None:
    """Produce ``(partition, key, value, headers)`` records in order and wait for all of them."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, key, value, headers in records:
        producer.produce(topic, value, key=key, partition=partition, headers=headers)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def header_dict(message: Message) -> dict[str, str | bytes | None]:
    headers = message.headers() or []
    return dict(headers.items() if isinstance(headers, dict) else headers)


@pytest.fixture
def orders(new_topic: NewTopic) -> str:
    """The topic the dead letters came from: three partitions, so a replay's partition is telling."""
    return new_topic(partitions=3)


@pytest.fixture
def dlt(new_topic: NewTopic) -> str:
    return new_topic(partitions=2)


# ---------------------------------------------------------------------------------------------- reading


def test_list_decodes_spring_headers_and_keeps_the_original_ones(
    bootstrap: str, orders: str, dlt: str
) -> None:
    original = [("ce_id", b"evt-1"), ("binary", b"\xff\x00")]
    write(
        bootstrap,
        dlt,
        [(0, b"order-7", b'{"id": 7', original + spring_headers(orders, 2, 41, cause="KeyError"))],
    )

    (letter,) = DeadLetters(bootstrap, dlt).list()

    assert (letter.topic, letter.partition, letter.offset) == (dlt, 0, 0)
    assert (letter.key, letter.value) == (b"order-7", b'{"id": 7')
    assert (letter.original_topic, letter.original_partition, letter.original_offset) == (orders, 2, 41)
    assert letter.original_timestamp == 1_700_000_000_041
    assert letter.original_timestamp_type == "CreateTime"
    assert letter.original_group == "billing"
    assert (letter.exception_type, letter.exception_cause_type) == ("ValueError", "KeyError")
    assert letter.exception_message == "bad"
    assert letter.stack_trace == STACK_TRACE
    assert letter.headers == tuple(original)
    assert letter.timestamp is not None and letter.timestamp > 0


def test_list_is_in_partition_then_offset_order_with_limit_and_from_offset(bootstrap: str, dlt: str) -> None:
    write(
        bootstrap,
        dlt,
        [
            (partition, None, f"{partition}-{n}".encode(), spring_headers("t", 0, n))
            for n in range(3)
            for partition in (1, 0)
        ],
    )
    dead_letters = DeadLetters(bootstrap, dlt)

    assert [letter.value for letter in dead_letters.list()] == [
        b"0-0",
        b"0-1",
        b"0-2",
        b"1-0",
        b"1-1",
        b"1-2",
    ]
    assert [letter.value for letter in dead_letters.list(limit=4)] == [b"0-0", b"0-1", b"0-2", b"1-0"]
    assert [letter.value for letter in dead_letters.list(from_offset=2)] == [b"0-2", b"1-2"]
    assert dead_letters.list(from_offset=3) == []


def test_list_filters_by_exception_partition_value_and_message(bootstrap: str, dlt: str) -> None:
    write(
        bootstrap,
        dlt,
        [
            (0, None, b'{"sku": "A-1"}', spring_headers("t", 0, 1, exception="json.decoder.JSONDecodeError")),
            (0, None, b'{"sku": "B-2"}', spring_headers("t", 1, 2, message="price must be positive")),
            (0, None, b'{"sku": "C-3"}', spring_headers("t", 1, 3, exception="Wrapper", cause="app.Timeout")),
        ],
    )
    dead_letters = DeadLetters(bootstrap, dlt)

    def offsets(where: DeadLetterFilter) -> list[int]:
        return [letter.offset for letter in dead_letters.list(filter=where)]

    assert offsets(DeadLetterFilter(exception_type="JSONDecodeError")) == [0]
    assert offsets(DeadLetterFilter(exception_type="json.decoder.JSONDecodeError")) == [0]
    assert offsets(DeadLetterFilter(exception_type="Error")) == []  # a class name, not a substring
    assert offsets(DeadLetterFilter(exception_type="Timeout")) == [2]  # matched by the cause
    assert offsets(DeadLetterFilter(original_partition=1)) == [1, 2]
    assert offsets(DeadLetterFilter(value_pattern="B-2")) == [1]
    assert offsets(DeadLetterFilter(value_pattern=r'"sku": "[AC]-\d"')) == [0, 2]
    assert offsets(DeadLetterFilter(message_pattern="positive")) == [1]
    assert offsets(DeadLetterFilter(original_partition=1, value_pattern="C")) == [2]


def test_provenance_comes_from_the_first_headers_and_the_failure_from_the_last(
    bootstrap: str, dlt: str
) -> None:
    """A record that went through retry topics may carry several sets; the first names its true origin."""
    first = spring_headers("orders", 2, 10, exception="FirstError")
    second = spring_headers("orders-retry-1", 0, 3, exception="LastError")
    write(bootstrap, dlt, [(0, None, b"v", first + second)])

    (letter,) = DeadLetters(bootstrap, dlt).list()

    assert (letter.original_topic, letter.original_partition, letter.original_offset) == ("orders", 2, 10)
    assert letter.exception_type == "LastError"


def test_a_record_without_dead_letter_headers_reads_as_unknown_origin(bootstrap: str, dlt: str) -> None:
    write(bootstrap, dlt, [(0, None, b"v", [("kafka_dlt-original-partition", b"\x01")])])

    (letter,) = DeadLetters(bootstrap, dlt).list()

    assert letter.original_topic is None
    assert letter.original_partition == 1  # any big-endian length reads, as Spring's BigInteger headers
    assert letter.exception_type is None and letter.headers == ()


def test_get_returns_one_record_and_raises_for_a_missing_one(bootstrap: str, dlt: str) -> None:
    write(bootstrap, dlt, [(1, None, b"first", []), (1, None, b"second", [])])
    dead_letters = DeadLetters(bootstrap, dlt)

    assert dead_letters.get(1, 1).value == b"second"
    with pytest.raises(DeadLetterNotFound):
        dead_letters.get(1, 2)
    with pytest.raises(DeadLetterNotFound):
        dead_letters.get(0, 0)
    with pytest.raises(DeadLetterNotFound):
        dead_letters.get(5, 0)


def test_a_missing_topic_is_an_error(bootstrap: str) -> None:
    with pytest.raises(DeadLetterError, match="does not exist"):
        DeadLetters(bootstrap, "no-such-dead-letter-topic", timeout_s=5).list()


def test_reading_skips_aborted_records_and_ends_before_an_open_transaction(bootstrap: str, dlt: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{dlt}-writer"})
    producer.init_transactions(CLIENT_TIMEOUT_S)
    for value, commit in ((b"aborted", False), (b"committed", True)):
        producer.begin_transaction()
        producer.produce(dlt, value, partition=0)
        if commit:
            producer.commit_transaction(CLIENT_TIMEOUT_S)
        else:
            producer.abort_transaction(CLIENT_TIMEOUT_S)
    dead_letters = DeadLetters(bootstrap, dlt)
    assert [letter.value for letter in dead_letters.list()] == [b"committed"]

    producer.begin_transaction()
    producer.produce(dlt, b"undecided", partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    try:
        assert [letter.value for letter in dead_letters.list()] == [b"committed"]
    finally:
        producer.abort_transaction(CLIENT_TIMEOUT_S)


# -------------------------------------------------------------------------------------------- replaying


def test_replay_one_republishes_to_the_original_topic_and_partition(
    bootstrap: str, orders: str, dlt: str, read_topic: ReadTopic
) -> None:
    bookkeeping = [
        ("retry_topic-attempts", struct.pack(">i", 3)),
        ("kafka_original-topic", orders.encode()),
        ("kafka_exception-fqcn", b"ValueError"),
    ]
    original = [("ce_id", b"evt-1"), ("trace", b"t-1")]
    write(
        bootstrap,
        dlt,
        [
            (0, b"k0", b"other", spring_headers(orders, 0, 5)),
            (0, b"k1", b"v1", original + bookkeeping + spring_headers(orders, 2, 9)),
        ],
    )

    result = DeadLetters(bootstrap, dlt).replay(Selection.one(0, 1))

    assert result.ok and result.examined == 1 and len(result.replayed) == 1
    (record,) = read_topic(orders)
    assert (record.partition(), record.key(), record.value()) == (2, b"k1", b"v1")
    assert record.headers() == [*original, (REPLAYED_FROM_HEADER, f"{dlt}/0/1".encode())]
    delivery = result.replayed[0].delivery
    assert delivery is not None and (delivery.topic, delivery.partition, delivery.offset) == (orders, 2, 0)


def test_replay_range_with_filter_takes_only_matching_records_in_the_range(
    bootstrap: str, orders: str, dlt: str, read_topic: ReadTopic
) -> None:
    write(
        bootstrap,
        dlt,
        [(1, None, f"v{n}".encode(), spring_headers(orders, 0, n, exception=f"E{n % 2}")) for n in range(6)],
    )

    result = DeadLetters(bootstrap, dlt).replay(
        Selection.range(1, 1, 4), filter=DeadLetterFilter(exception_type="E1")
    )

    assert (result.examined, result.skipped) == (4, 2)
    assert [record.value() for record in read_topic(orders)] == [b"v1", b"v3"]


def test_replay_to_another_topic_and_dead_letters_without_origin(
    bootstrap: str, new_topic: NewTopic, dlt: str, read_topic: ReadTopic
) -> None:
    write(bootstrap, dlt, [(0, None, b"no-origin", spring_headers(None, 0, 0)), (1, None, b"v", [])])
    dead_letters = DeadLetters(bootstrap, dlt)

    stuck = dead_letters.replay(Selection.all())
    assert [failure.dead_letter.value for failure in stuck.failed] == [b"no-origin", b"v"]
    assert stuck.replayed == [] and not stuck.ok

    elsewhere = new_topic()
    moved = dead_letters.replay(Selection.all(), to_topic=elsewhere)
    assert moved.ok and [replayed.destination for replayed in moved.replayed] == [elsewhere, elsewhere]
    assert sorted(record.value() or b"" for record in read_topic(elsewhere)) == [b"no-origin", b"v"]


def test_dry_run_publishes_nothing(bootstrap: str, orders: str, dlt: str, read_topic: ReadTopic) -> None:
    write(bootstrap, dlt, [(0, None, b"v", spring_headers(orders, 1, 0))])
    with Publisher(bootstrap_servers=bootstrap, value_serializer=bytes_serializer) as publisher:
        result = DeadLetters(bootstrap, dlt).replay(Selection.all(), publisher=publisher, dry_run=True)

    assert result.dry_run and [(r.destination, r.delivery) for r in result.replayed] == [(orders, None)]
    assert read_topic(orders) == []


def test_replay_with_a_given_publisher_leaves_it_open(
    bootstrap: str, orders: str, dlt: str, read_topic: ReadTopic
) -> None:
    write(bootstrap, dlt, [(0, None, b"v", spring_headers(orders, 0, 0))])
    with Publisher(bootstrap_servers=bootstrap, value_serializer=bytes_serializer) as publisher:
        assert DeadLetters(bootstrap, dlt).replay(Selection.all(), publisher=publisher).ok
        publisher.publish(orders, b"after", partition=0)

    assert [record.value() for record in read_topic(orders)] == [b"v", b"after"]


def test_replay_ends_at_the_end_of_the_log_as_it_was_when_it_started(
    bootstrap: str, dlt: str, read_topic: ReadTopic
) -> None:
    """Replaying a topic into itself doubles it once: records appended meanwhile are not read."""
    write(bootstrap, dlt, [(0, None, f"v{n}".encode(), []) for n in range(3)])

    result = DeadLetters(bootstrap, dlt).replay(Selection.all(), to_topic=dlt)

    assert result.ok and len(result.replayed) == 3
    assert len(read_topic(dlt)) == 6


def test_replay_is_at_least_once_with_a_stable_replayed_from_header(
    bootstrap: str, orders: str, dlt: str, read_topic: ReadTopic
) -> None:
    write(bootstrap, dlt, [(0, None, b"v", spring_headers(orders, 0, 0))])
    dead_letters = DeadLetters(bootstrap, dlt)

    for _ in range(2):
        assert dead_letters.replay(Selection.one(0, 0)).ok

    marks = [header_dict(record)[REPLAYED_FROM_HEADER] for record in read_topic(orders)]
    assert marks == [f"{dlt}/0/0".encode()] * 2


# ------------------------------------------------------------------------------------------ plain values


BARE = DeadLetter(
    topic="orders.DLT",
    partition=0,
    offset=4,
    timestamp=None,
    key=None,
    value=None,
    original_topic="orders",
    original_partition=0,
    original_offset=1,
    original_timestamp=None,
    original_timestamp_type=None,
    original_group=None,
    exception_type=None,
    exception_cause_type=None,
    exception_message=None,
    stack_trace=None,
    headers=(),
)


def test_replay_headers_replace_an_earlier_replay_mark() -> None:
    letter = replace(BARE, headers=(("a", b"1"), (REPLAYED_FROM_HEADER, b"orders.DLT/0/1"), ("b", None)))

    assert replay_headers(letter) == [("a", b"1"), ("b", None), (REPLAYED_FROM_HEADER, b"orders.DLT/0/4")]


def test_filter_on_missing_fields_does_not_match() -> None:
    assert DeadLetterFilter().matches(BARE)
    assert not DeadLetterFilter(exception_type="ValueError").matches(BARE)
    assert not DeadLetterFilter(value_pattern="").matches(BARE)
    assert not DeadLetterFilter(message_pattern="").matches(BARE)
    assert DeadLetterFilter(value_pattern="caf").matches(replace(BARE, value=b"caf\xff"))


@pytest.mark.parametrize(
    ("partition", "first", "last"), [(-1, 0, 0), (0, -1, 3), (0, 5, 4)], ids=["partition", "first", "order"]
)
def test_selection_rejects_impossible_ranges(partition: int, first: int, last: int) -> None:
    with pytest.raises(ValueError):
        Selection.range(partition, first, last)
