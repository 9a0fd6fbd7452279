"""Moving orders through their lifecycle, each step in one transaction.

Every transition is a conditional update (``WHERE status = ANY(<sources>)``) plus its event.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ontheway.errors import Conflict, InvalidInput
from ontheway.orders.change import OrderChanges
from ontheway.orders.ids import created_span, region_of
from ontheway.orders.lifecycle import TRANSITIONS, EventType, Status
from ontheway.orders.models import iso
from ontheway.orders.store import ORDER_COLUMNS, PAYMENT_STATUS, fetch_order, insert_event


class OrderService(OrderChanges):
    """Commands on orders: placing (see placement), changing (see change), status changes
    and notes."""

    async def transition(
        self,
        order_id: str,
        event: EventType,
        actor: str,
        *,
        driver_id: str | None = None,
        data: dict[str, Any] | None = None,
        expect_driver: str | None = None,
        handles: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Apply a status-changing event: a conditional update plus its event, or a 409.
        ``handles``: (consumer, event id) of a stream event this transition is the effect
        of; the event's mark (``processed_events``) is written by the same statement.

        One statement does it all, so it is its own transaction and costs one round trip:
        the update (``RETURNING`` the new row), the payment and the stock it settles, the
        event, and the order's view read back from the returned row. A cancel first locks
        the stock it puts back, in the same transaction."""
        rule = TRANSITIONS[event]
        region = region_of(order_id, "ord")
        now = datetime.now(UTC)
        changes = self._changes(event, now, driver_id)
        columns = _columns(changes)
        params: dict[str, Any] = {
            "order_id": order_id,
            **dict(zip(("earliest", "latest"), created_span(order_id), strict=True)),
            "sources": [s.value for s in rule.sources],
            "target": rule.target.value,
            "driver": expect_driver,
            "payment_status": changes.get("payment_status"),
            "event_id": uuid.uuid4(),
            "event_type": event.value,
            "ts": now,
            "data": Jsonb({**(data or {}), "changes": changes}),
            "actor": actor,
            **columns,
        }
        if handles is not None:
            params["handled_by"], params["handled_event"] = handles
        restocks = event is EventType.ORDER_CANCELLED
        statement = _transition_statement(
            list(columns),
            settles_payment="payment_status" in changes,
            restocks=restocks,
            expects_driver=expect_driver is not None,
            marks=handles is not None,
        )
        async with self.shards.connection(region) as conn:
            if restocks:
                # Stock goes back: its rows are locked first, in id order, as placing an
                # order locks them, so that concurrent cancels and orders never deadlock.
                async with conn.transaction():
                    await conn.execute(_LOCK_STOCK, (order_id, *created_span(order_id)))
                    cur = await conn.execute(statement, params)
                    row = await cur.fetchone()
            else:
                try:  # one statement, committed alone (the pool's connections autocommit)
                    cur = await conn.execute(statement, params)
                except psycopg.errors.ForeignKeyViolation:
                    raise InvalidInput(
                        f"no driver {driver_id!r}", field="driver_id", code="unknown_driver"
                    ) from None
                row = await cur.fetchone()
            if row is None:
                # Read only now, for the message (NotFound when there is no such order):
                # nothing was written.
                before = await fetch_order(conn, order_id)
                raise Conflict(
                    f"{event} is not allowed when the order is {before['status']}",
                    field="status",
                    code="illegal_transition",
                )
            return row

    def _changes(
        self,
        event: EventType,
        now: datetime,
        driver_id: str | None,
    ) -> dict[str, Any]:
        """The order view's fields that ``event`` changes (beside the status)."""
        if event is EventType.DRIVER_ASSIGNED:
            if driver_id is None:
                raise InvalidInput("a driver is needed to assign", field="driver_id")
            return {"assigned_driver_id": driver_id}
        if event is EventType.ORDER_PICKED_UP:
            return {"pickup_time": iso(now)}
        if event is EventType.ORDER_DELIVERED:
            return {"delivered_at": iso(now), "payment_status": "captured"}
        if event is EventType.ORDER_CANCELLED:
            return {"payment_status": "voided"}
        if event is EventType.DRIVER_UNAVAILABLE:
            return {"assigned_driver_id": None}
        return {}

    async def note(
        self,
        order_id: str,
        event: EventType,
        actor: str,
        data: dict[str, Any],
    ) -> None:
        """Record an event that does not change the status (confirmed, ready, route)."""
        if event in TRANSITIONS:
            raise ValueError(f"{event} changes the status: use transition()")
        region = region_of(order_id, "ord")
        now = datetime.now(UTC)
        async with self.shards.connection(region) as conn, conn.transaction():
            order = await fetch_order(conn, order_id, lock=True)
            if order["status"] in (Status.DELIVERED, Status.CANCELLED):
                raise Conflict(
                    f"the order is already {order['status']}", field="status", code="order_closed"
                )
            await insert_event(conn, order_id, order["created_at"], event, actor, data, now)

    async def update_estimate(
        self,
        order_id: str,
        actor: str,
        estimated_delivery: datetime,
        data: dict[str, Any],
        *,
        statuses: frozenset[Status],
        expect_driver: str,
    ) -> dict[str, Any] | None:
        """ROUTE_UPDATED with the order's new estimated delivery, in one transaction; None
        when the order left ``statuses`` or ``expect_driver`` meanwhile (nothing written)."""
        region = region_of(order_id, "ord")
        now = datetime.now(UTC)
        async with self.shards.connection(region) as conn, conn.transaction():
            cur = await conn.execute(
                "UPDATE orders SET estimated_delivery = %s WHERE order_id = %s"
                " AND created_at BETWEEN %s AND %s AND status = ANY(%s) AND driver_id = %s"
                " RETURNING created_at",
                (
                    estimated_delivery,
                    order_id,
                    *created_span(order_id),
                    [s.value for s in statuses],
                    expect_driver,
                ),
            )
            updated = await cur.fetchone()
            if updated is None:
                return None
            changes = {"estimated_delivery": iso(estimated_delivery)}
            await insert_event(
                conn,
                order_id,
                updated["created_at"],
                EventType.ROUTE_UPDATED,
                actor,
                {**data, "changes": changes},
                now,
            )
            return await fetch_order(conn, order_id)


