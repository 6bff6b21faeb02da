"""The notify service: tells the external platform about every paid order, once.

The seed's ``NotifyPayCompletedConsumer``: group ``notify-service`` on ``pay.completed``. The inbox claim and
the call to the platform share one transaction: the claim commits only after the platform accepted the
order, and a failed call rolls the claim back so the retry sends it again. The one window left — the
platform accepted, the process died before the commit — is closed by the order id the platform receives as
idempotency key: the redelivered event's call is acknowledged without a second delivery.

Run on its own: ``python -m examples.ecommerce.notify_service --bootstrap HOST:PORT --db notify.db
--platform-db platform.db``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.orm import Session, sessionmaker

from examples.ecommerce.external import NotificationPlatform
from examples.ecommerce.models import PAY_COMPLETED_TOPIC, PayCompleted
from examples.ecommerce.runtime import database_engine, ensure_topics
from strom.toolkit.consumer import ConsumerApp, Message, consumer
from strom.toolkit.inbox import Inbox
from strom.toolkit.retry import RetryPolicy

GROUP_ID = "notify-service"

metadata = MetaData()
inbox = Inbox(metadata)


class NotifyService:
    """The consumer of ``pay.completed`` that forwards each paid order to the notification platform."""

    def __init__(
        self,
        bootstrap: str,
        db: str,
        platform: NotificationPlatform,
        *,
        retry: RetryPolicy | None = None,
        consumer_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self._platform = platform
        self._engine = database_engine(db)
        metadata.create_all(self._engine)
        self._notify_once = inbox.handler(sessionmaker(self._engine), GROUP_ID, self._send_order_info)
        handler = consumer(PAY_COMPLETED_TOPIC, group_id=GROUP_ID, model=PayCompleted)(self.handle)
        self._app = ConsumerApp(
            {"bootstrap.servers": bootstrap, **(consumer_config or {})},
            consumers=[handler],
            retry=retry or RetryPolicy(),
        )

    def handle(self, message: Message[PayCompleted]) -> None:
        self._notify_once(message)

    def _send_order_info(self, message: Message[PayCompleted], _session: Session) -> None:
        paid = message.value
        self._platform.send_order_info(paid.order_id, paid.model_dump(mode="json"))

    def start(self) -> None:
        """Consume on a background thread (beside other services in one process)."""
        ensure_topics(self.bootstrap, [PAY_COMPLETED_TOPIC])
        self._app.start()

    def stop(self) -> None:
        self._app.stop()
        self._engine.dispose()

    def run(self) -> None:
        """Consume on the main thread until SIGTERM or SIGINT, then stop cleanly; fatal errors propagate."""
        ensure_topics(self.bootstrap, [PAY_COMPLETED_TOPIC])
        try:
            self._app.run()
        finally:
            self._engine.dispose()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.ecommerce.notify_service", description=__doc__)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers, HOST:PORT[,...]")
    parser.add_argument("--db", required=True, help="SQLite file, or a SQLAlchemy URL")
    parser.add_argument("--platform-db", required=True, help="SQLite file of the simulated platform")
    parser.add_argument(
        "--instance-id", help="group.instance.id: a restart takes over the old member's share"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    platform = NotificationPlatform(args.platform_db)
    config = {"group.instance.id": args.instance_id} if args.instance_id else {}
    service = NotifyService(args.bootstrap, args.db, platform, consumer_config=config)
    print(f"notify service consuming {PAY_COMPLETED_TOPIC} as {GROUP_ID}", flush=True)
    try:
        service.run()
    finally:
        platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
