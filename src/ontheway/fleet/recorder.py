"""What the offline monitor records on the orders side, one order at a time.

Before pickup, ``DRIVER_UNAVAILABLE`` goes through the orders service (status and event in one
transaction on the order's shard) and the order searches for a driver again. After pickup the
driver has the food, so the order is not searched again: it is flagged for operations instead,
once (``ORDER_FLAGGED`` with reason ``driver_lost_after_pickup``, under the order's row lock),
and put on its region's ops list in Redis (``ops:driver_lost:{sf}``, order -> when, seconds).
The driver keeps the order in the fleet: if it comes back, it can still deliver it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ontheway.connections import dependency_errors
from ontheway.errors import Conflict, NotFound
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.service import OrderService
from ontheway.orders.store import fetch_order, insert_event

ACTOR = "fleet_monitor"
LOST_AFTER_PICKUP = "driver_lost_after_pickup"


def lost_after_pickup_key(region: str) -> str:
    """The region's orders whose driver vanished after pickup, for operations."""
    return f"ops:driver_lost:{{{region}}}"


class OrderEventsRecorder:
    """The offline monitor's recorder (see monitor.UnavailableRecorder)."""

    def __init__(self, orders: OrderService) -> None:
        self.orders = orders

    async def driver_unavailable(self, order_id: str, driver_id: str) -> bool:
        """Record that the order's driver went away; False when the driver keeps the order
        (picked up: flagged instead). A repeat or a finished order is a no-op."""
        try:
            await self.orders.transition(
                order_id,
                EventType.DRIVER_UNAVAILABLE,
                ACTOR,
                data={"driver_id": driver_id, "reason": "heartbeat_expired"},
                expect_driver=driver_id,
            )
        except NotFound:
            return True
        except Conflict:
            # Already reported, reassigned, delivered or cancelled -- or picked up.
            return not await self._flag_if_picked_up(order_id, driver_id)
        return True

    async def _flag_if_picked_up(self, order_id: str, driver_id: str) -> bool:
        """Flag the order if this driver picked it up; True when it did (whether flagged now
        or before)."""
        region = region_of(order_id, "ord")
        async with self.orders.shards.connection(region) as conn, conn.transaction():
            order = await fetch_order(conn, order_id, lock=True)
            if order["status"] != Status.PICKED_UP.value or order["driver_id"] != driver_id:
                return False
            cur = await conn.execute(
                "SELECT 1 FROM order_events WHERE order_id = %s AND order_created_at = %s"
                " AND event_type = %s AND data->>'reason' = %s AND data->>'driver_id' = %s"
                " LIMIT 1",
                (order_id, order["created_at"], EventType.ORDER_FLAGGED.value,
                 LOST_AFTER_PICKUP, driver_id),
            )  # fmt: skip
            if await cur.fetchone() is None:
                data = {"reason": LOST_AFTER_PICKUP, "driver_id": driver_id}
                await insert_event(
                    conn, order_id, order["created_at"], EventType.ORDER_FLAGGED, ACTOR, data,
                    datetime.now(UTC),
                )  # fmt: skip
        # After the commit: a failure here is retried by the monitor, and finds the event.
        redis = self.orders.shards.conns.require_redis()
        with dependency_errors("Redis"):
            await redis.zadd(lost_after_pickup_key(region), {order_id: time.time()}, nx=True)
        return True
