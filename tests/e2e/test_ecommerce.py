"""The e-commerce flow end to end, with everything that goes wrong in production going wrong at once.

A real broker process and the three services as real processes (``examples.ecommerce``): 1,000 orders are
placed through the HTTP API while the payment API refuses a fifth of its calls and times out on some, one
order in a hundred is poison (declined for good), the order service (with its outbox relay) is SIGKILLed
while orders pour in and restarted (clients retry with an ``Idempotency-Key``), and the payment service is
SIGKILLed while it pays and restarted. Afterwards every order has been notified exactly once or sits in
``order.created.DLT`` with its reason; then the cause is fixed (the payment API accepts the poison SKUs),
the DLT is replayed, and every order has been notified exactly once. The notification platform's own
records are the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import sqlite3
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka import Consumer, Message, TopicPartition
from ecommerce_processes import ServiceProcess

from examples.ecommerce.external import POISON_SKU_PREFIX, NotificationPlatform, PaymentApi
from examples.ecommerce.models import ORDER_CREATED_DLT, ORDER_CREATED_TOPIC, PAY_COMPLETED_TOPIC
from examples.ecommerce.order_service import IDEMPOTENCY_HEADER, LISTENING_PREFIX
from examples.ecommerce.runtime import ensure_topics
from strom.testing.process import StromProcess
from strom.toolkit.dlt import DeadLetter, DeadLetters, Selection
from strom.toolkit.events import Event
from strom.toolkit.outbox import DEFAULT_TABLE_NAME as OUTBOX_TABLE
from strom.toolkit.retry import NonRetryableError, qualified_name

ORDER_COUNT = 1000
# When the order service is killed (orders placed), and when the payment service is (orders notified).
ORDER_SERVICE_KILLED_AT = 300
PAYMENT_SERVICE_KILLED_AT = 500
SEED = 20261126
PAYMENT_FAILURE_RATE = 0.2
PAYMENT_TIMEOUT_RATE = 0.02
HTTP_CONCURRENCY = 16
HTTP_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 150.0
_READ_TIMEOUT_S = 30.0


def plan_orders(count: int, seed: int) -> list[dict[str, Any]]:
    """Request bodies of ``count`` orders; every hundredth has a SKU the payment API declines (poison)."""
    rng = random.Random(seed)
    bodies = []
    for index in range(count):
        items = [
            {
                "sku": f"SKU-{rng.randrange(1, 200):04d}",
                "qty": rng.randint(1, 3),
                "price": f"{rng.randint(100, 9999) / 100:.2f}",
            }
            for _ in range(rng.randint(1, 3))
        ]
        if index % 100 == 37:
            items[0] = {**items[0], "sku": f"{POISON_SKU_PREFIX}{index}"}
        bodies.append({"user_id": f"user-{rng.randrange(50)}", "items": items})
    return bodies


class OrderClient:
    """Places orders over HTTP as a careful client does: each request with an ``Idempotency-Key``, retried
    until it is answered, so a crash of the order service neither loses an order nor places one twice.

    ``place`` runs in a thread of its own while the test kills and restarts services; ``placed`` grows as
    answers arrive (request key -> the order as the API returned it).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.placed: dict[str, dict[str, Any]] = {}
        self.retries = 0

    def place(self, bodies: Sequence[dict[str, Any]]) -> None:
        asyncio.run(self._place_all(bodies))

    async def _place_all(self, bodies: Sequence[dict[str, Any]]) -> None:
        limit = asyncio.Semaphore(HTTP_CONCURRENCY)
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def place(number: int, body: dict[str, Any]) -> None:
                async with limit:
                    self.placed[f"order-{number}"] = await self._post(session, f"order-{number}", body)

            await asyncio.gather(*(place(number, body) for number, body in enumerate(bodies)))

    async def _post(self, session: aiohttp.ClientSession, key: str, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            try:
                async with session.post(
                    f"{self.base_url}/orders", json=body, headers={IDEMPOTENCY_HEADER: key}
                ) as response:
                    assert response.status in (200, 201), await response.text()
                    order: dict[str, Any] = await response.json()
                    return order
            except (aiohttp.ClientConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"order {key} not placed in {SETTLE_TIMEOUT_S:g} s"
                self.retries += 1
                await asyncio.sleep(0.1)


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    """Every record of ``topic`` up to the high watermarks seen now, read without a consumer group."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"e2e-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=_READ_TIMEOUT_S).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_READ_TIMEOUT_S)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        records: list[Message] = []
        remaining = {p for p, end in ends.items() if end > 0}
        deadline = time.monotonic() + _READ_TIMEOUT_S
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is not None:
                    continue
                records.append(message)
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                    remaining.discard(partition)
        assert not remaining, f"could not read {topic} to its end (partitions {sorted(remaining)})"
        return records
    finally:
        consumer.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting until {what}"
        time.sleep(0.5)


def order_id_of(letter: DeadLetter) -> str:
    assert letter.value is not None
    return str(json.loads(letter.value)["order_id"])


def key_of(message: Message) -> str:
    key = message.key()
    assert isinstance(key, bytes)
    return key.decode()


def event_id_of(message: Message) -> str | None:
    value = message.value()
    event = Event.from_kafka(message.headers(), value if isinstance(value, bytes) else None)
    return None if event is None else event.id


class Flow:
    """The services of one test run: their command lines, data files and processes."""

    def __init__(self, base: Path, bootstrap: str) -> None:
        self.base = base
        self.bootstrap = bootstrap
        self.orders_db = base / "orders.db"
        self.payments_db = base / "payments.db"
        self.platform = NotificationPlatform(base / "notification-platform.db")
        self.order_service = ServiceProcess(
            "order_service",
            # A fixed port, so that the API is where clients left it when the service comes back.
            ["--bootstrap", bootstrap, "--db", str(self.orders_db), "--port", str(free_port())],
            base / "order-service.log",
        )
        self.notify_service = ServiceProcess(
            "notify_service",
            [
                "--bootstrap",
                bootstrap,
                "--db",
                str(base / "notify.db"),
                "--platform-db",
                str(self.platform_db),
            ],
            base / "notify-service.log",
        )
        self.payment_service = self.new_payment_service(accept_poison=False)

    @property
    def platform_db(self) -> Path:
        return self.base / "notification-platform.db"

    @property
    def payment_api_db(self) -> Path:
        return self.base / "payment-api.db"

    def unsent_outbox_rows(self, db: Path | None = None) -> int:
        """Outbox rows of the order service (or of ``db``) not marked sent yet."""
        with contextlib.closing(sqlite3.connect(db or self.orders_db)) as connection:
            query = f"SELECT count(*) FROM {OUTBOX_TABLE} WHERE sent_at IS NULL"
            return int(connection.execute(query).fetchone()[0])

    def new_payment_service(self, *, accept_poison: bool) -> ServiceProcess:
        args = [
            "--bootstrap", self.bootstrap,
            "--db", str(self.payments_db),
            "--payment-api-db", str(self.payment_api_db),
            "--failure-rate", str(PAYMENT_FAILURE_RATE),
            "--timeout-rate", str(PAYMENT_TIMEOUT_RATE),
            "--seed", str(SEED),
            "--instance-id", "payment-1",
            "--backoff-s", "0.02",
            "--retry-delays", "0.5,1",
        ]  # fmt: skip
        if accept_poison:
            args.append("--accept-poison")
        return ServiceProcess("payment_service", args, self.base / "payment-service.log")

    @property
    def api_url(self) -> str:
        line = self.order_service.ready_line
        assert line.startswith(LISTENING_PREFIX), line
        return line.removeprefix(LISTENING_PREFIX)

    def dead_letters(self) -> list[DeadLetter]:
        return DeadLetters(self.bootstrap, ORDER_CREATED_DLT).list()

    def stop(self) -> None:
        for service in (self.order_service, self.payment_service, self.notify_service):
            if service.running:
                service.stop()
        self.platform.close()


def test_every_order_is_notified_once_or_dead_lettered_then_replayed(tmp_path: Path) -> None:
    with StromProcess(tmp_path / "broker") as broker:
        ensure_topics(broker.bootstrap, [ORDER_CREATED_TOPIC, PAY_COMPLETED_TOPIC])
        flow = Flow(tmp_path, broker.bootstrap)
        try:
            run_flow(flow)
        finally:
            flow.stop()


def run_flow(flow: Flow) -> None:
    flow.notify_service.start()
    flow.payment_service.start()
    flow.order_service.start()
    client = OrderClient(flow.api_url)
    with ThreadPoolExecutor(1) as pool:
        placing = pool.submit(client.place, plan_orders(ORDER_COUNT, SEED))
        wait_until(lambda: len(client.placed) >= ORDER_SERVICE_KILLED_AT, "orders are being placed")
        flow.order_service.kill()
        print(f"order service killed with {flow.unsent_outbox_rows()} outbox rows unsent")
        flow.order_service.start()
        wait_until(
            lambda: len(flow.platform.deliveries()) >= PAYMENT_SERVICE_KILLED_AT, "orders are being paid"
        )
        flow.payment_service.kill()
        print(f"payment service killed after {len(flow.platform.deliveries())} notifications")
        flow.payment_service.start()
        placing.result()
    print(f"{client.retries} order requests retried")

    orders = {order["order_id"]: order for order in client.placed.values()}
    poison = {
        order_id
        for order_id, order in orders.items()
        if order["items"][0]["sku"].startswith(POISON_SKU_PREFIX)
    }
    assert len(orders) == ORDER_COUNT and len(poison) == ORDER_COUNT // 100

    assert_api_answers(flow.api_url, next(iter(client.placed.values())))

    def settled() -> bool:
        done = set(flow.platform.deliveries()) | {order_id_of(letter) for letter in flow.dead_letters()}
        return done >= orders.keys()

    wait_until(settled, "every order is notified or dead-lettered")

    # No outbox row was lost: every order reached order.created, though the relay was killed.
    wait_until(lambda: flow.unsent_outbox_rows() == 0, "the order service's outbox is sent")
    order_events = read_topic(flow.bootstrap, ORDER_CREATED_TOPIC)
    assert {key_of(m) for m in order_events} == orders.keys()
    print(f"{ORDER_CREATED_TOPIC}: {len(order_events)} records for {len(orders)} orders (relay re-sends)")
    deliveries = flow.platform.deliveries()
    dead = {order_id_of(letter): letter for letter in flow.dead_letters()}
    assert poison <= dead.keys(), "every poison order is dead-lettered"
    assert not deliveries.keys() & dead.keys(), "no order is both notified and dead-lettered"
    assert deliveries.keys() | dead.keys() == orders.keys()
    for order_id in poison:
        letter = dead[order_id]
        assert letter.original_topic == ORDER_CREATED_TOPIC
        assert letter.original_group == "payment-service"
        assert letter.exception_type == qualified_name(NonRetryableError)
        assert letter.exception_cause_type == "examples.ecommerce.external.PaymentDeclined"
        assert letter.exception_message is not None and "SKU not accepted" in letter.exception_message
    assert_notified_exactly_once(flow, orders, deliveries.keys())

    # Fix the cause, replay the dead letters: the rest comes through, still once each.
    assert flow.payment_service.stop() == 0, "the payment service stops cleanly on SIGTERM"
    flow.payment_service = flow.new_payment_service(accept_poison=True).start()
    result = DeadLetters(flow.bootstrap, ORDER_CREATED_DLT).replay(Selection.all())
    assert result.ok, result.failed
    assert {order_id_of(replayed.dead_letter) for replayed in result.replayed} == dead.keys()
    wait_until(lambda: flow.platform.deliveries().keys() >= orders.keys(), "every order is notified")
    assert_notified_exactly_once(flow, orders, orders.keys())
    wait_until(lambda: flow.unsent_outbox_rows(flow.payments_db) == 0, "the payment service's outbox is sent")
    with contextlib.closing(PaymentApi(flow.payment_api_db)) as payment_api:
        charges = payment_api.charges()
    assert {order_id: receipt.amount for order_id, receipt in charges.items()} == {
        order_id: Decimal(order["total_price"]) for order_id, order in orders.items()
    }


def assert_api_answers(base_url: str, placed: dict[str, Any]) -> None:
    """GET returns an order as POST did; an unknown order is 404; an invalid one is refused with 400."""

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{base_url}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    assert call("GET", f"/orders/{placed['order_id']}") == (200, placed)
    assert call("GET", f"/orders/{uuid.uuid4()}")[0] == 404
    status, answer = call(
        "POST", "/orders", {"user_id": "u-1", "items": [{"sku": "A", "qty": 0, "price": "1"}]}
    )
    assert status == 400 and answer["errors"][0]["loc"] == ["items", 0, "qty"]


def assert_notified_exactly_once(
    flow: Flow, orders: dict[str, dict[str, Any]], notified: set[str] | Any
) -> None:
    """The platform got exactly one request per notified order, with the order's data, and the payment
    service made exactly one payment event per order (relay re-sends keep the event id)."""
    requests = Counter(flow.platform.requests())
    assert set(requests) == set(notified)
    assert [order_id for order_id, count in requests.items() if count != 1] == []
    for order_id, delivery in flow.platform.deliveries().items():
        order = orders[order_id]
        assert delivery.payload["user_id"] == order["user_id"]
        assert Decimal(delivery.payload["amount"]) == Decimal(order["total_price"])
    event_ids: defaultdict[str, set[str | None]] = defaultdict(set)
    payment_events = read_topic(flow.bootstrap, PAY_COMPLETED_TOPIC)
    for message in payment_events:
        event_ids[key_of(message)].add(event_id_of(message))
    print(f"{PAY_COMPLETED_TOPIC}: {len(payment_events)} records for {len(event_ids)} payments")
    assert event_ids.keys() >= set(notified)
    assert {order_id: ids for order_id, ids in event_ids.items() if len(ids) != 1} == {}
