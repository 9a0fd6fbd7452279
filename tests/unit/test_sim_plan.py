import random
from collections import Counter

import numpy as np
import pytest

from ontheway.sim.plan import (
    DROPOFF_RADIUS_M,
    Behaviour,
    DriverPlan,
    metres,
    offer_decision,
    plan_restaurants,
    prep_time_s,
    vanish_decision,
)
from ontheway.sim.world import WorldSize, plan_world

# A 3 km x 3 km grid of nodes (about 30 m apart) standing in for a road map's nodes.
_g = np.linspace(0, 0.027, 91)
LAT, LNG = (a.ravel() + b for a, b in zip(np.meshgrid(_g, _g), (37.77, -122.42), strict=True))
SIZE = WorldSize(drivers=20, restaurants=8, customers=50, orders_per_hour=200,
                 start_hour=11.0, duration_s=3600)  # fmt: skip
NODES = set(zip(LAT.tolist(), LNG.tolist(), strict=True))


def test_the_same_seed_plans_the_same_city_and_orders() -> None:
    a = plan_world(3, "sf", LAT, LNG, SIZE, Behaviour())
    b = plan_world(3, "sf", LAT, LNG, SIZE, Behaviour())
    c = plan_world(4, "sf", LAT, LNG, SIZE, Behaviour())
    assert (a.restaurants, a.drivers, a.orders) == (b.restaurants, b.drivers, b.orders)
    assert a.orders != c.orders and a.drivers != c.drivers


def test_two_regions_with_one_seed_get_different_cities() -> None:
    a = plan_world(3, "sf", LAT, LNG, SIZE, Behaviour())
    b = plan_world(3, "monaco", LAT, LNG, SIZE, Behaviour())
    assert a.orders != b.orders


def test_restaurants_drivers_and_addresses_are_nodes_of_the_map() -> None:
    world = plan_world(1, "sf", LAT, LNG, SIZE, Behaviour())
    assert all((r.lat, r.lng) in NODES for r in world.restaurants)
    assert all((d.lat, d.lng) in NODES for d in world.drivers)
    for order in world.orders:
        assert order.dropoff in NODES
        rest = world.restaurants[order.restaurant]
        far = metres(np.array([order.dropoff[0]]), np.array([order.dropoff[1]]),
                     (rest.lat, rest.lng))[0]  # fmt: skip
        assert 100 <= far <= DROPOFF_RADIUS_M


def test_forced_behaviour_reaches_every_driver() -> None:
    world = plan_world(1, "sf", LAT, LNG, SIZE, Behaviour(accept=0.0, offline=1.0, ignore=0))
    assert all(d.accept_p == 0.0 and d.offline_p == 1.0 for d in world.drivers)
    spread = plan_world(1, "sf", LAT, LNG, SIZE, Behaviour(accept=0.7))
    accepts = [d.accept_p for d in spread.drivers]
    assert 0.5 < sum(accepts) / len(accepts) < 0.9 and len(set(accepts)) > 1


def test_preparation_times_follow_each_restaurants_lognormal() -> None:
    (rest,) = plan_restaurants(9, "sf", LAT, LNG, 1)
    rng = random.Random(1)
    times = sorted(prep_time_s(rng, rest) for _ in range(2001))
    assert times[1000] == pytest.approx(rest.prep_median_s, rel=0.1)
    assert times[0] >= 180 and times[-1] <= 90 * 60


def _driver(**behaviour: float) -> DriverPlan:
    return plan_world(1, "sf", LAT, LNG, SIZE, Behaviour(**behaviour)).drivers[0]


def test_a_drivers_decisions_repeat_with_its_seed() -> None:
    driver = _driver(accept=0.6, ignore=0.1, offline=0.3)

    def decisions(seed: str) -> list[object]:
        offers, trips = random.Random(f"o{seed}"), random.Random(f"t{seed}")
        return [(offer_decision(offers, driver), vanish_decision(trips, driver))
                for _ in range(200)]  # fmt: skip

    assert decisions("1") == decisions("1") != decisions("2")
    answers = Counter(answer for (answer, _), _ in decisions("1"))
    assert answers["accept"] > answers["decline"] > answers[None] > 0
    assert all(2 <= think <= 10 for (answer, think), _ in decisions("1") if answer)


def test_forced_behaviour_gives_forced_decisions() -> None:
    rng = random.Random(3)
    refusing = _driver(accept=0.0, ignore=0.0, offline=1.0)
    assert {offer_decision(rng, refusing)[0] for _ in range(50)} == {"decline"}
    legs = Counter(vanish_decision(rng, refusing)[0] for _ in range(400))
    assert set(legs) == {0, 1} and legs[0] > legs[1]
    steady = _driver(accept=1.0, ignore=0.0, offline=0.0)
    assert {offer_decision(rng, steady)[0] for _ in range(50)} == {"accept"}
    assert {vanish_decision(rng, steady)[0] for _ in range(50)} == {None}
    silent = _driver(ignore=1.0)
    assert {offer_decision(rng, silent)[0] for _ in range(50)} == {None}
