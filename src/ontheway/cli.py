"""The ``ontheway`` command line: the local stack, the API server, tokens and the demo."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ontheway import runner
from ontheway.auth import Role, issue_token
from ontheway.connections import Connections
from ontheway.errors import OnTheWayError
from ontheway.mdrp.cli import mdrp_app
from ontheway.regions import load_catalog
from ontheway.settings import Settings, load_settings
from ontheway.stack import LocalStack

app = typer.Typer(
    help="ontheway: food-delivery dispatch platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack_app = typer.Typer(
    help="The local stack of real servers under .ontheway/.", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
bench_app = typer.Typer(help="Benchmarks on the local stack.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
db_app = typer.Typer(help="The PostgreSQL schema of every shard.", no_args_is_help=True)
app.add_typer(db_app, name="db")
roads_app = typer.Typer(help="Road maps from OpenStreetMap, in FalkorDB.", no_args_is_help=True)
app.add_typer(roads_app, name="roads")
sim_app = typer.Typer(help="Simulation runs and their reports.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
app.add_typer(mdrp_app, name="mdrp")
eta_app = typer.Typer(help="The learned delivery-time estimate.", no_args_is_help=True)
app.add_typer(eta_app, name="eta")
console = Console()
err_console = Console(stderr=True)


def _local_stack(settings: Settings) -> LocalStack:
    return LocalStack.from_settings(settings, load_catalog(settings.region_catalog).shards())


@stack_app.command("up")
def stack_up() -> None:
    """Start PostgreSQL (PostGIS, one database per shard) and Redis + FalkorDB; idempotent."""
    stack = _local_stack(load_settings())
    with console.status("starting the local stack"):
        result = stack.up()
    for part, what in result.items():
        console.print(f"[bold]{part}[/]: {what}")
    console.print(f"settings written to {stack.env_file}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop the servers that `stack up` started (by PID)."""
    for part, what in _local_stack(load_settings()).down().items():
        console.print(f"[bold]{part}[/]: {what}")


@stack_app.command("status")
def stack_status() -> None:
    """Show each server with its port, version and health; exit 1 when one is down."""
    settings = load_settings()
    parts = runner.run(_local_stack(settings).status(settings))
    table = Table("part", "port", "pid", "version", "health")
    for part in parts:
        versions = sorted({c.version for c in part.checks if c.version})
        problems = [f"{c.name}: {c.detail}" for c in part.checks if not c.ok]
        health = (
            "[green]healthy[/]"
            if part.healthy
            else "[red]down[/] " + "; ".join(problems or ["not running"])
        )
        table.add_row(
            part.name, str(part.port), str(part.pid or "-"), ", ".join(versions) or "-", health
        )
    console.print(table)
    if not all(p.healthy for p in parts):
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations to every shard (idempotent) and create partitions ahead."""
    from ontheway.schema.admin import migrate_shards

    settings = load_settings()
    shards = load_catalog(settings.region_catalog).shards()
    for shard, applied in runner.run(migrate_shards(settings, shards)).items():
        console.print(f"[bold]{shard}[/]: " + (", ".join(applied) or "already current"))


@db_app.command("detach")
def db_detach(
    before: Annotated[str, typer.Option(help="first month to keep, YYYY-MM")],
) -> None:
    """Detach (not drop) the monthly partitions older than BEFORE on every shard."""
    from datetime import date

    from ontheway.schema.admin import detach_shards

    try:
        year, month = (int(part) for part in before.split("-"))
        first_kept = date(year, month, 1)
    except ValueError:
        raise typer.BadParameter(f"{before!r} is not YYYY-MM", param_hint="--before") from None
    settings = load_settings()
    shards = load_catalog(settings.region_catalog).shards()
    for shard, names in runner.run(detach_shards(settings, shards, first_kept)).items():
        console.print(f"[bold]{shard}[/]: " + (", ".join(names) or "nothing to detach"))


@db_app.command("prune")
def db_prune() -> None:
    """Delete the rows past retention on every shard (the API also does it every hour)."""
    from ontheway.schema.admin import prune_shards
    from ontheway.schema.retention import RETAINED

    settings = load_settings()
    shards = load_catalog(settings.region_catalog).shards()
    for shard, deleted in runner.run(prune_shards(settings, shards)).items():
        if deleted is None:
            console.print(f"[bold]{shard}[/]: skipped, another pruner is at work on it")
            continue
        kept = {r.table: r.days(settings) for r in RETAINED}
        parts = [f"{t} {n:,} (older than {kept[t]:g} days)" for t, n in deleted.items()]
        console.print(f"[bold]{shard}[/]: deleted " + ", ".join(parts))


@app.command()
def seed(
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
    restaurants: Annotated[int, typer.Option(min=0, max=100_000)] = 50,
    customers: Annotated[int, typer.Option(min=0, max=1_000_000)] = 200,
    drivers: Annotated[int, typer.Option(min=0, max=1_000_000)] = 100,
    random_seed: Annotated[int, typer.Option("--seed", help="same seed, same entities")] = 1,
    out: Annotated[Path | None, typer.Option(help="write the created ids here as JSON")] = None,
) -> None:
    """Fill a region with restaurants (menus, stock), customers and drivers."""
    from ontheway.seeding import seed_command

    settings = load_settings()
    result = runner.run(
        seed_command(
            settings,
            region,
            restaurants=restaurants,
            customers=customers,
            drivers=drivers,
            seed=random_seed,
        )
    )
    console.print(
        f"{region}: {len(result['restaurants'])} restaurants, "
        f"{len(result['customers'])} customers, {len(result['drivers'])} drivers"
    )
    if out is not None:
        out.write_text(json.dumps(result, indent=1))
        console.print(f"ids written to {out}")


@bench_app.command("roads")
def bench_roads(
    file: Annotated[Path, typer.Option(help="OSM extract to measure on")] = Path(
        "../shared/data/osm/mexico-city.osm.pbf"
    ),
    routes: Annotated[int, typer.Option(min=10, help="random routes to time")] = 500,
) -> None:
    """Import, CCH build, routes and a 20 x 1 matrix, beside scipy's Dijkstra on the same graph."""
    from ontheway.bench.roads import run_roads_bench_sync

    run_roads_bench_sync(load_settings(), file, routes, console)


