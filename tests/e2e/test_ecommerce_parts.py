"""The example's pieces that need no broker: its event models and its simulated external systems."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from examples.ecommerce.external import (
    NotificationPlatform,
    PaymentApi,
    PaymentDeclined,
    PaymentTimeout,
    PaymentUnavailable,
)
from examples.ecommerce.models import CreateOrder, OrderCreated, OrderItem

ITEMS = [
    OrderItem(sku="SKU-1", qty=2, price=Decimal("9.99")),
    OrderItem(sku="SKU-2", qty=1, price=Decimal("5")),
]


def test_order_created_round_trips_through_json() -> None:
    order = OrderCreated(
        order_id="o-1", user_id="u-1", items=ITEMS, total_price=Decimal("24.98"), created_at=datetime.now(UTC)
    )
    assert OrderCreated.model_validate_json(order.model_dump_json()) == order


def test_an_order_whose_total_disagrees_with_its_items_is_invalid() -> None:
    with pytest.raises(ValidationError, match="differs from the items' sum"):
        OrderCreated(
            order_id="o-1",
            user_id="u-1",
            items=ITEMS,
            total_price=Decimal("1.00"),
            created_at=datetime.now(UTC),
        )


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "u-1", "items": []},
        {"user_id": "u-1", "items": [{"sku": "A", "qty": 0, "price": "1.00"}]},
        {"user_id": "u-1", "items": [{"sku": "A", "qty": 1, "price": "1.001"}]},
        {"user_id": "u-1", "items": [{"sku": "A", "qty": 1, "price": "1.00"}], "coupon": "FREE"},
    ],
)
def test_create_order_rejects_bad_requests(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateOrder.model_validate(body)


def test_create_order_totals_its_items() -> None:
    assert CreateOrder(user_id="u-1", items=ITEMS).total_price() == Decimal("24.98")


def test_payment_api_charges_an_order_once_across_restarts(tmp_path: Path) -> None:
    first = PaymentApi(tmp_path / "payments.db")
    receipt = first.charge("o-1", Decimal("10.00"), ["SKU-1"])
    first.close()
    second = PaymentApi(tmp_path / "payments.db")
    assert second.charge("o-1", Decimal("10.00"), ["SKU-1"]) == receipt
    assert list(second.charges()) == ["o-1"]


def test_payment_api_declines_poison_until_told_to_accept_it(tmp_path: Path) -> None:
    api = PaymentApi(tmp_path / "payments.db")
    with pytest.raises(PaymentDeclined):
        api.charge("o-1", Decimal("10.00"), ["SKU-1", "POISON-1"])
    api.decline_sku_prefix = None
    assert api.charge("o-1", Decimal("10.00"), ["SKU-1", "POISON-1"]).order_id == "o-1"


def test_payment_api_failures_follow_the_seed(tmp_path: Path) -> None:
    def outcomes(seed: int) -> list[str]:
        api = PaymentApi(
            tmp_path / f"payments-{seed}.db", failure_rate=0.3, timeout_rate=0.2, timeout_s=0, seed=seed
        )
        results = []
        for number in range(50):
            try:
                api.charge(f"o-{number}", Decimal("1.00"), ["SKU-1"])
                results.append("ok")
            except PaymentUnavailable:
                results.append("unavailable")
            except PaymentTimeout:
                results.append("timeout")
        return results

    assert outcomes(7) == outcomes(7)
    assert {"ok", "unavailable", "timeout"} <= set(outcomes(7))


def test_a_timed_out_charge_went_through(tmp_path: Path) -> None:
    api = PaymentApi(tmp_path / "payments.db", timeout_rate=1.0, timeout_s=0)
    with pytest.raises(PaymentTimeout):
        api.charge("o-1", Decimal("3.00"), ["SKU-1"])
    assert api.charges()["o-1"].amount == Decimal("3.00")


def test_notification_platform_delivers_each_order_once(tmp_path: Path) -> None:
    platform = NotificationPlatform(tmp_path / "platform.db")
    assert platform.send_order_info("o-1", {"amount": "1.00"})
    assert not platform.send_order_info("o-1", {"amount": "1.00"})
    assert platform.send_order_info("o-2", {"amount": "2.00"})
    assert platform.requests() == ["o-1", "o-1", "o-2"]
    assert {order_id: d.payload for order_id, d in platform.deliveries().items()} == {
        "o-1": {"amount": "1.00"},
        "o-2": {"amount": "2.00"},
    }
