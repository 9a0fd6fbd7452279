"""The ``notifications`` and ``ratings`` consumers of the event stream.

Both write in the worker's transaction (which also marks the event handled, so an event
delivered twice has one effect) and act on Redis only after it commits, through the callback
they return: the live push of each new notification to its recipient's inbox, and the
driver's new rating in its fleet profile (what dispatch scoring reads).

    notifications: the events of ``messages.BUILDERS`` -> notifications to those concerned
    ratings:       ORDER_DELIVERED -> "rate_order" to the customer;
                   ORDER_RATED     -> the driver's mean rating, in PostgreSQL then Redis
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ontheway.connections import Connections
from ontheway.events.model import Event
from ontheway.fleet.service import open_store
from ontheway.notifications.messages import (
    BUILDERS,
    Notice,
    OrderFacts,
    notices_for,
    rate_request,
)
from ontheway.notifications.ratings import rated_driver, refresh_driver_rating
from ontheway.notifications.store import push_notifications, store_notices
from ontheway.orders.ids import created_span
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import iso

if TYPE_CHECKING:  # the consumers module imports this one
    from ontheway.events.consumers import AfterCommit, Handler


async def order_facts(conn: Any, event: Event) -> OrderFacts:
    """The order as the messages need it: its people, its estimate, the driver's name and
    whether it lost a driver before this event."""
    driver = event.data.get("changes", {}).get("assigned_driver_id")
    cur = await conn.execute(
        "SELECT o.order_id, o.customer_id, o.restaurant_id, o.estimated_delivery,"
        " coalesce(%s, o.driver_id) AS driver_id, d.name AS driver_name"
        " FROM orders o LEFT JOIN drivers d ON d.driver_id = coalesce(%s, o.driver_id)"
        " WHERE o.order_id = %s AND o.created_at BETWEEN %s AND %s",
        (driver, driver, event.order_id, *created_span(event.order_id)),
    )
    row = await cur.fetchone()
    if row is None:
        raise LookupError(f"order {event.order_id} of the event is not on this shard")
    reassigned = False
    if event.event_type == EventType.DRIVER_ASSIGNED:
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM order_events WHERE order_id = %s"
            " AND order_created_at BETWEEN %s AND %s AND event_type = %s AND ts < %s) AS lost",
            (
                event.order_id,
                *created_span(event.order_id),
                EventType.DRIVER_UNAVAILABLE.value,
                event.ts,
            ),
        )
        found = await cur.fetchone()
        reassigned = bool(found and found["lost"])
    return OrderFacts(
        order_id=row["order_id"],
        customer_id=row["customer_id"],
        restaurant_id=row["restaurant_id"],
        driver_id=row["driver_id"],
        driver_name=row["driver_name"],
        estimated_delivery=iso(row["estimated_delivery"]),
        reassigned=reassigned,
    )


async def deliver(conn: Any, event: Event, notices: Sequence[Notice]) -> AfterCommit | None:
    """Store the notices in the transaction; the returned callback pushes the new ones."""
    views = await store_notices(conn, event.order_id, event.event_id, event.ts, notices)
    if not views:
        return None

    async def push(conns: Connections) -> None:
        await push_notifications(conns.require_redis(), views)

    return push


async def notify(conn: Any, event: Event) -> AfterCommit | None:
    """The ``notifications`` handler: tell each person concerned by the event."""
    facts = await order_facts(conn, event)
    return await deliver(conn, event, notices_for(event.event_type, event.data, facts))


async def ask_for_rating(conn: Any, event: Event) -> AfterCommit | None:
    """A delivered order: ask its customer to rate the delivery."""
    facts = await order_facts(conn, event)
    return await deliver(conn, event, [rate_request(facts)])


async def update_driver_rating(conn: Any, event: Event) -> AfterCommit | None:
    """A rated order: the driver's mean rating in PostgreSQL now, in Redis after commit."""
    driver = await rated_driver(conn, event.order_id) or event.data.get("driver_id")
    if not driver:
        return None
    rating = await refresh_driver_rating(conn, str(driver))
    if rating is None:
        return None

    async def publish(conns: Connections) -> None:
        store = open_store(conns.require_redis(), conns.settings)
        await store.set_rating(str(driver), float(rating))

    return publish


NOTIFY_HANDLERS: dict[str, Handler] = {kind: notify for kind in BUILDERS}
RATINGS_HANDLERS: dict[str, Handler] = {
    EventType.ORDER_DELIVERED.value: ask_for_rating,
    EventType.ORDER_RATED.value: update_driver_rating,
}
