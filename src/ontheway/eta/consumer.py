"""The ETA consumer (``ontheway worker --consumer eta``): the ETA log, and a new estimate at
assignment, at pickup and after every re-route (``ROUTE_UPDATED``), pushed to the customer's
tracking socket as an ``eta`` message with its window. The promise made at placement stays
in ``order_timings.promised_delivery`` and in the first estimate of ``eta_estimates``.

A new estimate's legs are from where the driver is now (its last position in Redis): the road
to the restaurant unless the food is picked up, the preparation still to come (the kitchen's
confirmed time, else the restaurant's profile, minus the time already spent; none once the
food is ready), the service times and the road to the customer. No road (off the map): the
straight line at the placement estimate's average speed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ontheway.connections import Connections
from ontheway.errors import InvalidInput, NotFound
from ontheway.eta.estimator import Estimate, EtaEstimator, stored_features
from ontheway.eta.facts import RegionFacts, driver_pace, kitchen_facts
from ontheway.eta.features import Context, Legs, Stage
from ontheway.eta.log import insert_estimate
from ontheway.eta.placement import registry_for
from ontheway.events.consumers import ETA, AfterCommit, Consumer, Handler
from ontheway.events.model import Event
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.fleet.tracking import publish_eta
from ontheway.orders.ids import created_span
from ontheway.orders.lifecycle import EventType, Status
from ontheway.regions import LatLng, load_catalog
from ontheway.roads.errors import Unreachable
from ontheway.roads.geo import haversine_m
from ontheway.roads.planning import (
    DROPOFF_SERVICE_S,
    PICKUP_SERVICE_S,
    STRAIGHT_LINE_SPEED_MPS,
    slowdown,
)
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings

log = logging.getLogger(__name__)

ACTIVE = (Status.DRIVER_ASSIGNED.value, Status.DRIVER_AT_RESTAURANT.value, Status.PICKED_UP.value)
_ORDER = """
SELECT o.order_id, o.region, o.restaurant_id, o.status, o.driver_id, o.created_at,
       ST_Y(o.restaurant_location::geometry) AS r_lat,
       ST_X(o.restaurant_location::geometry) AS r_lng,
       ST_Y(o.customer_location::geometry) AS c_lat,
       ST_X(o.customer_location::geometry) AS c_lng,
       coalesce(r.prep_time_mean_s, 0) AS prep_s, t.confirmed_prep_s, t.ready_at
FROM orders o LEFT JOIN restaurants r USING (restaurant_id)
     LEFT JOIN order_timings t USING (order_id)
