"""A real Grubhub instance (tests/data/mdrp) solved by both policies, checked feasible."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ontheway.cli import app
from ontheway.mdrp.bench import solve
from ontheway.mdrp.check import check_solution
from ontheway.mdrp.instance import load_instance
from ontheway.mdrp.solution import read_solution

REAL = Path("tests/data/mdrp/0r50t100s1p100")


@pytest.mark.parametrize("policy", ["greedy", "batched"])
def test_the_real_instance_is_solved_feasibly(policy: str, tmp_path: Path) -> None:
    row = solve(REAL, policy, tmp_path / policy)
    assert row.problems == 0
    assert check_solution(load_instance(REAL), read_solution(tmp_path / policy)) == []
    assert row.summary.delivered >= 0.95 * row.summary.orders
    assert row.summary.cost_per_order >= 10.0  # never below the pay per order


def test_batched_beats_greedy_on_click_to_door_there(tmp_path: Path) -> None:
    greedy = solve(REAL, "greedy", None).summary
    batched = solve(REAL, "batched", None).summary
    assert batched.delivered >= greedy.delivered
    assert batched.click_to_door_mean_min < greedy.click_to_door_mean_min
    assert batched.ready_to_pickup_mean_min < greedy.ready_to_pickup_mean_min


def test_the_run_command_writes_the_three_files_and_a_summary(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["mdrp", "run", str(REAL), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "solution_info_assignments.txt",
        "solution_info_couriers.txt",
        "solution_info_orders.txt",
        "summary.json",
    ]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["policy"] == "batched" and summary["orders"] == 242
    delivered = len((tmp_path / "solution_info_orders.txt").read_text().splitlines()) - 1
    assert summary["delivered"] == delivered


def test_the_bench_command_prints_each_instance_and_the_reference(tmp_path: Path) -> None:
    md = tmp_path / "bench.md"
    result = CliRunner().invoke(
        app, ["mdrp", "bench", str(REAL.parent), "--policy", "greedy", "--markdown", str(md)]
    )
    assert result.exit_code == 0, result.output
    assert "0r50t100s1p100" in result.output
    assert "Reyes et al. 2018" in result.output and "32.74" in result.output
    table = md.read_text().splitlines()
    assert table[0].startswith("| instance | policy | undelivered % |")
    assert table[2].startswith("| 0r50t100s1p100 | greedy | ")
    assert "| 240 (seeds 0-9) | Reyes et al. 2018 | 0.25 | 32.74 | 49.3 | 1.93 |" in md.read_text()
    empty = CliRunner().invoke(app, ["mdrp", "bench", str(tmp_path)])
    assert empty.exit_code == 2 and "no instance folder" in empty.output
