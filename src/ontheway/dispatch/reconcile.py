"""Leaked reservations: a driver counting an order that PostgreSQL does not give it.

An assignment or an offer reserves the driver's capacity in Redis before PostgreSQL commits
(see assign.py, offering.py). A process that dies in between, or a Redis reply lost on the
way back, leaves the order in the driver's active orders without the order being that
driver's: the driver counts one order too many, for ever. The reconciler finds them.

Every ``dispatch_reconcile_interval_s`` it reads the drivers' active-order sets and compares
each member with PostgreSQL, one query per region. The drivers come from each region's index
of drivers holding orders (``drivers:carrying:{sf}``, kept by the capacity scripts), not from
a scan of every key in Redis, which grows with the whole fleet and every other key; the first
pass of a process also scans once and indexes the sets it finds (made before the index
existed). A
member is the driver's when the order has a driver (assigned, at the restaurant, picked up)
and it is that driver. Any other member is a suspect; a suspect is removed only if

- it has been a suspect for ``dispatch_reconcile_grace_s`` (so a reservation in flight, made
  a moment before the commit, is never touched),
- its order's assignment lock can be taken (no assignment or offer is being made now; the
  reconciler holds the lock while it decides, so none starts meanwhile),
- the order has no offer to that driver (open, or being answered), and
- PostgreSQL, read again under the lock, still does not give the order to the driver.

Members that are not order ids of the region are left alone. Any number of processes may
reconcile at once: the lock serialises them with the dispatchers and with each other.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ontheway.connections import Connections, dependency_errors
from ontheway.dispatch.offers import offer_key
from ontheway.errors import NotFound, OnTheWayError
from ontheway.fleet import keys
from ontheway.fleet.model import UnknownDriver
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.ids import created_span_of, region_of
from ontheway.orders.lifecycle import WITH_DRIVER
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.settings import Settings

log = logging.getLogger(__name__)

_KEY = re.compile(r"^driver:\{(?P<region>[^}]+)\}:(?P<driver>.+):active_orders$")
_CARRIED = {s.value for s in WITH_DRIVER}

Reservation = tuple[str, str, str]  # region, driver, order


@dataclass
class ReconcileStats:
    """What the reconciler has done since it started."""

    passes: int = 0
    checked: int = 0
    removed: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Reconciler:
    """Removes reservations PostgreSQL does not back, once they are old enough."""

    def __init__(
        self,
        fleet: FleetStore,
        shards: ShardAccess,
        regions: Sequence[str],
        *,
        grace_s: float,
        interval_s: float = 30.0,
    ) -> None:
        self.fleet = fleet
        self.shards = shards
        self.regions = set(regions)
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.stats = ReconcileStats()
        self._suspects: dict[Reservation, float] = {}  # -> first seen (monotonic s)
        self._indexed = False  # whether this process has indexed the sets made before

    async def _index_older_sets(self) -> None:
        """Scan the keys once for active-order sets and add their drivers to the index."""
        found: dict[str, list[str]] = {}
        with dependency_errors("Redis"):
            async for raw in self.fleet.redis.scan_iter(
                match="driver:{*}:*:active_orders", count=1000
            ):
                match = _KEY.match(_text(raw))
                if match is not None and match["region"] in self.regions:
                    found.setdefault(match["region"], []).append(match["driver"])
        for region, drivers in found.items():
            await self.fleet.index_carrying(region, drivers)

    async def reservations(self) -> dict[str, dict[str, set[str]]]:
        """Every non-empty active-order set of our regions: region -> driver -> orders."""
        if not self._indexed:
            await self._index_older_sets()
            self._indexed = True
        sets: list[tuple[str, str, str]] = []  # key, region, driver
        for region in sorted(self.regions):
            for driver in sorted(await self.fleet.carrying(region)):
                sets.append((keys.active_orders(region, driver), region, driver))
        with dependency_errors("Redis"):
            found: dict[str, dict[str, set[str]]] = {}
            for start in range(0, len(sets), 500):
                chunk = sets[start : start + 500]
                async with self.fleet.redis.pipeline(transaction=False) as pipe:
                    for key, _, _ in chunk:
                        pipe.smembers(key)
                    replies = await pipe.execute()
                for (_, region, driver), members in zip(chunk, replies, strict=True):
                    if members:
                        found.setdefault(region, {})[driver] = {_text(m) for m in members}
        for _, region, driver in sets:
            if driver not in found.get(region, {}):
                await self.fleet.forget_idle(region, driver)  # emptied outside the scripts
        return found

    async def carriers(self, region: str, order_ids: Sequence[str]) -> dict[str, str]:
        """Order -> the driver PostgreSQL gives it to now (orders with no driver left out)."""
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(
                "SELECT order_id, driver_id FROM orders"
                " WHERE order_id = ANY(%s) AND created_at BETWEEN %s AND %s"
                " AND status = ANY(%s) AND driver_id IS NOT NULL",
                (list(order_ids), *created_span_of(order_ids), sorted(_CARRIED)),
            )
            return {row["order_id"]: row["driver_id"] for row in await cur.fetchall()}

    async def reconcile_once(self) -> list[Reservation]:
        """One pass over every region; returns the reservations removed."""
        now = time.monotonic()
        suspects: dict[Reservation, float] = {}
        removed: list[Reservation] = []
        for region, drivers in (await self.reservations()).items():
            ours = {o for orders in drivers.values() for o in orders if _is_order_of(o, region)}
            carriers = await self.carriers(region, sorted(ours))
            for driver, orders in drivers.items():
                for order in sorted(orders & ours):
                    self.stats.checked += 1
                    if carriers.get(order) == driver:
                        continue
                    key = (region, driver, order)
                    suspects[key] = self._suspects.get(key, now)
                    if now - suspects[key] >= self.grace_s and await self._release(*key):
                        removed.append(key)
                        del suspects[key]
        self._suspects = suspects
        self.stats.passes += 1
        self.stats.removed += len(removed)
        return removed

    async def _release(self, region: str, driver: str, order: str) -> bool:
        """Remove one suspect under the order's lock, if nothing backs it; True if removed."""
        lock = await self.fleet.acquire_lock(region, order)
        if lock is None:
            return False  # being assigned or offered right now
        try:
            with dependency_errors("Redis"):
                offered_to = await self.fleet.redis.hget(offer_key(region, order), "driver_id")
            if offered_to is not None and _text(offered_to) == driver:
                return False
            if (await self.carriers(region, [order])).get(order) == driver:
                return False
            try:
                await self.fleet.remove_order(region, driver, order)
            except UnknownDriver:  # no profile left in the region: only the set remains
                with dependency_errors("Redis"):
                    await self.fleet.redis.srem(keys.active_orders(region, driver), order)
        finally:
            await self.fleet.release_lock(lock)
        log.warning("removed leaked reservation of %s by driver %s (%s)", order, driver, region)
        return True

    async def run(self) -> None:
        """Reconcile forever; a failure is logged and the next pass tries again."""
        while True:
            try:
                await self.reconcile_once()
            except OnTheWayError as exc:
                log.warning("reservation reconciler: %s (retrying)", exc.message)
            except Exception:
                log.exception("reservation reconciler failed (retrying)")
            await asyncio.sleep(self.interval_s)


def build_reconciler(conns: Connections, catalog: Catalog, settings: Settings) -> Reconciler:
    """A reconciler of every region of the catalog, over the process's connections."""
    return Reconciler(
        open_store(conns.require_redis(), settings),
        ShardAccess(conns, catalog),
        [r.region for r in catalog],
        grace_s=settings.dispatch_reconcile_grace_s,
        interval_s=settings.dispatch_reconcile_interval_s,
    )


def _is_order_of(order_id: str, region: str) -> bool:
    try:
        return region_of(order_id, "ord") == region
    except NotFound:
        return False
