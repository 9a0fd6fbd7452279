"""Ranking drivers: travel time, rating and acceptance with the seed's weights."""

from __future__ import annotations

import pytest

from ontheway.dispatch.scoring import Scored, rank


def test_the_quicker_driver_wins_when_everything_else_is_equal() -> None:
    ranked = rank([Scored("slow", 600, 4.5, 0.9), Scored("fast", 120, 4.5, 0.9)])
    assert [s.driver_id for s in ranked] == ["fast", "slow"]


def test_a_much_better_rating_outweighs_a_slightly_longer_trip() -> None:
    ranked = rank([Scored("near", 300, 1.0, 0.5), Scored("good", 330, 5.0, 0.5)])
    assert ranked[0].driver_id == "good"


def test_the_seed_weights_give_the_expected_score() -> None:
    # the only candidate: travel 60 s of a 60 s horizon -> 0; rating 5 -> 1; acceptance 0.5
    (only,) = rank([Scored("a", 60, 5.0, 0.5)])
    assert only.score == pytest.approx(0.3 + 0.2 * 0.5)


def test_custom_weights_can_rank_by_acceptance_alone() -> None:
    ranked = rank([Scored("fast", 10, 5.0, 0.1), Scored("keen", 900, 1.0, 1.0)], weights=(0, 0, 1))
    assert ranked[0].driver_id == "keen"


def test_unknown_rating_and_acceptance_count_as_middling() -> None:
    ranked = rank([Scored("new", 100, None, None), Scored("poor", 100, 2.0, 0.2)])
    assert ranked[0].driver_id == "new"


def test_ties_go_to_the_quicker_driver_then_the_id() -> None:
    ranked = rank([Scored("b", 0, 3.0, 0.5), Scored("a", 0, 3.0, 0.5)])
    assert [s.driver_id for s in ranked] == ["a", "b"]


def test_no_candidates_rank_to_nothing_and_bad_weights_are_refused() -> None:
    assert rank([]) == []
    with pytest.raises(ValueError):
        rank([Scored("a", 1, 3.0, 0.5)], weights=(0, 0, 0))


def test_a_driver_who_still_holds_orders_reaches_the_restaurant_after_delivering_them() -> None:
    busy_next_door = Scored("busy", 60, 4.5, 0.9, committed_s=1200)
    idle_further = Scored("idle", 400, 4.5, 0.9)
    ranked = rank([busy_next_door, idle_further])
    assert [s.driver_id for s in ranked] == ["idle", "busy"]
    assert ranked[1].committed_s == 1200 and ranked[1].reach_s == 1260
    # With nothing held, road time alone decides, as before.
    assert rank([Scored("busy", 60, 4.5, 0.9), idle_further])[0].driver_id == "busy"
