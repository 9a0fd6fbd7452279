"""The pure dispatch policies: route timing, the seed's greedy choice, rolling-horizon batches."""

from __future__ import annotations

import numpy as np
import pytest

from ontheway.dispatch.policies import (
    BatchedPolicy,
    Driver,
    EuclideanTravel,
    GreedyPolicy,
    OpenOrder,
    Service,
    make_policy,
    plan_route,
)
from ontheway.dispatch.policies.batched import sequence

TRAVEL = EuclideanTravel(320.0)  # 320 m per minute
SERVICE = Service(pickup_min=4, dropoff_min=4)


def order(
    oid: str, placed: int, ready: int, diner: tuple[float, float], rid: str = "r1"
) -> OpenOrder:
    restaurant_xy = (0.0, 0.0) if rid == "r1" else (6400.0, 0.0)
    return OpenOrder(oid, placed, ready, rid, restaurant_xy, diner)


def test_travel_time_is_the_distance_over_the_speed_rounded_up() -> None:
    assert int(TRAVEL(np.array([0.0, 0.0]), np.array([320.0, 0.0]))) == 1
    assert int(TRAVEL(np.array([0.0, 0.0]), np.array([321.0, 0.0]))) == 2
    assert int(TRAVEL(np.array([5.0, 5.0]), np.array([5.0, 5.0]))) == 0
    many = TRAVEL(np.zeros((2, 1, 2)), np.array([[0.0, 640.0], [0.0, 1000.0], [3.0, 4.0]]))
    assert many.shape == (2, 3) and many[0].tolist() == [2, 4, 1]


def test_a_route_picks_up_when_every_order_is_ready_then_drops_in_sequence() -> None:
    driver = Driver("d1", (640.0, 0.0), free_min=3, off_min=60)
    bundle = [order("o1", 0, 20, (0.0, 960.0)), order("o2", 1, 15, (0.0, -640.0))]
    planned = plan_route(driver, bundle, now=5, travel=TRAVEL, service=SERVICE)
    assert (planned.depart_min, planned.arrive_min, planned.pickup_min) == (5, 7, 20)
    # leaves at 22, o1 3 min away: drop 27, leaves 29, o2 5 min further: drop 36
    assert planned.dropoff_mins == (27, 36)
    with pytest.raises(ValueError, match="one restaurant"):
        plan_route(driver, [bundle[0], order("o3", 0, 5, (1.0, 1.0), "r2")], 5, TRAVEL, SERVICE)


def test_greedy_gives_each_order_the_quickest_free_driver_oldest_order_first() -> None:
    near = Driver("near", (320.0, 0.0), free_min=0, off_min=100)
    far = Driver("far", (3200.0, 0.0), free_min=0, off_min=100)
    busy = Driver("busy", (0.0, 0.0), free_min=11, off_min=100)
    orders = [order("young", 9, 30, (0.0, 320.0)), order("old", 2, 30, (0.0, 640.0))]
    chosen = GreedyPolicy().decide(10, orders, [far, busy, near], TRAVEL, SERVICE)
    assert [(a.driver_id, a.order_ids) for a in chosen] == [("near", ("old",)), ("far", ("young",))]
    assert all(a.depart_min == 10 for a in chosen)


def test_greedy_passes_over_a_driver_whose_shift_ends_before_the_pickup() -> None:
    leaving = Driver("leaving", (320.0, 0.0), free_min=0, off_min=20)
    staying = Driver("staying", (3200.0, 0.0), free_min=0, off_min=100)
    chosen = GreedyPolicy().decide(
        0, [order("o1", 0, 25, (0.0, 320.0))], [leaving, staying], TRAVEL, SERVICE
    )
    assert [a.driver_id for a in chosen] == ["staying"]
    assert (
        GreedyPolicy().decide(0, [order("o1", 0, 25, (0.0, 320.0))], [leaving], TRAVEL, SERVICE)
        == []
    )


