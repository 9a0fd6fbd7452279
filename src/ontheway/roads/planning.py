"""Route-based plans over the road graph: a driver's stops in their best order with the ETA at
each (``roads.sequence`` on a CCH travel-time matrix), and an order's estimated delivery.

An order's delivery estimate: the driver reaches the restaurant (travel by road), waits for the
food if it is not ready yet (its preparation time), spends the pickup service time, drives to
the customer and spends the drop-off service time. The estimate and, later, the actual time are
what a learned model will be trained on; this is the road-based baseline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ontheway.errors import DependencyUnavailable, InvalidInput, NotFound
from ontheway.regions import LatLng
from ontheway.roads.delivery import Delivery, zone_answers
from ontheway.roads.errors import Unreachable
from ontheway.roads.matrix import VERSION_CHECK_S
from ontheway.roads.routing import RoadService
from ontheway.roads.sequence import Objective, Plan, Stop, plan_stops
from ontheway.shared_reads import SharedReads

if TYPE_CHECKING:
    from ontheway.fleet.store import FleetStore

log = logging.getLogger(__name__)

PICKUP_SERVICE_S = 120.0
DROPOFF_SERVICE_S = 120.0
# Without a road map: preparation, a hand-over allowance, then this average speed.
STRAIGHT_LINE_SPEED_MPS = 6.0
STRAIGHT_LINE_HANDOVER_S = 180.0


async def plan_driver_stops(
    roads: RoadService,
    driver: LatLng,
    stops: list[tuple[LatLng, Stop]],
    objective: Objective = "finish",
) -> Plan:
    """The best order of ``stops`` for a driver at ``driver`` and the arrival at each, by road
    (one many-to-many matrix from the CCH index, then ``sequence.plan_stops``)."""
    points = [driver, *(point for point, _ in stops)]
    matrix = await roads.many_to_many(points, points)
    return plan_stops(matrix, [stop for _, stop in stops], objective)


@dataclass(frozen=True)
class DeliveryEstimate:
    """The parts of an order's estimated delivery, in seconds from ``now``."""

    to_restaurant_s: float
    food_ready_s: float
    pickup_s: float
    to_customer_s: float
    delivered_s: float
    estimated_delivery: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_restaurant_s": round(self.to_restaurant_s, 1),
            "food_ready_s": round(self.food_ready_s, 1),
            "pickup_s": round(self.pickup_s, 1),
            "to_customer_s": round(self.to_customer_s, 1),
            "delivered_s": round(self.delivered_s, 1),
            "estimated_delivery": self.estimated_delivery.isoformat(),
        }


def slowdown(time_s: float | None, free_flow_s: float | None) -> float | None:
    """A way's time by road over its time at free flow (1: no traffic), to 3 decimals; None
    when either is unknown or the way is empty."""
    if time_s is None or not free_flow_s:
        return None
    return round(time_s / free_flow_s, 3)


def delivery_estimate(
    now: datetime,
    to_restaurant_s: float,
    prep_remaining_s: float,
    to_customer_s: float,
    pickup_service_s: float = PICKUP_SERVICE_S,
    dropoff_service_s: float = DROPOFF_SERVICE_S,
) -> DeliveryEstimate:
    """Delivery = max(arrival at the restaurant, food ready) + pickup service + the drive to
    the customer + drop-off service (seconds; ``now`` is timezone-aware UTC)."""
    pickup = max(to_restaurant_s, prep_remaining_s) + pickup_service_s
    delivered = pickup + to_customer_s + dropoff_service_s
    return DeliveryEstimate(
        to_restaurant_s,
        prep_remaining_s,
        pickup,
        to_customer_s,
        delivered,
        now + timedelta(seconds=delivered),
    )


async def estimate_delivery(
    roads: RoadService,
    now: datetime,
    driver: LatLng,
    restaurant: LatLng,
    customer: LatLng,
    prep_remaining_s: float,
) -> DeliveryEstimate:
    """An order's estimated delivery from travel by road (one matrix query for both legs)."""
    matrix = await roads.many_to_many([driver, restaurant], [restaurant, customer])
    to_restaurant, to_customer = matrix[0][0], matrix[1][1]
    if to_restaurant is None or to_customer is None:
        raise Unreachable("no road joins the driver, the restaurant and the customer")
    return delivery_estimate(now, to_restaurant, prep_remaining_s, to_customer)


