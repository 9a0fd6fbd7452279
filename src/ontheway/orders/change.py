"""Changing an order before pickup (``PATCH /api/orders/{id}``): items or the address, with
stock, totals and the payment adjusted in one transaction on the restaurant's shard and an
``ORDER_CHANGED`` event. A change of address keeps the PostGIS radius check (not the zones)
and the first delivery estimate."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from ontheway.errors import Conflict
from ontheway.orders import pricing
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import BEFORE_PICKUP, EventType
from ontheway.orders.models import ChangeOrder, DeliveryLocation, OrderLine, money_str, order_view
from ontheway.orders.placement import OrderPlacement, line_items, merged
from ontheway.orders.store import fetch_order, insert_event


class OrderChanges(OrderPlacement):
    """Placing orders, and changing them before pickup."""

    async def change(self, order_id: str, actor: str, cmd: ChangeOrder) -> dict[str, Any]:
        """Change the items or the address before pickup: stock, totals and the payment are
        adjusted in one transaction, with an ``ORDER_CHANGED`` event."""
        region = region_of(order_id, "ord")
        if cmd.delivery_location is not None:
            self._check_address(region, cmd.delivery_location)
        now = datetime.now(UTC)
        async with self.shards.connection(region) as conn, conn.transaction():
            order = await fetch_order(conn, order_id, lock=True)
            if order["status"] not in BEFORE_PICKUP:
                raise Conflict(
                    f"an order that is {order['status']} can no longer be changed",
                    field="status",
                    code="illegal_transition",
                )
            view = order_view(order)
            loc = cmd.delivery_location or DeliveryLocation(
                lat=order["customer_lat"],
                lng=order["customer_lng"],
                address=order["delivery_address"] or "",
            )
            held = {line["item_id"]: int(line["quantity"]) for line in order["items"]}
            new_lines = cmd.items or [
                OrderLine(item_id=i, quantity=q) for i, q in sorted(held.items())
            ]
            wanted = merged(new_lines)
            restaurant = await self._read(
                conn, order["restaurant_id"], loc, sorted(set(wanted) | set(held))
            )
            lines = self._check_stock(
                order["restaurant_id"], restaurant["items"], new_lines, held=held
            )
            items = line_items(lines, wanted)
            subtotal = pricing.subtotal(
                [(line["price"], wanted[line["item_id"]]) for line in lines]
            )
            distance_m = float(restaurant["distance_m"])
            fee = pricing.delivery_fee(distance_m)
            total = pricing.money(subtotal + fee + Decimal(order["tip"]))
            delta = {i: wanted.get(i, 0) - held.get(i, 0) for i in set(wanted) | set(held)}
            await conn.execute(
                "UPDATE inventory i SET quantity = i.quantity - d.delta, updated_at = %s"
                " FROM unnest(%s::text[], %s::int[]) AS d(item_id, delta)"
                " WHERE i.item_id = d.item_id",
                (now, list(delta), list(delta.values())),
            )
            await conn.execute(
                "UPDATE orders SET items = %s, subtotal = %s, delivery_fee = %s, total = %s,"
                " customer_location = ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
                " delivery_address = %s, distance_m = %s"
                " WHERE order_id = %s AND created_at = %s",
                (
                    Jsonb(items),
                    subtotal,
                    fee,
                    total,
                    loc.lng,
                    loc.lat,
                    loc.address,
                    distance_m,
                    order_id,
                    order["created_at"],
                ),
            )
            await conn.execute(
                "UPDATE payments SET amount = %s, updated_at = %s"
                " WHERE order_id = %s AND order_created_at = %s",
                (total, now, order_id, order["created_at"]),
            )
            changes = {
                "items": items,
                "subtotal": money_str(subtotal),
                "delivery_fee": money_str(fee),
                "total": money_str(total),
                "distance_m": distance_m,
                "customer_location": {"lat": loc.lat, "lng": loc.lng, "address": loc.address},
            }
            moved = changes["customer_location"] != view["customer_location"]
            await insert_event(
                conn,
                order_id,
                order["created_at"],
                EventType.ORDER_CHANGED,
                actor,
                {"changes": changes, "address_moved": moved},
                now,
            )
            return await fetch_order(conn, order_id)
