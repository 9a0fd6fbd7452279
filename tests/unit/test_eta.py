"""The ETA's pure parts: legs, features, the model's quantiles and file, the estimator."""

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ontheway.eta.estimator import BASELINE_WINDOW, EtaEstimator
from ontheway.eta.features import FEATURES, Context, Legs, Stage, feature_row, vector
from ontheway.eta.learn import Rows, kitchen_spread
from ontheway.eta.model import EtaModel, ModelFileError
from ontheway.eta.registry import ModelMissing, Registry, next_path
from ontheway.roads.planning import slowdown

NOW = datetime(2030, 5, 6, 12, 30, tzinfo=UTC)
CTX = Context(elapsed_s=0.0, restaurant_prep_recent_s=None, restaurant_prep_n=0,
              restaurant_queue=2, confirmed_prep_s=None, driver_pace=1.2,
              driver_distance_m=None)  # fmt: skip


def test_the_baseline_waits_for_the_food_or_for_the_driver_whichever_is_later() -> None:
    early_driver = Legs(60, 300, 900, 120, 600, 120)
    assert early_driver.wait_s == 540 and early_driver.total_s == 900 + 120 + 600 + 120
    late_driver = Legs(60, 1200, 900, 120, 600, 120)
    assert late_driver.wait_s == 0 and late_driver.total_s == 1260 + 120 + 600 + 120


def test_features_are_named_in_the_models_order_and_unknowns_are_nan() -> None:
    row = feature_row(Stage.ASSIGNMENT, Legs(0, 300, 900, 120, 600, 120), CTX, NOW)
    assert tuple(row) == FEATURES
    values = vector(row)
    assert values[FEATURES.index("stage")] == 1.0
    assert values[FEATURES.index("hour")] == 12.5
    assert math.isnan(values[FEATURES.index("confirmed_prep_s")])
    assert math.isnan(vector({})[0])  # a row stored without a feature: missing, not zero


def fitted(n: int = 1500) -> tuple[EtaModel, np.ndarray, np.ndarray, np.ndarray]:
    """A model of a world where the actual time is the baseline times the driver's pace."""
    rng = np.random.default_rng(3)
    x = np.full((n, len(FEATURES)), np.nan)
    baseline = rng.uniform(900, 2400, n)
    pace = rng.uniform(0.8, 1.5, n)
    x[:, FEATURES.index("baseline_s")] = baseline
    x[:, FEATURES.index("driver_pace")] = pace
    actual = baseline * pace + rng.normal(0, 90, n)
    return EtaModel.fit("sf", x, actual - baseline, {"deliveries": n}), x, baseline, actual


def test_the_model_learns_what_the_baseline_misses_and_its_window_holds_about_80_percent() -> None:
    model, x, baseline, actual = fitted()
    mid, low, high = model.predict_many(x, baseline)
    assert np.all(low <= mid) and np.all(mid <= high)
    assert np.mean(np.abs(actual - mid)) < 0.3 * np.mean(np.abs(actual - baseline))
    inside = np.mean((actual >= low) & (actual <= high))
    assert 0.7 <= inside <= 0.9


def test_a_model_file_round_trips_and_other_files_are_refused(tmp_path: Path) -> None:
    model, x, baseline, _ = fitted(300)
    path = next_path(tmp_path, "sf")
    assert path.name == "v0001.json"
    model.save(path)
    assert next_path(tmp_path, "sf").name == "v0002.json"
    again = EtaModel.load(path)
    assert again.version == "v0001"
    assert again.predict(list(x[0]), baseline[0]) == model.predict(list(x[0]), baseline[0])
    doc = json.loads(path.read_text())
    with pytest.raises(ModelFileError, match="not JSON"):
        EtaModel.loads("garbage")
    with pytest.raises(ModelFileError, match="other features"):
        EtaModel.loads(json.dumps(doc | {"features": ["hour"]}))
    with pytest.raises(ModelFileError, match="format 'ontheway-eta/9'"):
        EtaModel.loads(json.dumps(doc | {"format": "ontheway-eta/9"}))


