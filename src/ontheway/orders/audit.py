"""Rebuilding an order's state at any moment from its events alone. Pure: no I/O.

``ORDER_PLACED`` carries the whole order as placed; each later event carries what it
changed, so folding the events up to a time gives the order as it was then.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ontheway.orders.lifecycle import EventType, Status, transition

# The fields of the order view that events may change.
STATE_FIELDS = (
    "status",
    "assigned_driver_id",
    "pickup_time",
    "delivered_at",
    "estimated_delivery",
    "items",
    "subtotal",
    "delivery_fee",
    "tip",
    "total",
    "customer_location",
    "payment_status",
    "distance_m",
)


def rebuild(
    events: Iterable[dict[str, Any]],
    at: datetime | None = None,
) -> dict[str, Any] | None:
    """The order's state after the events up to ``at`` (all when None); None before placing."""
    state: dict[str, Any] | None = None
    for event in events:
        if at is not None and event["ts"] > at:
            break
        kind = EventType(event["event_type"])
        data = event["data"]
        if kind is EventType.ORDER_PLACED:
            state = {
                key: data["order"].get(key)
                for key in (
                    "order_id",
                    "region",
                    "customer_id",
                    "restaurant_id",
                    "restaurant_location",
                    "created_at",
                    *STATE_FIELDS,
                )
            }
            continue
        if state is None:
            raise ValueError(f"event {kind} before ORDER_PLACED")
        new_status = Status(state["status"])
        if kind in (
            EventType.DRIVER_ASSIGNED,
            EventType.DRIVER_ARRIVED_RESTAURANT,
            EventType.ORDER_PICKED_UP,
            EventType.ORDER_DELIVERED,
            EventType.ORDER_CANCELLED,
            EventType.DRIVER_UNAVAILABLE,
        ):
            new_status = transition(new_status, kind)
        state["status"] = new_status.value
        for key, value in data.get("changes", {}).items():
            state[key] = value
    return state