def _columns(changes: dict[str, Any]) -> dict[str, Any]:
    """Order columns for the view fields in ``changes`` (payment status lives elsewhere)."""
    names = {
        "assigned_driver_id": "driver_id",
        "pickup_time": "pickup_time",
        "delivered_at": "delivered_at",
    }
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key in names:
            out[names[key]] = (
                datetime.fromisoformat(value.replace("Z", "+00:00"))
                if key != "assigned_driver_id" and value
                else value
            )
    return out


def _transition_statement(
    columns: list[str],
    *,
    settles_payment: bool,
    restocks: bool,
    expects_driver: bool,
    marks: bool = False,
) -> str:
    """The one statement of a transition: the conditional update, the payment (captured or
    voided), the stock put back (on cancel) and the event, each in a ``WITH`` part that only
    acts when the update did; the order's view from the updated row (no row: refused).

    The parts see the database as it was before the statement, so the view takes the
    order's columns from the update's ``RETURNING`` and the payment status from its own
    part when it changed."""
    sets = "".join(f", {column} = %({column})s" for column in columns)
    parts = [
        f"o AS (UPDATE orders SET status = %(target)s{sets}"
        " WHERE order_id = %(order_id)s AND created_at BETWEEN %(earliest)s AND %(latest)s"
        " AND status = ANY(%(sources)s)"
        + (" AND driver_id = %(driver)s" if expects_driver else "")
        + " RETURNING *)"
    ]
    if settles_payment:
        parts.append(
            "pay AS (UPDATE payments p SET status = %(payment_status)s, updated_at = %(ts)s"
            " FROM o WHERE p.order_id = o.order_id AND p.order_created_at = o.created_at"
            " RETURNING p.status)"
        )
    if restocks:
        parts.append(
            "stock AS (UPDATE inventory i SET quantity = i.quantity + w.quantity,"
            " updated_at = now() FROM (SELECT line->>'item_id' AS item_id,"
            " sum((line->>'quantity')::int) AS quantity"
            " FROM o, jsonb_array_elements(o.items) AS line GROUP BY 1) AS w"
            " WHERE i.item_id = w.item_id)"
        )
    parts.append(
        "ev AS (INSERT INTO order_events (event_id, order_id, order_created_at, event_type,"
        " ts, data, actor) SELECT %(event_id)s, o.order_id, o.created_at, %(event_type)s,"
        " %(ts)s, %(data)s, %(actor)s FROM o)"
    )
    if marks:
        parts.append(
            "handled AS (INSERT INTO processed_events (consumer, event_id)"
            " SELECT %(handled_by)s::text, %(handled_event)s::uuid FROM o"
            " ON CONFLICT DO NOTHING)"
        )
    payment = (
        f"COALESCE((SELECT status FROM pay LIMIT 1), {PAYMENT_STATUS})"
        if settles_payment
        else PAYMENT_STATUS
    )
    return f"WITH {', '.join(parts)} SELECT {ORDER_COLUMNS}, {payment} AS payment_status FROM o"


# The stock rows of an order's items, locked in id order (as placement locks them).
_LOCK_STOCK = (
    "SELECT i.item_id FROM orders o, jsonb_array_elements(o.items) AS line"
    " JOIN inventory i ON i.item_id = line->>'item_id'"
    " WHERE o.order_id = %s AND o.created_at BETWEEN %s AND %s"
    " ORDER BY i.item_id FOR UPDATE OF i"
)
