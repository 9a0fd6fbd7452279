"""DRIVER_UNAVAILABLE recorded through the orders service: the order's status and its event
in one transaction on its shard (the orders area owns both)."""

from __future__ import annotations

from ontheway.errors import Conflict, NotFound
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService

ACTOR = "fleet_monitor"


class OrderEventsRecorder:
    """The offline monitor's recorder (see monitor.UnavailableRecorder)."""

    def __init__(self, orders: OrderService) -> None:
        self.orders = orders

    async def driver_unavailable(self, order_id: str, driver_id: str) -> None:
        """Record that the order's driver went away; a repeat or a finished order is a no-op."""
        try:
            await self.orders.transition(
                order_id,
                EventType.DRIVER_UNAVAILABLE,
                ACTOR,
                data={"driver_id": driver_id, "reason": "heartbeat_expired"},
                expect_driver=driver_id,
            )
        except (Conflict, NotFound):
            return  # already reported, reassigned, delivered or cancelled: nothing to do
