"""The console end to end: headless Chromium on the pages of a real ``strom serve`` and its console.

Each test drives the pages as an operator would (create a topic, produce, browse and filter, watch a group's
lag, reset its offsets, replay a dead letter) and checks the outcome on the cluster itself with
confluent-kafka, so a page that merely looks right is not enough. A screenshot of every page lands in
``test-artifacts/console/``.
"""

from __future__ import annotations

import json
import re
import struct
import uuid
from collections.abc import Iterator

import pytest
from browser_helpers import Console, browser_available, console_answers, free_port, start_chrome
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from selenium.webdriver.common.by import By

from strom.testing.process import StromProcess

pytestmark = pytest.mark.skipif(not browser_available(), reason="needs chromium and chromedriver")

CLIENT_TIMEOUT_S = 15.0
CONSOLE_START_S = 20.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StromProcess]:
    """``strom serve`` with its console, for the whole module (tests use topics and groups of their own)."""
    data_dir = tmp_path_factory.mktemp("console") / "data"
    with StromProcess(data_dir, console_port=free_port()) as process:
        yield process


@pytest.fixture(scope="module")
def console(broker: StromProcess) -> Iterator[Console]:
    """One headless Chromium tab on the broker's console, once the console answers."""
    url = broker.console_url
    Console.wait_until(lambda: console_answers(url), CONSOLE_START_S, f"no console at {url}")
    driver = start_chrome()
    try:
        yield Console(driver, url)
    finally:
        driver.quit()


def new_name(purpose: str) -> str:
    return f"browser-{purpose}-{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=CLIENT_TIMEOUT_S)


def produce(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes, list[tuple[str, str | bytes | None]]]],
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value, headers in records:
        producer.produce(topic, value, key=key, headers=headers, partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every record of partition 0, without a group."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": new_name("reader"), "enable.partition.eof": True}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        records: list[Message] = []
        while True:
            message = consumer.poll(CLIENT_TIMEOUT_S)
            assert message is not None, f"{topic}: nothing within {CLIENT_TIMEOUT_S:g} s"
            if message.error() is not None:
                return records  # end of the partition
            records.append(message)
    finally:
        consumer.close()


def numbers_in(text: str) -> list[int]:
    return [int(number.replace(",", "")) for number in re.findall(r"\d[\d,]*", text)]


# ---------------------------------------------------------------------------------------------- overview


def test_overview_shows_the_broker(console: Console, broker: StromProcess) -> None:
    console.open("#/")

    (row,) = console.wait_for(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, '[data-testid="brokers-table"] tr[data-broker]'),
        "no broker listed",
    )
    assert str(broker.port) in row.text
    assert console.text_of("overview-cluster-id") not in ("", "—")
    console.element("rates-chart")
    console.screenshot("overview")


# ---------------------------------------------------------------------------------------------- topics


def test_create_topic_in_the_dialog(console: Console, broker: StromProcess) -> None:
    name = new_name("created")
    console.open("#/topics")
    console.click("create-topic-button")
    console.fill("create-topic-name", name)
    console.fill("create-topic-partitions", "2")
    console.click("create-topic-submit")

    console.wait_for_rows("topic-row", 1, topic=name)
    console.screenshot("topics")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    described = admin.list_topics(name, timeout=CLIENT_TIMEOUT_S).topics[name]
    assert described.error is None and sorted(described.partitions) == [0, 1]

    console.open(f"#/topics/{name}")
    assert [row.get_attribute("data-partition") for row in console.wait_for_rows("partition-row", 2)] == [
        "0",
        "1",
    ]
    console.element("configs-table")
    console.screenshot("topic")


def test_produce_then_browse_and_filter_messages(console: Console, broker: StromProcess) -> None:
    topic = new_name("messages")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(b"blob", b"\xff\xfe\x00", [])])  # binary: shown safely, never raw
    console.open(f"#/topics/{topic}/messages")

    console.fill("produce-key", "order-1")
    console.fill("produce-value", '{"id": 1, "total": 9.5}')
    console.fill("produce-headers", "source=browser")
    console.click("produce-submit")
    console.wait_for_text(
        "produce-result",
        lambda text: numbers_in(text)[-1:] == [1],
        "the produce result never showed offset 1",
    )
    console.fill("produce-key", "order-2")
    console.fill("produce-value", "plain text")
    console.fill("produce-headers", "")
    console.click("produce-submit")
    console.wait_for_text(
        "produce-result",
        lambda text: numbers_in(text)[-1:] == [2],
        "the produce result never showed offset 2",
    )

    console.choose("msg-start", "earliest")
    console.click("msg-load")
    offsets, values, headers = console.on_rows(
        "message-row",
        3,
        lambda rows: (
            [row.get_attribute("data-offset") for row in rows],
            [Console.cell(row, "message-value") for row in rows],
            Console.cell(rows[1], "message-headers"),
        ),
    )
    assert offsets == ["0", "1", "2"]
    binary, pretty, plain = values
    assert "//4A" in binary and "\ufffd" not in binary
    assert json.loads(pretty) == {"id": 1, "total": 9.5} and "\n" in pretty  # pretty-printed
    assert plain == "plain text"
    assert "source" in headers and "browser" in headers
    console.screenshot("messages")

    console.fill("msg-key-filter", "order-2")
    console.click("msg-load")
    assert console.on_row("message-row", lambda row: Console.cell(row, "message-key")) == "order-2"

    written = read_all(broker.bootstrap, topic)
    assert [record.key() for record in written] == [b"blob", b"order-1", b"order-2"]
    assert written[1].headers() == [("source", b"browser")]


