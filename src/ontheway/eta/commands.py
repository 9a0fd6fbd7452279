"""The ``ontheway eta`` commands' work: connections, the run, what is printed, the plot."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ontheway.connections import Connections
from ontheway.eta.learn import Evaluation, evaluate, train
from ontheway.orders.store import ShardAccess
from ontheway.regions import load_catalog
from ontheway.settings import Settings


async def _shards(settings: Settings, region: str) -> ShardAccess:
    catalog = load_catalog(settings.region_catalog)
    catalog.get(region)  # NotFound naming the region
    conns = await Connections.open(settings, shards=[catalog.shard_for(region)], pool_max=2)
    return ShardAccess(conns, catalog)


async def train_command(
    settings: Settings, region: str, min_deliveries: int | None, holdout: float,
    console: Console, out: Path | None = None, after: datetime | None = None,
    until: datetime | None = None,
) -> Evaluation:  # fmt: skip
    """Train the region's next model; print and return its evaluation on the held-out orders."""
    shards = await _shards(settings, region)
    try:
        minimum = settings.eta_min_deliveries if min_deliveries is None else min_deliveries
        done = await train(shards, settings.eta_model_dir, region,
                           min_deliveries=minimum, holdout=holdout, after=after,
                           until=until)  # fmt: skip
    finally:
        await shards.conns.close()
    trained = done.model.trained
    console.print(
        f"{region}: model {done.path} trained on {trained['deliveries']} deliveries "
        f"({trained['estimates']} estimates) placed until {trained['until']}; "
        f"evaluated on the {trained['holdout_deliveries']} later ones"
    )
    report(done.evaluation, console, out)
    return done.evaluation


async def evaluate_command(
    settings: Settings, region: str, version: str | None, after: datetime | None,
    console: Console, out: Path | None = None,
) -> Evaluation:  # fmt: skip
    """Judge a model on deliveries it did not train on; print and return the figures."""
    shards = await _shards(settings, region)
    try:
        found = await evaluate(shards, settings.eta_model_dir, region, version, after)
    finally:
        await shards.conns.close()
    report(found, console, out)
    return found


def _min(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def report(ev: Evaluation, console: Console, out: Path | None) -> None:
    """The evaluation as a table (and, with ``out``, evaluation.json and the plot)."""
    table = Table("stage", "estimates", "MAE model", "MAE baseline", "lower by", "p90 model",
                  "p90 baseline", "in 10-90% window", "bias (late +)",
                  title=f"{ev.region} {ev.version}: {ev.deliveries} deliveries it did not "
                  "train on (minutes)")  # fmt: skip
    for s in ev.stages:
        table.add_row(s.stage, str(s.estimates), _min(s.model_mae), _min(s.baseline_mae),
                      f"{s.improvement:.0%}", _min(s.model_p90), _min(s.baseline_p90),
                      f"{s.coverage:.0%}", _min(s.bias))  # fmt: skip
    console.print(table)
    console.print(f"prediction in-process: p50 {ev.predict_ms_p50:.2f} ms, "
                  f"p99 {ev.predict_ms_p99:.2f} ms per estimate")  # fmt: skip
    console.print(f"kitchens' own spread (preparation vs its restaurant's mean, mean absolute "
                  f"deviation): {_min(ev.kitchen_spread)} min; the driver waited for the food "
                  f"in {ev.waited_for_food:.0%} of these deliveries")  # fmt: skip
    if not ev.stages:
        console.print("no delivery to evaluate on yet")
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "region": ev.region, "version": ev.version, "deliveries": ev.deliveries,
        "predict_ms_p50": ev.predict_ms_p50, "predict_ms_p99": ev.predict_ms_p99,
        "kitchen_spread_min": ev.kitchen_spread, "waited_for_food": ev.waited_for_food,
        "stages": [s.__dict__ | {"improvement": s.improvement} for s in ev.stages],
    }  # fmt: skip
    (out / "evaluation.json").write_text(json.dumps(doc, indent=1) + "\n")
    if ev.points[0]:
        plot(ev, out / "predicted-vs-actual.png")
        console.print(f"plot: {out / 'predicted-vs-actual.png'}")


def plot(ev: Evaluation, path: Path) -> None:
    """Predicted (model and baseline) against actual delivery time, at placement."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    predicted, actual, baseline = ev.points
    fig = Figure(figsize=(6, 6), dpi=100)
    ax = fig.add_subplot()
    ax.scatter(actual, baseline, s=6, alpha=0.35, label="route-based baseline", color="#bbb")
    ax.scatter(actual, predicted, s=6, alpha=0.6, label=f"model {ev.version}", color="#1f77b4")
    top = max([*actual, *predicted, *baseline, 1.0])
    ax.plot([0, top], [0, top], color="#444", linewidth=1, label="predicted = actual")
    ax.set_xlabel("actual delivery time (min, from placement)")
    ax.set_ylabel("estimate at placement (min)")
    ax.set_title(f"ETA at placement, {ev.region}: {len(actual)} deliveries not trained on")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
