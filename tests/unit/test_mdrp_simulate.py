"""Replaying tiny instances: exact solution files and figures for both policies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ontheway.dispatch.policies import (
    Assignment,
    BatchedPolicy,
    Driver,
    OpenOrder,
    Service,
    TravelTime,
    make_policy,
)
from ontheway.mdrp.check import check_solution
from ontheway.mdrp.instance import load_instance
from ontheway.mdrp.simulate import PolicyError, simulate
from ontheway.mdrp.solution import read_solution, write_solution
from ontheway.mdrp.summary import summarise
from tests.unit.test_mdrp_instance import tiny, write_instance


def lines(folder: Path, name: str) -> list[str]:
    return (folder / f"solution_info_{name}.txt").read_text().splitlines()[1:]


def test_greedy_sends_the_courier_at_once_and_the_second_order_waits(tmp_path: Path) -> None:
    instance = load_instance(tiny(tmp_path / "tiny"))
    solution = simulate(instance, make_policy("greedy"))
    write_solution(solution, tmp_path / "out")
    assert lines(tmp_path / "out", "assignments") == ["10 20 c1 o1", "29 34 c1 o2"]
    assert lines(tmp_path / "out", "orders") == ["o1 10 20 20 27 c1", "o2 12 21 34 40 c1"]
    assert lines(tmp_path / "out", "couriers") == [
        "c1 10 0 r1",
        "c1 22 r1 o1",
        "c1 29 o1 r1",
        "c1 36 r1 o2",
    ]
    assert check_solution(instance, read_solution(tmp_path / "out")) == []
    figures = summarise(instance, solution)
    assert figures.click_to_door_mean_min == 22.5
    assert figures.ready_to_pickup_mean_min == 6.5
    assert figures.utilisation == pytest.approx((10 + 8 + 8) / 60)


def test_batched_bundles_both_orders_and_leaves_just_in_time(tmp_path: Path) -> None:
    instance = load_instance(tiny(tmp_path / "tiny"))
    solution = simulate(instance, BatchedPolicy())
    write_solution(solution, tmp_path / "out")
    # the nearer diner (o2, 2 min) first; leaving at 17 reaches the restaurant as o2 is ready
    assert lines(tmp_path / "out", "assignments") == ["17 21 c1 o2 o1"]
    assert lines(tmp_path / "out", "orders") == ["o2 12 21 21 27 c1", "o1 10 20 21 36 c1"]
    assert lines(tmp_path / "out", "couriers") == ["c1 17 0 r1", "c1 23 r1 o2", "c1 29 o2 o1"]
    assert check_solution(instance, read_solution(tmp_path / "out")) == []
    figures = summarise(instance, solution)
    assert (figures.delivered, figures.undelivered_pct) == (2, 0.0)
    assert figures.click_to_door_mean_min == 20.5
    assert figures.click_to_door_p90_min == pytest.approx(15 + 0.9 * 11)
    assert figures.ready_to_pickup_mean_min == 0.5
    assert figures.orders_per_assignment == 2
    assert figures.utilisation == pytest.approx((9 + 4 + 8) / 60)
    assert (figures.total_pay, figures.cost_per_order) == (20.0, 10.0)


def test_an_order_ready_after_every_shift_ends_is_left_undelivered(tmp_path: Path) -> None:
    folder = write_instance(
        tmp_path / "late",
        ["r1\t0\t0"],
        ["o1\t0\t320\t5\tr1\t10", "o2\t0\t320\t50\tr1\t70"],
        ["c1\t0\t0\t0\t60"],
    )
    instance = load_instance(folder)
    for name in ("greedy", "batched"):
        solution = simulate(instance, make_policy(name))
        assert [o.order for o in solution.orders] == ["o1"]
        figures = summarise(instance, solution)
        assert figures.undelivered_pct == 50.0
        # one order delivered, but the courier is paid its 60 minutes: 15 per hour
        assert figures.cost_per_order == 15.0
        assert check_solution(instance, solution) == []


@dataclass
class Spy:
    """A policy that records what it was shown and assigns nothing."""

    name: str = "spy"
    interval_min: int = 1
    seen: list[tuple[int, int]] = field(default_factory=list)

    def decide(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Assignment]:
        self.seen += [(now, o.placed_min) for o in orders]
        return []


def test_a_policy_is_never_shown_an_order_before_it_is_placed(tmp_path: Path) -> None:
    instance = load_instance(tiny(tmp_path / "tiny"))
    spy = Spy()
    assert simulate(instance, spy).orders == []
    assert spy.seen and all(placed <= now for now, placed in spy.seen)
    assert {placed for _, placed in spy.seen} == {10, 12}


@dataclass
class Cheat(Spy):
    """A policy that gives the courier an order of another restaurant in the same bundle."""

    def decide(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Assignment]:
        if len(orders) < 2:
            return []
        return [Assignment(drivers[0].id, tuple(o.id for o in orders), now, now, now, (now,))]


def test_the_replay_refuses_a_bundle_of_two_restaurants(tmp_path: Path) -> None:
    folder = write_instance(
        tmp_path / "two",
        ["r1\t0\t0", "r2\t100\t0"],
        ["o1\t0\t320\t5\tr1\t10", "o2\t0\t320\t6\tr2\t10"],
        ["c1\t0\t0\t0\t60"],
    )
    with pytest.raises(PolicyError, match="one restaurant"):
        simulate(load_instance(folder), Cheat())


def test_a_policy_deciding_less_than_a_minute_apart_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a minute apart"):
        simulate(load_instance(tiny(tmp_path / "tiny")), BatchedPolicy(interval_min=0))