def test_batched_waits_while_leaving_later_would_not_delay_the_pickup() -> None:
    driver = Driver("d1", (640.0, 0.0), free_min=0, off_min=100)
    orders = [order("o1", 0, 20, (0.0, 960.0))]
    policy = BatchedPolicy(interval_min=1)
    assert policy.decide(15, orders, [driver], TRAVEL, SERVICE) == []
    (chosen,) = policy.decide(16, orders, [driver], TRAVEL, SERVICE)
    assert (chosen.depart_min, chosen.pickup_min) == (16, 20)


def test_batched_plans_with_a_driver_soon_free_and_sends_nobody_meanwhile() -> None:
    far_and_free = Driver("far", (3200.0, 0.0), free_min=0, off_min=100)
    near_and_busy = Driver("near", (960.0, 0.0), free_min=5, off_min=100)
    orders = [order("o1", 0, 10, (0.0, 320.0))]
    policy = BatchedPolicy(interval_min=1)
    assert policy.decide(0, orders, [far_and_free, near_and_busy], TRAVEL, SERVICE) == []
    now_free = Driver("near", (960.0, 0.0), free_min=5, off_min=100)
    (chosen,) = policy.decide(6, orders, [far_and_free, now_free], TRAVEL, SERVICE)
    assert (chosen.driver_id, chosen.pickup_min) == ("near", 11)


def test_batched_bundles_one_restaurants_orders_only_when_drivers_are_short() -> None:
    orders = [order("o1", 0, 5, (0.0, 960.0)), order("o2", 1, 6, (0.0, -640.0))]
    one = [Driver("d1", (640.0, 0.0), free_min=0, off_min=100)]
    two = [*one, Driver("d2", (0.0, 640.0), free_min=0, off_min=100)]
    policy = BatchedPolicy(interval_min=1)
    (bundle,) = policy.decide(4, orders, one, TRAVEL, SERVICE)
    assert bundle.order_ids == ("o2", "o1")  # the nearer diner first
    apart = policy.decide(4, orders, two, TRAVEL, SERVICE)
    assert sorted(a.order_ids for a in apart) == [("o1",), ("o2",)]


def test_batched_never_bundles_orders_ready_far_apart_nor_over_capacity() -> None:
    orders = [order("o1", 0, 5, (0.0, 960.0)), order("o2", 1, 40, (0.0, -640.0))]
    driver = Driver("d1", (640.0, 0.0), free_min=0, off_min=100)
    chosen = BatchedPolicy(interval_min=1).decide(4, orders, [driver], TRAVEL, SERVICE)
    assert [a.order_ids for a in chosen] == [("o1",)]
    close = [order("o1", 0, 5, (0.0, 960.0)), order("o2", 1, 6, (0.0, -640.0))]
    small = Driver("d1", (640.0, 0.0), free_min=0, off_min=100, capacity=1)
    chosen = BatchedPolicy(interval_min=1).decide(4, close, [small], TRAVEL, SERVICE)
    assert [len(a.order_ids) for a in chosen] == []  # a bundle of two does not fit


def test_a_bundle_drops_off_in_the_sequence_with_the_earliest_drop_offs() -> None:
    far, near = order("far", 0, 5, (0.0, 3200.0)), order("near", 0, 5, (0.0, 320.0))
    best = sequence([far, near], TRAVEL, SERVICE)
    assert [o.id for o in best.orders] == ["near", "far"]
    # pickup + 2, 1 min to near, + 2: drop at +5; leave +7, 9 min on, + 2: drop at +18
    assert best.offsets_min == (5, 18)


def test_policies_are_made_by_name() -> None:
    assert make_policy("greedy").name == "greedy"
    assert make_policy("batched", interval_min=5).interval_min == 5
    with pytest.raises(ValueError, match="unknown policy"):
        make_policy("random")


