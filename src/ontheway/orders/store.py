"""Access to the shard that holds a region's orders."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from ontheway.connections import Connections
from ontheway.errors import NotFound
from ontheway.orders.ids import created_span
from ontheway.orders.lifecycle import EventType
from ontheway.regions import Catalog

Conn = AsyncConnection[dict[str, Any]]

# The order view's columns, coordinates as plain lat/lng, with the payment's status.
ORDER_COLUMNS = """
       o.order_id, o.region, o.customer_id, o.restaurant_id, o.driver_id, o.items,
       o.subtotal, o.delivery_fee, o.tip, o.total, o.status, o.delivery_address,
       ST_Y(o.customer_location::geometry) AS customer_lat,
       ST_X(o.customer_location::geometry) AS customer_lng,
       ST_Y(o.restaurant_location::geometry) AS restaurant_lat,
       ST_X(o.restaurant_location::geometry) AS restaurant_lng,
       o.created_at, o.pickup_time, o.estimated_delivery, o.delivered_at, o.distance_m"""
"""The order view's columns of a row ``o`` of ``orders`` (all but the payment status)."""
PAYMENT_STATUS = """(SELECT p.status FROM payments p WHERE p.order_id = o.order_id
          AND p.order_created_at = o.created_at ORDER BY p.created_at DESC LIMIT 1)"""
"""The latest payment status of the order ``o``."""
ORDER_SELECT = f"SELECT {ORDER_COLUMNS},\n       {PAYMENT_STATUS} AS payment_status\nFROM orders o "
ORDER_BY_ID = ORDER_SELECT + "WHERE o.order_id = %s AND o.created_at BETWEEN %s AND %s"
"""One order by its id and ``created_span``: the partition of its month only."""


class ShardAccess:
    """Connections to the shard of a region, with client errors turned into ours."""

    def __init__(self, conns: Connections, catalog: Catalog):
        self.conns = conns
        self.catalog = catalog

    @asynccontextmanager
    async def connection(self, region: str) -> AsyncIterator[Conn]:
        """A connection (dict rows) to the shard of ``region``; errors become 503."""
        async with self.conns.shard_connection(self.catalog.shard_for(region)) as conn:
            yield conn


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
        ORDER_BY_ID + (" FOR UPDATE OF o" if lock else ""),
        (order_id, *created_span(order_id)),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"no order {order_id!r}", field="order_id", code="unknown_order")
    return row
