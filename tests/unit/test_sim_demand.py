import random

import pytest

from ontheway.sim.demand import (
    PEAK_FACTOR,
    arrival_times,
    demand_factor,
    generate_orders,
    rush_factor,
)


def test_the_demand_curve_averages_one_over_the_day() -> None:
    mean = sum(demand_factor(m / 60) for m in range(24 * 60)) / (24 * 60)
    assert mean == pytest.approx(1.0, abs=1e-9)


def test_lunch_and_dinner_are_peaks_and_the_night_is_quiet() -> None:
    assert demand_factor(12.5) > 2 * demand_factor(10.0)
    assert demand_factor(19.0) > demand_factor(16.0)
    assert demand_factor(3.0) < 0.3
    assert max(demand_factor(m / 60) for m in range(24 * 60)) == pytest.approx(PEAK_FACTOR)


def test_rush_hours_slow_the_roads_and_the_night_does_not() -> None:
    assert rush_factor(8.5) > 1.7 and rush_factor(17.5) > 1.7
    assert rush_factor(3.0) == pytest.approx(1.0, abs=0.01)


def test_arrivals_follow_the_rate_of_each_hour() -> None:
    rng = random.Random(7)
    # 24 simulated hours at 600 orders/h on average: about 14,400 orders.
    times = arrival_times(rng, 600, 0.0, 24 * 3600)
    assert len(times) == pytest.approx(600 * 24, rel=0.05)
    assert times == sorted(times)
    lunch = sum(1 for t in times if 12 * 3600 <= t < 13 * 3600)
    night = sum(1 for t in times if 3 * 3600 <= t < 4 * 3600)
    expected_lunch = 600 * sum(demand_factor(12 + m / 60) for m in range(60)) / 60
    assert lunch == pytest.approx(expected_lunch, rel=0.15)
    assert night < lunch / 5


def test_no_rate_or_no_time_gives_no_orders() -> None:
    assert arrival_times(random.Random(1), 0, 12.0, 3600) == []
    assert arrival_times(random.Random(1), 100, 12.0, 0) == []


def _orders(seed: int) -> list[object]:
    return list(
        generate_orders(
            seed, "sf", rate_per_h=120, start_hour=11.0, duration_s=7200,
            popularity=[1.0, 2.0, 0.5], dropoffs=[[(1.0, 2.0)], [(3.0, 4.0), (5.0, 6.0)],
            [(7.0, 8.0)]], customers=10,
        )
    )  # fmt: skip


def test_the_same_seed_gives_the_same_orders_and_another_seed_others() -> None:
    first, again, other = _orders(42), _orders(42), _orders(43)
    assert first == again
    assert first != other
    assert len(first) > 100


def test_generated_orders_use_the_restaurants_own_addresses_and_menus() -> None:
    places = {0: {(1.0, 2.0)}, 1: {(3.0, 4.0), (5.0, 6.0)}, 2: {(7.0, 8.0)}}
    for order in _orders(5):
        assert order.dropoff in places[order.restaurant]  # type: ignore[attr-defined]
        items = order.items  # type: ignore[attr-defined]
        assert 1 <= len(items) <= 3 and all(0 <= i < 5 and q >= 1 for i, q in items)
        assert 0 <= order.customer < 10  # type: ignore[attr-defined]