@bench_app.command("orders")
def bench_orders(
    clients: Annotated[int, typer.Option(min=1, max=256, help="concurrent clients")] = 16,
    seconds: Annotated[float, typer.Option(min=1, help="duration of each run")] = 10,
    map_file: Annotated[Path, typer.Option("--map", help="OSM extract (.osm/.osm.bz2)")] = Path(
        "tests/data/osm/san-francisco-downtown-drive.osm.bz2"
    ),
    history: Annotated[
        int, typer.Option(min=0, help="orders of the last two hours in the region's ETA log")
    ] = 0,
    processes: Annotated[
        int, typer.Option(min=1, max=16, help="processes placing through the service layer")
    ] = 1,
) -> None:
    """Orders/s and latency, service layer and HTTP, beside pgbench on the same cluster (in a
    shard and region of the benchmark's own, removed afterwards)."""
    from ontheway.bench.common import run_stoppable
    from ontheway.bench.orders import run

    run_stoppable(
        run(
            load_settings(),
            map_file=map_file,
            clients=clients,
            seconds=seconds,
            console=console,
            history=history,
            processes=processes,
        )
    )


@bench_app.command("fleet")
def bench_fleet(
    drivers: Annotated[int, typer.Option(min=100, help="simulated drivers")] = 200_000,
    seconds: Annotated[float, typer.Option(min=1, help="measured ingest time per mode")] = 12,
    connections: Annotated[int, typer.Option(min=1, max=1000, help="WebSockets")] = 50,
    rate: Annotated[float, typer.Option(min=1, help="fixes/s the generator offers")] = 50_000,
    history: Annotated[bool, typer.Option(help="keep positions in PostgreSQL meanwhile")] = True,
) -> None:
    """WS location ingest and nearest-available latency, beside redis-benchmark GEOADD."""
    from ontheway.bench.fleet import run_fleet_bench

    run_fleet_bench(
        load_settings(),
        console,
        drivers=drivers,
        seconds=seconds,
        connections=connections,
        rate=rate,
        history=history,
    )


