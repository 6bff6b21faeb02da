"""The CloudEvents envelope: its Kafka headers (binary content mode) and the way back from a record."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest
from confluent_kafka import Message, Producer

from strom.toolkit.events import Event, format_time, parse_time
from strom.toolkit.publisher import Publisher

NewTopic = Callable[..., str]
ReadTopic = Callable[[str], list[Message]]


class OrderPlaced(pydantic.BaseModel):
    order_id: str
    total_cents: int


def order_event(**overrides: object) -> Event:
    fields: dict = {
        "type": "shop.order.placed",
        "data": {"order_id": "o-1", "total_cents": 1250},
        "source": "/shop/orders",
        "id": "4f1d7c0e-0000-4000-8000-000000000001",
        "time": datetime(2026, 3, 1, 12, 30, 5, 123456, tzinfo=UTC),
        "subject": "o-1",
    }
    fields.update(overrides)
    return Event(**fields)


# -- the headers ---------------------------------------------------------------------------------------------


def test_to_headers_carries_the_cloudevents_attributes_in_binary_mode() -> None:
    assert order_event().to_headers() == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"4f1d7c0e-0000-4000-8000-000000000001"),
        ("ce_source", b"/shop/orders"),
        ("ce_type", b"shop.order.placed"),
        ("ce_time", b"2026-03-01T12:30:05.123456Z"),
        ("ce_subject", b"o-1"),
        ("content-type", b"application/json"),
    ]


def test_to_headers_leaves_out_an_absent_subject() -> None:
    names = [name for name, _ in order_event(subject=None).to_headers()]
    assert "ce_subject" not in names
    assert names[-1] == "content-type"


def test_defaults_give_a_fresh_id_and_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    first = Event(type="t", data=None, source="/s")
    second = Event(type="t", data=None, source="/s")
    assert first.id != second.id
    assert first.time.tzinfo is not None
    assert first.time.utcoffset() == timedelta(0)
    assert first.time >= before
    assert first.content_type == "application/json"


def test_time_is_written_in_utc_whatever_zone_it_was_given_in() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 3, 1, 14, 0, tzinfo=plus_two)) == "2026-03-01T12:00:00Z"
    # A naive datetime is taken to be UTC, not the machine's local time.
    assert format_time(datetime(2026, 3, 1, 14, 0)) == "2026-03-01T14:00:00Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T12:00:00Z", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        ("2026-03-01t12:00:00.5z", datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2026-03-01T14:00:00+02:00", datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        # Other writers send nanoseconds; Python keeps microseconds.
        ("2026-03-01T12:00:00.123456789Z", datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


# -- the data ------------------------------------------------------------------------------------------------


def test_json_data_is_encoded_compactly_including_pydantic_models() -> None:
    model_event = order_event(data=OrderPlaced(order_id="o-2", total_cents=99))
    assert model_event.encode_data() == b'{"order_id":"o-2","total_cents":99}'
    assert order_event(data=[1, "é"]).encode_data() == '[1,"é"]'.encode()


def test_non_json_data_must_already_be_text_or_bytes() -> None:
    assert order_event(data="hello", content_type="text/plain").encode_data() == b"hello"
    assert order_event(data=b"\x00\x01", content_type="application/octet-stream").encode_data() == b"\x00\x01"
    with pytest.raises(TypeError, match="text/plain"):
        order_event(data={"a": 1}, content_type="text/plain").encode_data()


def test_no_data_is_a_null_value() -> None:
    assert order_event(data=None).encode_data() is None


# -- back from a record --------------------------------------------------------------------------------------


def test_from_kafka_inverts_to_headers() -> None:
    event = order_event()
    assert Event.from_kafka(event.to_headers(), event.encode_data()) == event


def test_from_kafka_is_none_for_records_that_are_not_cloudevents() -> None:
    assert Event.from_kafka(None, b"{}") is None
    assert Event.from_kafka([("trace-id", b"abc")], b"{}") is None
    assert Event.from_kafka([("ce_type", b"t")], b"{}") is None  # no id
    assert Event.from_kafka([("ce_id", b"1"), ("ce_type", None)], b"{}") is None


def test_from_kafka_accepts_a_mapping_and_text_header_values() -> None:
    headers = {"ce_id": "e-1", "ce_type": "t", "ce_source": "/s", "ce_time": "2026-03-01T12:00:00Z"}
    event = Event.from_kafka(headers, b'{"a":1}')
    assert event == Event(
        type="t", data={"a": 1}, source="/s", id="e-1", time=datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    )


def test_from_kafka_decodes_data_by_content_type() -> None:
    def decoded(content_type: str, value: bytes | None) -> object:
        event = Event.from_kafka([("ce_id", b"1"), ("ce_type", b"t"), ("content-type", content_type)], value)
        assert event is not None
        assert event.content_type == content_type
        return event.data

    assert decoded("application/json; charset=utf-8", b'{"a":[1,2]}') == {"a": [1, 2]}
    assert decoded("application/vnd.shop+json", b"[true]") == [True]
    assert decoded("text/plain", "grüße".encode()) == "grüße"
    assert decoded("application/octet-stream", b"\xff\x00") == b"\xff\x00"
    assert decoded("application/json", None) is None


def test_from_kafka_rejects_malformed_json_data() -> None:
    with pytest.raises(ValueError):
        Event.from_kafka([("ce_id", b"1"), ("ce_type", b"t")], b"{not json")


def test_from_kafka_without_a_time_reads_as_now() -> None:
    before = datetime.now(UTC)
    event = Event.from_kafka([("ce_id", b"1"), ("ce_type", b"t")], b"1")
    assert event is not None
    assert event.time >= before
    assert event.source == ""
    assert event.subject is None


# -- through a real broker -----------------------------------------------------------------------------------


def test_event_survives_a_round_trip_through_the_broker(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    event = order_event(data=OrderPlaced(order_id="o-3", total_cents=4200))
    with Publisher(bootstrap_servers=bootstrap) as publisher:
        delivery = publisher.publish_event(topic, event, key="o-3", headers={"trace-id": "abc"})

    [record] = read_topic(topic)
    assert (record.partition(), record.offset()) == (delivery.partition, delivery.offset)
    assert record.key() == b"o-3"
    assert record.value() == b'{"order_id":"o-3","total_cents":4200}'
    assert record.headers() == [*event.to_headers(), ("trace-id", b"abc")]
    received = Event.from_kafka(record.headers(), record.value())
    assert received == order_event(data={"order_id": "o-3", "total_cents": 4200})


def test_records_from_a_plain_producer_are_not_events(
    bootstrap: str, new_topic: NewTopic, read_topic: ReadTopic
) -> None:
    topic = new_topic()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, value=b'{"a":1}', headers=[("content-type", b"application/json")])
    assert producer.flush(10) == 0

    [record] = read_topic(topic)
    assert Event.from_kafka(record.headers(), record.value()) is None
