"""The learned correction of the baseline: three LightGBM quantile models (10th, 50th and
90th percentile) of the baseline's error, actual minus baseline, in world seconds. The point
estimate is the median — it minimises the mean absolute error, the figure customers feel —
and the 10th to 90th percentiles are the window the customer sees. The quantile (pinball) loss
is asymmetric by design: the 90th-percentile model pays nine times more for being early than
late, so the window's late edge is where a late order would fall.

A model file is one JSON document: the file format, the feature names, what it was trained on
(region, deliveries, until when) and the three boosters as LightGBM's text. A file of another
format or with other features is refused (``ModelFileError``) rather than misread.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ontheway.eta.features import FEATURES

FORMAT = "ontheway-eta/1"
QUANTILES = (0.1, 0.5, 0.9)
WINDOW_TARGET = 0.8  # the share of deliveries the 10-90 % window should hold
MIN_REMAINING_S = 60.0  # an estimate never says "delivered in less than a minute"
# LightGBM's settings: small trees (7 leaves of at least 100 estimates), a slow rate, 300
# rounds: most of what is left after the baseline is noise (a kitchen's own spread), and
# larger trees learned it (on simulated San Francisco lunches, 900 training orders: 5.53 min
# at placement against 5.31 with these). Deterministic (one thread, fixed seed) so that a
# retrain is reproducible.
PARAMS: dict[str, Any] = {
    "learning_rate": 0.03, "num_leaves": 7, "min_data_in_leaf": 100, "feature_fraction": 0.9,
    "bagging_fraction": 0.9, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1,
    "num_threads": 1, "seed": 7, "deterministic": True,
}  # fmt: skip
ROUNDS = 300


class ModelFileError(ValueError):
    """A model file that this version cannot use (its message says why and what to do)."""


@dataclass(frozen=True)
class Prediction:
    """Remaining world seconds to delivery: the point estimate and the 10-90 % window."""

    predicted_s: float
    low_s: float
    high_s: float


@dataclass
class EtaModel:
    """Three quantile boosters over ``FEATURES`` and what they were trained on."""

    region: str
    boosters: dict[float, Any]  # quantile -> lightgbm.Booster
    trained: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # The window's half-widths times this, chosen on orders kept out of the fit so that the
    # window holds WINDOW_TARGET of them (quantile models cover less on new data than on
    # their own): conformalised quantile regression, in its scaled form.
    window_scale: float = 1.0

    @classmethod
    def fit(
        cls, region: str, x: NDArray[np.float64], residual: NDArray[np.float64],
        trained: dict[str, Any],
    ) -> EtaModel:  # fmt: skip
        """Train on feature rows ``x`` (columns in ``FEATURES`` order) and the baseline's
        errors (actual minus baseline, seconds)."""
        import lightgbm as lgb

        boosters = {}
        for q in QUANTILES:
            data = lgb.Dataset(x, residual, feature_name=list(FEATURES), free_raw_data=False)
            params = PARAMS | {"objective": "quantile", "alpha": q}
            boosters[q] = lgb.train(params, data, num_boost_round=ROUNDS)
        return cls(region, boosters, trained)

    def predict_many(
        self, x: NDArray[np.float64], baseline_s: NDArray[np.float64]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Point, low and high remaining seconds for each row (quantiles kept in order)."""
        parts = [baseline_s + self.boosters[q].predict(x, num_threads=1) for q in QUANTILES]
        low, mid, high = np.sort(np.vstack(parts), axis=0)
        k = self.window_scale
        low, high = mid - k * (mid - low), mid + k * (high - mid)
        floor = np.minimum(baseline_s, MIN_REMAINING_S)
        return np.maximum(mid, floor), np.maximum(low, floor), np.maximum(high, floor)

    def calibrate(
        self, x: NDArray[np.float64], baseline_s: NDArray[np.float64],
        actual_s: NDArray[np.float64], target: float = 0.8,
    ) -> float:  # fmt: skip
        """Set ``window_scale`` so that the window holds ``target`` of these (held-out) actual
        times; returns it. Bisection: the share held grows with the scale."""
        self.window_scale = 1.0
        mid, low, high = self.predict_many(x, baseline_s)
        lo_k, hi_k = 0.25, 8.0
        for _ in range(40):
            k = (lo_k + hi_k) / 2
            held = window_coverage(actual_s, mid - k * (mid - low), mid + k * (high - mid))
            lo_k, hi_k = (lo_k, k) if held >= target else (k, hi_k)
        self.window_scale = round(hi_k, 4)
        return self.window_scale

    def predict(self, row: list[float], baseline_s: float) -> Prediction:
        """One estimate (in-process, about a millisecond: see ``ontheway eta evaluate``)."""
        mid, low, high = self.predict_many(np.array([row]), np.array([baseline_s]))
        return Prediction(float(mid[0]), float(low[0]), float(high[0]))

    # -- the file ----------------------------------------------------------------------

    def dumps(self) -> str:
        """The model file's text."""
        return json.dumps({
            "format": FORMAT,
            "region": self.region,
            "features": list(FEATURES),
            "quantiles": list(QUANTILES),
            "trained": self.trained,
            "window_scale": self.window_scale,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "boosters": {str(q): b.model_to_string() for q, b in self.boosters.items()},
        })  # fmt: skip

    @classmethod
    def loads(cls, text: str, source: str = "the model file") -> EtaModel:
        """A model from its file's text (``ModelFileError`` when it cannot be used)."""
        import lightgbm as lgb

        try:
            doc = json.loads(text)
        except ValueError:
            raise ModelFileError(f"{source} is not an ETA model file (not JSON)") from None
        found = doc.get("format") if isinstance(doc, dict) else None
        if found != FORMAT:
            raise ModelFileError(
                f"{source} is in format {found!r}, this version reads {FORMAT!r}: "
                "train a new model with `ontheway eta train`"
            )
        if doc.get("features") != list(FEATURES):
            raise ModelFileError(
                f"{source} was trained on other features: train a new model with "
                "`ontheway eta train`"
            )
        boosters = {q: lgb.Booster(model_str=doc["boosters"][str(q)]) for q in QUANTILES}
        return cls(str(doc["region"]), boosters, dict(doc.get("trained", {})),
                   window_scale=float(doc.get("window_scale", 1.0)))  # fmt: skip

    def save(self, path: Path) -> None:
        """Write the file (atomically: a reader never sees half of it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.dumps())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EtaModel:
        """A model file from disk; its version is the file's name."""
        model = cls.loads(path.read_text(), str(path))
        model.version = path.stem
        return model


def window_coverage(actual: NDArray[np.float64], low: NDArray[np.float64],
                     high: NDArray[np.float64]) -> float:  # fmt: skip
    """Share of actual times inside the window (NaN when there are none)."""
    if not len(actual):
        return math.nan
    return float(np.mean((actual >= low) & (actual <= high)))
