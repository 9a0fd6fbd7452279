"""One estimate: the baseline's legs, the features, and the region's model if it has one.

The estimate's times are wall-clock instants: ``now`` + world seconds / ``time_scale`` (1 on
a real platform). Without a usable model the baseline is the estimate, with a fixed window
(``BASELINE_WINDOW``), and ``note`` says why — it reaches the customer's response.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ontheway.eta.features import Context, Legs, Stage, feature_row, jsonable, vector
from ontheway.eta.model import EtaModel
from ontheway.eta.registry import ModelMissing, Registry

# Without a model: the window a route-based estimate honestly has (the early and late edges
# as fractions of the baseline), not a learned one.
BASELINE_WINDOW = (0.85, 1.35)


@dataclass(frozen=True)
class Estimate:
    """An estimate of the remaining time to delivery, made at ``made_at`` (wall clock)."""

    stage: Stage
    made_at: datetime
    time_scale: float
    legs: Legs
    features: dict[str, float]
    predicted_s: float
    low_s: float
    high_s: float
    method: str  # "model" or "baseline"
    model_version: str | None = None
    note: str | None = None
    predict_ms: float = field(default=0.0, compare=False)

    @property
    def baseline_s(self) -> float:
        return self.legs.total_s

    def at(self, world_s: float) -> datetime:
        """The wall-clock instant ``world_s`` world seconds after the estimate was made."""
        return self.made_at + timedelta(seconds=world_s / self.time_scale)

    @property
    def estimated_delivery(self) -> datetime:
        return self.at(self.predicted_s)

    def to_dict(self) -> dict[str, Any]:
        """For the event, the response and the tracking socket (times RFC 3339, UTC)."""
        return {
            "stage": self.stage.value,
            "estimated_delivery": _iso(self.estimated_delivery),
            "earliest": _iso(self.at(self.low_s)),
            "latest": _iso(self.at(self.high_s)),
            "method": self.method,
            "model_version": self.model_version,
            "note": self.note,
            "baseline_s": round(self.baseline_s, 3),
            "predicted_s": round(self.predicted_s, 3),
            "low_s": round(self.low_s, 3),
            "high_s": round(self.high_s, 3),
            "legs": self.legs.to_dict(),
            "time_scale": self.time_scale,
        }


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


@dataclass
class EtaEstimator:
    """Estimates with the regions' newest models (see ``registry``)."""

    registry: Registry
    time_scale: float = 1.0

    def estimate(
        self, region: str, stage: Stage, legs: Legs, ctx: Context, now: datetime
    ) -> Estimate:
        """The model's estimate, or the baseline's when the region has no usable model."""
        row = feature_row(stage, legs, ctx, now)
        model = self.registry.model(region)
        baseline = legs.total_s
        if isinstance(model, ModelMissing):
            low, high = BASELINE_WINDOW
            return Estimate(stage, now, self.time_scale, legs, row, baseline, baseline * low,
                            baseline * high, "baseline", note=model.reason)  # fmt: skip
        return self._predicted(model, stage, legs, row, now)

    def _predicted(
        self, model: EtaModel, stage: Stage, legs: Legs, row: dict[str, float], now: datetime
    ) -> Estimate:
        started = time.perf_counter()
        found = model.predict(vector(row), legs.total_s)
        spent_ms = (time.perf_counter() - started) * 1000
        return Estimate(stage, now, self.time_scale, legs, row, found.predicted_s, found.low_s,
                        found.high_s, "model", model.version, predict_ms=spent_ms)  # fmt: skip


def stored_features(estimate: Estimate) -> dict[str, Any]:
    """The feature row as stored (NaN as null)."""
    return jsonable(estimate.features)