def test_batched_prefers_a_driver_whose_guaranteed_pay_covers_the_order_when_both_are_in_time() -> (
    None
):
    orders = [order("o1", 0, 20, (0.0, 320.0))]
    paid_per_order = Driver("a", (320.0, 0.0), free_min=0, off_min=100, guaranteed_orders=0)
    paid_anyway = Driver("b", (640.0, 0.0), free_min=0, off_min=100, guaranteed_orders=4)
    policy = BatchedPolicy(interval_min=1)
    assert policy.decide(15, orders, [paid_per_order, paid_anyway], TRAVEL, SERVICE) == []
    (chosen,) = policy.decide(16, orders, [paid_per_order, paid_anyway], TRAVEL, SERVICE)
    assert chosen.driver_id == "b" and chosen.pickup_min == 20
    # when only the nearer driver is still in time, the pay does not decide
    late = policy.decide(17, orders, [paid_per_order, paid_anyway], TRAVEL, SERVICE)
    assert [a.driver_id for a in late] == ["a"]


def test_batched_sends_a_driver_free_now_rather_than_wait_for_one_barely_quicker() -> None:
    orders = [order("o1", 0, 0, (0.0, 320.0))]
    free_far = Driver("far", (3200.0, 0.0), free_min=0, off_min=100)  # picks up at 22
    busy_near = Driver("near", (320.0, 0.0), free_min=18, off_min=100)  # would pick up at 21
    (chosen,) = BatchedPolicy().decide(10, orders, [free_far, busy_near], TRAVEL, SERVICE)
    assert (chosen.driver_id, chosen.pickup_min) == ("far", 22)
    patient = BatchedPolicy(later_weight=0.0)
    assert patient.decide(10, orders, [free_far, busy_near], TRAVEL, SERVICE) == []


def test_a_committed_order_takes_along_one_of_its_restaurant_that_would_wait_for_a_driver() -> None:
    orders = [order("o1", 0, 5, (0.0, 960.0)), order("o2", 1, 5, (0.0, 1280.0))]
    near = Driver("near", (640.0, 0.0), free_min=0, off_min=100)  # at the restaurant at 6
    far = Driver("far", (6400.0, 0.0), free_min=0, off_min=100)  # 20 minutes away
    (chosen,) = BatchedPolicy().decide(4, orders, [near, far], TRAVEL, SERVICE)
    # picks up at 8; o1 is dropped at 15 as it would be alone, o2 one minute further at 20
    assert (chosen.driver_id, chosen.order_ids, chosen.dropoff_mins) == (
        "near",
        ("o1", "o2"),
        (15, 20),
    )
    alone = BatchedPolicy(join_delay_min=-1).decide(4, orders, [near, far], TRAVEL, SERVICE)
    assert sorted((a.driver_id, a.order_ids) for a in alone) == [
        ("far", ("o2",)),
        ("near", ("o1",)),
    ]


def test_an_order_is_not_taken_along_when_it_delays_the_committed_drop_off_too_much() -> None:
    far_diner = order("long", 0, 5, (0.0, 6400.0))  # 20 min from the restaurant
    near_diner = order("short", 4, 6, (0.0, -960.0))  # 3 min, so it would be dropped first
    driver = Driver("d1", (960.0, 0.0), free_min=0, off_min=100)  # picks up at 9
    # apart (ready_gap_min=0), the older order is the one matched (wait_weight)
    policy = BatchedPolicy(ready_gap_min=0, wait_weight=10.0)
    (chosen,) = policy.decide(4, [far_diner, near_diner], [driver], TRAVEL, SERVICE)
    assert (chosen.order_ids, chosen.dropoff_mins) == (("long",), (33,))
    # taking "short" along would drop "long" at 43: ten minutes later
    patient = BatchedPolicy(ready_gap_min=0, wait_weight=10.0, join_delay_min=10)
    (chosen,) = patient.decide(4, [far_diner, near_diner], [driver], TRAVEL, SERVICE)
    assert (chosen.order_ids, chosen.dropoff_mins) == (("short", "long"), (16, 43))
