"""Helpers shared by the tests."""

from __future__ import annotations

from typing import Any

from ontheway.orders.models import PlaceOrder


def order_body(
    restaurant: dict[str, Any], quantity: int = 1, tip: str = "2.00", **overrides: Any
) -> dict[str, Any]:
    """A valid order body: the first two items, delivered 300 m north of the restaurant."""
    body: dict[str, Any] = {
        "restaurant_id": restaurant["restaurant_id"],
        "items": [
            {"item_id": item["item_id"], "quantity": quantity} for item in restaurant["items"][:2]
        ],
        "delivery_location": {
            "lat": restaurant["lat"] + 0.0027,
            "lng": restaurant["lng"],
            "address": "1 Test St",
        },
        "tip": tip,
    }
    body.update(overrides)
    return body


def order_for(
    restaurant: dict[str, Any], quantity: int = 1, tip: str = "2.00", **overrides: Any
) -> PlaceOrder:
    """The same, as the validated command."""
    return PlaceOrder.model_validate(order_body(restaurant, quantity, tip, **overrides))