@dataclass(frozen=True)
class PlacementEta:
    """The estimate promised at placement, how it was made and its parts (the event keeps
    them, so that a learned model can later compare each part with what happened)."""

    method: Literal["road", "straight_line"]
    estimated_delivery: datetime
    legs: dict[str, Any]
    # The estimate promised (``ontheway.eta``): the baseline or the region's learned model,
    # with its window, stage and features; None when only the route-based sum was made.
    estimate: dict[str, Any] | None = None

    def event_data(self) -> dict[str, Any]:
        """What ``ORDER_PLACED`` records beside the order."""
        found = {"eta_method": self.method, "eta_legs": self.legs}
        return found if self.estimate is None else found | {"eta": self.estimate}


def straight_line_eta(
    now: datetime, prep_s: float, distance_m: float, reason: str | None = None
) -> PlacementEta:
    """Preparation + a hand-over allowance + the crow's distance at an average speed."""
    travel_s = distance_m / STRAIGHT_LINE_SPEED_MPS
    legs = {
        "prep_s": round(prep_s, 1),
        "handover_s": STRAIGHT_LINE_HANDOVER_S,
        "to_customer_s": round(travel_s, 1),
        "distance_m": round(distance_m, 1),
        "speed_mps": STRAIGHT_LINE_SPEED_MPS,
        "reason": reason,
    }
    total = prep_s + STRAIGHT_LINE_HANDOVER_S + travel_s
    return PlacementEta("straight_line", now + timedelta(seconds=total), legs)


@dataclass(frozen=True)
class NewOrder:
    """What a placement's estimate starts from: the restaurant (its point, its preparation
    time, its crow's distance to the customer) and the customer's point."""

    region: str
    restaurant_id: str
    now: datetime
    restaurant: LatLng
    customer: LatLng
    prep_s: float
    distance_m: float


@dataclass(frozen=True)
class Supply:
    """The available drivers near a restaurant and the nearest one's way to it by road, as a
    placement's estimate uses them (``to_restaurant_s`` None: no driver reaches it)."""

    to_restaurant_s: float | None
    driver: dict[str, Any] | None
    drivers_near: int
    traffic: float | None


