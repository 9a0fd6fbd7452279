"""After a traffic change: the region's delivery zones refreshed and its active deliveries
re-routed, in the background, after the weights are written (never inside the write).

An active delivery (driver_assigned, driver_at_restaurant, picked_up) is routed again from its
driver's last position (Redis) through the restaurant when the food is not picked up yet, to
the customer. Its new estimate: arrival at the restaurant, or the food's readiness if later
(created_at + the restaurant's mean preparation time), + pickup service, + the drive to the
customer, + drop-off service. When it moves by at least ``min_change_s`` from the order's
current estimate, earlier *or later*, the order gets a ``ROUTE_UPDATED`` event with the new
``estimated_delivery`` (one transaction; the first promise stays in ``ORDER_PLACED``), its
trackers an ``eta`` message and its driver the new route on the inbox. Later too, not only
earlier: a customer would rather learn of a delay from the app than from the clock, and the
threshold keeps small wobbles quiet.

Bounded: at most ``max_orders`` deliveries per change (oldest first), ``concurrency`` routes
at once. A change that arrives while a region is being followed up triggers one more run
after it, not a run per change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from ontheway import tasks
from ontheway.connections import Connections
from ontheway.errors import OnTheWayError
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.fleet.tracking import publish_eta, publish_inbox
from ontheway.orders.lifecycle import Status
from ontheway.orders.models import iso
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, LatLng
from ontheway.roads.delivery import ZonesSummary, refresh_zones
from ontheway.roads.planning import DROPOFF_SERVICE_S, PICKUP_SERVICE_S
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings

log = logging.getLogger(__name__)

ACTIVE_DELIVERY = frozenset({Status.DRIVER_ASSIGNED, Status.DRIVER_AT_RESTAURANT, Status.PICKED_UP})
_ACTIVE = """
SELECT o.order_id, o.driver_id, o.status, o.created_at, o.estimated_delivery,
       ST_Y(o.restaurant_location::geometry) AS r_lat,
       ST_X(o.restaurant_location::geometry) AS r_lng,
       ST_Y(o.customer_location::geometry) AS c_lat,
       ST_X(o.customer_location::geometry) AS c_lng,
       coalesce(r.prep_time_mean_s, 0) AS prep_s
FROM orders o LEFT JOIN restaurants r USING (restaurant_id)
WHERE o.region = %s AND o.status = ANY(%s) AND o.driver_id IS NOT NULL
ORDER BY o.created_at LIMIT %s
"""


@dataclass
class RerouteSummary:
    """What one run did: orders looked at, updated, left as they were, skipped (no position,
    no route, or the order moved on meanwhile)."""

    region: str
    considered: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    took_s: float = 0.0


@dataclass
class Rerouter:
    """Re-routes a region's active deliveries on the current road weights."""

    orders: OrderService
    roads: RoadService
    fleet: FleetStore
    redis: aioredis.Redis
    max_orders: int
    concurrency: int
    min_change_s: float

    async def active_deliveries(self, region: str) -> list[dict[str, Any]]:
        """The region's deliveries under way (oldest first, at most ``max_orders``)."""
        async with self.orders.shards.connection(region) as conn:
            cur = await conn.execute(
                _ACTIVE, (region, [s.value for s in ACTIVE_DELIVERY], self.max_orders)
            )
            return list(await cur.fetchall())

    async def reroute_region(self, region: str, reason: str = "traffic") -> RerouteSummary:
        """Re-route every active delivery of the region; announce the changed estimates."""
        started = time.perf_counter()
        summary = RerouteSummary(region)
        rows = await self.active_deliveries(region)
        summary.considered = len(rows)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row: dict[str, Any]) -> str:
            async with gate:
                try:
                    return await self.reroute_order(row, reason)
                except OnTheWayError as exc:  # off the map, no route, graph busy: next time
                    log.info("no new route for %s: %s", row["order_id"], exc)
                    return "skipped"

        for outcome in await asyncio.gather(*(one(row) for row in rows)):
            setattr(summary, outcome, getattr(summary, outcome) + 1)
        summary.took_s = time.perf_counter() - started
        return summary

    async def reroute_order(self, row: dict[str, Any], reason: str) -> str:
        """Route one delivery again; ``updated``, ``unchanged`` or ``skipped``."""
        fix = await self.fleet.last_fix(row["driver_id"])
        if fix is None:
            return "skipped"
        driver = LatLng(lat=fix.lat, lng=fix.lng)
        restaurant = LatLng(lat=row["r_lat"], lng=row["r_lng"])
        customer = LatLng(lat=row["c_lat"], lng=row["c_lng"])
        picked_up = row["status"] == Status.PICKED_UP.value
        route = await self.roads.route(
            [driver, customer] if picked_up else [driver, restaurant, customer]
        )
        now = datetime.now(UTC)
        new_eta = estimated_delivery(
            now, [leg.duration_s for leg in route.legs], row["created_at"], float(row["prep_s"])
        )
        old_eta = row["estimated_delivery"]
        if old_eta is not None and abs((new_eta - old_eta).total_seconds()) < self.min_change_s:
            return "unchanged"
        data = {
            "estimated_delivery": iso(new_eta),
            "previous_estimated_delivery": iso(old_eta),
            "duration_s": round(route.duration_s, 1),
            "distance_m": round(route.distance_m, 1),
            "reason": reason,
            "driver_id": row["driver_id"],
        }
        updated = await self.orders.update_estimate(
            row["order_id"],
            "system",
            new_eta,
            data,
            statuses=ACTIVE_DELIVERY,
            expect_driver=row["driver_id"],
        )
        if updated is None:
            return "skipped"
        await publish_eta(self.redis, row["order_id"], iso(new_eta) or "")
        message = {"type": "route", "order_id": row["order_id"], "route": route.to_dict()}
        await publish_inbox(self.redis, row["driver_id"], message)
        return "updated"