@bench_app.command("dispatch")
def bench_dispatch(
    drivers: Annotated[int, typer.Option(min=10, help="available drivers in the region")] = 200_000,
    rate: Annotated[float, typer.Option(min=1, help="orders/s placed (open loop)")] = 167,
    seconds: Annotated[float, typer.Option(min=1, max=3000, help="measured duration")] = 30,
    workers: Annotated[int, typer.Option(min=1, max=16, help="dispatch workers")] = 2,
    batch: Annotated[int, typer.Option(min=1, max=500, help="events a worker takes at once")] = 10,
    spread_km: Annotated[
        float, typer.Option(min=0, help="drivers over a square this wide (0: on the map)")
    ] = 0,
    map_file: Annotated[Path, typer.Option("--map", help="OSM extract (.osm/.osm.bz2)")] = Path(
        "tests/data/osm/san-francisco-downtown-drive.osm.bz2"
    ),
    warmup: Annotated[
        float,
        typer.Option(min=0, max=600, help="seconds at the rate before the measured ones"),
    ] = 3,
) -> None:
    """ORDER_PLACED commit to DRIVER_ASSIGNED commit through the relay and the workers."""
    from ontheway.bench.dispatch import run_dispatch_bench

    figures = run_dispatch_bench(
        load_settings(), console, drivers=drivers, rate=rate, seconds=seconds,
        workers=workers, batch=batch, map_file=map_file, spread_km=spread_km, warmup_s=warmup,
    )  # fmt: skip
    if figures.failed or figures.assigned < figures.placed:
        raise typer.Exit(1)


@roads_app.command("import")
def roads_import(
    file: Annotated[Path, typer.Argument(help="an .osm, .osm.bz2 or .osm.pbf extract")],
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
) -> None:
    """Import the car roads of an OpenStreetMap file as the region's road graph (replacing it)."""
    from ontheway.roads.commands import import_command

    runner.run(import_command(load_settings(), region, file, console))


@roads_app.command("traffic")
def roads_traffic(
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
    factor: Annotated[float, typer.Option(help="time = base time x factor; 1 = free flow")],
    road: Annotated[list[int] | None, typer.Option(help="a road id (repeatable)")] = None,
    street: Annotated[list[str] | None, typer.Option(help="a street name (repeatable)")] = None,
    area: Annotated[list[str] | None, typer.Option(help="'lat,lng,radius_m' (repeatable)")] = None,
) -> None:
    """Set a traffic factor on roads, streets or areas; the next route follows it."""
    from ontheway.roads.commands import traffic_command

    runner.run(
        traffic_command(
            load_settings(),
            region,
            factor,
            roads=road or [],
            streets=street or [],
            areas=area or [],
            console=console,
        )
    )


@roads_app.command("zones")
def roads_zones(
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
    max_travel_s: Annotated[
        float | None, typer.Option(min=1, help="also limit the travel time (seconds)")
    ] = None,
) -> None:
    """Rebuild the delivery zones (H3 cells by road) of every restaurant of the region."""
    from ontheway.roads.commands import zones_command

    runner.run(zones_command(load_settings(), region, max_travel_s, console))


@app.command()
def relay() -> None:
    """Publish every shard's order events to the event stream until SIGTERM."""
    from ontheway.events.factory import open_bus
    from ontheway.events.relay import run_relay
    from ontheway.runner import run_until_signalled

    settings = load_settings()

    async def main(conns: Connections, stop: asyncio.Event) -> None:
        bus = open_bus(settings, conns)
        try:
            await run_relay(conns, bus, settings.event_stream, stop=stop)
        finally:
            await bus.close()

    console.print(f"relay: publishing to the {settings.bus} event stream; Ctrl-C to stop")
    runner.run(run_until_signalled(settings, main))


@eta_app.command("train")
def eta_train(
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
    holdout: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="latest share of orders kept out to judge it")
    ] = 0.2,
    min_deliveries: Annotated[
        int | None, typer.Option(min=1, help="fewest deliveries to train on (default: settings)")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder for evaluation.json, plot")] = None,
    after: Annotated[
        datetime | None, typer.Option(help="only deliveries placed after this (default: all)")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="only deliveries placed until this (default: all)")
    ] = None,
) -> None:
    """Train the region's next ETA model from its ETA log (the database)."""
    from ontheway.eta.commands import train_command

    settings = load_settings()
    runner.run(train_command(
        settings, region, min_deliveries, holdout, console, out, _utc(after), _utc(until)
    ))  # fmt: skip


@eta_app.command("evaluate")
def eta_evaluate(
    region: Annotated[str, typer.Option(help="region id, e.g. sf")],
    version: Annotated[str | None, typer.Option(help="model version, e.g. v0002")] = None,
    after: Annotated[
        datetime | None,
        typer.Option(help="deliveries placed after this (default: after its training data)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder for evaluation.json, plot")] = None,
) -> None:
    """Judge an ETA model on deliveries it did not train on."""
    from ontheway.eta.commands import evaluate_command

    after = _utc(after)
    runner.run(evaluate_command(load_settings(), region, version, after, console, out))


