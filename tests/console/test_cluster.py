"""``ClusterView`` and the metrics ``Sampler`` against a real broker: every call the console's pages make."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import CLIENT_TIMEOUT_S, NewTopicFactory

from strom.console.cluster import ClusterView, ConsoleError, GroupOffsets, group_lag, payload
from strom.console.metrics import Sampler, growth

BASE_TIMESTAMP_MS = 1_764_000_000_000

Header = tuple[str, str | bytes | None]
Record = tuple[int, bytes | None, bytes | None, list[Header]]  # partition, key, value, headers


@pytest.fixture(scope="module")
def view(bootstrap: str) -> Iterator[ClusterView]:
    cluster = ClusterView(bootstrap, timeout_s=CLIENT_TIMEOUT_S)
    yield cluster
    cluster.close()


def produce_records(
    bootstrap: str,
    topic: str,
    records: list[Record],
    *,
    first_timestamp_ms: int = BASE_TIMESTAMP_MS,
) -> None:
    """(partition, key, value, headers) records, the n-th stamped ``first_timestamp_ms + n * 1000``."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for index, (partition, key, value, headers) in enumerate(records):
        producer.produce(
            topic,
            value=value,
            key=key,
            headers=headers,
            partition=partition,
            timestamp=first_timestamp_ms + index * 1000,
        )
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def numbered(topic_partitions: int, count: int) -> list[Record]:
    """``count`` JSON records spread round-robin over the partitions, keyed ``k<n>``."""
    return [(n % topic_partitions, f"k{n}".encode(), json.dumps({"n": n}).encode(), []) for n in range(count)]


def consume_and_commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> Consumer:
    """A member of ``group`` that has committed ``offset`` for the partition; the caller closes it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    return consumer


def joined_consumer(bootstrap: str, group: str, topic: str) -> Consumer:
    """A member of ``group`` that has been assigned partitions of ``topic``; the caller closes it."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([topic])
    while not consumer.assignment():
        consumer.poll(0.1)
    return consumer


