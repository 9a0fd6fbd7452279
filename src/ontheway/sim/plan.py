"""Who takes part in a region's run, on its road map. Pure: numpy over the map's nodes.

Restaurants, drivers' starting points and delivery addresses are nodes of the region's road
graph (the routable ones: the largest strongly connected component), never random points of
the region's bounding box, which is much larger than an imported extract. Restaurants cluster
around a few hubs, as they do in a city; each gets a preparation-time distribution
(lognormal) and a popularity. Each driver gets its own behaviour: the chance it accepts an
offer, lets one expire, or drops off the network during a delivery. Everything comes from
RNGs derived from the run's seed, one per agent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ontheway.roads.geo import haversine_m_arrays

VEHICLES = (("bicycle", 0.3), ("scooter", 0.3), ("car", 0.4))
DROPOFF_RADIUS_M = 2500.0  # inside every seeded restaurant's delivery radius (3-6 km)
DRIVER_SPREAD_M = 1500.0


@dataclass(frozen=True)
class Behaviour:
    """How a run's drivers behave; each driver draws its own acceptance around ``accept``."""

    accept: float = 0.85  # mean chance of accepting an offer
    ignore: float = 0.03  # chance of letting an offer expire unanswered
    offline: float = 0.05  # chance, per accepted order, of vanishing during the delivery
    breaks: float = 0.02  # chance, after a delivery, of going offline for a break


@dataclass(frozen=True)
class RestaurantPlan:
    """A restaurant of the run: its node, kitchen and popularity."""

    index: int
    lat: float
    lng: float
    prep_median_s: float
    prep_sigma: float  # of the log of the preparation time
    popularity: float


@dataclass(frozen=True)
class DriverPlan:
    """A driver of the run: vehicle, where it starts and how it behaves."""

    index: int
    vehicle: str
    lat: float
    lng: float
    rating: float
    acceptance_rate: float
    accept_p: float
    ignore_p: float
    offline_p: float
    break_p: float


def metres(
    lat: NDArray[np.float64], lng: NDArray[np.float64], at: tuple[float, float]
) -> NDArray[np.float64]:
    """Great-circle distances (m) from ``at`` to each node."""
    return haversine_m_arrays(lat, lng, np.full_like(lat, at[0]), np.full_like(lng, at[1]))


def _near(
    rng: random.Random, lat: NDArray[np.float64], lng: NDArray[np.float64],
    at: tuple[float, float], radius_m: float,
    cache: dict[tuple[float, float], NDArray[np.intp]] | None = None,
) -> int:  # fmt: skip
    inside = cache.get(at) if cache is not None else None
    if inside is None:  # the nodes within reach of a point are computed once per point
        inside = np.flatnonzero(metres(lat, lng, at) <= radius_m)
        if cache is not None:
            cache[at] = inside
    return int(inside[rng.randrange(len(inside))]) if len(inside) else rng.randrange(len(lat))


def plan_restaurants(
    seed: int, region: str, lat: NDArray[np.float64], lng: NDArray[np.float64], count: int
) -> list[RestaurantPlan]:
    """``count`` restaurants on nodes clustered around hubs."""
    rng = random.Random(f"restaurants:{seed}:{region}")
    hubs = [rng.randrange(len(lat)) for _ in range(max(1, count // 8))]
    out = []
    for i in range(count):
        hub = hubs[rng.randrange(len(hubs))]
        node = _near(rng, lat, lng, (float(lat[hub]), float(lng[hub])), 400.0)
        out.append(RestaurantPlan(i, float(lat[node]), float(lng[node]),
                                  prep_median_s=rng.randint(8, 25) * 60.0,
                                  prep_sigma=rng.uniform(0.2, 0.5),
                                  popularity=rng.lognormvariate(0, 0.7)))  # fmt: skip
    return out


def dropoff_nodes(
    seed: int, region: str, lat: NDArray[np.float64], lng: NDArray[np.float64],
    restaurant: RestaurantPlan, limit: int = 500,
) -> list[tuple[float, float]]:  # fmt: skip
    """Delivery addresses for one restaurant: nodes within ``DROPOFF_RADIUS_M``, at least
    100 m away (at most ``limit``, chosen by the seed)."""
    d = metres(lat, lng, (restaurant.lat, restaurant.lng))
    inside = np.flatnonzero((d <= DROPOFF_RADIUS_M) & (d >= 100.0)).tolist()
    if not inside:
        inside = np.argsort(d)[1:50].tolist()
    rng = random.Random(f"dropoffs:{seed}:{region}:{restaurant.index}")
    chosen = inside if len(inside) <= limit else rng.sample(inside, limit)
    return [(float(lat[n]), float(lng[n])) for n in chosen]


def plan_drivers(
    seed: int, region: str, lat: NDArray[np.float64], lng: NDArray[np.float64],
    restaurants: list[RestaurantPlan], count: int, behaviour: Behaviour,
) -> list[DriverPlan]:  # fmt: skip
    """``count`` drivers, each starting on a node near a restaurant, with its behaviour."""
    out = []
    cache: dict[tuple[float, float], NDArray[np.intp]] = {}  # drivers share restaurants
    for i in range(count):
        rng = random.Random(f"driver:{seed}:{region}:{i}")
        near = restaurants[rng.randrange(len(restaurants))] if restaurants else None
        at = (near.lat, near.lng) if near else (float(lat[0]), float(lng[0]))
        node = _near(rng, lat, lng, at, DRIVER_SPREAD_M, cache)
        vehicle = rng.choices([v for v, _ in VEHICLES], [w for _, w in VEHICLES])[0]
        accept = min(1.0, max(0.0, rng.gauss(behaviour.accept, 0.08)))
        out.append(DriverPlan(i, vehicle, float(lat[node]), float(lng[node]),
                              rating=round(rng.uniform(4.2, 5.0), 2),
                              acceptance_rate=round(rng.uniform(0.6, 1.0), 3),
                              accept_p=accept if 0 < behaviour.accept < 1 else behaviour.accept,
                              ignore_p=behaviour.ignore, offline_p=behaviour.offline,
                              break_p=behaviour.breaks))  # fmt: skip
    return out


def prep_time_s(rng: random.Random, restaurant: RestaurantPlan) -> int:
    """A preparation time drawn from the restaurant's lognormal (clipped to 3-90 minutes)."""
    drawn = rng.lognormvariate(math.log(restaurant.prep_median_s), restaurant.prep_sigma)
    return int(min(90 * 60, max(180, drawn)))


def offer_decision(rng: random.Random, driver: DriverPlan) -> tuple[str | None, float]:
    """What the driver does with an offer: ``accept``, ``decline`` or None (lets it expire),
    and after how many simulated seconds of thought."""
    if rng.random() < driver.ignore_p:
        return None, 0.0
    answer = "accept" if rng.random() < driver.accept_p else "decline"
    return answer, rng.uniform(2, 10)


def vanish_decision(rng: random.Random, driver: DriverPlan) -> tuple[int | None, float]:
    """Whether the driver drops off the network during an order: on which leg (0: to the
    restaurant, 1: to the customer; None: it does not) and how far along (0-1)."""
    vanish = rng.random() < driver.offline_p
    leg, at = (0 if rng.random() < 0.7 else 1), rng.uniform(0.2, 0.8)
    return (leg if vanish else None), at
