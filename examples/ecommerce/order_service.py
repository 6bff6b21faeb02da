"""The order service: an HTTP API that places orders, and the outbox relay that announces them.

Placing an order writes the order row and its ``order.created`` outbox row in ONE database transaction, so
an order exists if and only if its event will be published; the relay publishes the row right after the
commit, and again after a crash if it died before marking the row sent (consumers deduplicate on the
CloudEvents id, which the row keeps).

Run on its own: ``python -m examples.ecommerce.order_service --bootstrap HOST:PORT --db orders.db``. Its
first stdout line says where the API listens (``order service listening on http://HOST:PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import JSON, Column, DateTime, Engine, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from examples.ecommerce.models import (
    ORDER_CREATED_TOPIC,
    ORDER_CREATED_TYPE,
    CreateOrder,
    OrderCreated,
)
from examples.ecommerce.runtime import database_engine, ensure_topics, relay_publisher
from strom.toolkit.events import Event
from strom.toolkit.outbox import Outbox, OutboxRelay

EVENT_SOURCE = "/ecommerce/order-service"
LISTENING_PREFIX = "order service listening on "
IDEMPOTENCY_HEADER = "Idempotency-Key"

metadata = MetaData()
orders_table = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("user_id", String(64), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # The client's Idempotency-Key: a request retried after a lost answer finds its order instead of
    # placing a second one.
    Column("request_key", String(255), nullable=True, unique=True),
    # The order as placed, in the same shape as its event: the API answers GET from it unchanged.
    Column("payload", JSON, nullable=False),
)
outbox = Outbox(metadata)


class OrderStore:
    """Orders and their outbox rows, in one database."""

    def __init__(self, engine: Engine, outbox: Outbox) -> None:
        self._sessions = sessionmaker(engine)
        self._outbox = outbox

    def create(self, request: CreateOrder, request_key: str | None = None) -> tuple[OrderCreated, bool]:
        """Insert the order and its ``order.created`` event in one transaction; returns the order and whether
        it is new. A ``request_key`` seen before returns that request's order, and inserts nothing."""
        if request_key is not None and (placed := self._by_request_key(request_key)) is not None:
            return placed, False
        order = OrderCreated(
            order_id=str(uuid.uuid4()),
            user_id=request.user_id,
            items=request.items,
            total_price=request.total_price(),
            created_at=datetime.now(UTC),
        )
        payload = order.model_dump(mode="json")
        event = Event(type=ORDER_CREATED_TYPE, source=EVENT_SOURCE, data=payload, subject=order.order_id)
        try:
            with self._sessions.begin() as session:
                session.execute(
                    insert(orders_table).values(
                        id=order.order_id,
                        user_id=order.user_id,
                        created_at=order.created_at,
                        request_key=request_key,
                        payload=payload,
                    )
                )
                self._add_event(session, order, event)
        except IntegrityError:
            # The same request, retried while the first attempt was still committing.
            if request_key is None or (placed := self._by_request_key(request_key)) is None:
                raise
            return placed, False
        return order, True

    def get(self, order_id: str) -> OrderCreated | None:
        with self._sessions() as session:
            payload = session.execute(
                select(orders_table.c.payload).where(orders_table.c.id == order_id)
            ).scalar_one_or_none()
        return None if payload is None else OrderCreated.model_validate(payload)

    def _by_request_key(self, request_key: str) -> OrderCreated | None:
        with self._sessions() as session:
            payload = session.execute(
                select(orders_table.c.payload).where(orders_table.c.request_key == request_key)
            ).scalar_one_or_none()
        return None if payload is None else OrderCreated.model_validate(payload)

    def _add_event(self, session: Session, order: OrderCreated, event: Event) -> None:
        self._outbox.add(
            session,
            topic=ORDER_CREATED_TOPIC,
            payload=event,
            aggregate_type="order",
            aggregate_id=order.order_id,
            key=order.order_id,
        )


def build_app(store: OrderStore) -> web.Application:
    """The HTTP API: ``POST /orders`` places an order (201; 200 with the first order when its
    ``Idempotency-Key`` was seen before), ``GET /orders/{id}`` reads one back."""

    async def create_order(request: web.Request) -> web.Response:
        try:
            body = CreateOrder.model_validate_json(await request.read())
        except ValidationError as exc:
            return web.json_response({"errors": json.loads(exc.json())}, status=400)
        order, created = await asyncio.to_thread(store.create, body, request.headers.get(IDEMPOTENCY_HEADER))
        return web.json_response(
            order.model_dump(mode="json"),
            status=201 if created else 200,
            headers={"Location": f"/orders/{order.order_id}"},
        )

    async def get_order(request: web.Request) -> web.Response:
        order = await asyncio.to_thread(store.get, request.match_info["order_id"])
        if order is None:
            return web.json_response({"error": "order not found"}, status=404)
        return web.json_response(order.model_dump(mode="json"))

    app = web.Application()
    app.router.add_post("/orders", create_order)
    app.router.add_get("/orders/{order_id}", get_order)
    return app


class OrderService:
    """The order service's parts, started and stopped together: database, outbox relay, HTTP API."""

    def __init__(self, bootstrap: str, db: str, *, host: str = "127.0.0.1", port: int = 8080) -> None:
        self.bootstrap = bootstrap
        self.host = host
        self.port = port
        self._engine = database_engine(db)
        metadata.create_all(self._engine)
        self.store = OrderStore(self._engine, outbox)
        self._publisher = relay_publisher(bootstrap, "order-service")
        self._relay = OutboxRelay(self._engine, self._publisher, outbox)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Start the relay and the API; returns the API's base URL."""
        await asyncio.to_thread(ensure_topics, self.bootstrap, [ORDER_CREATED_TOPIC])
        self._publisher.start()
        self._relay.start()
        self._runner = web.AppRunner(build_app(self.store), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def stop(self) -> None:
        """Stop taking orders, then the relay after its current round (rows it has not sent yet wait in the
        table for the next start)."""
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self._relay.stop)
        await asyncio.to_thread(self._publisher.close)
        self._engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.ecommerce.order_service", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    parser.add_argument("--db", required=True, help="SQLite file, or a SQLAlchemy URL")
    parser.add_argument("--host", default="127.0.0.1", help="address the HTTP API binds (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port; 0 picks a free one (default 8080)")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    service = OrderService(args.bootstrap, args.db, host=args.host, port=args.port)
    url = await service.start()
    print(f"{LISTENING_PREFIX}{url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