class PlacementEstimator:
    """An order's estimate before its transaction: by road (the nearest available drivers'
    way to the restaurant, or an allowance when none is near; the preparation; the service
    times; the restaurant's way to the customer), else the straight-line estimate.

    The drivers near a restaurant and their way to it are read once per ``supply_ttl_s``
    (wall seconds) per restaurant and process and reused by its orders meanwhile: they change
    as drivers report (every 4 s), not with each order, and they are the dear part (a fleet
    search and a search of the map from the restaurant out to the drivers). The restaurant's
    way to each customer is searched for each order."""

    def __init__(
        self,
        roads: RoadService,
        fleet: FleetStore | None,
        *,
        allowance_s: float,
        drivers: int,
        radius_m: float,
        supply_ttl_s: float = 0.0,
    ) -> None:
        self.roads = roads
        self.fleet = fleet
        self.allowance_s = allowance_s
        self.drivers = drivers
        self.radius_m = radius_m
        self._supplies: SharedReads[tuple[str, str], Supply] = SharedReads(supply_ttl_s)
        self._no_zones_at: dict[str, float] = {}  # region: when it was found without zones

    async def estimate(self, order: NewOrder) -> PlacementEta:
        """The road estimate; the straight-line one when the region has no map, a point is
        off it, no road joins them, or the graph is unavailable (the reason is kept)."""
        try:
            return await self._by_road(order)
        except (InvalidInput, NotFound, DependencyUnavailable) as exc:
            reason = getattr(exc, "code", None) or type(exc).__name__
            log.debug("placement ETA by straight line in %s: %s", order.region, exc)
            return straight_line_eta(order.now, order.prep_s, order.distance_m, reason)

    async def prepare(self, order: NewOrder) -> tuple[PlacementEta, Delivery | None]:
        """The estimate and the restaurant's zone's answer for the address (None: no zone to
        trust, check the radius); both before the order's transaction."""
        return await asyncio.gather(
            self.estimate(order), self._zone(order.region, order.restaurant_id, order.customer)
        )

    async def _zone(self, region: str, restaurant_id: str, customer: LatLng) -> Delivery | None:
        """The zone's answer; a region found without zones is not asked again for
        ``VERSION_CHECK_S`` (zones built meanwhile apply from then on)."""
        if time.monotonic() - self._no_zones_at.get(region, -math.inf) < VERSION_CHECK_S:
            return None
        try:
            db = await self.roads.graph_db()
            found = await zone_answers(db, region, [restaurant_id], customer.lat, customer.lng)
        except (NotFound, DependencyUnavailable):
            return None  # no road map, or FalkorDB unavailable: the radius decides
        if found is None:
            self._no_zones_at[region] = time.monotonic()
            return None
        return found.get(restaurant_id)

    async def supply(self, region: str, restaurant_id: str, restaurant: LatLng) -> Supply:
        """The drivers near the restaurant and the nearest one's way to it (a recent read's)."""
        return await self._supplies.get(
            (region, restaurant_id), lambda: self._read_supply(region, restaurant)
        )

    async def _read_supply(self, region: str, restaurant: LatLng) -> Supply:
        # The cached map: the matrix below notices a re-import itself (and reloads), and the
        # map only says here which drivers stand near a road.
        network = await self.roads.network(region)
        drivers: list[tuple[str, LatLng]] = []
        if self.fleet is not None and self.drivers:
            found = await self.fleet.find_available(
                region, restaurant.lat, restaurant.lng, self.radius_m, self.drivers
            )
            near_road = network.snap_points([c.lat for c in found], [c.lng for c in found])
            drivers = [
                (c.driver_id, LatLng(lat=c.lat, lng=c.lng))
                for c, snapped in zip(found, near_road, strict=True)
                if snapped is not None
            ]
        if not drivers:
            return Supply(None, None, 0, None)
        points = [point for _, point in drivers]
        matrix = await self.roads.many_to_many(points, [restaurant])
        reachable = [(row[0], i) for i, row in enumerate(matrix) if row[0] is not None]
        if not reachable:
            return Supply(None, None, 0, None)
        best_s, best = min(reachable)
        driver_id, start = drivers[best]
        free = await self.roads.free_flow_matrix([start], [restaurant], [matrix[best]])
        return Supply(
            float(best_s),
            {"driver_id": driver_id, "lat": start.lat, "lng": start.lng},
            len(reachable),
            slowdown(best_s, free[0][0]),
        )

    async def _by_road(self, order: NewOrder) -> PlacementEta:
        restaurant, customer = order.restaurant, order.customer
        matrix, supply = await asyncio.gather(
            self.roads.many_to_many([restaurant], [customer]),
            self.supply(order.region, order.restaurant_id, restaurant),
        )
        to_customer = matrix[0][0]
        if to_customer is None:
            raise Unreachable("no road joins the restaurant and the customer")
        free = await self.roads.free_flow_matrix([restaurant], [customer], matrix)
        to_restaurant = self.allowance_s if supply.driver is None else supply.to_restaurant_s
        assert to_restaurant is not None
        est = delivery_estimate(order.now, to_restaurant, order.prep_s, to_customer)
        legs = {
            **{k: v for k, v in est.to_dict().items() if k != "estimated_delivery"},
            "to_restaurant_from": "nearest_driver" if supply.driver else "allowance",
            "driver": supply.driver,
            "drivers_near": supply.drivers_near,
            "pickup_service_s": PICKUP_SERVICE_S,
            "dropoff_service_s": DROPOFF_SERVICE_S,
            "traffic_to_restaurant": supply.traffic,
            "traffic_to_customer": slowdown(to_customer, free[0][0]),
        }
        return PlacementEta("road", est.estimated_delivery, legs)