WHERE o.order_id = %s AND o.created_at BETWEEN %s AND %s
"""


@dataclass
class Reestimator:
    """Makes, keeps and pushes an order's new estimate."""

    estimator: EtaEstimator
    roads: RoadService
    fleet: FleetStore
    regions: RegionFacts

    async def reestimate(self, conn: Any, event: Event, stage: Stage) -> AfterCommit | None:
        """A new estimate of the order's delivery (None: the order is no longer under way,
        or its driver has no position)."""
        cur = await conn.execute(_ORDER, (event.order_id, *created_span(event.order_id)))
        order = await cur.fetchone()
        if order is None or order["status"] not in ACTIVE or order["driver_id"] is None:
            return None
        at = await self.fleet.position(order["region"], order["driver_id"])
        if at is None:
            return None
        now = event.ts
        scale = self.estimator.time_scale
        picked = order["status"] == Status.PICKED_UP.value
        legs, traffic = await self._legs(order, LatLng(lat=at[0], lng=at[1]), picked, now)
        kitchen = await self.regions.add_to(
            await kitchen_facts(conn, order["region"], order["restaurant_id"], now, scale),
            order["region"],
            now,
            lambda _region: nullcontext(conn),  # read in this event's transaction
        )
        ctx = Context(
            elapsed_s=(now - order["created_at"]).total_seconds() * scale,
            restaurant_prep_recent_s=kitchen.prep_recent_s, restaurant_prep_n=kitchen.prep_n,
            restaurant_queue=kitchen.queue,
            confirmed_prep_s=_scaled(order["confirmed_prep_s"], scale),
            driver_pace=await driver_pace(conn, order["driver_id"]),
            driver_distance_m=haversine_m(at[0], at[1], order["r_lat"], order["r_lng"]),
            region_assign_recent_s=kitchen.assign_recent_s,
            region_waiting=kitchen.region_waiting, region_active=kitchen.region_active,
            driver_active=len(await self.fleet.active_orders(order["region"], order["driver_id"])),
            traffic_to_restaurant=traffic[0], traffic_to_customer=traffic[1],
        )  # fmt: skip
        est = self.estimator.estimate(order["region"], stage, legs, ctx, now)
        stored = est.to_dict() | {"features": stored_features(est)}
        await insert_estimate(conn, event.order_id, event.event_id, now, stored)
        return _push(event.order_id, est)

    async def _legs(self, order: dict[str, Any], driver: LatLng, picked: bool,
                    now: datetime) -> tuple[Legs, tuple[float | None, float | None]]:  # fmt: skip
        """The baseline's legs, and the traffic on the ways to the restaurant and to the
        customer (time over free flow; None: not by road, or no such way left)."""
        restaurant = LatLng(lat=order["r_lat"], lng=order["r_lng"])
        customer = LatLng(lat=order["c_lat"], lng=order["c_lng"])
        if picked:
            ((to_customer, slow),) = await self._travel([(driver, customer)])
            return Legs(0.0, 0.0, 0.0, 0.0, to_customer, DROPOFF_SERVICE_S), (None, slow)
        (to_restaurant, slow_r), (to_customer, slow_c) = await self._travel(
            [(driver, restaurant), (restaurant, customer)]
        )
        scale = self.estimator.time_scale
        if order["ready_at"] is not None:
            remaining = 0.0
        else:
            prep = _scaled(order["confirmed_prep_s"], scale) or float(order["prep_s"])
            remaining = max(0.0, prep - (now - order["created_at"]).total_seconds() * scale)
        legs = Legs(0.0, to_restaurant, remaining, PICKUP_SERVICE_S, to_customer,
                    DROPOFF_SERVICE_S)  # fmt: skip
        return legs, (slow_r, slow_c)

    async def _travel(self, legs: list[tuple[LatLng, LatLng]]) -> list[tuple[float, float | None]]:
        """Each leg's time by road (one matrix for them all, its diagonal) and its traffic
        (time over free flow); a leg off the map or unreachable: the straight line at an
        average speed, traffic unknown."""
        origins, destinations = [a for a, _ in legs], [b for _, b in legs]
        try:
            matrix = await self.roads.many_to_many(origins, destinations)
            free = await self.roads.free_flow_matrix(origins, destinations, matrix)
            found: list[float | None] = [matrix[i][i] for i in range(len(legs))]
            free_s: list[float | None] = [free[i][i] for i in range(len(legs))]
        except (Unreachable, InvalidInput, NotFound) as exc:
            log.debug("ETA by straight line: %s", exc)
            found = free_s = [None] * len(legs)
        return [
            (
                haversine_m(a.lat, a.lng, b.lat, b.lng) / STRAIGHT_LINE_SPEED_MPS
                if t is None
                else t,
                slowdown(t, f),
            )
            for (a, b), t, f in zip(legs, found, free_s, strict=True)
        ]


def _scaled(wall_s: float | None, scale: float) -> float | None:
    return None if wall_s is None else float(wall_s) * scale


def _push(order_id: str, est: Estimate) -> Callable[[Connections], Awaitable[None]]:
    async def push(conns: Connections) -> None:
        found = est.to_dict()
        extra = {k: found[k] for k in ("earliest", "latest", "stage", "method")}
        await publish_eta(conns.require_redis(), order_id, found["estimated_delivery"], extra)

    return push


def _then(first: Handler, stage: Stage, re: Reestimator) -> Handler:
    """``first`` (the ETA log's record of the event), then a new estimate."""

    async def handle(conn: Any, event: Event) -> AfterCommit | None:
        await first(conn, event)
        return await re.reestimate(conn, event, stage)

    return handle


REESTIMATED = {
    EventType.DRIVER_ASSIGNED.value: Stage.ASSIGNMENT,
    EventType.ORDER_PICKED_UP.value: Stage.PICKUP,
    EventType.ROUTE_UPDATED.value: Stage.REROUTE,
}


def build_eta_consumer(conns: Connections, settings: Settings) -> Consumer:
    """The ``eta`` consumer over the process's connections."""
    catalog = load_catalog(settings.region_catalog)
    return eta_consumer(Reestimator(
        EtaEstimator(registry_for(settings.eta_model_dir), settings.time_scale),
        RoadService(conns.graphs, catalog),
        open_store(conns.require_redis(), settings),
        RegionFacts(settings.time_scale),
    ))  # fmt: skip


def eta_consumer(re: Reestimator) -> Consumer:
    """The ETA log's handlers, with a new estimate after those of ``REESTIMATED``."""
    handlers = dict(ETA.handlers)
    for kind, stage in REESTIMATED.items():
        handlers[kind] = _then(ETA.handlers[kind], stage, re)
    return Consumer("eta", handlers)
