"""The events and request bodies of the e-commerce flow, as pydantic models.

``OrderCreated`` is a *full-payload* event: it carries everything the payment and notification services
need, so they never call back into the order service and a replay (from the dead-letter topic, say) gives
the same result as the first delivery. ``OrderCreatedRef`` is the *zero-payload* alternative, only the id;
README.md weighs the two.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

ORDER_CREATED_TOPIC = "order.created"
PAY_COMPLETED_TOPIC = "pay.completed"
ORDER_CREATED_DLT = f"{ORDER_CREATED_TOPIC}.DLT"
# CloudEvents ``type`` of each event; the topic names follow the seed, the types say who owns the event.
ORDER_CREATED_TYPE = "com.example.ecommerce.order.created"
PAY_COMPLETED_TYPE = "com.example.ecommerce.pay.completed"

Money = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)]


class _Frozen(BaseModel):
    """Events are facts: immutable once made, and unknown fields are an error rather than silently lost."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class OrderItem(_Frozen):
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(gt=0, le=10_000)
    price: Money


class CreateOrder(_Frozen):
    """The body of ``POST /orders``."""

    user_id: str = Field(min_length=1, max_length=64)
    items: list[OrderItem] = Field(min_length=1, max_length=100)

    def total_price(self) -> Decimal:
        return sum((item.price * item.qty for item in self.items), Decimal("0"))


class OrderCreated(_Frozen):
    """Full payload of ``order.created``: the order as it was when it was placed."""

    order_id: str
    user_id: str
    items: list[OrderItem] = Field(min_length=1)
    total_price: Money
    created_at: datetime

    @model_validator(mode="after")
    def _total_matches_items(self) -> OrderCreated:
        # A total that disagrees with the items is corrupt data: no retry can fix it, so the consumer's
        # validation sends it straight to the dead-letter topic instead of charging a wrong amount.
        expected = sum((item.price * item.qty for item in self.items), Decimal("0"))
        if expected != self.total_price:
            raise ValueError(f"total_price {self.total_price} differs from the items' sum {expected}")
        return self


class OrderCreatedRef(_Frozen):
    """Zero-payload form of ``order.created``: consumers fetch the order (``GET /orders/{id}``) themselves."""

    order_id: str


class PayCompleted(_Frozen):
    """Full payload of ``pay.completed``: the payment and the order it paid, for the notification."""

    order_id: str
    payment_id: str
    user_id: str
    items: list[OrderItem]
    amount: Money
    paid_at: datetime