def estimated_delivery(
    now: datetime, legs_s: list[float], created_at: datetime, prep_s: float
) -> datetime:
    """The delivery estimate of a route from the driver: with two legs (to the restaurant,
    to the customer) the driver waits for the food if it is not ready on arrival; with one
    (already picked up) it is the drive plus the drop-off."""
    if len(legs_s) == 1:
        return now + timedelta(seconds=legs_s[0] + DROPOFF_SERVICE_S)
    arrival = now + timedelta(seconds=legs_s[0])
    pickup = max(arrival, created_at + timedelta(seconds=prep_s))
    return pickup + timedelta(seconds=PICKUP_SERVICE_S + legs_s[1] + DROPOFF_SERVICE_S)


@dataclass
class TrafficFollowUp:
    """Runs the follow-up of traffic changes, one run per region at a time: ``refresh`` (the
    zones), then the re-routing. A change during a run asks for one more run."""

    rerouter: Rerouter
    refresh: Callable[[str], Awaitable[Any]]
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _again: set[str] = field(default_factory=set)
    last: dict[str, RerouteSummary] = field(default_factory=dict)

    def changed(self, region: str) -> None:
        """A traffic change was written in ``region``: follow it up in the background."""
        if region in self._running:
            self._again.add(region)
            return
        self._running[region] = asyncio.create_task(self._run(region), name=f"reroute-{region}")

    async def wait(self, region: str) -> None:
        """Until the region's follow-up (if any) is done."""
        while (task := self._running.get(region)) is not None:
            await asyncio.shield(task)

    async def run_once(self, region: str) -> RerouteSummary:
        """Refresh the zones and re-route, now (the CLI's way, in its own process)."""
        try:
            await self.refresh(region)
        except OnTheWayError:
            log.exception("refreshing the zones of %s after a traffic change failed", region)
        summary = await self.rerouter.reroute_region(region)
        self.last[region] = summary
        return summary

    async def _run(self, region: str) -> None:
        try:
            while True:
                self._again.discard(region)
                try:
                    await self.run_once(region)
                except Exception:  # logged, and the next change tries again
                    log.exception("following up the traffic change in %s failed", region)
                if region not in self._again:
                    return
        finally:
            self._running.pop(region, None)

    async def aclose(self) -> None:
        """Cancel the runs under way."""
        await tasks.stop(list(self._running.values()))


def follow_up(
    orders: OrderService,
    roads: RoadService,
    fleet: FleetStore,
    conns: Connections,
    catalog: Catalog,
    settings: Settings,
) -> TrafficFollowUp:
    """The follow-up of traffic changes over one process's services (the roads service must be
    the one that wrote the change: its network holds the new times the zones are built on)."""
    rerouter = Rerouter(
        orders,
        roads,
        fleet,
        conns.require_redis(),
        max_orders=settings.reroute_max_orders,
        concurrency=settings.reroute_concurrency,
        min_change_s=settings.reroute_min_change_s,
    )

    async def refresh(region: str) -> ZonesSummary | None:
        return await refresh_zones(roads, await roads.graph_db(), conns, catalog, region)

    return TrafficFollowUp(rerouter, refresh)


async def follow_up_once(
    settings: Settings, catalog: Catalog, roads: RoadService, region: str
) -> RerouteSummary:
    """The follow-up of a change made by this process (``ontheway roads traffic``), now."""
    conns = await Connections.open(settings, shards=[catalog.shard_for(region)], pool_max=4)
    try:
        orders = OrderService(ShardAccess(conns, catalog), roads)
        fleet = open_store(conns.require_redis(), settings)
        return await follow_up(orders, roads, fleet, conns, catalog, settings).run_once(region)
    finally:
        await conns.close()
