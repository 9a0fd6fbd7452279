"""The ``ontheway roads`` commands' work: a progress bar around the import and its summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ontheway.connections import GraphStore
from ontheway.regions import load_catalog
from ontheway.roads.graph import ImportSummary
from ontheway.roads.importer import import_osm
from ontheway.settings import Settings

_PHASES = {
    "read": "reading the file (ways)",
    "nodes": "writing intersections",
    "roads": "writing roads",
    "index": "building the indexes",
}


async def import_command(
    settings: Settings, region: str, path: Path, console: Console
) -> ImportSummary:
    """Import ``path`` into the region's graph with a progress bar; print the summary."""
    bbox = load_catalog(settings.region_catalog).get(region).bbox  # UnknownRegion first
    store = GraphStore(settings.require_falkordb_url(), max(settings.dependency_timeout_s, 60))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total or None)
                bar.update(tasks[phase], completed=done, total=total or None)

            db = await store.db()
            summary = await import_osm(db, region, path, bbox=bbox, progress=progress)
    finally:
        await store.aclose()
    console.print(summary_table(summary))
    return summary


def summary_table(summary: ImportSummary) -> Table:
    """The import's summary as a two-column table."""
    table = Table("", "", show_header=False, title=f"{summary.region}: {summary.graph}")
    rows = {
        "nodes": f"{summary.nodes:,}",
        "roads (directed)": f"{summary.roads:,}",
        "components (strong)": f"{summary.components:,}",
        "largest component": f"{summary.largest_component_nodes:,} nodes",
        "car ways": f"{summary.car_ways:,}",
        "dropped ways": f"{summary.dropped_ways:,} (no two consecutive nodes in the file)",
        "trimmed ways": f"{summary.trimmed_ways:,} (cut at the extract's border)",
        "turn restrictions": f"{summary.restrictions:,} applied "
        f"({summary.split_intersections} intersections split), "
        f"{summary.unusable_restrictions} unusable",
        "time": f"read {summary.read_s} s, write {summary.write_s} s, indexes {summary.index_s} s",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    return table
