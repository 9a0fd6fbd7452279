"""What an order event tells whom. Pure: no I/O.

    ORDER_PLACED        -> restaurant (new order)
    DRIVER_ASSIGNED     -> customer (your driver, or a new driver after DRIVER_UNAVAILABLE;
                           with the estimate) and the driver (a new delivery)
    DRIVER_UNAVAILABLE  -> customer (we are finding a new driver)
    NO_DRIVER_FOUND     -> customer (still looking)
    ORDER_PICKED_UP     -> customer (on its way, with the estimate)
    ORDER_DELIVERED     -> customer (delivered; the ratings consumer asks for a rating)
    ORDER_CANCELLED     -> customer, restaurant and the driver if there was one
    ROUTE_UPDATED       -> customer (new estimate)
    DRIVER_OFFERED      -> the driver offered the order (a record of the offer)
    ORDER_FLAGGED       -> nobody: operations read ``GET /api/ops/flags``

Other events (confirmed, ready, changed, offers declined or expired, rated) tell nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ontheway.orders.lifecycle import EventType


@dataclass(frozen=True)
class OrderFacts:
    """What the messages need to know about the order when the event is handled."""

    order_id: str
    customer_id: str
    restaurant_id: str
    driver_id: str | None = None
    driver_name: str | None = None
    estimated_delivery: str | None = None  # RFC 3339, UTC
    reassigned: bool = False  # the order lost a driver (DRIVER_UNAVAILABLE) before


@dataclass(frozen=True)
class Notice:
    """One notification for one recipient (not yet stored)."""

    recipient_id: str
    kind: str
    title: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)


Builder = Callable[[Mapping[str, Any], OrderFacts], list[Notice]]


def eta_text(estimated_delivery: str | None) -> str:
    """`` arriving by 18:42 UTC`` for an estimate, empty without one."""
    if not estimated_delivery:
        return ""
    try:
        when = datetime.fromisoformat(estimated_delivery.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return f", arriving by {when:%H:%M} UTC"


def _eta(data: Mapping[str, Any], facts: OrderFacts) -> str | None:
    found = data.get("estimated_delivery") or data.get("changes", {}).get("estimated_delivery")
    return str(found) if found else facts.estimated_delivery


def _placed(data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
    lines = data.get("order", {}).get("items") or []
    count = sum(int(line.get("quantity", 1)) for line in lines)
    return [
        Notice(
            facts.restaurant_id, "new_order", "New order",
            f"Order {facts.order_id} ({count} item{'s' if count != 1 else ''}) is waiting "
            "for you to confirm it.",
            {"items": count},
        )
    ]  # fmt: skip


def _assigned(data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
    driver = data.get("changes", {}).get("assigned_driver_id") or facts.driver_id
    if not driver:
        return []
    name = facts.driver_name or driver
    eta = _eta(data, facts)
    about = {"driver_id": driver, "driver_name": name, "estimated_delivery": eta}
    if facts.reassigned:
        customer = Notice(
            facts.customer_id, "new_driver", "New driver",
            f"We found you a new driver: {name}{eta_text(eta)}.", about,
        )  # fmt: skip
    else:
        customer = Notice(
            facts.customer_id, "driver_assigned", "Driver assigned",
            f"Your driver is {name}{eta_text(eta)}.", about,
        )  # fmt: skip
    delivery = Notice(
        driver, "order_assigned", "New delivery",
        f"Order {facts.order_id} is yours: pick it up at the restaurant.",
        {"restaurant_id": facts.restaurant_id},
    )  # fmt: skip
    return [customer, delivery]


def _customer(kind: str, title: str, body: str, *, with_eta: bool = False) -> Builder:
    def build(data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
        eta = _eta(data, facts) if with_eta else None
        extra = {"estimated_delivery": eta} if with_eta else {}
        return [Notice(facts.customer_id, kind, title, body.format(eta=eta_text(eta)), extra)]

    return build


def _cancelled(data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
    about = {"reason": data.get("reason", ""), "by": data.get("by")}
    out = [
        Notice(facts.customer_id, "order_cancelled", "Order cancelled",
               f"Your order {facts.order_id} was cancelled.", about),
        Notice(facts.restaurant_id, "order_cancelled", "Order cancelled",
               f"Order {facts.order_id} was cancelled: do not prepare it.", about),
    ]  # fmt: skip
    if facts.driver_id:
        out.append(
            Notice(facts.driver_id, "order_cancelled", "Order cancelled",
                   f"Order {facts.order_id} was cancelled: no need to pick it up.", about)
        )  # fmt: skip
    return out


def _offered(data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
    driver = data.get("driver_id")
    if not driver:
        return []
    return [
        Notice(
            str(driver), "offer", "Delivery offered",
            f"You were offered order {facts.order_id}.",
            {"expires_at": data.get("expires_at"), "restaurant_id": facts.restaurant_id},
        )
    ]  # fmt: skip


BUILDERS: dict[str, Builder] = {
    EventType.ORDER_PLACED.value: _placed,
    EventType.DRIVER_ASSIGNED.value: _assigned,
    EventType.DRIVER_UNAVAILABLE.value: _customer(
        "finding_new_driver", "Finding a new driver",
        "Your driver is no longer available; we are finding you a new one.",
    ),
    EventType.NO_DRIVER_FOUND.value: _customer(
        "no_driver_found", "Still looking for a driver",
        "No driver is free near the restaurant yet; we keep looking.",
    ),
    EventType.ORDER_PICKED_UP.value: _customer(
        "picked_up", "On its way", "Your order is on its way{eta}.", with_eta=True
    ),
    EventType.ORDER_DELIVERED.value: _customer(
        "delivered", "Delivered", "Your order was delivered. Enjoy!"
    ),
    EventType.ORDER_CANCELLED.value: _cancelled,
    EventType.ROUTE_UPDATED.value: _customer(
        "eta_updated", "New estimate", "Your order's estimate changed{eta}.", with_eta=True
    ),
    EventType.DRIVER_OFFERED.value: _offered,
}  # fmt: skip


def notices_for(event_type: str, data: Mapping[str, Any], facts: OrderFacts) -> list[Notice]:
    """The notifications an event gives, one per recipient (none for most event types)."""
    build = BUILDERS.get(event_type)
    return build(data, facts) if build is not None else []


def rate_request(facts: OrderFacts) -> Notice:
    """Ask the customer of a delivered order to rate it."""
    name = facts.driver_name or facts.driver_id or "your driver"
    return Notice(
        facts.customer_id, "rate_order", "Rate your delivery",
        f"How was your delivery with {name}? Rate it from 1 to 5.",
        {"driver_id": facts.driver_id, "rate_path": f"/api/orders/{facts.order_id}/rating"},
    )  # fmt: skip
