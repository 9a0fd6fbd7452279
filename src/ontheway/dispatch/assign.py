"""Assigning a driver to an order, with PostgreSQL and Redis kept in step.

The order's status lives in PostgreSQL, the driver's active orders (its capacity) in Redis;
no transaction spans both. So an assignment takes the order's lock and reserves the driver's
capacity in Redis, in one script (which fails fast when the lock is held or the driver is
full, offline or unknown), then commits the transition in PostgreSQL; if that fails, the
reservation is taken back. The lock is let go with the status pushed to the trackers, in
one round trip too.
A process that dies between the two leaves a reservation without an assignment: the order
can be assigned again once the lock expires, and the driver counts one order too many until
the reservation is reconciled (``dispatch.reconcile``, in every API process).
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from ontheway.errors import Conflict, OnTheWayError
from ontheway.fleet.store import AssignmentLock, FleetStore
from ontheway.fleet.tracking import publish_status, status_message
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.service import OrderService

log = logging.getLogger(__name__)

# Statuses after which the driver no longer carries the order.
_RELEASED = {Status.DELIVERED.value, Status.CANCELLED.value}


class Assignments:
    """Assign drivers and tell the fleet and the trackers about committed changes."""

    def __init__(self, orders: OrderService, fleet: FleetStore, redis: aioredis.Redis):
        self.orders = orders
        self.fleet = fleet
        self.redis = redis

    async def assign(
        self,
        order_id: str,
        driver_id: str,
        actor: str,
        handles: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Assign ``driver_id``: lock and reserve capacity (one round trip to Redis), commit;
        undo the reservation if the commit fails. A second assignment racing for the same
        order gets a 409. ``handles``: the stream event it is the effect of (see
        ``OrderService.transition``)."""
        region = region_of(order_id, "ord")
        taken = await self.fleet.lock_and_add_order(region, driver_id, order_id)
        if taken is None:
            raise Conflict(
                "the order is being assigned right now",
                field="order_id",
                code="assignment_in_progress",
            )
        lock, added = taken
        try:
            row = await self.orders.transition(
                order_id, EventType.DRIVER_ASSIGNED, actor, driver_id=driver_id, handles=handles
            )
        except BaseException:
            try:
                # Only a reservation made here is taken back: one the driver held already is
                # its assignment of this order (a repeated dispatch), which stands.
                if added:
                    await self.fleet.remove_order(region, driver_id, order_id)
            finally:
                await self.fleet.release_lock(lock)
            raise
        await self.committed(row, lock)
        return row

    async def committed(self, row: dict[str, Any], lock: AssignmentLock | None = None) -> None:
        """After a change is committed: free the driver when the order is finished, let go
        of the order's assignment lock (``lock``) and push the status to the order's
        trackers, these two in one round trip. The change stands whatever happens here, so
        a failure is logged (a lock not let go expires; the tracker reads the status again
        when it reconnects)."""
        try:
            if row["status"] in _RELEASED and row["driver_id"]:
                await self.fleet.remove_order(row["region"], row["driver_id"], row["order_id"])
            if lock is None:
                await publish_status(self.redis, row["order_id"], row["status"])
            else:
                await self.fleet.release_lock(
                    lock, publish=[status_message(row["order_id"], row["status"])]
                )
        except OnTheWayError as exc:
            log.warning(
                "order %s is %s but the fleet was not told: %s",
                row["order_id"],
                row["status"],
                exc.message,
            )
