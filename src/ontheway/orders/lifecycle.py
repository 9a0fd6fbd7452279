"""The order lifecycle as a state machine. Pure: no I/O.

    searching_driver ─► driver_assigned ─► driver_at_restaurant ─► picked_up ─► delivered
          ▲                  │                    │
          └── searching_driver_again ◄────────────┘ (driver drops out before pickup)
    cancelled: from any state before pickup.

A driver lost after pickup has the food: the order is not searched again but flagged for
operations (ORDER_FLAGGED, see fleet/recorder.py).

Each command names the state(s) it may start from; the database update is conditional on
that state (``WHERE status = <expected>``), so a lost race changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ontheway.errors import Conflict


class Status(StrEnum):
    """The statuses of API.md."""

    SEARCHING_DRIVER = "searching_driver"
    DRIVER_ASSIGNED = "driver_assigned"
    DRIVER_AT_RESTAURANT = "driver_at_restaurant"
    PICKED_UP = "picked_up"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    SEARCHING_DRIVER_AGAIN = "searching_driver_again"


class EventType(StrEnum):
    """Event types of ``order_events``; the first seven change the status."""

    ORDER_PLACED = "ORDER_PLACED"
    DRIVER_ASSIGNED = "DRIVER_ASSIGNED"
    DRIVER_ARRIVED_RESTAURANT = "DRIVER_ARRIVED_RESTAURANT"
    ORDER_PICKED_UP = "ORDER_PICKED_UP"
    ORDER_DELIVERED = "ORDER_DELIVERED"
    ORDER_CANCELLED = "ORDER_CANCELLED"
    DRIVER_UNAVAILABLE = "DRIVER_UNAVAILABLE"
    ORDER_CONFIRMED = "ORDER_CONFIRMED"
    ORDER_READY = "ORDER_READY"
    ORDER_CHANGED = "ORDER_CHANGED"
    ROUTE_UPDATED = "ROUTE_UPDATED"
    NO_DRIVER_FOUND = "NO_DRIVER_FOUND"
    # Offers: a driver is offered the order, and declines it or lets it expire.
    DRIVER_OFFERED = "DRIVER_OFFERED"
    OFFER_DECLINED = "OFFER_DECLINED"
    OFFER_EXPIRED = "OFFER_EXPIRED"
    # The customer rated the delivery (after it was delivered).
    ORDER_RATED = "ORDER_RATED"
    # Flagged for operations (e.g. the driver vanished with the food in the car).
    ORDER_FLAGGED = "ORDER_FLAGGED"


ACTIVE = frozenset(Status) - {Status.DELIVERED, Status.CANCELLED}
BEFORE_PICKUP = frozenset(
    {
        Status.SEARCHING_DRIVER,
        Status.SEARCHING_DRIVER_AGAIN,
        Status.DRIVER_ASSIGNED,
        Status.DRIVER_AT_RESTAURANT,
    }
)
WITH_DRIVER = frozenset({Status.DRIVER_ASSIGNED, Status.DRIVER_AT_RESTAURANT, Status.PICKED_UP})


@dataclass(frozen=True)
class Transition:
    """A status-changing event: the states it may start from and the state it leads to."""

    event: EventType
    sources: frozenset[Status]
    target: Status


TRANSITIONS: dict[EventType, Transition] = {
    t.event: t
    for t in (
        Transition(
            EventType.DRIVER_ASSIGNED,
            frozenset({Status.SEARCHING_DRIVER, Status.SEARCHING_DRIVER_AGAIN}),
            Status.DRIVER_ASSIGNED,
        ),
        Transition(
            EventType.DRIVER_ARRIVED_RESTAURANT,
            frozenset({Status.DRIVER_ASSIGNED}),
            Status.DRIVER_AT_RESTAURANT,
        ),
        Transition(
            EventType.ORDER_PICKED_UP, frozenset({Status.DRIVER_AT_RESTAURANT}), Status.PICKED_UP
        ),
        Transition(EventType.ORDER_DELIVERED, frozenset({Status.PICKED_UP}), Status.DELIVERED),
        Transition(EventType.ORDER_CANCELLED, BEFORE_PICKUP, Status.CANCELLED),
        Transition(
            EventType.DRIVER_UNAVAILABLE,
            WITH_DRIVER - {Status.PICKED_UP},
            Status.SEARCHING_DRIVER_AGAIN,
        ),
    )
}


def transition(current: Status, event: EventType) -> Status:
    """The status after ``event`` in state ``current``; an illegal move is a Conflict."""
    rule = TRANSITIONS.get(event)
    if rule is None:
        raise Conflict(f"{event} does not change an order's status", code="illegal_transition")
    if current not in rule.sources:
        raise Conflict(
            f"{event} is not allowed when the order is {current}",
            code="illegal_transition",
            field="status",
        )
    return rule.target
