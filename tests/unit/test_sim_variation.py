import asyncio
import json
import random
import statistics
from pathlib import Path
from typing import Any, cast

from ontheway.sim import prepdata
from ontheway.sim.city import _kitchen
from ontheway.sim.context import SimContext
from ontheway.sim.plan import (
    HANDOVER_CLIP_S,
    PARKING_S,
    SPEED_CLIP,
    Behaviour,
    RestaurantPlan,
    handover_s,
    leg_duration_s,
    pickup_wait_s,
    plan_drivers,
    plan_restaurants,
    prep_time_s,
    usual_prep_s,
)
from tests.unit.test_sim_plan import LAT, LNG  # its grid of nodes stands in for a road map


def _restaurants(seed: int = 5, count: int = 20) -> list[RestaurantPlan]:
    return plan_restaurants(seed, "sf", LAT, LNG, count)


def test_the_packaged_preparation_times_are_many_real_restaurants() -> None:
    table = prepdata.packaged()
    assert len(table) >= 100
    assert all(len(minutes) >= prepdata.MIN_ORDERS for minutes in table.values())
    medians = [statistics.median(m) for m in table.values()]
    assert all(0 <= m <= 150 for minutes in table.values() for m in minutes)
    assert 10 <= statistics.median(medians) <= 30
    text = (Path(prepdata.__file__).parent / "data" / "grubhub_prep.json").read_text()
    assert prepdata.ATTRIBUTION in text


def test_the_data_file_is_written_from_the_instances_orders(tmp_path: Path) -> None:
    # Instances laid out as published (one folder per seed's variant), with a busy restaurant
    # r1 in seed 0, a quiet one r2 (too few orders to keep), and r1 again in seed 3.
    header = "order\tx\ty\tplacement_time\trestaurant\tready_time\n"
    for seed in prepdata.SEEDS:
        folder = tmp_path / f"{seed}{prepdata.VARIANT}"
        folder.mkdir()
        rows = (
            [f"o{i}\t0\t0\t{100 + i}\tr1\t{110 + 2 * i}\n" for i in range(8)]
            if seed in (0, 3)
            else []
        )
        rows.append("o99\t0\t0\t50\tr2\t70\n")
        (folder / "orders.txt").write_text(header + "".join(rows))
    assert prepdata.main([str(tmp_path), str(tmp_path / "prep.json")]) == 0
    written = json.loads((tmp_path / "prep.json").read_text())
    assert written["attribution"] == prepdata.ATTRIBUTION
    assert written["minutes"] == {"0:r1": [10 + i for i in range(8)],
                                  "3:r1": [10 + i for i in range(8)]}  # fmt: skip
    assert prepdata.main([]) == 2  # usage


def test_each_restaurant_cooks_like_one_real_restaurant() -> None:
    table = prepdata.packaged()
    for plan in _restaurants():
        assert plan.prep_minutes == table[plan.kitchen]
        assert plan.prep_median_s == statistics.median(plan.prep_minutes) * 60
        assert PARKING_S[0] <= plan.parking_s <= PARKING_S[1]
    kitchens = [p.kitchen for p in _restaurants()]
    assert len(set(kitchens)) == len(kitchens)  # distinct while the table lasts


def test_a_restaurants_draws_come_from_its_own_times() -> None:
    table = {"quick": (5.0, 6.0, 7.0, 8.0, 9.0) * 2, "slow": (25.0, 28.0, 30.0, 35.0) * 2}
    quick, slow = plan_restaurants(1, "sf", LAT, LNG, 2, prep=table)
    if quick.kitchen == "slow":
        quick, slow = slow, quick
    rng = random.Random(7)
    for _ in range(200):
        fast_s, slow_s = prep_time_s(rng, quick), prep_time_s(rng, slow)
        assert 4 * 60 <= fast_s <= 10 * 60 < 24 * 60 <= slow_s <= 36 * 60


def test_preparation_times_are_clipped_to_three_to_ninety_minutes() -> None:
    table = {"odd": (0.0, 1.0, 200.0) * 3, "other": (10.0,) * 8}
    odd = next(p for p in plan_restaurants(1, "sf", LAT, LNG, 2, prep=table) if p.kitchen == "odd")
    rng = random.Random(3)
    draws = {prep_time_s(rng, odd) for _ in range(300)}
    assert min(draws) == 180 and max(draws) == 90 * 60


def test_the_same_seed_gives_the_same_hidden_world() -> None:
    a, b, c = _restaurants(5), _restaurants(5), _restaurants(6)
    assert a == b and [p.kitchen for p in a] != [p.kitchen for p in c]
    drivers = [plan_drivers(s, "sf", LAT, LNG, a, 30, Behaviour()) for s in (5, 5, 6)]
    assert drivers[0] == drivers[1] != drivers[2]

    def draws(seed: int) -> list[float]:
        rng = random.Random(f"trips:{seed}")
        rest, driver = a[0], drivers[0][0]
        return [prep_time_s(rng, rest), leg_duration_s(rng, driver, 600.0),
                pickup_wait_s(rng, rest), handover_s(rng)]  # fmt: skip

    assert draws(1) == draws(1) != draws(2)


