"""``ontheway mdrp``: replay, check and benchmark MDRP instances (file I/O only, no servers)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ontheway.errors import InvalidInput

mdrp_app = typer.Typer(
    help="The Meal Delivery Routing Problem on Grubhub's public instances.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


class PolicyName(StrEnum):
    """The dispatch policies a replay can use."""

    greedy = "greedy"
    batched = "batched"


def _bad_input(exc: InvalidInput) -> typer.Exit:
    err_console.print(f"[red]error:[/] {exc.message}", soft_wrap=True)
    return typer.Exit(2)


@mdrp_app.command("run")
def mdrp_run(
    instance_dir: Annotated[Path, typer.Argument(help="an instance folder (orders.txt, ...)")],
    out: Annotated[Path, typer.Option(help="folder for the solution files and summary.json")],
    policy: Annotated[PolicyName, typer.Option(help="dispatch policy")] = PolicyName.batched,
    interval: Annotated[
        int | None, typer.Option(min=1, help="minutes between decisions (default: the policy's)")
    ] = None,
) -> None:
    """Replay one instance with a policy; write the three solution files and a summary."""
    from ontheway.mdrp.bench import FIGURES, solve

    try:
        row = solve(instance_dir, policy.value, out, interval)
    except InvalidInput as exc:
        raise _bad_input(exc) from None
    figures = row.summary.as_dict()
    record = {"instance": row.instance, "policy": row.policy, **figures, "wall_s": row.wall_s}
    (out / "summary.json").write_text(json.dumps(record, indent=1) + "\n")
    table = Table("figure", "value", title=f"{row.instance}, {row.policy}")
    table.add_row("orders delivered", f"{row.summary.delivered} of {row.summary.orders}")
    for name, key, fmt in FIGURES:
        table.add_row(name, fmt.format(figures[key]))
    table.add_row("feasible", "yes" if row.problems == 0 else f"NO ({row.problems} problems)")
    table.add_row("wall time", f"{row.wall_s:.2f} s")
    console.print(table)
    console.print(f"solution written to {out}")
    if row.problems:
        raise typer.Exit(1)


@mdrp_app.command("check")
def mdrp_check(
    instance_dir: Annotated[Path, typer.Argument(help="the instance folder")],
    solution_dir: Annotated[Path, typer.Argument(help="the folder of the three solution files")],
) -> None:
    """Check a solution against every feasibility condition; exit 1 when one is broken."""
    from ontheway.mdrp.check import check_solution
    from ontheway.mdrp.instance import load_instance
    from ontheway.mdrp.solution import read_solution

    try:
        problems = check_solution(load_instance(instance_dir), read_solution(solution_dir))
    except InvalidInput as exc:
        raise _bad_input(exc) from None
    for problem in problems:
        console.print(problem, soft_wrap=True, highlight=False)
    if problems:
        console.print(f"[red]INFEASIBLE[/]: {len(problems)} problems")
        raise typer.Exit(1)
    console.print("[green]FEASIBLE[/]")


@mdrp_app.command("bench")
def mdrp_bench(
    folder: Annotated[Path, typer.Argument(help="a folder of instance folders")],
    policy: Annotated[
        list[PolicyName] | None, typer.Option(help="repeatable; default: greedy and batched")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="also write solutions here")] = None,
    markdown: Annotated[Path | None, typer.Option(help="also write the tables as Markdown")] = None,
) -> None:
    """Every instance with each policy: figures, feasibility and wall time, beside the paper."""
    from ontheway.mdrp.bench import run_bench

    names = [p.value for p in policy] if policy else ["greedy", "batched"]
    try:
        rows = run_bench(folder, names, Console(width=200), out, markdown)
    except InvalidInput as exc:
        raise _bad_input(exc) from None
    if any(r.problems for r in rows):
        raise typer.Exit(1)
