"""The report's plots (matplotlib, Agg backend: no display) and its self-contained HTML
page, each plot embedded as a base64 PNG."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from ontheway.sim.summary import Report

Draw = Callable[["Axes"], None]


def png(draw: Draw, title: str) -> str:
    """One plot drawn by ``draw`` on fresh axes, as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=90)
    ax = fig.add_subplot()
    draw(ax)
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode()


def histogram(values: list[float], xlabel: str) -> Draw:
    """A histogram of ``values`` (a note instead when there are none)."""

    def draw(ax: Axes) -> None:
        if values:
            ax.hist(values, bins=min(30, max(5, len(values) // 3)), color="#3b7dd8")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")

    return draw


def per_hour(rows: list[dict[str, Any]]) -> Draw:
    """Orders placed and delivered per simulated hour, as paired bars."""

    def draw(ax: Axes) -> None:
        xs = list(range(len(rows)))
        ax.bar([x - 0.2 for x in xs], [r["placed"] for r in rows], 0.4, label="placed")
        ax.bar([x + 0.2 for x in xs], [r["delivered"] for r in rows], 0.4, label="delivered")
        ax.set_xticks(xs, [r["hour"] for r in rows])
        ax.set_xlabel("simulated hour")
        ax.set_ylabel("orders")
        ax.legend()

    return draw


def plots(report: Report) -> list[tuple[str, str]]:
    """(title, base64 PNG) of every plot of the report."""
    s = report.series
    wanted: list[tuple[str, Draw]] = [
        ("Orders per simulated hour", per_hour(report.hourly)),
        ("Click to door", histogram(s.get("click_to_door_min", []), "simulated minutes")),
        ("Assignment latency", histogram(s.get("assignment_latency_ms", []), "wall ms")),
        ("Driver utilisation", histogram(s.get("utilisation", []), "share of time carrying")),
        ("ETA error (positive: late)", histogram(s.get("eta_error_min", []), "simulated minutes")),
    ]
    return [(title, png(draw, title)) for title, draw in wanted]


def write_html(report: Report, text: str, path: Path) -> None:
    """The report as one HTML page: the summary, then the plots."""
    images = "\n".join(
        f'<figure><img alt="{html.escape(t)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(t)}</figcaption></figure>"
        for t, data in plots(report)
    )
    path.write_text(
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>ontheway run {html.escape(report.run_id)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}"
        "figure{display:inline-block;margin:0.5em}</style></head><body>"
        f"<h1>Simulation run {html.escape(report.run_id)}</h1>"
        f"<pre>{html.escape(text)}</pre>\n{images}\n</body></html>\n"
    )