# ---------------------------------------------------------------------------------------------- groups


def test_group_lag_falls_as_it_consumes_then_offsets_reset(console: Console, broker: StromProcess) -> None:
    topic, group = new_name("lag"), new_name("group")
    create_topic(broker.bootstrap, topic)
    produce(broker.bootstrap, topic, [(None, f"value-{index}".encode(), []) for index in range(20)])
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        consume_and_commit(consumer, 5)
        console.open(f"#/groups/{group}")
        console.wait_for_text("group-total-lag", lambda text: numbers_in(text) == [15], "lag never 15")
        (offset_row,) = console.wait_for_rows("offset-row", 1, topic=topic, partition=0)
        assert numbers_in(Console.cell(offset_row, "offset-lag")) == [15]

        consume_and_commit(consumer, 15)
        console.wait_for_text("group-total-lag", lambda text: numbers_in(text) == [0], "lag never fell to 0")
        console.wait_for_rows("member-row", 1)
        console.screenshot("group")
    finally:
        consumer.close()

    console.open("#/groups")
    console.wait_for_rows("group-row", 1, group=group)
    console.screenshot("groups")

    console.open(f"#/groups/{group}")
    console.choose("reset-topic", topic)
    console.choose("reset-to", "earliest")
    console.click("reset-preview")
    (preview,) = console.wait_for_rows("reset-preview-row", 1)
    assert numbers_in(preview.text)[-3:] == [0, 20, 0]  # partition, current, new
    assert committed(broker.bootstrap, group, topic) == 20  # a preview changes nothing
    console.screenshot("group-reset-preview")
    console.click("reset-apply")

    console.wait_for_text("group-total-lag", lambda text: numbers_in(text) == [20], "lag never back to 20")
    assert committed(broker.bootstrap, group, topic) == 0


def consume_and_commit(consumer: Consumer, count: int) -> None:
    consumed = 0
    while consumed < count:
        message = consumer.poll(CLIENT_TIMEOUT_S)
        assert message is not None and message.error() is None, f"consumed {consumed} of {count}"
        consumed += 1
        if consumed == count:
            consumer.commit(message=message, asynchronous=False)


def committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (partition,) = consumer.committed([TopicPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)
        return int(partition.offset)
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------- dead letters


def spring_dlt_headers(origin: str, partition: int, offset: int) -> list[tuple[str, str | bytes | None]]:
    """The headers Spring Kafka's DeadLetterPublishingRecoverer writes (as the toolkit's dead letters do)."""
    return [
        ("ce_id", b"evt-7"),
        ("kafka_dlt-original-topic", origin.encode()),
        ("kafka_dlt-original-partition", struct.pack(">i", partition)),
        ("kafka_dlt-original-offset", struct.pack(">q", offset)),
        ("kafka_dlt-original-timestamp", struct.pack(">q", 1_764_000_000_000)),
        ("kafka_dlt-original-timestamp-type", b"CreateTime"),
        ("kafka_dlt-original-consumer-group", b"shop"),
        ("kafka_dlt-exception-fqcn", b"KeyError"),
        ("kafka_dlt-exception-message", b"'sku'"),
        ("kafka_dlt-exception-stacktrace", b"Traceback (most recent call last):\nKeyError: 'sku'\n"),
    ]


def test_replay_a_dead_letter_back_to_its_topic(console: Console, broker: StromProcess) -> None:
    origin = new_name("orders")
    dlt = f"{origin}.DLT"
    create_topic(broker.bootstrap, origin)
    create_topic(broker.bootstrap, dlt)
    produce(broker.bootstrap, dlt, [(b"o-7", b'{"sku": null}', spring_dlt_headers(origin, 0, 7))])

    console.open("#/dlt")
    console.wait_for_rows("dlt-row", 1, topic=dlt)
    console.screenshot("dlt-topics")

    console.open(f"#/dlt/{dlt}")
    shown = console.on_row("dlt-record-row", lambda record: record.text, partition=0, offset=0)
    assert "KeyError" in shown and origin in shown
    console.screenshot("dlt")
    console.on_row(
        "dlt-record-row", lambda record: Console.click_in(record, "dlt-replay-one"), partition=0, offset=0
    )
    console.click("dlt-replay-confirm")

    replayed = Console.wait_until(lambda: read_all(broker.bootstrap, origin), CLIENT_TIMEOUT_S, "no replay")
    assert [(message.key(), message.value()) for message in replayed] == [(b"o-7", b'{"sku": null}')]

    console.open(f"#/topics/{origin}/messages")
    console.choose("msg-start", "earliest")
    console.click("msg-load")
    assert console.on_row("message-row", lambda row: Console.cell(row, "message-key")) == "o-7"