def _utc(at: datetime | None) -> datetime | None:
    """A time given without a zone is UTC."""
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@app.command()
def worker(
    consumer: Annotated[
        str, typer.Option(help="dispatch, payments, eta, analytics, notifications or ratings")
    ],
) -> None:
    """Run one consumer of the event stream until SIGTERM (any number may run side by side)."""
    from ontheway.events.consumers import CONSUMERS, consumer_names
    from ontheway.events.factory import open_bus
    from ontheway.events.worker import run_worker
    from ontheway.runner import run_until_signalled

    names = consumer_names()
    if consumer not in names:
        raise typer.BadParameter(
            f"{consumer!r} is not one of {', '.join(names)}", param_hint="--consumer"
        )
    settings = load_settings()

    async def main(conns: Connections, stop: asyncio.Event) -> None:
        bus = open_bus(settings, conns)
        try:
            if consumer == "dispatch":
                from ontheway.dispatch.batching import run_dispatch
                from ontheway.dispatch.dispatcher import build_dispatcher

                regions = [r.region for r in load_catalog(settings.region_catalog)]
                dispatcher = build_dispatcher(conns, settings)
                stats = await run_dispatch(conns, bus, dispatcher, regions, stop=stop)
            elif consumer == "eta":
                from ontheway.eta.consumer import build_eta_consumer

                eta = build_eta_consumer(conns, settings)
                stats = await run_worker(conns, bus, eta, stop=stop)
            else:
                stats = await run_worker(conns, bus, CONSUMERS[consumer], stop=stop)
        finally:
            await bus.close()
        console.print(
            f"{consumer}: {stats.handled} handled, {stats.duplicates} duplicates, "
            f"{stats.failed} failures"
        )

    console.print(f"worker {consumer}: consuming the {settings.bus} event stream")
    runner.run(run_until_signalled(settings, main))


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="API port")] = None,
    host: Annotated[str | None, typer.Option(help="API address")] = None,
) -> None:
    """Run the API, the relay and every worker together (for local use), until Ctrl-C."""
    from ontheway.runall import run_all

    settings = load_settings()
    code = runner.run(run_all(port or settings.api_port, host or settings.api_host, console))
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes")] = 1,
) -> None:
    """Run the HTTP/WebSocket API (uvicorn), in one process or several."""
    import uvicorn

    from ontheway.api.app import create_app

    settings = load_settings()
    api = create_app(settings)  # settings and catalog errors surface here, before listening
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    shown = "127.0.0.1" if bind_host in ("0.0.0.0", "::", "") else bind_host
    ops = issue_token(
        settings.jwt_key(), Role.OPS, "ops_dashboard", ttl_s=settings.jwt_default_ttl_s
    )
    console.print(f"dashboard: http://{shown}:{bind_port}/#token={ops}", soft_wrap=True)
    if workers == 1:
        uvicorn.run(api, host=bind_host, port=bind_port, log_level="info")
    else:
        uvicorn.run(
            "ontheway.api.app:app_from_environment",
            factory=True,
            workers=workers,
            host=bind_host,
            port=bind_port,
            log_level="info",
        )


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="customer, driver, restaurant or ops")],
    sub: Annotated[str, typer.Option(help="subject id, e.g. user_456, drv_001, ops_1")],
    regions: Annotated[
        str | None, typer.Option(help="ops only: comma-separated region ids")
    ] = None,
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds")] = None,
) -> None:
    """Print a signed bearer token for local use."""
    settings = load_settings()
    region_list = None
    if regions is not None:
        region_list = [r.strip() for r in regions.split(",") if r.strip()]
        catalog = load_catalog(settings.region_catalog)
        for region in region_list:
            catalog.get(region)
    print(
        issue_token(
            settings.jwt_key(),
            role,
            sub,
            regions=region_list,
            ttl_s=ttl if ttl is not None else settings.jwt_default_ttl_s,
        )
    )


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="API port (default: a free one)")] = None,
    duration: Annotated[
        float, typer.Option(min=10, help="wall seconds to simulate (x30: 3 min = 90 min)")
    ] = 180,
    drivers: Annotated[int, typer.Option(min=1, help="drivers in San Francisco")] = 60,
    orders_per_hour: Annotated[float, typer.Option(min=0, help="day's average rate")] = 60,
) -> None:
    """Import San Francisco's map if missing, seed it and simulate lunch time: dashboard URL
    first, the report's summary and path at the end."""
    from ontheway.sim.command import import_missing, run_and_report
    from ontheway.sim.runner import SimOptions

    settings = load_settings()
    runner.run(import_missing(settings, ["sf"], console))
    opts = SimOptions(regions=["sf"], drivers=drivers, orders_per_hour=orders_per_hour,
                      duration_s=duration * 30, speed=30, start="11:30", port=port,
                      runs_dir=settings.state_dir / "runs")  # fmt: skip
    runner.run(run_and_report(settings, opts, console))


