"""The side-by-side comparison of runs under each dispatch policy (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ontheway.sim.compare import render_text, table, write_comparison
from ontheway.sim.summary import Report


def stats(mean: float, p50: float | None = None, p90: float | None = None) -> dict[str, Any]:
    return {"n": 3, "mean": mean, "p50": p50 or mean, "p90": p90 or mean, "p99": p90 or mean}


def report(run_id: str, delivered: int, click_to_door: float, at_end: int) -> Report:
    figures = {
        "orders": {"placed": 10, "delivered": delivered, "cancelled": at_end, "open": 0},
        "click_to_door_min": stats(click_to_door, p90=click_to_door + 10),
        "ready_to_pickup_min": stats(2.0),
        "assignment_latency_ms": stats(300.0, p50=250.0, p90=900.0),
        "utilisation": stats(0.5),
        "eta_abs_error_min": stats(4.0),
        "offers": 12,
        "reassignments": 1,
    }
    return Report(
        run_id=run_id, speed=30, regions=["sf"], figures=figures, per_region={}, consumers={},
        payouts={}, audit={"checked": 10, "passed": 10, "failures": []}, mixing={}, hourly=[],
        simulator={"cancelled_at_end": at_end},
    )  # fmt: skip


def test_each_policy_is_a_column_of_its_own_figures(tmp_path: Path) -> None:
    runs = [report("r1", 7, 25.55, 1), report("r2", 9, 24.04, 3)]
    head, *rows = table(runs, ["greedy", "batched"])
    assert head == ["", "greedy (r1)", "batched (r2)"]
    by_name = {row[0]: row[1:] for row in rows}
    assert by_name["delivered"] == ["7", "9"]
    assert by_name["click to door, mean (sim min)"] == ["25.6", "24.0"]
    assert by_name["click to door, p90 (sim min)"] == ["35.5", "34.0"]
    assert by_name["  of which still searching at the end"] == ["1", "3"]
    assert by_name["audit (orders rebuilt / checked)"] == ["10 / 10", "10 / 10"]
    text = render_text(runs, ["greedy", "batched"])
    assert text.splitlines()[1].split() == ["greedy", "(r1)", "batched", "(r2)"]
    text_path, html_path = write_comparison(runs, ["greedy", "batched"], tmp_path / "cmp")
    assert text_path.read_text() == text
    assert "<td>24.0</td>" in html_path.read_text()
