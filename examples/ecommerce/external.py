"""Simulated external systems: a payment API and a notification platform.

Both keep their state in their own SQLite file, as a real provider keeps it on its side: the services may
crash and restart, the provider remembers. Both take an idempotency key (the order id), as real payment and
messaging APIs do, because a call can succeed on the provider's side while its answer is lost (a timeout, or
the caller killed before it committed): the retry must then not charge or notify twice.

The payment API fails on purpose: a configurable share of calls is refused as "temporarily unavailable" and
another share times out *after* charging; both are worth retrying. Orders with a SKU under
``decline_sku_prefix`` are declined for good — the example's poison orders.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

POISON_SKU_PREFIX = "POISON-"
# A locked SQLite file (another process writing) is waited for rather than failed on.
_BUSY_TIMEOUT_S = 30.0


class PaymentUnavailable(Exception):
    """The payment API refused the call for now (a 503); nothing was charged."""


class PaymentTimeout(TimeoutError):
    """No answer in time: the charge may or may not have happened (here it did)."""


class PaymentDeclined(Exception):
    """The payment API refuses this order for good; retrying never helps."""


@dataclass(frozen=True)
class Receipt:
    payment_id: str
    order_id: str
    amount: Decimal
    charged_at: datetime


@dataclass(frozen=True)
class Delivery:
    order_id: str
    payload: dict[str, Any]
    delivered_at: datetime


def _connect(path: Path, schema: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.executescript(schema)
    return connection


class PaymentApi:
    """The payment provider. Thread-safe; ``seed`` makes the failures of one process repeatable."""

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS charges (
            idempotency_key TEXT PRIMARY KEY,
            payment_id TEXT NOT NULL,
            amount TEXT NOT NULL,
            charged_at TEXT NOT NULL
        );
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        failure_rate: float = 0.0,
        timeout_rate: float = 0.0,
        timeout_s: float = 0.05,
        decline_sku_prefix: str | None = POISON_SKU_PREFIX,
        seed: int = 0,
    ) -> None:
        self._connection = _connect(Path(db_path), self._SCHEMA)
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.failure_rate = failure_rate
        self.timeout_rate = timeout_rate
        self.timeout_s = timeout_s
        self.decline_sku_prefix = decline_sku_prefix

    def charge(self, order_id: str, amount: Decimal, skus: list[str]) -> Receipt:
        """Charge ``amount`` for ``order_id`` once; the same order id returns the first charge again."""
        if self.decline_sku_prefix and any(sku.startswith(self.decline_sku_prefix) for sku in skus):
            raise PaymentDeclined(f"order {order_id}: SKU not accepted by the payment provider")
        with self._lock:
            draw = self._random.random()
        if draw < self.failure_rate:
            raise PaymentUnavailable(f"order {order_id}: payment API temporarily unavailable")
        receipt = self._charge_once(order_id, amount)
        if draw < self.failure_rate + self.timeout_rate:
            time.sleep(self.timeout_s)
            raise PaymentTimeout(f"order {order_id}: no answer from the payment API in {self.timeout_s:g} s")
        return receipt

    def charges(self) -> dict[str, Receipt]:
        """Every charge made, by order id."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT idempotency_key, payment_id, amount, charged_at FROM charges"
            ).fetchall()
        return {row[0]: _receipt(row) for row in rows}

    def close(self) -> None:
        self._connection.close()

    def _charge_once(self, order_id: str, amount: Decimal) -> Receipt:
        charged_at = datetime.now(UTC).isoformat()
        with self._lock:
            self._connection.execute(
                "INSERT INTO charges VALUES (?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (order_id, str(uuid.uuid4()), str(amount), charged_at),
            )
            row = self._connection.execute(
                "SELECT idempotency_key, payment_id, amount, charged_at FROM charges"
                " WHERE idempotency_key = ?",
                (order_id,),
            ).fetchone()
        return _receipt(row)


def _receipt(row: tuple[str, str, str, str]) -> Receipt:
    order_id, payment_id, amount, charged_at = row
    return Receipt(payment_id, order_id, Decimal(amount), datetime.fromisoformat(charged_at))


class NotificationPlatform:
    """The external platform orders are announced to (the seed's ``sendOrderInfoToExtPlatform``).

    It records every request it receives and every order it delivered; a repeated key is acknowledged but
    not delivered again. ``requests()`` beyond ``deliveries()`` are the repeats that reached it.
    """

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS requests (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            idempotency_key TEXT NOT NULL,
            received_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS deliveries (
            idempotency_key TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            delivered_at TEXT NOT NULL
        );
    """

    def __init__(self, db_path: str | Path) -> None:
        self._connection = _connect(Path(db_path), self._SCHEMA)
        self._lock = threading.Lock()

    def send_order_info(self, order_id: str, payload: dict[str, Any]) -> bool:
        """Deliver ``payload`` for ``order_id``; False when that order was delivered before."""
        now = datetime.now(UTC).isoformat()
        with self._lock, self._connection:
            self._connection.execute("BEGIN IMMEDIATE")
            self._connection.execute(
                "INSERT INTO requests (idempotency_key, received_at) VALUES (?, ?)", (order_id, now)
            )
            cursor = self._connection.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (order_id, json.dumps(payload, sort_keys=True), now),
            )
            return cursor.rowcount == 1

    def deliveries(self) -> dict[str, Delivery]:
        """Every order delivered, by order id."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT idempotency_key, payload, delivered_at FROM deliveries"
            ).fetchall()
        return {
            key: Delivery(key, json.loads(payload), datetime.fromisoformat(at)) for key, payload, at in rows
        }

    def requests(self) -> list[str]:
        """The order id of every request received, repeats included, in arrival order."""
        with self._lock:
            rows = self._connection.execute("SELECT idempotency_key FROM requests ORDER BY seq").fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self._connection.close()