@app.command()
def simulate(
    region: Annotated[str, typer.Option(help="region id(s), e.g. sf or sf,monaco")],
    drivers: Annotated[int, typer.Option(min=1, help="drivers per region")],
    orders_per_hour: Annotated[float, typer.Option(min=0, help="per region, day's average")],
    duration: Annotated[str, typer.Option(help="simulated time: 2h, 90m, 1h30m")] = "2h",
    speed: Annotated[float, typer.Option(min=0.1, max=600, help="simulated s per wall s")] = 30,
    random_seed: Annotated[int, typer.Option("--seed", help="same seed, same city")] = 1,
    start: Annotated[str, typer.Option(help="simulated clock at the start, HH:MM local")] = "11:00",
    api: Annotated[str | None, typer.Option(help="use this API instead of starting one")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (.ontheway/runs/ID)")] = None,
    restaurants: Annotated[int | None, typer.Option(min=1, help="per region")] = None,
    accept: Annotated[float, typer.Option(min=0, max=1, help="mean P(accept an offer)")] = 0.85,
    ignore: Annotated[float, typer.Option(min=0, max=1, help="P(let an offer expire)")] = 0.03,
    offline: Annotated[float, typer.Option(min=0, max=1, help="P(vanish), per order")] = 0.05,
    breaks: Annotated[float, typer.Option(min=0, max=1, help="P(break), per delivery")] = 0.02,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="dispatch policy: greedy or batched; twice to compare them"),
    ] = None,
    batch_window: Annotated[
        float, typer.Option(min=1, max=3600, help="batched: sim seconds between rounds")
    ] = 60,
    drain: Annotated[
        str, typer.Option(help="after the last order, up to this long to serve what is left")
    ] = "0",
) -> None:
    """Simulate a city on its real map through the real API: drivers, customers, kitchens."""
    from ontheway.sim.command import (
        check_api,
        check_maps,
        compare_policies,
        parse_drain,
        parse_policies,
        parse_regions,
        parse_timing,
    )
    from ontheway.sim.plan import Behaviour
    from ontheway.sim.runner import SimOptions

    settings = load_settings()
    regions = parse_regions(region, settings)
    duration_s = parse_timing(duration, speed, start)
    policies = parse_policies(policy or ["greedy"])
    runner.run(check_maps(settings, regions))
    if api is not None:
        if policy:
            raise typer.BadParameter(
                "the API named by --api dispatches as it was started: leave out --policy",
                param_hint="--policy",
            )
        runner.run(check_api(api))
    opts = SimOptions(
        regions=regions, drivers=drivers, orders_per_hour=orders_per_hour,
        duration_s=duration_s, speed=speed, seed=random_seed, start=start,
        api=api, out=out, runs_dir=settings.state_dir / "runs", restaurants=restaurants,
        behaviour=Behaviour(accept=accept, ignore=ignore, offline=offline, breaks=breaks),
        batch_window_s=batch_window, drain_s=parse_drain(drain, speed),
    )  # fmt: skip
    runner.run(compare_policies(settings, opts, policies, console))


@sim_app.command("report")
def sim_report(
    run_dir: Annotated[Path, typer.Argument(help="a run's directory, holding its run.json")],
) -> None:
    """Rebuild a run's report (report.txt, report.html, report.json) beside its run.json."""
    from ontheway.errors import InvalidInput
    from ontheway.sim.report import load_record, report_run

    run_json = run_dir / "run.json"
    try:
        load_record(run_json)
    except InvalidInput as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from None
    runner.run(report_run(load_settings(), run_json, console))


def main() -> None:
    """Entry point: run the CLI, turning our errors into one message and a non-zero exit."""
    try:
        app()
    except OnTheWayError as exc:
        err_console.print(f"[red]error:[/] {exc.message}")
        sys.exit(2 if exc.code == "missing_prerequisite" else 1)
