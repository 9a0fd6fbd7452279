"""The ``simulate`` and ``demo`` commands' work: checking the input, running, reporting.

Bad input is refused before anything starts, each with one message and exit code 2 (typer's
``BadParameter``): an unknown region, a region without an imported road map (naming the
command that imports it), a duration that cannot be read or that would take more than a day
of wall time at the speed asked for.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx
import typer
from rich.console import Console

from ontheway.connections import GraphStore
from ontheway.dispatch.policies import POLICIES
from ontheway.errors import OnTheWayError
from ontheway.regions import load_catalog
from ontheway.roads.commands import import_command
from ontheway.roads.store import graph_name, read_meta
from ontheway.settings import Settings
from ontheway.sim.clock import BadTime, parse_duration_s, parse_start
from ontheway.sim.compare import render_text as render_comparison
from ontheway.sim.compare import write_comparison
from ontheway.sim.record import RunRecord
from ontheway.sim.report import report_run
from ontheway.sim.runner import SimOptions, new_run_id, run_dir, simulate
from ontheway.sim.summary import Report

MAX_WALL_S = 24 * 3600.0
OSM = Path(__file__).resolve().parents[3] / "tests" / "data" / "osm"
MAP_FILES = {"sf": OSM / "san-francisco-downtown-drive.osm.bz2", "monaco": OSM / "monaco.osm.pbf"}


def parse_regions(text: str, settings: Settings) -> list[str]:
    """``sf,monaco`` as known region ids (``BadParameter`` naming an unknown one)."""
    catalog = load_catalog(settings.region_catalog)
    regions = [r.strip() for r in text.split(",") if r.strip()]
    if not regions:
        raise typer.BadParameter("name at least one region, e.g. sf", param_hint="--region")
    for region in regions:
        try:
            catalog.get(region)
        except OnTheWayError as exc:
            raise typer.BadParameter(exc.message, param_hint="--region") from None
    if len(set(regions)) != len(regions):
        raise typer.BadParameter("a region is named twice", param_hint="--region")
    return regions


def parse_timing(duration: str, speed: float, start: str) -> float:
    """The simulated duration in seconds, checked against the speed and the start time."""
    try:
        duration_s = parse_duration_s(duration)
        parse_start(start, datetime(2000, 1, 1))
    except BadTime as exc:
        raise typer.BadParameter(str(exc)) from None
    if duration_s <= 0:
        raise typer.BadParameter("the duration must be positive", param_hint="--duration")
    if duration_s / speed > MAX_WALL_S:
        raise typer.BadParameter(
            f"{duration} at x{speed:g} would take {duration_s / speed / 3600:.1f} h of wall "
            f"time (at most {MAX_WALL_S / 3600:.0f} h): raise --speed or shorten --duration",
            param_hint="--duration",
        )
    return duration_s


def parse_drain(text: str, speed: float) -> float:
    """The drain's simulated seconds (``0``: none), checked like the duration."""
    try:
        drain_s = parse_duration_s(text)
    except BadTime as exc:
        raise typer.BadParameter(str(exc), param_hint="--drain") from None
    if drain_s < 0:
        raise typer.BadParameter("the drain cannot be negative", param_hint="--drain")
    if drain_s / speed > MAX_WALL_S:
        raise typer.BadParameter(
            f"a drain of {text} at x{speed:g} could take more than a day", param_hint="--drain"
        )
    return drain_s


def import_hint(region: str) -> str:
    """The command that imports a region's road map."""
    known = MAP_FILES.get(region)
    return f"ontheway roads import --region {region} {known if known else 'FILE.osm.pbf'}"


async def regions_without_map(settings: Settings, regions: list[str]) -> list[str]:
    """The regions of ``regions`` that have no road graph in FalkorDB."""
    store = GraphStore(settings.require_falkordb_url(), max(settings.dependency_timeout_s, 10))
    try:
        db = await store.db()
        return [r for r in regions if await read_meta(db, graph_name(r)) is None]
    finally:
        await store.aclose()