def test_without_a_model_the_estimate_is_the_baseline_and_says_why(tmp_path: Path) -> None:
    legs = Legs(0, 300, 900, 120, 600, 120)
    est = EtaEstimator(Registry(tmp_path)).estimate("sf", Stage.PLACEMENT, legs, CTX, NOW)
    assert est.method == "baseline" and est.predicted_s == legs.total_s
    assert "no ETA model for region 'sf'" in (est.note or "")
    assert (est.low_s, est.high_s) == (legs.total_s * BASELINE_WINDOW[0],
                                       legs.total_s * BASELINE_WINDOW[1])  # fmt: skip
    assert isinstance(Registry(tmp_path).model("sf"), ModelMissing)


def test_a_models_estimate_is_on_the_wall_clock_of_a_faster_world(tmp_path: Path) -> None:
    model, *_ = fitted(300)
    model.save(next_path(tmp_path, "sf"))
    legs = Legs(0, 300, 900, 120, 600, 120)
    est = EtaEstimator(Registry(tmp_path), time_scale=20).estimate(
        "sf", Stage.PLACEMENT, legs, CTX, NOW
    )
    assert est.method == "model" and est.model_version == "v0001" and est.note is None
    assert est.estimated_delivery == NOW + timedelta(seconds=est.predicted_s / 20)
    shown = est.to_dict()
    assert shown["earliest"] < shown["estimated_delivery"] < shown["latest"]


def test_the_kitchens_spread_is_the_deviation_from_each_restaurants_own_mean() -> None:
    prep = np.array([600.0, 1200.0, 900.0, 300.0, 300.0, 300.0, np.nan, 60.0])
    restaurant = ["a", "a", "a", "b", "b", "b", "b", "c"]  # c: too few orders to judge
    n = len(prep)
    zeros = np.zeros(n)
    rows = Rows([str(i) for i in range(n)], [NOW] * n, np.zeros((n, len(FEATURES))), zeros,
                zeros, np.zeros(n, dtype=np.int64), restaurant, prep, zeros)  # fmt: skip
    # a: mean 900, deviations 300, 300, 0; b: 0, 0, 0 (its unknown one left out).
    assert kitchen_spread(rows) == pytest.approx((300 + 300 + 0 + 0 + 0 + 0) / 6 / 60)


def test_the_window_is_widened_on_held_out_orders_to_hold_80_percent(tmp_path: Path) -> None:
    model, x, baseline, actual = fitted(600)
    rng = np.random.default_rng(11)
    wilder = actual + rng.normal(0, 400, len(actual))  # new orders, noisier than the fit's
    before = model.predict_many(x, baseline)
    scale = model.calibrate(x, baseline, wilder)
    assert scale > 1
    mid, low, high = model.predict_many(x, baseline)
    assert np.mean((wilder >= low) & (wilder <= high)) == pytest.approx(0.8, abs=0.01)
    assert np.array_equal(mid, before[0])  # the point estimate stays
    model.save(tmp_path / "v0001.json")
    assert EtaModel.load(tmp_path / "v0001.json").window_scale == scale


def test_traffic_on_a_way_is_its_time_over_its_time_at_free_flow() -> None:
    assert slowdown(300.0, 200.0) == 1.5
    assert slowdown(None, 200.0) is None
    assert slowdown(0.0, 0.0) is None  # an empty way (driver already at the restaurant)
    legs = Legs(0.0, 120.0, 0.0, 120.0, 600.0, 120.0)
    ctx = Context(0.0, None, 0, 0, None, None, None,
                  traffic_to_restaurant=None, traffic_to_customer=1.8)  # fmt: skip
    row = feature_row(Stage.PLACEMENT, legs, ctx, datetime(2026, 12, 6, 12, tzinfo=UTC))
    assert row["traffic_to_customer"] == 1.8
    assert math.isnan(row["traffic_to_restaurant"])
