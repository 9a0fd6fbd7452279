"""The downstream consumers of order events: payments, analytics and ETA learning (and the
notifications and ratings consumers, whose handlers live in ``ontheway.notifications``).

Each handler runs in a transaction on the event's shard together with the row that marks the
event handled (``processed_events``), so an event delivered twice has one effect.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from ontheway.eta.log import insert_estimate
from ontheway.events.model import Event
from ontheway.notifications.consumer import NOTIFY_HANDLERS, RATINGS_HANDLERS
from ontheway.orders.ids import created_span
from ontheway.orders.lifecycle import EventType
from ontheway.orders.pricing import money

if TYPE_CHECKING:
    from ontheway.connections import Connections

# A handler may return a callback that the worker runs once the transaction has committed.
AfterCommit = Callable[["Connections"], Awaitable[None]]


class Marked(enum.Enum):
    """What a handler of a consumer that is not transactional returns when its own commit
    wrote the event's mark (``processed_events``) with its effect: the worker writes none."""

    MARKED = "marked"


MARKED = Marked.MARKED
Handler = Callable[[Any, Event], Awaitable[AfterCommit | Marked | None]]

DRIVER_SHARE_OF_FEE = Decimal("0.80")
COMMISSION_ON_SUBTOTAL = Decimal("0.15")


@dataclass(frozen=True)
class Consumer:
    """A named consumer group and what it does with each event type it cares about.

    ``transactional``: each handler runs in a transaction on the event's shard with the row
    that marks the event handled, and gets its connection. A consumer whose effects commit on
    their own and are idempotent by themselves (the dispatcher's) says False: its handlers
    get no connection, none is held while they run, and the mark is written after them."""

    name: str
    handlers: dict[str, Handler]
    transactional: bool = True


async def _order(conn: Any, order_id: str) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT order_id, region, restaurant_id, driver_id, subtotal, delivery_fee, tip,"
        " created_at, estimated_delivery, delivered_at FROM orders WHERE order_id = %s"
        " AND created_at BETWEEN %s AND %s",
        (order_id, *created_span(order_id)),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"order {order_id} of the event is not on this shard")
    return dict(row)


# -- payments ---------------------------------------------------------------------------


async def pay_driver(conn: Any, event: Event) -> None:
    """A delivered order: the driver gets most of the fee and the whole tip; the platform
    keeps the rest of the fee and a commission on the food."""
    order = await _order(conn, event.order_id)
    fee, tip = Decimal(order["delivery_fee"]), Decimal(order["tip"])
    payout = money(fee * DRIVER_SHARE_OF_FEE + tip)
    platform = money(
        fee - fee * DRIVER_SHARE_OF_FEE + Decimal(order["subtotal"]) * COMMISSION_ON_SUBTOTAL
    )
    await conn.execute(
        "INSERT INTO driver_payouts (order_id, driver_id, delivery_fee, tip, platform_fee,"
        " payout) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING",
        (event.order_id, order["driver_id"], fee, tip, platform, payout),
    )


PAYMENTS = Consumer("payments", {EventType.ORDER_DELIVERED.value: pay_driver})


# -- ETA learning -------------------------------------------------------------------------

_TIMING_COLUMN = {
    EventType.DRIVER_ASSIGNED.value: "assigned_at",
    EventType.DRIVER_ARRIVED_RESTAURANT.value: "arrived_at",
    EventType.ORDER_READY.value: "ready_at",
    EventType.ORDER_PICKED_UP.value: "picked_up_at",
    EventType.ORDER_DELIVERED.value: "delivered_at",
    EventType.ORDER_CANCELLED.value: "cancelled_at",
}


async def record_placed(conn: Any, event: Event) -> None:
    """The promise made at placement, how it was made (road or straight line), its legs and,
    in the ETA log, the estimate with its features (``ontheway.eta``)."""
    order = event.data["order"]
    legs = event.data.get("eta_legs")
    estimate = event.data.get("eta")
    scale = float(estimate.get("time_scale", 1.0)) if estimate else 1.0
    await conn.execute(
        "INSERT INTO order_timings (order_id, region, restaurant_id, placed_at,"
        " promised_delivery, eta_method, eta_legs, time_scale)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING",
        (event.order_id, order["region"], order["restaurant_id"], event.ts,
         _time(order.get("estimated_delivery")), event.data.get("eta_method"),
         None if legs is None else Jsonb(legs), scale),
    )  # fmt: skip
    if estimate and "features" in estimate:
        await insert_estimate(conn, event.order_id, event.event_id, event.ts, estimate)


