"""Who takes part in a region's run, on its road map. Pure: numpy over the map's nodes.

Restaurants, drivers' starting points and delivery addresses are nodes of the region's road
graph (the routable ones: the largest strongly connected component), never random points of
the region's bounding box, which is much larger than an imported extract. Restaurants cluster
around a few hubs, as they do in a city; each gets a popularity and a kitchen. Each driver gets
its own behaviour: the chance it accepts an offer, lets one expire, or drops off the network
during a delivery. Everything comes from RNGs derived from the run's seed, one per agent.

What varies out of the platform's sight (none of it is sent to the servers):

- preparation: each restaurant cooks like one real Grubhub restaurant (prepdata.py); an
  order's time resamples that restaurant's minutes (with a minute of jitter either way). The
  kitchen tells the platform only its usual time (``usual_prep_s``: the median, to 5 minutes);
- speed: each driver drives at its own pace (``speed_factor``), and each leg meets its own
  traffic (``leg_duration_s``), around the route's duration;
- stops: each restaurant has its own parking and walk in (``parking_s``), varying per visit
  (``pickup_wait_s``), and hand-overs at the door vary widely (``handover_s``).
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ontheway.roads.geo import haversine_m_arrays
from ontheway.sim.prepdata import PrepTable, packaged

VEHICLES = (("bicycle", 0.3), ("scooter", 0.3), ("car", 0.4))
DROPOFF_RADIUS_M = 2500.0  # inside every seeded restaurant's delivery radius (3-6 km)
DRIVER_SPREAD_M = 1500.0
PREP_MIN_S, PREP_MAX_S = 3 * 60, 90 * 60
PARKING_S = (30.0, 240.0)  # a restaurant's parking and walk in, uniform between
SPEED_SIGMA, SPEED_CLIP = 0.15, (0.7, 1.6)  # a driver's duration multiplier (log sigma, clip)
TRAFFIC_SIGMA = 0.12  # of the log of a leg's own multiplier
PARKING_SIGMA = 0.3  # of the log of one visit's parking around the restaurant's own
HANDOVER_MEDIAN_S, HANDOVER_SIGMA, HANDOVER_CLIP_S = 60.0, 0.5, (20.0, 600.0)


@dataclass(frozen=True)
class Behaviour:
    """How a run's drivers behave; each driver draws its own acceptance around ``accept``."""

    accept: float = 0.85  # mean chance of accepting an offer
    ignore: float = 0.03  # chance of letting an offer expire unanswered
    offline: float = 0.05  # chance, per accepted order, of vanishing during the delivery
    breaks: float = 0.02  # chance, after a delivery, of going offline for a break


@dataclass(frozen=True)
class RestaurantPlan:
    """A restaurant of the run: its node, kitchen and popularity. The kitchen (``kitchen``,
    ``prep_minutes``) and ``parking_s`` stay hidden from the platform."""

    index: int
    lat: float
    lng: float
    prep_median_s: float  # of ``prep_minutes``: the profile the platform is given
    popularity: float
    kitchen: str  # the Grubhub restaurant it cooks like (``"{seed}:{restaurant}"``)
    prep_minutes: tuple[float, ...]  # that restaurant's real preparation times
    parking_s: float  # parking and walking in, before a pick-up (seconds)


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
    speed_factor: float  # hidden: multiplies every leg's duration (over 1: slower)


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
    seed: int, region: str, lat: NDArray[np.float64], lng: NDArray[np.float64], count: int,
    prep: PrepTable | None = None,
) -> list[RestaurantPlan]:  # fmt: skip
    """``count`` restaurants on nodes clustered around hubs, each cooking like one of
    ``prep``'s restaurants (default: the packaged Grubhub table; distinct while it lasts)."""
    rng = random.Random(f"restaurants:{seed}:{region}")
    hidden = random.Random(f"kitchens:{seed}:{region}")
    table = packaged() if prep is None else prep
    kitchens = sorted(table)
    hidden.shuffle(kitchens)
    hubs = [rng.randrange(len(lat)) for _ in range(max(1, count // 8))]
    out = []
    for i in range(count):
        hub = hubs[rng.randrange(len(hubs))]
        node = _near(rng, lat, lng, (float(lat[hub]), float(lng[hub])), 400.0)
        kitchen = kitchens[i % len(kitchens)]
        minutes = table[kitchen]
        out.append(RestaurantPlan(i, float(lat[node]), float(lng[node]),
                                  prep_median_s=statistics.median(minutes) * 60.0,
                                  popularity=rng.lognormvariate(0, 0.7), kitchen=kitchen,
                                  prep_minutes=minutes,
                                  parking_s=hidden.uniform(*PARKING_S)))  # fmt: skip
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
        rating, acceptance_rate = round(rng.uniform(4.2, 5.0), 2), round(rng.uniform(0.6, 1.0), 3)
        speed = _clip(rng.lognormvariate(0, SPEED_SIGMA), SPEED_CLIP)
        out.append(DriverPlan(i, vehicle, float(lat[node]), float(lng[node]),
                              rating=rating, acceptance_rate=acceptance_rate,
                              accept_p=accept if 0 < behaviour.accept < 1 else behaviour.accept,
                              ignore_p=behaviour.ignore, offline_p=behaviour.offline,
                              break_p=behaviour.breaks, speed_factor=speed))  # fmt: skip
    return out


def _clip(value: float, bounds: tuple[float, float]) -> float:
    return min(bounds[1], max(bounds[0], value))


def prep_time_s(rng: random.Random, restaurant: RestaurantPlan) -> int:
    """The true preparation time of one order (s): one of the restaurant's real times, give
    or take a minute (uniform), clipped to 3-90 minutes."""
    minutes = rng.choice(restaurant.prep_minutes) + rng.uniform(-1.0, 1.0)
    return int(_clip(minutes * 60, (PREP_MIN_S, PREP_MAX_S)))


def usual_prep_s(restaurant: RestaurantPlan) -> int:
    """What the kitchen announces on confirming (s): its median time to 5 minutes (halves
    up; at least 5), whatever this order will really take."""
    return max(1, math.floor(restaurant.prep_median_s / 300 + 0.5)) * 300


def leg_duration_s(rng: random.Random, driver: DriverPlan, route_s: float) -> float:
    """How long the driver really takes over a leg the router puts at ``route_s``: its own
    pace times this trip's traffic (lognormal around 1)."""
    return route_s * driver.speed_factor * rng.lognormvariate(0, TRAFFIC_SIGMA)


def pickup_wait_s(rng: random.Random, restaurant: RestaurantPlan) -> float:
    """Parking, walking in and out with the food, once the food is ready (s)."""
    return restaurant.parking_s * rng.lognormvariate(0, PARKING_SIGMA)


def handover_s(rng: random.Random) -> float:
    """Parking and handing the food over at the customer's door (s; 20 s to 10 minutes)."""
    drawn = rng.lognormvariate(math.log(HANDOVER_MEDIAN_S), HANDOVER_SIGMA)
    return _clip(drawn, HANDOVER_CLIP_S)


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
