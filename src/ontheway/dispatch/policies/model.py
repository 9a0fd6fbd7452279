"""What a dispatch policy sees and decides: pure data, no client library, no I/O.

Times are whole minutes of simulated time (the live dispatcher uses whole seconds instead, with
every duration of a policy scaled to match); points are planar metres ``(x, y)``. Travel time
comes from a ``TravelTime`` function over numpy arrays (whole minutes, broadcast over the
leading axes), so that a policy can time every driver to every restaurant in one call.
Service times are split in halves around the event they frame (half before a pickup, half
after it; same for a drop-off); an odd service time rounds both halves up, so a plan never
claims less time than the service takes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

Point = tuple[float, float]
Minutes = NDArray[np.int64]


class TravelTime(Protocol):
    """Whole minutes from each origin to each destination (arrays of shape (..., 2))."""

    def __call__(self, origins: NDArray[np.float64], destinations: NDArray[np.float64]) -> Minutes:
        """Travel minutes, broadcast over the leading axes of both arrays."""
        ...


@dataclass(frozen=True)
class EuclideanTravel:
    """``ceil(euclidean distance / meters_per_minute)``, as in the MDRP instances."""

    meters_per_minute: float

    def __call__(self, origins: NDArray[np.float64], destinations: NDArray[np.float64]) -> Minutes:
        """Travel minutes; the same arithmetic as the research evaluator (sqrt, divide, ceil)."""
        delta = np.asarray(destinations, dtype=np.float64) - np.asarray(origins, dtype=np.float64)
        dist_m = np.sqrt(delta[..., 0] ** 2 + delta[..., 1] ** 2)
        return np.ceil(dist_m / self.meters_per_minute).astype(np.int64)


def minutes(travel: TravelTime, origin: Point, destination: Point) -> int:
    """Travel minutes between two points."""
    return int(travel(np.asarray(origin, dtype=np.float64), np.asarray(destination)))


@dataclass(frozen=True)
class Service:
    """Pickup and drop-off service minutes."""

    pickup_min: int
    dropoff_min: int

    @property
    def pickup_half(self) -> int:
        """Minutes from arrival at the restaurant to pickup, and from pickup to leaving."""
        return math.ceil(self.pickup_min / 2)

    @property
    def dropoff_half(self) -> int:
        """Minutes from arrival at the diner to drop-off, and from drop-off to leaving."""
        return math.ceil(self.dropoff_min / 2)


@dataclass(frozen=True)
class OpenOrder:
    """An order placed and not yet given to a driver."""

    id: str
    placed_min: int
    ready_min: int
    restaurant: str
    restaurant_xy: Point
    dropoff_xy: Point


@dataclass(frozen=True)
class Driver:
    """A driver on duty or soon on duty: where it will be free, and from when; how many more
    orders its guaranteed pay already covers (beyond them, each order is paid extra)."""

    id: str
    xy: Point
    free_min: int
    off_min: int
    capacity: int = 3
    guaranteed_orders: int = 0


@dataclass(frozen=True)
class Assignment:
    """One driver, one ordered bundle of orders from one restaurant, and its planned times."""

    driver_id: str
    order_ids: tuple[str, ...]
    depart_min: int
    arrive_min: int
    pickup_min: int
    dropoff_mins: tuple[int, ...]


def plan_route(
    driver: Driver,
    bundle: Sequence[OpenOrder],
    now: int,
    travel: TravelTime,
    service: Service,
) -> Assignment:
    """Times of a bundle driven by a driver leaving as soon as it can: pickup after every
    order is ready, then the drop-offs in the bundle's order."""
    if not bundle:
        raise ValueError("an assignment needs at least one order")
    if len({o.restaurant for o in bundle}) != 1:
        raise ValueError("a bundle holds orders of one restaurant")
    depart = max(now, driver.free_min)
    arrive = depart + minutes(travel, driver.xy, bundle[0].restaurant_xy)
    pickup = max(max(o.ready_min for o in bundle), arrive + service.pickup_half)
    clock, here, drops = pickup + service.pickup_half, bundle[0].restaurant_xy, []
    for order in bundle:
        drop = clock + minutes(travel, here, order.dropoff_xy) + service.dropoff_half
        drops.append(drop)
        clock, here = drop + service.dropoff_half, order.dropoff_xy
    return Assignment(driver.id, tuple(o.id for o in bundle), depart, arrive, pickup, tuple(drops))