async def check_maps(settings: Settings, regions: list[str]) -> None:
    """``BadParameter`` naming the import command of the first region without a map."""
    for region in await regions_without_map(settings, regions):
        raise typer.BadParameter(
            f"region {region!r} has no road map: import one first with `{import_hint(region)}`",
            param_hint="--region",
        )


async def check_api(url: str) -> None:
    """``BadParameter`` unless the API at ``url`` answers ``/health``."""
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            resp = await client.get(f"{url.rstrip('/')}/health")
    except httpx.HTTPError as exc:
        raise typer.BadParameter(f"no API answers at {url}: {exc}", param_hint="--api") from None
    if resp.status_code != 200:
        raise typer.BadParameter(
            f"the API at {url} is not healthy ({resp.status_code})", param_hint="--api"
        )


async def import_missing(settings: Settings, regions: list[str], console: Console) -> None:
    """Import the packaged extract of each region that has no map yet (the demo)."""
    for region in await regions_without_map(settings, regions):
        console.print(f"importing the road map of {region} from {MAP_FILES[region]}")
        await import_command(settings, region, MAP_FILES[region], console)


async def run_and_report(settings: Settings, opts: SimOptions, console: Console) -> Report:
    """Run the simulation, then the report on its record."""
    record = await simulate(settings, opts, console)
    folder = run_dir(opts, record.run_id)
    console.print(f"run record: {folder / 'run.json'}")
    summary(record, console)
    # The report (``ontheway.sim.report``): read back from the servers, written beside
    # the record as report.txt / report.html / report.json, its summary printed.
    return await report_run(settings, folder / "run.json", console)


def parse_policies(policies: list[str]) -> list[str]:
    """The dispatch policies asked for, each once (``BadParameter`` naming an unknown one)."""
    for policy in policies:
        if policy not in POLICIES:
            raise typer.BadParameter(
                f"{policy!r} is not one of {', '.join(POLICIES)}", param_hint="--policy"
            )
    if len(set(policies)) != len(policies):
        raise typer.BadParameter("a policy is named twice", param_hint="--policy")
    return policies


async def compare_policies(
    settings: Settings, opts: SimOptions, policies: list[str], console: Console
) -> list[Report]:
    """The same city (same seed) once per policy, then the runs side by side; with one
    policy, just the run."""
    if len(policies) == 1:
        return [await run_and_report(settings, replace(opts, policy=policies[0]), console)]
    reports: list[Report] = []
    base = opts.out if opts.out is not None else opts.runs_dir / f"compare-{new_run_id()}"
    for policy in policies:
        console.print(f"[bold]dispatch policy {policy}[/]")
        run = replace(opts, policy=policy, out=base / policy)
        reports.append(await run_and_report(settings, run, console))
    text_path, html_path = write_comparison(reports, policies, base)
    console.print(render_comparison(reports, policies), markup=False, highlight=False)
    console.print(f"comparison: {html_path} (text: {text_path})")
    return reports


def summary(record: RunRecord, console: Console) -> None:
    """The simulator's own counts, in one paragraph."""
    wall = (record.wall_end - record.wall_start).total_seconds() if record.wall_end else 0.0
    console.print(
        f"[bold]run {record.run_id}[/] ({', '.join(record.regions)}, {wall:.0f} s wall, "
        f"x{record.speed:g}): {record.planned_orders} orders planned, {len(record.orders)} "
        f"placed, {record.orders_refused} refused, {record.deliveries} delivered; offers "
        f"{record.offers_accepted} accepted, {record.offers_declined} declined, "
        f"{record.offers_missed} left to expire, {record.offers_late} answered late; "
        f"{record.cancelled_at_end} still searching at the end (cancelled); "
        f"{record.drivers_went_offline} drivers went offline ({record.offline_mid_delivery} "
        f"mid-delivery); {record.traffic_changes} traffic changes; {record.fixes_sent} fixes"
    )
