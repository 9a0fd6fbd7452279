"""``ontheway eta train`` and ``ontheway eta evaluate``: a region's model learned from its ETA
log, and judged on deliveries it did not train on.

Training reads every estimate of the region's delivered orders (each stage: placement,
assignment, pickup, re-route) with what happened: the target is the actual remaining time,
(delivered - made) x the run's time scale, and the model learns the baseline's error. The
latest ``holdout`` share of orders (by placement time) is kept out: the window's width is set
on it (``EtaModel.calibrate``, so its coverage there is 80 % by construction) and the point
estimate evaluated on it. The model file records the last placement it trained on, so
``evaluate`` by default judges it on later deliveries only. Figures are in minutes: mean and
90th percentile of the absolute error of the model and of the route-based baseline on the
same deliveries, how much lower the model's mean error is, and how often the actual time fell
inside the 10-90 % window.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ontheway.errors import InvalidInput
from ontheway.eta.features import FEATURES, STAGE_CODE, Stage, vector
from ontheway.eta.log import delivered_estimates
from ontheway.eta.model import WINDOW_TARGET, EtaModel, window_coverage
from ontheway.eta.registry import latest, next_path
from ontheway.orders.store import ShardAccess

CODE_STAGE = {code: stage for stage, code in STAGE_CODE.items()}
MIN_CALIBRATION = 50  # held-out orders needed to set the window's width
log = logging.getLogger(__name__)


@dataclass
class Rows:
    """Estimates of delivered orders as arrays."""

    order_ids: list[str]
    placed_at: list[datetime]
    x: NDArray[np.float64]
    baseline_s: NDArray[np.float64]
    actual_s: NDArray[np.float64]
    stage: NDArray[np.int64]
    restaurant: list[str] = field(default_factory=list)
    prep_s: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))  # NaN: not known
    # 1.0: its driver reached the restaurant before the food was ready; NaN: not known
    waited: NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))

    @property
    def deliveries(self) -> int:
        return len(set(self.order_ids))

    def take(self, mask: NDArray[np.bool_]) -> Rows:
        idx = np.flatnonzero(mask)
        return Rows([self.order_ids[i] for i in idx], [self.placed_at[i] for i in idx],
                    self.x[idx], self.baseline_s[idx], self.actual_s[idx], self.stage[idx],
                    [self.restaurant[i] for i in idx], self.prep_s[idx],
                    self.waited[idx])  # fmt: skip


def as_rows(found: list[dict[str, Any]]) -> Rows:
    """Log rows as arrays (an estimate made after the delivery, a clock's glitch, is left
    out)."""
    keep = [r for r in found if r["delivered_at"] >= r["made_at"]]
    actual = [(r["delivered_at"] - r["made_at"]).total_seconds() * r["time_scale"] for r in keep]
    x = np.array([vector(r["features"]) for r in keep], dtype=float).reshape(
        len(keep), len(FEATURES)
    )
    return Rows(
        [r["order_id"] for r in keep], [r["placed_at"] for r in keep], x,
        np.array([float(r["baseline_s"]) for r in keep]), np.array(actual, dtype=float),
        np.array([STAGE_CODE[Stage(r["stage"])] for r in keep], dtype=np.int64),
        [str(r["restaurant_id"]) for r in keep],
        np.array([np.nan if r["prep_s"] is None else float(r["prep_s"]) for r in keep]),
        np.array([np.nan if r["waited_for_food"] is None else float(r["waited_for_food"])
                  for r in keep]),
    )  # fmt: skip


async def load_rows(
    shards: ShardAccess, region: str, after: datetime | None = None,
    until: datetime | None = None,
) -> Rows:  # fmt: skip
    """The region's delivered orders' estimates, placed in (after, until]."""
    async with shards.connection(region) as conn:
        return as_rows(await delivered_estimates(conn, region, after, until))


@dataclass
class StageScore:
    """How one stage's estimates did (minutes)."""

    stage: str
    estimates: int
    model_mae: float
    model_p90: float
    baseline_mae: float
    baseline_p90: float
    coverage: float  # share of actual times inside the model's 10-90 % window
    bias: float  # mean of actual - predicted (positive: late)

    @property
    def improvement(self) -> float:
        """How much lower the model's mean absolute error is than the baseline's (share)."""
        return 1 - self.model_mae / self.baseline_mae if self.baseline_mae else float("nan")


@dataclass
class Evaluation:
    """A model judged on deliveries it did not train on."""

    region: str
    version: str
    deliveries: int
    stages: list[StageScore] = field(default_factory=list)
    predict_ms_p50: float = 0.0
    predict_ms_p99: float = 0.0
    # The kitchens' own spread (minutes): mean absolute deviation of an order's preparation
    # from its restaurant's mean over these deliveries. No estimate made at placement can
    # know it; where the food is what the driver waits for, it is a floor under the error.
    kitchen_spread: float = float("nan")
    waited_for_food: float = float("nan")  # share of deliveries whose driver waited for it
    # placement stage: (predicted, actual, baseline) minutes, for the plot
    points: tuple[list[float], list[float], list[float]] = ([], [], [])

    def stage(self, name: str) -> StageScore | None:
        return next((s for s in self.stages if s.stage == name), None)


