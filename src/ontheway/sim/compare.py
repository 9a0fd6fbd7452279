"""Two or more runs of the same city side by side: the same seed under each dispatch policy
(``ontheway simulate --policy greedy --policy batched``), as text and as an HTML table.

Only the dispatch policy differs between the runs: the same seed plans the same orders,
drivers, kitchens and traffic (what async timing can still change is in the README).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ontheway.sim.summary import Report

Row = tuple[str, Callable[[dict[str, Any]], Any], int]


def _stat(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda fig: fig[name][key]


ROWS: list[Row] = [
    ("orders placed", lambda fig: fig["orders"]["placed"], 0),
    ("delivered", lambda fig: fig["orders"]["delivered"], 0),
    ("cancelled", lambda fig: fig["orders"]["cancelled"], 0),
    ("click to door, mean (sim min)", _stat("click_to_door_min", "mean"), 1),
    ("click to door, p90 (sim min)", _stat("click_to_door_min", "p90"), 1),
    ("ready to pickup, mean (sim min)", _stat("ready_to_pickup_min", "mean"), 1),
    ("assignment latency, p50 (wall ms)", _stat("assignment_latency_ms", "p50"), 0),
    ("assignment latency, p99 (wall ms)", _stat("assignment_latency_ms", "p99"), 0),
    ("driver utilisation, mean", _stat("utilisation", "mean"), 2),
    ("ETA abs error, mean (sim min)", _stat("eta_abs_error_min", "mean"), 1),
    ("offers", lambda fig: fig["offers"], 0),
    ("reassignments", lambda fig: fig["reassignments"], 0),
]


def _cell(value: Any, digits: int) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(reports: Sequence[Report], policies: Sequence[str]) -> list[list[str]]:
    """Header and rows: one column per run."""
    head = ["", *(f"{p} ({r.run_id})" for p, r in zip(policies, reports, strict=True))]
    rows = [[name, *(_cell(get(r.figures), d) for r in reports)] for name, get, d in ROWS]
    # A batched dispatcher holds orders back until their food is nearly ready: at the run's
    # end more of them are still searching (and cancelled) than under greedy.
    end = ["  of which still searching at the end"]
    end += [_cell(r.simulator.get("cancelled_at_end"), 0) for r in reports]
    rows.insert(3, end)
    audit = ["audit (orders rebuilt / checked)"]
    audit += [f"{r.audit['passed']} / {r.audit['checked']}" for r in reports]
    return [head, *rows, audit]


def render_text(reports: Sequence[Report], policies: Sequence[str]) -> str:
    """The comparison as aligned text."""
    rows = table(reports, policies)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            [row[0].ljust(widths[0])]
            + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        )
        for row in rows
    ]
    return "same seed, one run per dispatch policy:\n" + "\n".join(lines) + "\n"


def render_html(reports: Sequence[Report], policies: Sequence[str]) -> str:
    """The comparison as a small HTML page (no script, works offline)."""
    head, *rows = table(reports, policies)
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return (
        "<!doctype html><meta charset=utf-8><title>ontheway: dispatch policies compared</title>"
        "<style>body{font:14px sans-serif;margin:2em}td,th{padding:4px 10px;"
        "border-bottom:1px solid #ddd}td+td{text-align:right}</style>"
        f"<h1>Dispatch policies on the same seed</h1><table><tr>{th}</tr>{body}</table>"
    )


def write_comparison(
    reports: Sequence[Report], policies: Sequence[str], folder: Path
) -> tuple[Path, Path]:
    """``compare.txt`` and ``compare.html`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    text_path, html_path = folder / "compare.txt", folder / "compare.html"
    text_path.write_text(render_text(reports, policies))
    html_path.write_text(render_html(reports, policies))
    return text_path, html_path
