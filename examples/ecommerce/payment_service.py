"""The payment service: pays each ``order.created`` once and announces it on ``pay.completed``.

Exactly once per order, although Kafka delivers at least once and the relay may publish an event twice:

- the payment API is called with the order id as idempotency key, so a repeated call (after a timeout, or a
  crash before the commit below) returns the first charge instead of charging again;
- the inbox claim of the event, the payment row and the ``pay.completed`` outbox row are written in ONE
  transaction, so a redelivered event finds its claim and is skipped, and a payment is recorded if and only
  if its event will be published.

Failures are sorted the seed's way: an unavailable or slow payment API is retried (in process, then through
the retry topics), a declined order or an invalid event goes to ``order.created.DLT`` with the reason in its
headers, for an operator to fix the cause and replay it.

Run on its own: ``python -m examples.ecommerce.payment_service --bootstrap HOST:PORT --db payments.db
--payment-api-db payment-api.db``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, insert
from sqlalchemy.orm import sessionmaker

from examples.ecommerce.external import POISON_SKU_PREFIX, PaymentApi, PaymentDeclined
from examples.ecommerce.models import (
    ORDER_CREATED_TOPIC,
    PAY_COMPLETED_TOPIC,
    PAY_COMPLETED_TYPE,
    OrderCreated,
    PayCompleted,
)
from examples.ecommerce.runtime import database_engine, ensure_topics, relay_publisher
from strom.toolkit.consumer import ConsumerApp, Message, consumer
from strom.toolkit.events import Event
from strom.toolkit.inbox import Inbox, cloudevent_id
from strom.toolkit.outbox import Outbox, OutboxRelay
from strom.toolkit.retry import NonRetryableError, RetryPolicy

GROUP_ID = "payment-service"
EVENT_SOURCE = "/ecommerce/payment-service"

metadata = MetaData()
payments_table = Table(
    "payments",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("payment_id", String(36), nullable=False, unique=True),
    Column("amount", String(32), nullable=False),
    Column("paid_at", DateTime(timezone=True), nullable=False),
)
inbox = Inbox(metadata)
outbox = Outbox(metadata)


class PaymentService:
    """The consumer of ``order.created`` and the relay of its ``pay.completed`` events."""

    def __init__(
        self,
        bootstrap: str,
        db: str,
        payment_api: PaymentApi,
        *,
        retry: RetryPolicy | None = None,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._payment_api = payment_api
        self._engine = database_engine(db)
        self._sessions = sessionmaker(self._engine)
        metadata.create_all(self._engine)
        self._publisher = relay_publisher(bootstrap, GROUP_ID)
        self._relay = OutboxRelay(self._engine, self._publisher, outbox)
        handler = consumer(ORDER_CREATED_TOPIC, group_id=GROUP_ID, model=OrderCreated)(self.handle)
        self._app = ConsumerApp(
            {"bootstrap.servers": bootstrap, **(consumer_config or {})},
            consumers=[handler],
            retry=retry or RetryPolicy(),
        )

    def handle(self, message: Message[OrderCreated]) -> None:
        """Charge the order (idempotently) and record payment and event in one transaction."""
        order = message.value
        event_id = cloudevent_id(message)
        with self._sessions() as session:
            if inbox.is_processed(session, GROUP_ID, event_id):
                return
        try:
            receipt = self._payment_api.charge(
                order.order_id, order.total_price, [item.sku for item in order.items]
            )
        except PaymentDeclined as exc:
            raise NonRetryableError(str(exc)) from exc
        paid = PayCompleted(
            order_id=order.order_id,
            payment_id=receipt.payment_id,
            user_id=order.user_id,
            items=order.items,
            amount=receipt.amount,
            paid_at=datetime.now(UTC),
        )
        event = Event(
            type=PAY_COMPLETED_TYPE,
            source=EVENT_SOURCE,
            data=paid.model_dump(mode="json"),
            subject=order.order_id,
        )
        with self._sessions.begin() as session:
            if not inbox.claim(session, GROUP_ID, event_id):
                return
            session.execute(
                insert(payments_table).values(
                    order_id=paid.order_id,
                    payment_id=paid.payment_id,
                    amount=str(paid.amount),
                    paid_at=paid.paid_at,
                )
            )
            outbox.add(
                session,
                topic=PAY_COMPLETED_TOPIC,
                payload=event,
                aggregate_type="order",
                aggregate_id=order.order_id,
                key=order.order_id,
            )

    def start(self) -> None:
        """Consume and relay on background threads (beside other services in one process)."""
        self._start_relay()
        self._app.start()

    def stop(self) -> None:
        """Stop consuming first (committing what was handled), then the relay after its current round."""
        self._app.stop()
        self._stop_relay()

    def run(self) -> None:
        """Consume on the main thread until SIGTERM or SIGINT, then stop cleanly; fatal errors propagate."""
        self._start_relay()
        try:
            self._app.run()
        finally:
            self._stop_relay()

    def _start_relay(self) -> None:
        ensure_topics(self.bootstrap, [ORDER_CREATED_TOPIC, PAY_COMPLETED_TOPIC])
        self._publisher.start()
        self._relay.start()

    def _stop_relay(self) -> None:
        self._relay.stop()
        self._publisher.close()
        self._engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.ecommerce.payment_service", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    parser.add_argument("--db", required=True, help="SQLite file, or a SQLAlchemy URL")
    parser.add_argument("--payment-api-db", required=True, help="SQLite file of the simulated payment API")
    parser.add_argument(
        "--failure-rate", type=float, default=0.2, help="share of calls refused (default 0.2)"
    )
    parser.add_argument("--timeout-rate", type=float, default=0.02, help="share of calls timing out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated failures")
    parser.add_argument(
        "--accept-poison",
        action="store_true",
        help="the payment API accepts the POISON- SKUs it otherwise declines (the cause, fixed)",
    )
    parser.add_argument(
        "--instance-id", help="group.instance.id: a restart takes over the old member's share"
    )
    parser.add_argument("--attempts", type=int, default=3, help="in-process tries per delivery (default 3)")
    parser.add_argument("--backoff-s", type=float, default=0.1, help="first in-process backoff (default 0.1)")
    parser.add_argument(
        "--retry-delays",
        type=_delays,
        default=(1.0, 5.0),
        help="delays of the retry topics in seconds, comma-separated (default 1,5)",
    )
    return parser.parse_args(argv)


def _delays(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    payment_api = PaymentApi(
        args.payment_api_db,
        failure_rate=args.failure_rate,
        timeout_rate=args.timeout_rate,
        decline_sku_prefix=None if args.accept_poison else POISON_SKU_PREFIX,
        seed=args.seed,
    )
    config = {"group.instance.id": args.instance_id} if args.instance_id else {}
    retry = RetryPolicy(
        attempts=args.attempts, backoff_s=args.backoff_s, retry_topic_delays_s=args.retry_delays
    )
    service = PaymentService(args.bootstrap, args.db, payment_api, retry=retry, consumer_config=config)
    print(f"payment service consuming {ORDER_CREATED_TOPIC} as {GROUP_ID}", flush=True)
    try:
        service.run()
    finally:
        payment_api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
