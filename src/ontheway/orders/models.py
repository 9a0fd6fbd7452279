"""The shapes of orders at the edge: validated input (commands) and the API's order view."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from ontheway.regions import Latitude, Longitude

MAX_LINES = 30
MAX_QUANTITY = 50

Ident = Annotated[
    str, StringConstraints(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.:-]+$")
]


class OrderLine(BaseModel):
    """One line of an order: an item of the restaurant's menu and how many."""

    model_config = ConfigDict(extra="forbid")
    item_id: Ident
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class DeliveryLocation(BaseModel):
    """Where the order goes."""

    model_config = ConfigDict(extra="forbid")
    lat: Latitude
    lng: Longitude
    address: str = Field("", max_length=500)


class PlaceOrder(BaseModel):
    """The body of ``POST /api/orders``."""

    model_config = ConfigDict(extra="forbid")
    restaurant_id: Ident
    items: list[OrderLine] = Field(min_length=1, max_length=MAX_LINES)
    delivery_location: DeliveryLocation
    tip: Decimal = Field(Decimal("0.00"), ge=0, le=500, max_digits=5, decimal_places=2)


class ChangeOrder(BaseModel):
    """The body of ``PATCH /api/orders/{id}``: new items, a new address, or both."""

    model_config = ConfigDict(extra="forbid")
    items: list[OrderLine] | None = Field(None, min_length=1, max_length=MAX_LINES)
    delivery_location: DeliveryLocation | None = None

    @model_validator(mode="after")
    def _something_changes(self) -> ChangeOrder:
        if self.items is None and self.delivery_location is None:
            raise ValueError("give items, delivery_location or both")
        return self


class CancelOrder(BaseModel):
    """The body of ``POST /api/orders/{id}/cancel`` (optional)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=500)


class AssignDriver(BaseModel):
    """The body of the ops command that assigns a driver by hand."""

    model_config = ConfigDict(extra="forbid")
    driver_id: Ident


class ConfirmOrder(BaseModel):
    """The body of ``POST /api/orders/{id}/confirm``."""

    model_config = ConfigDict(extra="forbid")
    prep_time_s: int = Field(ge=0, le=4 * 3600)


def money_str(value: Decimal | None) -> str | None:
    """Money as a string with two decimals (API.md)."""
    return None if value is None else f"{value:.2f}"


def iso(value: datetime | None) -> str | None:
    """A timestamp as RFC 3339 in UTC."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def order_view(row: dict[str, Any]) -> dict[str, Any]:
    """The order as API.md shows it, from a row of ``orders`` (+ payment status)."""
    return {
        "order_id": row["order_id"],
        "region": row["region"],
        "customer_id": row["customer_id"],
        "restaurant_id": row["restaurant_id"],
        "items": row["items"],
        "subtotal": money_str(row["subtotal"]),
        "delivery_fee": money_str(row["delivery_fee"]),
        "tip": money_str(row["tip"]),
        "total": money_str(row["total"]),
        "status": row["status"],
        "assigned_driver_id": row["driver_id"],
        "customer_location": {
            "lat": row["customer_lat"],
            "lng": row["customer_lng"],
            "address": row.get("delivery_address") or "",
        },
        "restaurant_location": {"lat": row["restaurant_lat"], "lng": row["restaurant_lng"]},
        "created_at": iso(row["created_at"]),
        "estimated_delivery": iso(row["estimated_delivery"]),
        "pickup_time": iso(row["pickup_time"]),
        "delivered_at": iso(row["delivered_at"]),
        "distance_m": row["distance_m"],
        "payment_status": row.get("payment_status"),
    }