def committed_offsets(bootstrap: str, group: str, topic: str, partition: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (answer,) = consumer.committed([TopicPartition(topic, partition)], timeout=CLIENT_TIMEOUT_S)
        return answer.offset
    finally:
        consumer.close()


def error_of(call: object, *args: object, **kwargs: object) -> ConsoleError:
    assert callable(call)
    with pytest.raises(ConsoleError) as caught:
        call(*args, **kwargs)
    return caught.value


# ------------------------------------------------------------------------------------------ cluster


def test_overview_names_the_broker_as_controller_and_counts_topics(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=2)
    produce_records(bootstrap, topic, numbered(2, 4))

    overview = view.overview()

    (only,) = overview.brokers
    assert (f"{only.host}:{only.port}", only.controller) == (bootstrap, True)
    assert overview.controller_id == only.id
    assert overview.cluster_id
    assert overview.topics >= 1 and overview.partitions >= 2 and overview.messages >= 4


# ------------------------------------------------------------------------------------------- topics


def test_list_topics_searches_by_name_and_counts_messages_and_bytes(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=3)
    produce_records(bootstrap, topic, numbered(3, 7))

    (summary,) = view.list_topics(search=topic.upper())

    assert (summary.name, summary.partitions, summary.replication_factor) == (topic, 3, 1)
    assert (summary.messages, summary.internal) == (7, False)
    assert summary.size_bytes is not None and summary.size_bytes > 0


def test_list_topics_can_leave_internal_topics_out(view: ClusterView, new_topic: NewTopicFactory) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    consume_and_commit(view.bootstrap_servers, group, new_topic(), 0, 0).close()  # creates __consumer_offsets

    with_internal = {topic.name: topic.internal for topic in view.list_topics(search="__consumer")}
    without_internal = view.list_topics(search="__consumer", include_internal=False)

    assert with_internal == {"__consumer_offsets": True}
    assert without_internal == []


def test_create_describe_and_delete_a_topic(view: ClusterView) -> None:
    name = f"created-{uuid.uuid4().hex[:8]}"

    created = view.create_topic(name, 2, 1, {"retention.ms": "60000"})
    described = view.describe_topic(name)
    view.delete_topic(name)

    assert created == described
    assert [(p.partition, p.start_offset, p.end_offset) for p in described.partitions] == [
        (0, 0, 0),
        (1, 0, 0),
    ]
    assert all(p.replicas == p.isr == [p.leader] for p in described.partitions)
    configs = {config.name: config for config in described.configs}
    assert (configs["retention.ms"].value, configs["retention.ms"].default) == ("60000", False)
    assert configs["retention.ms"].source == "DYNAMIC_TOPIC_CONFIG"
    assert configs["cleanup.policy"].default is True
    assert error_of(view.describe_topic, name).code == "UNKNOWN_TOPIC_OR_PARTITION"


def test_creating_an_existing_topic_is_a_conflict(view: ClusterView, new_topic: NewTopicFactory) -> None:
    topic = new_topic()

    error = error_of(view.create_topic, topic, 1, 1, {})

    assert (error.http_status, error.code) == (409, "TOPIC_ALREADY_EXISTS")


def test_creating_a_topic_with_no_partitions_is_a_bad_request(view: ClusterView) -> None:
    error = error_of(view.create_topic, f"bad-{uuid.uuid4().hex[:8]}", 0, 1, {})

    assert (error.http_status, error.code) == (400, "INVALID_PARTITIONS")


def test_deleting_a_missing_topic_is_not_found(view: ClusterView) -> None:
    error = error_of(view.delete_topic, f"missing-{uuid.uuid4().hex[:8]}")

    assert (error.http_status, error.code) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


def test_alter_topic_configs_sets_and_resets_to_default(
    view: ClusterView, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(configs={"retention.ms": "3600000"})

    altered = view.alter_topic_configs(topic, {"retention.ms": None, "segment.ms": "600000"})

    configs = {config.name: config for config in altered.configs}
    assert (configs["segment.ms"].value, configs["segment.ms"].default) == ("600000", False)
    assert configs["retention.ms"].default is True
    assert configs["retention.ms"].value == "604800000"


def test_altering_an_unknown_config_is_a_bad_request(view: ClusterView, new_topic: NewTopicFactory) -> None:
    error = error_of(view.alter_topic_configs, new_topic(), {"no.such.config": "1"})

    assert error.http_status == 400
    assert error.code == "INVALID_CONFIG"


# ----------------------------------------------------------------------------------------- messages


def test_browse_from_earliest_pages_on_with_next_offsets(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    produce_records(bootstrap, topic, numbered(1, 5))

    first = view.browse(topic, limit=3)
    second = view.browse(topic, start="offset", offset=first.next_offsets[0], limit=3)
    again = view.browse(topic, limit=3)  # the reused consumer must not hand out what it fetched before

    assert [m.offset for m in first.messages] == [0, 1, 2]
    assert first.next_offsets == {0: 3}
    assert [m.offset for m in second.messages] == [3, 4]
    assert second.next_offsets == {0: 5}
    assert again == first
    assert (first.messages[0].key, first.messages[0].value) == (payload(b"k0"), payload(b'{"n": 0}'))
    assert first.messages[0].value.encoding == "json"
    assert (first.messages[0].timestamp, first.messages[0].timestamp_type) == (
        BASE_TIMESTAMP_MS,
        "CreateTime",
    )


def test_browse_latest_reads_the_last_records_of_every_partition(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=2)
    produce_records(bootstrap, topic, numbered(2, 10))  # partition 0: n = 0, 2, ..., 8; partition 1: odd

    result = view.browse(topic, start="latest", limit=2)

    assert [(m.partition, m.offset) for m in result.messages] == [(0, 4), (1, 4)]
    assert result.next_offsets == {0: 5, 1: 5}


def test_browse_one_partition_from_a_timestamp(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=2)
    produce_records(bootstrap, topic, numbered(2, 10))  # record n stamped BASE + n s

    result = view.browse(
        topic, partition=1, start="timestamp", timestamp_ms=BASE_TIMESTAMP_MS + 4500, limit=10
    )
    after_all = view.browse(topic, start="timestamp", timestamp_ms=BASE_TIMESTAMP_MS + 99_000)

    assert [json.loads(m.value.text or "") for m in result.messages] == [{"n": 5}, {"n": 7}, {"n": 9}]
    assert result.next_offsets == {1: 5}
    assert (after_all.messages, after_all.next_offsets) == ([], {0: 5, 1: 5})


def test_browse_filters_by_key_value_and_header_text(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    produce_records(
        bootstrap,
        topic,
        [
            (0, b"order-1", b"paid", [("source", b"web")]),
            (0, b"order-2", b"PAID twice", [("source", b"shop-app")]),
            (0, b"refund-1", b"paid back", []),
        ],
    )

    def offsets(**filters: str) -> list[int]:
        return [m.offset for m in view.browse(topic, **filters).messages]  # type: ignore[arg-type]

    assert offsets(key_filter="ORDER") == [0, 1]
    assert offsets(value_filter="paid", key_filter="refund") == [2]
    assert offsets(header_filter="app") == [1]
    assert offsets(header_filter="source") == [0, 1]
    assert offsets(value_filter="nowhere") == []


def test_browse_shows_binary_as_base64_and_keeps_nulls(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    binary = bytes([0xFF, 0x00, 0xC3])
    produce_records(bootstrap, topic, [(0, None, binary, [("trace", binary)]), (0, b"k", None, [])])

    first, second = view.browse(topic).messages

    assert (first.key.encoding, first.key.text) == ("null", None)
    assert (first.value.encoding, first.value.size) == ("base64", 3)
    assert base64.b64decode(first.value.text or "") == binary
    assert first.headers[0].name == "trace" and first.headers[0].value.encoding == "base64"
    assert (second.key.encoding, second.key.text, second.value.encoding) == ("text", "k", "null")


def test_browse_checks_its_arguments(view: ClusterView, new_topic: NewTopicFactory) -> None:
    topic = new_topic()

    assert error_of(view.browse, f"missing-{uuid.uuid4().hex[:8]}").http_status == 404
    assert error_of(view.browse, topic, partition=5).code == "UNKNOWN_TOPIC_OR_PARTITION"
    assert error_of(view.browse, topic, start="offset").code == "INVALID_REQUEST"
    assert error_of(view.browse, topic, start="middle").code == "INVALID_REQUEST"
    assert error_of(view.browse, topic, limit=0).code == "INVALID_REQUEST"


def test_tail_returns_what_arrived_since_a_browse(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=2)
    produce_records(bootstrap, topic, numbered(2, 2))
    seen = view.browse(topic, start="latest", limit=10)

    nothing_new = view.tail(topic, seen.next_offsets)
    produce_records(bootstrap, topic, [(1, b"new", b"arrived", [])])
    arrived = view.tail(topic, seen.next_offsets)

    assert (nothing_new.messages, nothing_new.next_offsets) == ([], {0: 1, 1: 1})
    assert [(m.partition, m.offset, m.value.text) for m in arrived.messages] == [(1, 1, "arrived")]
    assert arrived.next_offsets == {0: 1, 1: 2}


def test_produce_stores_key_value_and_headers(view: ClusterView, new_topic: NewTopicFactory) -> None:
    topic = new_topic(partitions=3)

    partition, offset = view.produce(topic, "k", '{"a": 1}', [("h", "v"), ("empty", None)], partition=2)
    (message,) = view.browse(topic, partition=2).messages

    assert (partition, offset) == (2, 0)
    assert (message.key.text, message.value.text, message.value.encoding) == ("k", '{"a": 1}', "json")
    assert [(h.name, h.value.text) for h in message.headers] == [("h", "v"), ("empty", None)]


def test_produce_to_a_missing_partition_is_not_found(view: ClusterView, new_topic: NewTopicFactory) -> None:
    error = error_of(view.produce, new_topic(), None, "v", [], partition=3)

    assert (error.http_status, error.code) == (404, "UNKNOWN_TOPIC_OR_PARTITION")


# ------------------------------------------------------------------------------------------- groups


def test_groups_show_members_committed_offsets_and_lag(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    produce_records(bootstrap, topic, numbered(1, 6))
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = joined_consumer(bootstrap, group, topic)
    consumer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    try:
        details = view.describe_group(group)
        (summary,) = [g for g in view.list_groups() if g.group_id == group]
    finally:
        consumer.close()

    assert (summary.state, summary.members, summary.topics, summary.total_lag) == ("Stable", 1, [topic], 4)
    assert (details.state, details.total_lag) == ("Stable", 4)
    (member,) = details.members
    assert member.assignment == {topic: [0]}
    assert [
        (p.topic, p.partition, p.committed, p.end_offset, p.lag, p.member_id) for p in details.partitions
    ] == [(topic, 0, 2, 6, 4, member.member_id)]


def test_describing_an_unknown_group_is_not_found(view: ClusterView) -> None:
    error = error_of(view.describe_group, f"nobody-{uuid.uuid4().hex[:8]}")

    assert (error.http_status, error.code) == (404, "GROUP_ID_NOT_FOUND")


def test_reset_offsets_previews_then_applies(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic(partitions=2)
    produce_records(bootstrap, topic, numbered(2, 8))  # 4 records per partition; n stamped BASE + n s
    group = f"g-{uuid.uuid4().hex[:8]}"
    consume_and_commit(bootstrap, group, topic, 0, 1).close()

    preview = view.reset_group_offsets(group, topic, to="latest")
    unchanged = committed_offsets(bootstrap, group, topic, 0)
    shifted = view.reset_group_offsets(group, topic, [0], to="shift", value=-5, dry_run=False)
    at_time = view.reset_group_offsets(group, topic, to="timestamp", value=BASE_TIMESTAMP_MS + 3500)
    clamped = view.reset_group_offsets(group, topic, [1], to="offset", value=99)

    assert [(r.partition, r.current, r.new) for r in preview] == [(0, 1, 4), (1, None, 4)]
    assert unchanged == 1
    assert [(r.partition, r.current, r.new) for r in shifted] == [(0, 1, 0)]
    assert committed_offsets(bootstrap, group, topic, 0) == 0
    assert [(r.partition, r.new) for r in at_time] == [(0, 2), (1, 2)]
    assert [(r.partition, r.new) for r in clamped] == [(1, 4)]


def test_reset_offsets_is_refused_while_the_group_has_members(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    group = f"g-{uuid.uuid4().hex[:8]}"
    consumer = joined_consumer(bootstrap, group, topic)
    try:
        error = error_of(view.reset_group_offsets, group, topic, to="earliest", dry_run=False)
    finally:
        consumer.close()

    assert (error.http_status, error.code) == (409, "NON_EMPTY_GROUP")
    assert "active member" in error.message


def test_reset_offsets_checks_its_arguments(view: ClusterView, new_topic: NewTopicFactory) -> None:
    topic = new_topic()

    assert error_of(view.reset_group_offsets, "g", topic, to="offset").code == "INVALID_REQUEST"
    assert error_of(view.reset_group_offsets, "g", topic, [7], to="earliest").http_status == 404
    shift_without_commit = error_of(
        view.reset_group_offsets, f"g-{uuid.uuid4().hex}", topic, to="shift", value=1
    )
    assert (shift_without_commit.http_status, shift_without_commit.code) == (400, "INVALID_REQUEST")


# ------------------------------------------------------------------------------------- dead letters


def spring_headers(origin: str, partition: int, offset: int) -> list[Header]:
    return [
        ("ce_id", f"evt-{offset}".encode()),
        ("kafka_dlt-original-topic", origin.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-exception-fqcn", b"KeyError"),
        ("kafka_dlt-exception-message", b"'sku'"),
    ]


def test_dead_letters_are_listed_decoded_and_replayed(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    origin = new_topic(partitions=2)
    dlt = new_topic(name=f"{origin}.DLT")
    produce_records(
        bootstrap,
        dlt,
        [
            (0, b"o-1", b'{"sku": null}', spring_headers(origin, 1, 10)),
            (0, b"o-2", b"{}", spring_headers(origin, 0, 3)),
        ],
    )

    listed = [topic for topic in view.list_dlt_topics() if topic.name == dlt]
    letters = view.dead_letters(dlt, limit=10)
    outcome = view.replay_dead_letters(dlt, [(0, 0)])
    (replayed,) = view.browse(origin, partition=1).messages

    assert [(t.partitions, t.messages) for t in listed] == [(1, 2)]
    assert [(d.offset, d.original_topic, d.original_partition, d.original_offset) for d in letters] == [
        (0, origin, 1, 10),
        (1, origin, 0, 3),
    ]
    assert (letters[0].exception_type, letters[0].exception_message) == ("KeyError", "'sku'")
    assert [(h.name, h.value.text) for h in letters[0].headers] == [("ce_id", "evt-10")]
    assert [(r.partition, r.offset, r.destination, r.destination_partition) for r in outcome.replayed] == [
        (0, 0, origin, 1)
    ]
    assert outcome.failed == []
    assert (replayed.key.text, replayed.value.text) == ("o-1", '{"sku": null}')


def test_replaying_a_missing_dead_letter_is_not_found(view: ClusterView, new_topic: NewTopicFactory) -> None:
    dlt = new_topic(name=f"orders-{uuid.uuid4().hex[:8]}-dlt")

    produce_records(view.bootstrap_servers, dlt, [(0, b"k", b"v", spring_headers(dlt, 0, 0))])

    error = error_of(view.replay_dead_letters, dlt, [(0, 5), (3, 0)])
    partly = view.replay_dead_letters(dlt, [(0, 5), (0, 0)], to_topic=dlt)

    assert (error.http_status, error.code) == (404, "NOT_FOUND")
    assert [(r.partition, r.offset, r.destination) for r in partly.replayed] == [(0, 0, dlt)]
    assert [(f.partition, f.offset) for f in partly.failed] == [(0, 5)]


# ------------------------------------------------------------------------------------------ metrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_sampler_derives_rates_and_lag_from_offsets(
    view: ClusterView, bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = new_topic()
    produce_records(bootstrap, topic, numbered(1, 4))
    group = f"g-{uuid.uuid4().hex[:8]}"
    consume_and_commit(bootstrap, group, topic, 0, 1).close()
    clock = FakeClock()
    sampler = Sampler(view, interval_s=2.0, clock=clock)

    sampler.sample()
    produce_records(bootstrap, topic, numbered(1, 6))
    consume_and_commit(bootstrap, group, topic, 0, 5).close()
    clock.now += 2.0
    sampler.sample()

    (rate,) = sampler.rates()
    assert rate.t == 1_002_000
    assert rate.in_per_s >= 3.0  # other tests may write meanwhile; this one wrote 6 in 2 s
    assert rate.out_per_s >= 2.0  # and committed 4 further
    assert [(s.t, s.lag) for s in sampler.lag_history(group)] == [(1_000_000, 3), (1_002_000, 5)]
    assert sampler.lag_history("never-seen") == []


def test_sampler_thread_samples_until_stopped(view: ClusterView) -> None:
    sampler = Sampler(view, interval_s=0.05).start()
    try:
        while len(sampler.rates()) < 2:
            time.sleep(0.05)
    finally:
        sampler.stop(CLIENT_TIMEOUT_S)
    taken = sampler.rates()

    assert all(sample.in_per_s >= 0 and sample.out_per_s >= 0 for sample in taken)
    assert [sample.t for sample in taken] == sorted(sample.t for sample in taken)


class ScriptedCluster:
    """A cluster whose offsets the test dictates, one GroupOffsets per sample."""

    def __init__(self, answers: list[GroupOffsets]) -> None:
        self._answers = iter(answers)

    def group_offsets(self) -> GroupOffsets:
        return next(self._answers)


def test_sampler_keeps_about_ten_minutes() -> None:
    p0 = ("t", 0)
    answers = [GroupOffsets({"g": {p0: n}}, {p0: 10 * n}) for n in range(400)]
    clock = FakeClock()
    sampler = Sampler(ScriptedCluster(answers), interval_s=2.0, history_s=600.0, clock=clock)  # type: ignore[arg-type]

    for _ in range(400):
        sampler.sample()
        clock.now += 2.0

    rates = sampler.rates()
    assert len(rates) == 300 and len(sampler.lag_history("g")) == 300
    assert rates[-1].in_per_s == 5.0 and rates[-1].out_per_s == 0.5


def test_offsets_that_fall_add_nothing_to_a_rate() -> None:
    p0 = ("t", 0)
    answers = [GroupOffsets({"g": {p0: 8}}, {p0: 10}), GroupOffsets({"g": {p0: 0}}, {p0: 4})]
    sampler = Sampler(ScriptedCluster(answers), clock=FakeClock())  # type: ignore[arg-type]

    sampler.sample()
    sampler.sample()  # the same clock reading: no interval, so no rate either

    assert sampler.rates() == []
    assert [sample.lag for sample in sampler.lag_history("g")] == [2, 4]


def test_growth_and_lag_count_only_known_partitions() -> None:
    before = {("a", 0): 5, ("a", 1): 9}
    after = {("a", 0): 8, ("a", 1): 2, ("b", 0): 100}

    assert growth(before, after) == 3
    assert group_lag({("a", 0): 4, ("c", 0): 1}, after) == 4