def score(model: EtaModel, rows: Rows) -> Evaluation:
    """Per stage: the model's and the baseline's errors and the window's coverage."""
    out = Evaluation(model.region, model.version, rows.deliveries)
    if not len(rows.actual_s):
        return out
    mid, low, high = model.predict_many(rows.x, rows.baseline_s)
    for code in sorted(set(rows.stage.tolist())):
        m = rows.stage == code
        actual = rows.actual_s[m]
        err, base = np.abs(actual - mid[m]) / 60, np.abs(actual - rows.baseline_s[m]) / 60
        out.stages.append(StageScore(
            CODE_STAGE[code].value, int(m.sum()), float(err.mean()),
            float(np.percentile(err, 90)), float(base.mean()), float(np.percentile(base, 90)),
            window_coverage(actual, low[m], high[m]), float((actual - mid[m]).mean() / 60),
        ))  # fmt: skip
    first = rows.stage == STAGE_CODE[Stage.PLACEMENT]
    placed = rows.take(first)
    out.kitchen_spread = kitchen_spread(placed)
    known = placed.waited[~np.isnan(placed.waited)]
    out.waited_for_food = float(known.mean()) if len(known) else float("nan")
    out.points = ((mid[first] / 60).tolist(), (rows.actual_s[first] / 60).tolist(),
                  (rows.baseline_s[first] / 60).tolist())  # fmt: skip
    timings = []
    for i in range(min(500, len(rows.actual_s))):  # one estimate at a time, as served
        started = time.perf_counter()
        model.predict(rows.x[i].tolist(), float(rows.baseline_s[i]))
        timings.append((time.perf_counter() - started) * 1000)
    out.predict_ms_p50 = float(np.percentile(timings, 50))
    out.predict_ms_p99 = float(np.percentile(timings, 99))
    return out


def kitchen_spread(rows: Rows, at_least: int = 3) -> float:
    """Mean absolute deviation (minutes) of each order's preparation from its restaurant's
    mean, over restaurants with at least ``at_least`` of these orders."""
    by: dict[str, list[float]] = {}
    for restaurant, prep in zip(rows.restaurant, rows.prep_s.tolist(), strict=True):
        if not np.isnan(prep):
            by.setdefault(restaurant, []).append(prep)
    deviations = [abs(p - float(np.mean(ps))) for ps in by.values() if len(ps) >= at_least
                  for p in ps]  # fmt: skip
    return float(np.mean(deviations)) / 60 if deviations else float("nan")


@dataclass
class Trained:
    """A training run: the model file written and its evaluation on the held-out orders."""

    path: Path
    model: EtaModel
    evaluation: Evaluation


async def train(
    shards: ShardAccess, root: Path, region: str, *, min_deliveries: int, holdout: float,
    after: datetime | None = None, until: datetime | None = None,
) -> Trained:  # fmt: skip
    """Train the region's next model version on deliveries placed in (``after``, ``until``]
    (all by default); ``InvalidInput`` when the log is too thin."""
    rows = await load_rows(shards, region, after=after, until=until)
    if rows.deliveries < min_deliveries:
        raise InvalidInput(
            f"region {region!r} has {rows.deliveries} delivered orders in its ETA log; "
            f"training needs at least {min_deliveries} (run the simulator, or lower "
            "--min-deliveries)",
            field="region", code="too_few_deliveries",
        )  # fmt: skip
    orders = sorted({(p, o) for o, p in zip(rows.order_ids, rows.placed_at, strict=True)})
    cut_at = orders[int(len(orders) * (1 - holdout)) - 1][0] if holdout else orders[-1][0]
    before = np.array([p <= cut_at for p in rows.placed_at])
    fit_rows, held = rows.take(before), rows.take(~before)
    trained = {
        "deliveries": fit_rows.deliveries, "estimates": len(fit_rows.actual_s),
        "until": cut_at.isoformat(), "holdout_deliveries": held.deliveries,
    }  # fmt: skip
    model = EtaModel.fit(region, fit_rows.x, fit_rows.actual_s - fit_rows.baseline_s, trained)
    if held.deliveries >= MIN_CALIBRATION:  # the window, widened to hold 80 % of new orders
        scale = model.calibrate(held.x, held.baseline_s, held.actual_s, WINDOW_TARGET)
        trained["window_scale_from"] = held.deliveries
        log.info("%s: window scaled by %.3f on %d held-out orders", region, scale,
                 held.deliveries)  # fmt: skip
    path = next_path(root, region)
    model.save(path)
    model.version = path.stem
    return Trained(path, model, score(model, held))


async def evaluate(
    shards: ShardAccess, root: Path, region: str, version: str | None = None,
    after: datetime | None = None,
) -> Evaluation:  # fmt: skip
    """Judge a model (the newest by default) on the region's deliveries placed after the
    last one it trained on (or after ``after``)."""
    path = latest(root, region) if version is None else root / region / f"{version}.json"
    if path is None or not path.exists():
        raise InvalidInput(
            f"no ETA model {version or ''} for region {region!r} in {root}: train one with "
            f"`ontheway eta train --region {region}`",
            field="region", code="no_model",
        )  # fmt: skip
    model = EtaModel.load(path)
    if after is None:
        after = datetime.fromisoformat(model.trained["until"])
    return score(model, await load_rows(shards, region, after=after))
