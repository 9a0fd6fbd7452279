import itertools
import math

import numpy as np
import pytest

from ontheway.errors import InvalidInput
from ontheway.roads.errors import Unreachable
from ontheway.roads.sequence import EXACT_MAX, Stop, cost, evaluate, feasible, plan_stops


def random_case(rng: np.random.Generator, orders: int, on_board: int = 0):  # type: ignore[no-untyped-def]
    stops = []
    for k in range(orders):
        if k >= on_board:
            stops.append(Stop(f"o{k}", "pickup", float(rng.integers(0, 120))))
        stops.append(Stop(f"o{k}", "dropoff", float(rng.integers(0, 120))))
    points = rng.uniform(0, 5000, size=(len(stops) + 1, 2))
    # Asymmetric, like one-way streets: a distance times a random factor per direction.
    matrix = [
        [
            0.0
            if a == b
            else float(np.linalg.norm(points[a] - points[b]) / 8 * rng.uniform(1, 1.6))
            for b in range(len(points))
        ]
        for a in range(len(points))
    ]
    return matrix, stops


def brute_force(matrix, stops, objective):  # type: ignore[no-untyped-def]
    orders = (o for o in itertools.permutations(range(len(stops))) if feasible(stops, o))
    return min(cost(matrix, stops, o, objective) for o in orders)


@pytest.mark.parametrize("objective", ["finish", "deliveries"])
@pytest.mark.parametrize(("orders", "on_board"), [(1, 0), (2, 0), (3, 0), (3, 1), (4, 2)])
def test_up_to_six_stops_the_plan_is_the_best_of_every_feasible_order(
    objective: str, orders: int, on_board: int
) -> None:
    rng = np.random.default_rng(orders * 10 + on_board)
    for _ in range(5):
        matrix, stops = random_case(rng, orders, on_board)
        plan = plan_stops(matrix, stops, objective)  # type: ignore[arg-type]
        assert plan.exact and feasible(stops, plan.order)
        assert sorted(plan.order) == list(range(len(stops)))
        assert cost(matrix, stops, plan.order, objective) == pytest.approx(  # type: ignore[arg-type]
            brute_force(matrix, stops, objective)
        )


def test_every_pickup_comes_before_its_own_drop_off_and_arrivals_add_up() -> None:
    matrix, stops = random_case(np.random.default_rng(5), 3)
    plan = plan_stops(matrix, stops)
    for position, i in enumerate(plan.order):
        if stops[i].kind == "dropoff":
            pickup = next(
                j
                for j, s in enumerate(stops)
                if s.order_id == stops[i].order_id and s.kind == "pickup"
            )
            assert plan.order.index(pickup) < position
    arrivals, finish = evaluate(matrix, stops, plan.order)
    assert plan.arrival_s == arrivals and plan.finish_s == finish
    assert arrivals == sorted(arrivals)


def test_beyond_the_exact_limit_a_heuristic_gives_a_feasible_good_plan() -> None:
    rng = np.random.default_rng(9)
    matrix, stops = random_case(rng, 6)  # 12 stops
    assert len(stops) > EXACT_MAX
    plan = plan_stops(matrix, stops)
    assert not plan.exact and feasible(stops, plan.order)
    naive = [i for k in range(6) for i in (2 * k, 2 * k + 1)]  # each order picked up, delivered
    assert plan.finish_s <= cost(matrix, stops, naive, "finish")


def test_a_stop_no_road_reaches_is_unreachable() -> None:
    stops = [Stop("o1", "pickup"), Stop("o1", "dropoff")]
    matrix = [[0.0, 60.0, 90.0], [60.0, 0.0, None], [90.0, None, 0.0]]
    with pytest.raises(Unreachable):
        plan_stops(matrix, stops)


def test_no_stops_is_an_empty_plan_and_a_wrong_matrix_is_refused() -> None:
    assert plan_stops([[0.0]], []).order == []
    with pytest.raises(ValueError):
        plan_stops([[0.0, 1.0]], [Stop("o1", "dropoff")])
    assert math.isinf(evaluate([[0.0, None], [None, 0.0]], [Stop("o1", "dropoff")], [0])[1])


@pytest.mark.parametrize(
    ("stops", "field"),
    [
        ([Stop("o1", "pickup"), Stop("o1", "pickup"), Stop("o1", "dropoff")], "stops.1.kind"),
        ([Stop("o1", "pickup"), Stop("o2", "dropoff")], "stops.0.order_id"),
    ],
)
def test_an_order_with_two_pickups_or_a_pickup_never_dropped_off_is_refused(
    stops: list[Stop], field: str
) -> None:
    matrix = [[0.0] * (len(stops) + 1) for _ in range(len(stops) + 1)]
    with pytest.raises(InvalidInput) as caught:
        plan_stops(matrix, stops)
    assert caught.value.field == field
