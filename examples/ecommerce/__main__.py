"""Run the whole e-commerce flow with one command: ``python -m examples.ecommerce``.

A Strom broker embedded in this process, the order service's HTTP API and outbox relay, the payment service
and the notify service, each service with its own SQLite file under ``--data-dir``. Ctrl-C stops them all,
upstream first: the API stops taking orders, then each consumer commits what it handled; outbox rows not
yet published wait in their tables for the next start. For one process per service (to kill one, say), run
the service modules instead; README.md shows how.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from examples.ecommerce.external import POISON_SKU_PREFIX, NotificationPlatform, PaymentApi
from examples.ecommerce.models import ORDER_CREATED_TOPIC, PAY_COMPLETED_TOPIC
from examples.ecommerce.notify_service import NotifyService
from examples.ecommerce.order_service import OrderService
from examples.ecommerce.payment_service import PaymentService
from examples.ecommerce.runtime import ensure_topics
from strom.testing.embedded import EmbeddedBroker


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m examples.ecommerce", description=__doc__)
    parser.add_argument(
        "--data-dir", type=Path, default=Path("ecommerce-data"), help="default ./ecommerce-data"
    )
    parser.add_argument("--port", type=int, default=8080, help="HTTP port of the order API (default 8080)")
    parser.add_argument("--bootstrap", help="use this Kafka cluster instead of starting an embedded broker")
    parser.add_argument("--failure-rate", type=float, default=0.2, help="share of payment calls refused")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated payment failures")
    parser.add_argument(
        "--accept-poison", action="store_true", help=f"the payment API accepts {POISON_SKU_PREFIX} SKUs"
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    data_dir: Path = args.data_dir.resolve()
    broker = None if args.bootstrap else EmbeddedBroker(data_dir / "broker").start()
    bootstrap: str = args.bootstrap if broker is None else broker.bootstrap
    ensure_topics(bootstrap, [ORDER_CREATED_TOPIC, PAY_COMPLETED_TOPIC])
    payment_api = PaymentApi(
        data_dir / "payment-api.db",
        failure_rate=args.failure_rate,
        decline_sku_prefix=None if args.accept_poison else POISON_SKU_PREFIX,
        seed=args.seed,
    )
    platform = NotificationPlatform(data_dir / "notification-platform.db")
    orders = OrderService(bootstrap, str(data_dir / "orders.db"), port=args.port)
    payments = PaymentService(bootstrap, str(data_dir / "payments.db"), payment_api)
    notifications = NotifyService(bootstrap, str(data_dir / "notify.db"), platform)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await asyncio.to_thread(notifications.start)
        await asyncio.to_thread(payments.start)
        url = await orders.start()
        print(f"Kafka bootstrap: {bootstrap}; data in {data_dir}", flush=True)
        print(
            f"Order API listening on {url}  (POST {url}/orders, GET {url}/orders/<id>); Ctrl-C stops",
            flush=True,
        )
        await stop.wait()
    finally:
        print("stopping...", flush=True)
        await orders.stop()
        await asyncio.to_thread(payments.stop)
        await asyncio.to_thread(notifications.stop)
        payment_api.close()
        platform.close()
        if broker is not None:
            broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
