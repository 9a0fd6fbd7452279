"""Placing orders and moving them through their lifecycle, each in one transaction.

Placement on the restaurant's shard: the restaurant, the items and the address are checked,
stock decremented (never below zero), prices computed with Decimal, the payment recorded,
the order inserted as ``searching_driver`` and ``ORDER_PLACED`` written, all or nothing.
Every transition is a conditional update (``WHERE status = ANY(<sources>)``) plus its event.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ontheway.errors import Conflict, InvalidInput, NotFound
from ontheway.orders import pricing
from ontheway.orders.ids import new_id, region_of
from ontheway.orders.lifecycle import TRANSITIONS, EventType, Status
from ontheway.orders.models import PlaceOrder, iso, money_str, order_view
from ontheway.orders.store import ORDER_SELECT, ShardAccess
from ontheway.regions import OutsideAllRegions

Conn = AsyncConnection[dict[str, Any]]
# A placement's ETA before any driver is known: preparation, then this average speed.
_BASELINE_SPEED_MPS = 6.0
_HANDOVER_S = 180


def request_hash(customer_id: str, cmd: PlaceOrder) -> str:
    """A digest of the request, to tell a retry from a different request with the same key."""
    canonical = json.dumps([customer_id, cmd.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def insert_event(
    conn: Conn,
    order_id: str,
    created_at: datetime,
    event: EventType,
    actor: str,
    data: dict[str, Any],
    ts: datetime,
) -> None:
    """Append one event to the audit trail (and the outbox) in the caller's transaction."""
    await conn.execute(
        "INSERT INTO order_events (event_id, order_id, order_created_at, event_type, ts, data,"
        " actor) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (uuid.uuid4(), order_id, created_at, event.value, ts, Jsonb(data), actor),
    )