async def record_reroute(conn: Any, event: Event) -> None:
    """The latest estimate a re-route announced (the first promise stays as it was)."""
    await conn.execute(
        "UPDATE order_timings SET latest_estimate = %s WHERE order_id = %s",
        (_time(event.data.get("estimated_delivery")), event.order_id),
    )


async def record_step(conn: Any, event: Event) -> None:
    """When each step of the delivery happened."""
    column = _TIMING_COLUMN[event.event_type]
    driver = event.data.get("changes", {}).get("assigned_driver_id")
    await conn.execute(
        f"UPDATE order_timings SET {column} = %s,"
        " driver_id = coalesce(%s, driver_id) WHERE order_id = %s",
        (event.ts, driver, event.order_id),
    )


async def record_confirmed(conn: Any, event: Event) -> None:
    """The restaurant's own preparation estimate."""
    await conn.execute(
        "UPDATE order_timings SET confirmed_prep_s = %s WHERE order_id = %s",
        (int(event.data["prep_time_s"]), event.order_id),
    )


ETA = Consumer("eta", {
    EventType.ORDER_PLACED.value: record_placed,
    EventType.ORDER_CONFIRMED.value: record_confirmed,
    EventType.ROUTE_UPDATED.value: record_reroute,
    **{kind: record_step for kind in _TIMING_COLUMN},
})  # fmt: skip


# -- analytics ----------------------------------------------------------------------------


async def count_delivery(conn: Any, event: Event) -> None:
    """Deliveries, on-time share and delivery time per driver and restaurant, per day."""
    order = await _order(conn, event.order_id)
    on_time = int(order["estimated_delivery"] is None or event.ts <= order["estimated_delivery"])
    seconds = (event.ts - order["created_at"]).total_seconds()
    for kind, subject in (("driver", order["driver_id"]), ("restaurant", order["restaurant_id"])):
        await conn.execute(
            "INSERT INTO daily_stats AS s (day, subject_kind, subject_id, deliveries, on_time,"
            " delivery_s_sum) VALUES (%s, %s, %s, 1, %s, %s)"
            " ON CONFLICT (day, subject_kind, subject_id) DO UPDATE SET"
            " deliveries = s.deliveries + 1, on_time = s.on_time + excluded.on_time,"
            " delivery_s_sum = s.delivery_s_sum + excluded.delivery_s_sum",
            (event.ts.date(), kind, subject, on_time, seconds),
        )


async def count_cancellation(conn: Any, event: Event) -> None:
    """Cancellations per restaurant, per day."""
    order = await _order(conn, event.order_id)
    await conn.execute(
        "INSERT INTO daily_stats AS s (day, subject_kind, subject_id, cancellations)"
        " VALUES (%s, 'restaurant', %s, 1) ON CONFLICT (day, subject_kind, subject_id)"
        " DO UPDATE SET cancellations = s.cancellations + 1",
        (event.ts.date(), order["restaurant_id"]),
    )


async def count_preparation(conn: Any, event: Event) -> None:
    """Preparation time (placement to food ready) per restaurant, per day."""
    order = await _order(conn, event.order_id)
    seconds = (event.ts - order["created_at"]).total_seconds()
    await conn.execute(
        "INSERT INTO daily_stats AS s (day, subject_kind, subject_id, prepared, prep_s_sum)"
        " VALUES (%s, 'restaurant', %s, 1, %s) ON CONFLICT (day, subject_kind, subject_id)"
        " DO UPDATE SET prepared = s.prepared + 1, prep_s_sum = s.prep_s_sum + excluded.prep_s_sum",
        (event.ts.date(), order["restaurant_id"], seconds),
    )


ANALYTICS = Consumer("analytics", {
    EventType.ORDER_DELIVERED.value: count_delivery,
    EventType.ORDER_CANCELLED.value: count_cancellation,
    EventType.ORDER_READY.value: count_preparation,
})  # fmt: skip

# -- notifications and ratings (ontheway.notifications) ------------------------------------

NOTIFICATIONS = Consumer("notifications", NOTIFY_HANDLERS)
RATINGS = Consumer("ratings", RATINGS_HANDLERS)

CONSUMERS = {c.name: c for c in (PAYMENTS, ETA, ANALYTICS, NOTIFICATIONS, RATINGS)}
# Consumers built in each process from its connections (``ontheway.dispatch.dispatcher``).
BUILT_PER_PROCESS = ("dispatch",)


def consumer_names() -> list[str]:
    """Every consumer a worker can run."""
    return sorted({*CONSUMERS, *BUILT_PER_PROCESS})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