def test_drivers_are_not_all_equally_fast() -> None:
    rest = _restaurants()
    speeds = [d.speed_factor for d in plan_drivers(2, "sf", LAT, LNG, rest, 200, Behaviour())]
    assert all(SPEED_CLIP[0] <= s <= SPEED_CLIP[1] for s in speeds)
    assert len(set(speeds)) > 150
    assert 0.9 < statistics.median(speeds) < 1.1


def test_a_leg_takes_the_route_times_the_drivers_pace_and_the_trips_traffic() -> None:
    slow, fast = sorted(plan_drivers(2, "sf", LAT, LNG, _restaurants(), 50, Behaviour()),
                        key=lambda d: -d.speed_factor)[::49]  # fmt: skip
    rng = random.Random(4)
    legs = {d.index: [leg_duration_s(rng, d, 600.0) for _ in range(300)] for d in (slow, fast)}
    assert statistics.median(legs[slow.index]) > statistics.median(legs[fast.index])
    ratios = [s / (600.0 * slow.speed_factor) for s in legs[slow.index]]
    assert 0.95 < statistics.median(ratios) < 1.05 and len(set(ratios)) == len(ratios)
    assert leg_duration_s(rng, slow, 0.0) == 0.0


def test_stops_vary_around_the_restaurants_parking_and_a_minute_at_the_door() -> None:
    near, far = sorted(_restaurants(), key=lambda r: r.parking_s)[::19]
    rng = random.Random(5)
    waits = {r.index: [pickup_wait_s(rng, r) for _ in range(300)] for r in (near, far)}
    assert statistics.median(waits[near.index]) < statistics.median(waits[far.index])
    handovers = [handover_s(rng) for _ in range(1000)]
    assert all(HANDOVER_CLIP_S[0] <= h <= HANDOVER_CLIP_S[1] for h in handovers)
    assert 50 < statistics.median(handovers) < 70


def test_the_kitchen_announces_its_rounded_median_not_the_draw() -> None:
    table = {"bimodal": (10.0, 10.0, 12.0, 13.0, 20.0, 20.0, 20.0, 21.0), "tiny": (3.0,) * 8,
             "tie": (10.0, 15.0)}  # fmt: skip
    plans = {p.kitchen: p for p in plan_restaurants(1, "sf", LAT, LNG, 3, prep=table)}
    assert plans["bimodal"].prep_median_s == 16.5 * 60
    assert usual_prep_s(plans["bimodal"]) == 15 * 60  # 16.5 minutes to the nearest 5
    assert usual_prep_s(plans["tiny"]) == 5 * 60  # never less than 5 minutes
    assert usual_prep_s(plans["tie"]) == 15 * 60  # 12.5 minutes: halves go up


class _Clock:
    speed = 10.0

    def __init__(self) -> None:
        self.slept: list[float] = []

    def wall_s(self, sim_s: float) -> float:
        return sim_s / self.speed

    async def sleep(self, sim_s: float) -> None:
        self.slept.append(sim_s)


class _Kitchen:
    """What ``_kitchen`` uses of the run's context, keeping what it sends."""

    def __init__(self) -> None:
        self.clock = _Clock()
        self.sent: list[tuple[str, Any]] = []
        self.ready: dict[str, asyncio.Event] = {}

    def token(self, *_: Any) -> str:
        return "t"

    def ready_event(self, order_id: str) -> asyncio.Event:
        return self.ready.setdefault(order_id, asyncio.Event())

    async def call(self, method: str, path: str, token: str, **kw: Any) -> Any:
        self.sent.append((path, kw.get("json")))
        return type("Resp", (), {"status_code": 200, "text": ""})()


async def test_the_kitchen_confirms_its_usual_time_and_cooks_for_the_true_one() -> None:
    (rest,) = plan_restaurants(3, "sf", LAT, LNG, 1, prep={"k": (10.0, 11.0, 12.0, 30.0)})
    rng = random.Random(1)
    true_s = next(s for s in iter(lambda: prep_time_s(rng, rest), None) if s > 20 * 60)
    fake = _Kitchen()
    await _kitchen(cast(SimContext, fake), "rst", "ord", 30.0, usual_prep_s(rest), true_s)
    assert fake.sent == [("/api/orders/ord/confirm", {"prep_time_s": 60}),  # 10 min, x10
                         ("/api/orders/ord/ready", None)]  # fmt: skip
    assert fake.clock.slept == [30.0, true_s] and fake.ready["ord"].is_set()
