"""Going offline mid-delivery: drivers whose heartbeat expired while they held orders.

Every ``fleet_monitor_interval_s`` (1 s) one Lua call per region takes expired drivers off the
map and moves those holding orders to the region's pending set (see scripts.SWEEP_EXPIRED).
For each pending driver the monitor records ``DRIVER_UNAVAILABLE`` on each of its orders,
takes the orders off the driver, and only then acknowledges it. An order already picked up
stays with the driver (it has the food): the recorder flags it for operations instead.
The pending set lives in Redis, so a monitor that stops half way finds the same drivers
again when it restarts: at least once, never missed; the recorder makes repeats harmless (a
second DRIVER_UNAVAILABLE is a conflict, which means it is already done). A failure is
logged and retried at the next sweep; it holds back only its own driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from ontheway.errors import OnTheWayError
from ontheway.fleet.store import ExpiredDriver, FleetStore

log = logging.getLogger(__name__)


class UnavailableRecorder(Protocol):
    """Where DRIVER_UNAVAILABLE goes (the orders side); must be idempotent per order.
    Returns False when the driver keeps the order (picked up: flagged instead)."""

    async def driver_unavailable(self, order_id: str, driver_id: str) -> bool: ...


class OfflineMonitor:
    """Notices expired heartbeats of drivers holding orders and reports each order."""

    def __init__(
        self,
        store: FleetStore,
        regions: Sequence[str],
        recorder: UnavailableRecorder,
        interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.regions = list(regions)
        self.recorder = recorder
        self.interval_s = interval_s
        self.reported = 0
        self.kept = 0

    async def sweep_once(self) -> list[ExpiredDriver]:
        """One pass over every region; returns the drivers handled. A driver whose orders
        cannot be recorded now is logged and stays pending for the next pass; the drivers
        after it are still handled in this one."""
        handled = []
        for expired in await self.store.sweep_expired(self.regions):
            try:
                await self._report(expired)
            except OnTheWayError as exc:
                log.warning(
                    "offline driver %s of %s left for the next sweep: %s",
                    expired.driver_id, expired.region, exc.message,
                )  # fmt: skip
                continue
            handled.append(expired)
        return handled

    async def _report(self, expired: ExpiredDriver) -> None:
        for order_id in expired.order_ids:
            if await self.recorder.driver_unavailable(order_id, expired.driver_id):
                await self.store.remove_order(expired.region, expired.driver_id, order_id)
                self.reported += 1
            else:
                self.kept += 1
        await self.store.ack_unavailable(expired)

    async def run(self) -> None:
        """Sweep forever; failures are logged and the same drivers retried next time."""
        while True:
            try:
                await self.sweep_once()
            except OnTheWayError as exc:
                log.warning("offline monitor: %s (retrying)", exc.message)
            except Exception:
                log.exception("offline monitor failed (retrying)")
            await asyncio.sleep(self.interval_s)
