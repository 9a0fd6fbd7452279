"""Moving orders through their lifecycle, each step in one transaction.

Every transition is a conditional update (``WHERE status = ANY(<sources>)``) plus its event.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from ontheway.errors import Conflict, InvalidInput
from ontheway.orders.change import OrderChanges
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import TRANSITIONS, EventType, Status
from ontheway.orders.models import iso
from ontheway.orders.store import Conn, fetch_order, insert_event


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
    ) -> dict[str, Any]:
        """Apply a status-changing event: a conditional update plus its event, or a 409."""
        rule = TRANSITIONS[event]
        region = region_of(order_id, "ord")
        now = datetime.now(UTC)
        async with self.shards.connection(region) as conn, conn.transaction():
            changes = self._changes(event, now, driver_id)
            sets = ", ".join(f"{column} = %({column})s" for column in _columns(changes))
            params: dict[str, Any] = {
                "order_id": order_id,
                "sources": [s.value for s in rule.sources],
                "target": rule.target.value,
                "driver": expect_driver,
                **{column: value for column, value in _columns(changes).items()},
            }
            try:
                cur = await conn.execute(
                    f"UPDATE orders SET status = %(target)s{', ' + sets if sets else ''}"
                    " WHERE order_id = %(order_id)s AND status = ANY(%(sources)s)"
                    + (" AND driver_id = %(driver)s" if expect_driver is not None else "")
                    + " RETURNING created_at",
                    params,
                )
            except psycopg.errors.ForeignKeyViolation:
                raise InvalidInput(
                    f"no driver {driver_id!r}", field="driver_id", code="unknown_driver"
                ) from None
            updated = await cur.fetchone()
            if updated is None:
                # Read only now, for the message (NotFound when there is no such order): one
                # query less on every transition that succeeds.
                before = await fetch_order(conn, order_id)
                raise Conflict(
                    f"{event} is not allowed when the order is {before['status']}",
                    field="status",
                    code="illegal_transition",
                )
            created_at = updated["created_at"]
            await self._settle(conn, order_id, created_at, event, now, changes)
            await insert_event(
                conn, order_id, created_at, event, actor, {**(data or {}), "changes": changes}, now
            )
            return await fetch_order(conn, order_id)

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

    async def _settle(
        self,
        conn: Conn,
        order_id: str,
        created_at: datetime,
        event: EventType,
        now: datetime,
        changes: dict[str, Any],
    ) -> None:
        """Side effects in the same transaction: the payment, and stock back on cancel."""
        if "payment_status" in changes:
            await conn.execute(
                "UPDATE payments SET status = %s, updated_at = %s"
                " WHERE order_id = %s AND order_created_at = %s",
                (changes["payment_status"], now, order_id, created_at),
            )
        if event is EventType.ORDER_CANCELLED:
            await conn.execute(
                "UPDATE inventory i SET quantity = i.quantity + (line->>'quantity')::int,"
                " updated_at = now() FROM orders o, jsonb_array_elements(o.items) AS line"
                " WHERE o.order_id = %s AND o.created_at = %s"
                " AND i.item_id = line->>'item_id'",
                (order_id, created_at),
            )

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
                " AND status = ANY(%s) AND driver_id = %s RETURNING created_at",
                (estimated_delivery, order_id, [s.value for s in statuses], expect_driver),
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
