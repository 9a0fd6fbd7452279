"""Every instance of a folder with one or more policies: a table per instance, the averages,
and the published reference beside them.

The reference is Reyes et al. (2018), their rolling-horizon algorithm over the 240 public
instances (seeds 0 to 9); the folder here holds seeds 0 to 4, so the comparison is of
averages over different, overlapping sets. Averages are means over instances of each
instance's figure, as the paper reports them. Wall time is loading, replaying and writing one
instance (the checker runs after, untimed).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ontheway.dispatch.policies import make_policy
from ontheway.errors import InvalidInput
from ontheway.mdrp.check import check_solution
from ontheway.mdrp.instance import load_instance
from ontheway.mdrp.simulate import simulate
from ontheway.mdrp.solution import as_written, read_solution, write_solution
from ontheway.mdrp.summary import Summary, summarise

REFERENCE = {
    "undelivered_pct": 0.25,
    "click_to_door_mean_min": 32.74,
    "click_to_door_p90_min": 49.3,
    "ready_to_pickup_mean_min": 1.93,
    "cost_per_order": 11.42,
}
FIGURES = (
    ("undelivered %", "undelivered_pct", "{:.2f}"),
    ("click-to-door", "click_to_door_mean_min", "{:.2f}"),
    ("p90", "click_to_door_p90_min", "{:.1f}"),
    ("ready-to-pickup", "ready_to_pickup_mean_min", "{:.2f}"),
    ("utilisation", "utilisation", "{:.2f}"),
    ("orders/bundle", "orders_per_assignment", "{:.2f}"),
    ("cost/order", "cost_per_order", "{:.2f}"),
)


@dataclass(frozen=True)
class BenchRow:
    """One instance solved by one policy."""

    instance: str
    policy: str
    summary: Summary
    problems: int
    wall_s: float


def instance_dirs(folder: Path) -> list[Path]:
    """The instance folders under ``folder`` (or ``folder`` itself if it is one), by name."""
    if (folder / "orders.txt").is_file():
        return [folder]
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder", field="dir")
    found = sorted(p for p in folder.iterdir() if (p / "orders.txt").is_file())
    if not found:
        raise InvalidInput(f"{folder}: no instance folder (with orders.txt) inside", field="dir")
    return found


def solve(
    folder: Path, policy_name: str, out: Path | None, interval_min: int | None = None
) -> BenchRow:
    """Load, replay and (if ``out``) write one instance; then check and summarise it."""
    started = time.perf_counter()
    instance = load_instance(folder)
    policy = make_policy(policy_name, interval_min)
    solution = simulate(instance, policy)
    if out is not None:
        write_solution(solution, out)
    wall_s = time.perf_counter() - started
    problems = check_solution(instance, read_solution(out) if out else as_written(solution))
    return BenchRow(
        instance.name, policy.name, summarise(instance, solution), len(problems), wall_s
    )


def averages(rows: list[BenchRow]) -> dict[str, float]:
    """Mean over instances of every figure, and of the wall time."""
    means = {key: statistics.fmean(getattr(r.summary, key) for r in rows) for _, key, _ in FIGURES}
    means["wall_s"] = statistics.fmean(r.wall_s for r in rows)
    return means


def _row(label: str, policy: str, figures: dict[str, float], extra: list[str]) -> list[str]:
    shown = [fmt.format(figures[key]) if key in figures else "-" for _, key, fmt in FIGURES]
    return [label, policy, *shown, *extra]


def tables(rows: list[BenchRow], policies: list[str]) -> tuple[Table, Table]:
    """The per-instance table and the table of averages beside the reference."""
    names = [name for name, _, _ in FIGURES]
    each = Table("instance", "policy", *names, "feasible", "wall s")
    for row in rows:
        verdict = "yes" if row.problems == 0 else f"NO ({row.problems})"
        figures = row.summary.as_dict()
        each.add_row(*_row(row.instance, row.policy, figures, [verdict, f"{row.wall_s:.2f}"]))
    totals = Table("instances", "policy", *names, "infeasible", "wall s (mean / max)")
    for label, chosen in (("all", rows), ("o100", [r for r in rows if "o100" in r.instance])):
        for name in policies:
            mine = [r for r in chosen if r.policy == name]
            if mine:
                means = averages(mine)
                wall = f"{means['wall_s']:.2f} / {max(r.wall_s for r in mine):.2f}"
                extra = [str(sum(r.problems > 0 for r in mine)), wall]
                totals.add_row(*_row(f"{label} ({len(mine)})", name, means, extra))
    totals.add_row(*_row("240 (seeds 0-9)", "Reyes et al. 2018", REFERENCE, ["-", "-"]))
    return each, totals


def markdown(table: Table) -> str:
    """A rich table as a Markdown table (for the README)."""
    cells = [[str(c) for c in col.cells] for col in table.columns]
    lines = ["| " + " | ".join(str(col.header) for col in table.columns) + " |"]
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(row) + " |" for row in zip(*cells, strict=True)]
    return "\n".join(lines) + "\n"


def run_bench(
    folder: Path,
    policies: list[str],
    console: Console,
    out: Path | None = None,
    markdown_to: Path | None = None,
) -> list[BenchRow]:
    """Solve every instance with every policy, print the tables, return the rows."""
    rows = [
        solve(path, name, None if out is None else out / name / path.name)
        for path in instance_dirs(folder)
        for name in policies
    ]
    each, totals = tables(rows, policies)
    console.print(each)
    console.print("averages over instances, beside the published reference:")
    console.print(totals)
    if markdown_to is not None:
        markdown_to.write_text(markdown(each) + "\n" + markdown(totals))
    return rows
