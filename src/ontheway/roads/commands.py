"""The ``ontheway roads`` commands' work: the import (progress bar, summary), traffic, zones."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ontheway.connections import Connections, GraphStore
from ontheway.errors import OnTheWayError
from ontheway.regions import load_catalog
from ontheway.roads.delivery import ZonesSummary, load_restaurants, rebuild_zones, refresh_zones
from ontheway.roads.graph import ImportSummary
from ontheway.roads.importer import import_osm
from ontheway.roads.reroute import follow_up_once
from ontheway.roads.routing import RoadService, TrafficResult
from ontheway.roads.traffic import InvalidTraffic, as_change
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
        console.print(summary_table(summary))
        await _refresh_zones_after_import(settings, store, region, console)
    finally:
        await store.aclose()
    return summary


async def _refresh_zones_after_import(
    settings: Settings, store: GraphStore, region: str, console: Console
) -> None:
    """Zones built on the previous map are no longer trusted (placement falls back to the
    radius): rebuild them now when the region has some."""
    catalog = load_catalog(settings.region_catalog)
    try:
        conns = await Connections.open(settings, shards=[catalog.shard_for(region)], pool_max=2)
        try:
            zones = await refresh_zones(
                RoadService(store, catalog), await store.db(), conns, catalog, region
            )
        finally:
            await conns.close()
    except OnTheWayError as exc:
        console.print(
            f"[yellow]zones not rebuilt ({exc.message}): placement uses the delivery radius "
            f"until `ontheway roads zones --region {region}` runs[/yellow]"
        )
        return
    if zones is not None:
        console.print(f"{region}: delivery zones rebuilt on the new map")


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


async def traffic_command(
    settings: Settings,
    region: str,
    factor: float,
    *,
    roads: list[int],
    streets: list[str],
    areas: list[str],
    console: Console,
) -> TrafficResult:
    """Set one traffic factor on the roads, streets and areas (``lat,lng,radius_m``) named."""
    catalog = load_catalog(settings.region_catalog)
    catalog.get(region)
    circles = []
    for i, text in enumerate(areas):
        try:
            lat, lng, radius = (float(part) for part in text.split(","))
        except ValueError:
            raise InvalidTraffic(
                f"an area is 'lat,lng,radius_m', got {text!r}", field=f"areas.{i}"
            ) from None
        circles.append((lat, lng, radius, factor))
    change = as_change(
        roads=[(r, factor) for r in roads], streets=[(s, factor) for s in streets], areas=circles
    )
    store = GraphStore(settings.require_falkordb_url(), max(settings.dependency_timeout_s, 60))
    try:
        roads_service = RoadService(store, catalog)
        result = await roads_service.update_traffic(region, change)
        index = "rebuilt" if result.full_rebuild else "re-customised"
        console.print(
            f"{region}: traffic factor {factor:g} on {result.changed_roads:,} roads "
            f"({result.written_roads:,} written, CCH index {index}) in "
            f"{result.took_s * 1000:.0f} ms"
        )
        # Zones and active deliveries follow the new times (as after POST /api/ops/traffic).
        followed = await follow_up_once(settings, catalog, roads_service, region)
        console.print(
            f"{region}: {followed.considered} active deliveries re-routed, "
            f"{followed.updated} with a new ETA"
        )
    finally:
        await store.aclose()
    return result


async def zones_command(
    settings: Settings, region: str, max_travel_s: float | None, console: Console
) -> ZonesSummary:
    """Rebuild the delivery zones of every restaurant of the region; print what was written."""
    catalog = load_catalog(settings.region_catalog)
    catalog.get(region)
    conns = await Connections.open(settings, shards=[catalog.shard_for(region)], pool_max=2)
    store = GraphStore(settings.require_falkordb_url(), max(settings.dependency_timeout_s, 60))
    try:
        restaurants = await load_restaurants(conns, catalog, region)
        with console.status(f"computing the zones of {len(restaurants):,} restaurants"):
            summary = await rebuild_zones(
                RoadService(store, catalog),
                await store.db(),
                region,
                restaurants,
                max_travel_s=max_travel_s,
            )
    finally:
        await store.aclose()
        await conns.close()
    console.print(
        f"{region}: {summary.cells:,} delivery cells for {summary.restaurants:,} restaurants "
        f"({len(summary.off_map):,} off the road map) in {summary.took_s:.1f} s"
    )
    return summary