async def fetch_order(conn: Conn, order_id: str, *, lock: bool = False) -> dict[str, Any]:
    """One order row with its payment status; NotFound when there is none."""
    cur = await conn.execute(
        ORDER_SELECT + " WHERE o.order_id = %s" + (" FOR UPDATE OF o" if lock else ""), (order_id,)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no order {order_id!r}", field="order_id", code="unknown_order")
    return row


class OrderService:
    """Commands on orders."""

    def __init__(self, shards: ShardAccess):
        self.shards = shards

    async def place(
        self, customer_id: str, cmd: PlaceOrder, idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Place an order; returns (order view, created). A retry with the same key returns
        the first order with created=False."""
        catalog = self.shards.catalog
        try:
            region = region_of(cmd.restaurant_id, "rest")
            catalog.get(region)
        except NotFound:
            raise InvalidInput(
                f"no restaurant {cmd.restaurant_id!r}",
                field="restaurant_id",
                code="unknown_restaurant",
            ) from None
        loc = cmd.delivery_location
        try:
            address_region = catalog.region_for(loc.lat, loc.lng).region
        except OutsideAllRegions as exc:
            raise InvalidInput(
                exc.message, field="delivery_location", code="outside_all_regions"
            ) from None
        if address_region != region:
            raise InvalidInput(
                f"the delivery address is in {address_region}, the restaurant in {region}",
                field="delivery_location",
                code="address_in_another_region",
            )
        now = datetime.now(UTC)
        order_id = new_id("ord", region)
        digest = request_hash(customer_id, cmd)
        async with self.shards.connection(region) as conn, conn.transaction():
            if idempotency_key is not None:
                first = await self._claim_key(conn, customer_id, idempotency_key, digest, order_id)
                if first is not None:
                    return order_view(await fetch_order(conn, first)), False
            row = await self._place(conn, region, order_id, customer_id, cmd, now)
        return order_view(row), True

    async def _claim_key(
        self, conn: Conn, customer_id: str, key: str, digest: str, order_id: str
    ) -> str | None:
        """Record the key for this order; if a first request holds it, return its order id."""
        cur = await conn.execute(
            "INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING order_id",
            (customer_id, key, digest, order_id),
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "SELECT request_hash, order_id FROM idempotency_keys"
            " WHERE customer_id = %s AND key = %s",
            (customer_id, key),
        )
        held = await cur.fetchone()
        assert held is not None
        if held["request_hash"] != digest:
            raise Conflict(
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return str(held["order_id"])

    async def _place(
        self,
        conn: Conn,
        region: str,
        order_id: str,
        customer_id: str,
        cmd: PlaceOrder,
        now: datetime,
    ) -> dict[str, Any]:
        loc = cmd.delivery_location
        cur = await conn.execute(
            "SELECT name, is_open, delivery_radius_m, prep_time_mean_s,"
            " ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng,"
            " ST_Distance(location, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography)"
            "   AS distance_m"
            " FROM restaurants WHERE restaurant_id = %s",
            (loc.lng, loc.lat, cmd.restaurant_id),
        )
        restaurant = await cur.fetchone()
        if restaurant is None:
            raise InvalidInput(
                f"no restaurant {cmd.restaurant_id!r}",
                field="restaurant_id",
                code="unknown_restaurant",
            )
        if not restaurant["is_open"]:
            raise Conflict(
                f"{restaurant['name']} is closed", field="restaurant_id", code="restaurant_closed"
            )
        distance_m = float(restaurant["distance_m"])
        if distance_m > restaurant["delivery_radius_m"]:
            raise InvalidInput(
                f"the address is {distance_m:.0f} m away, outside the delivery zone of "
                f"{restaurant['name']} ({restaurant['delivery_radius_m']} m)",
                field="delivery_location",
                code="outside_delivery_zone",
            )

        wanted = cmd.quantities()
        lines = await self._take_stock(conn, cmd.restaurant_id, wanted, cmd)
        subtotal = pricing.subtotal([(line["price"], line["quantity"]) for line in lines])
        fee = pricing.delivery_fee(distance_m)
        total = pricing.money(subtotal + fee + cmd.tip)
        items = [
            {
                "item_id": line["item_id"],
                "name": line["name"],
                "price": money_str(line["price"]),
                "quantity": line["quantity"],
            }
            for line in lines
        ]
        eta = now + timedelta(
            seconds=restaurant["prep_time_mean_s"] + _HANDOVER_S + distance_m / _BASELINE_SPEED_MPS
        )

        # The row as fetch_order would return it: the event's snapshot needs no extra read.
        row = {
            "order_id": order_id,
            "region": region,
            "customer_id": customer_id,
            "restaurant_id": cmd.restaurant_id,
            "driver_id": None,
            "items": items,
            "subtotal": subtotal,
            "delivery_fee": fee,
            "tip": cmd.tip,
            "total": total,
            "status": Status.SEARCHING_DRIVER.value,
            "delivery_address": loc.address,
            "customer_lat": loc.lat,
            "customer_lng": loc.lng,
            "restaurant_lat": restaurant["lat"],
            "restaurant_lng": restaurant["lng"],
            "created_at": now,
            "pickup_time": None,
            "estimated_delivery": eta,
            "delivered_at": None,
            "distance_m": distance_m,
            "payment_status": "authorized",
        }
        # Pipelined: the four inserts go out together and cost one round trip, not four.
        async with conn.pipeline():
            await conn.execute(
                "INSERT INTO customers (customer_id) VALUES (%s) ON CONFLICT DO NOTHING",
                (customer_id,),
            )
            await conn.execute(
                "INSERT INTO orders (order_id, region, customer_id, restaurant_id,"
                " customer_location, delivery_address, restaurant_location, items, subtotal,"
                " delivery_fee, tip, total, status, created_at, estimated_delivery, distance_m)"
                " VALUES (%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
                " %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s)",
                (
                    order_id,
                    region,
                    customer_id,
                    cmd.restaurant_id,
                    loc.lng,
                    loc.lat,
                    loc.address,
                    restaurant["lng"],
                    restaurant["lat"],
                    Jsonb(items),
                    subtotal,
                    fee,
                    cmd.tip,
                    total,
                    Status.SEARCHING_DRIVER.value,
                    now,
                    eta,
                    distance_m,
                ),
            )
            await conn.execute(
                "INSERT INTO payments (payment_id, order_id, order_created_at, customer_id,"
                " amount, status, created_at) VALUES (%s, %s, %s, %s, %s, 'authorized', %s)",
                (new_id("pay", region), order_id, now, customer_id, total, now),
            )
            await insert_event(
                conn,
                order_id,
                now,
                EventType.ORDER_PLACED,
                customer_id,
                {"order": order_view(row)},
                now,
            )
        return row

    async def _take_stock(
        self, conn: Conn, restaurant_id: str, wanted: dict[str, int], cmd: PlaceOrder
    ) -> list[dict[str, Any]]:
        """Check the items and decrement their stock, never below zero."""
        ids = sorted(wanted)
        cur = await conn.execute(
            "SELECT m.item_id, m.name, m.price, m.available, i.quantity FROM menu_items m"
            " JOIN inventory i USING (item_id) WHERE m.restaurant_id = %s"
            " AND m.item_id = ANY(%s) ORDER BY m.item_id FOR UPDATE OF i",
            (restaurant_id, ids),
        )
        found = {row["item_id"]: row for row in await cur.fetchall()}
        for index, line in enumerate(cmd.items):
            item = found.get(line.item_id)
            if item is None:
                raise InvalidInput(
                    f"{restaurant_id} has no item {line.item_id!r}",
                    field=f"items.{index}.item_id",
                    code="unknown_item",
                )
            if not item["available"] or item["quantity"] < wanted[line.item_id]:
                raise Conflict(
                    f"insufficient stock of {item['name']} ({line.item_id}): "
                    f"{item['quantity']} left, {wanted[line.item_id]} wanted",
                    field=f"items.{index}.quantity",
                    code="insufficient_stock",
                )
        await conn.execute(
            "UPDATE inventory i SET quantity = i.quantity - w.quantity, updated_at = now()"
            " FROM unnest(%s::text[], %s::int[]) AS w(item_id, quantity)"
            " WHERE i.item_id = w.item_id",
            (ids, [wanted[i] for i in ids]),
        )
        return [{**found[i], "quantity": wanted[i]} for i in ids]

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
            before = await fetch_order(conn, order_id)
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
