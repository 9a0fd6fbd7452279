"""``ontheway simulate``: plan the city, create it, start the backend, run every agent, stop,
and leave the run's record for the report.

Agents: one task and one WebSocket per driver (its app), one task per region for its
customers and one for its traffic, one short task per placed order for its kitchen. Position
reports do not run per driver: one tick loop sends every online driver's fix each
``fix_interval_s``, batched over a few ops sockets (gateway.py), so that thousands of drivers
cost one timer and a few messages rather than thousands.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from ontheway.auth import Role
from ontheway.bench.common import free_port
from ontheway.connections import Connections
from ontheway.regions import load_catalog
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings
from ontheway.sim.backend import backend, scaled_env, start_stream, wait_consumers
from ontheway.sim.city import close_unserved, customers, set_traffic, traffic
from ontheway.sim.clock import SimClock, parse_start
from ontheway.sim.context import IN_FLIGHT, SimContext
from ontheway.sim.driver import DriverAgent
from ontheway.sim.gateway import Gateway
from ontheway.sim.plan import Behaviour
from ontheway.sim.record import RunRecord
from ontheway.sim.world import (
    RegionWorld,
    WorldSize,
    create_world,
    plan_world,
    retire_drivers,
    routable_nodes,
)

FIX_EVERY_SIM_S = 4.0
EXTERNAL_MIN_FIX_S = 0.55  # an unscaled server takes 2 fixes/s per driver


@dataclass(frozen=True)
class SimOptions:
    """What ``ontheway simulate`` was asked for (validated by the command)."""

    regions: list[str]
    drivers: int
    orders_per_hour: float
    duration_s: float  # simulated
    speed: float
    seed: int = 1
    start: str = "11:00"
    api: str | None = None
    out: Path | None = None  # the run's folder (run.json, backend.log); default below
    runs_dir: Path = Path(".ontheway/runs")  # without ``out``: ``<runs_dir>/<run id>``
    restaurants: int | None = None
    port: int | None = None  # of the backend started for the run (default: a free one)
    policy: str = "greedy"  # the backend's dispatch policy (greedy or batched)
    drain_s: float = 0.0  # simulated: after the last order, wait up to this for the run's
    # orders to be delivered (no new orders) before stopping
    batch_window_s: float = 60.0  # simulated seconds between two batched rounds
    behaviour: Behaviour = field(default_factory=Behaviour)


def run_dir(opts: SimOptions, run_id: str) -> Path:
    """Where the run's record and backend log go."""
    return opts.out if opts.out is not None else opts.runs_dir / run_id


def new_run_id() -> str:
    """A short id for the run (lower-case letters and digits: it goes into entity ids)."""
    return time.strftime("%m%d%H%M") + secrets.token_hex(2)


async def plan_city(
    conns: Connections, settings: Settings, opts: SimOptions, run_id: str, start_hour: float
) -> list[RegionWorld]:
    """Plan every region on its road map and write its entities."""
    catalog = load_catalog(settings.region_catalog)
    roads = RoadService(conns.graphs, catalog)
    worlds = []
    for region in opts.regions:
        lat, lng = await routable_nodes(roads, region)
        restaurants = opts.restaurants or max(5, opts.drivers // 3)
        size = WorldSize(opts.drivers, restaurants, max(20, opts.drivers * 3),
                         opts.orders_per_hour, start_hour, opts.duration_s)  # fmt: skip
        world = plan_world(opts.seed, region, lat, lng, size, opts.behaviour)
        await create_world(conns, catalog, settings, world, run_id)
        worlds.append(world)
    return worlds


async def simulate(settings: Settings, opts: SimOptions, console: Console) -> RunRecord:
    """One whole run; returns its record (also written to ``run.json`` in ``run_dir``)."""
    catalog = load_catalog(settings.region_catalog)
    run_id = new_run_id()
    first = catalog.get(opts.regions[0])
    sim_start = parse_start(opts.start, datetime.now(first.tzinfo))
    record = RunRecord(run_id, opts.seed, opts.regions, opts.speed, sim_start, datetime.now(UTC))
    out = run_dir(opts, run_id)
    shards = sorted(catalog.shards())
    conns = await Connections.open(settings, shards=shards, pool_max=4)
    try:
        with console.status("planning the city on its road map"):
            start_hour = sim_start.hour + sim_start.minute / 60
            worlds = await plan_city(conns, settings, opts, run_id, start_hour)
        for w in worlds:
            record.drivers.update(dict.fromkeys(w.driver_ids, w.region))
            record.restaurants.update(dict.fromkeys(w.restaurant_ids, w.region))
            record.planned_orders += len(w.orders)
        if opts.api is not None:
            record.api_url = opts.api.rstrip("/")
            await _run(settings, opts, record, worlds, console, None, conns)
        else:
            record.event_stream = f"sim_{run_id}"
            record.backend_env = scaled_env(
                opts.speed, record.event_stream, opts.policy, opts.batch_window_s
            )
            await start_stream(conns, shards, record.event_stream)
            port = opts.port or free_port()
            async with backend(port, record.backend_env, out / "backend.log") as (base, proc):
                record.api_url = base
                with console.status("waiting for the backend's workers"):
                    await wait_consumers(conns.require_redis(), record.event_stream)
                await _run(settings, opts, record, worlds, console, proc, conns)
    finally:
        await conns.close()
        record.wall_end = record.wall_end or datetime.now(UTC)
        record.save(out / "run.json")
    return record


async def _run(
    settings: Settings,
    opts: SimOptions,
    record: RunRecord,
    worlds: list[RegionWorld],
    console: Console,
    proc: asyncio.subprocess.Process | None,
    conns: Connections,
) -> None:
    wall_s = opts.duration_s / opts.speed
    interval = FIX_EVERY_SIM_S / opts.speed
    if proc is None:
        interval = max(interval, EXTERNAL_MIN_FIX_S)
    record.fix_interval_s = round(interval, 4)
    clock = SimClock(opts.speed, record.sim_start)
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    async with httpx.AsyncClient(base_url=record.api_url, timeout=30, limits=limits) as http:
        ctx = SimContext(record.api_url, settings.jwt_key(), clock, record, http,
                         token_ttl_s=int(wall_s) + 3600, seed=opts.seed,
                         fix_interval_s=interval)  # fmt: skip
        for world in worlds:
            ctx.add_restaurants(world.restaurants)
        ops = ctx.token(Role.OPS, "ops_sim", regions=opts.regions)
        console.print(f"dashboard: [bold]{record.api_url}/#token={ops}[/]", soft_wrap=True)
        console.print(
            f"run {record.run_id}: {', '.join(opts.regions)}, {opts.drivers} drivers per region, "
            f"{record.planned_orders} orders planned, {opts.duration_s / 3600:.2f} h simulated "
            f"in {wall_s:.0f} s (x{opts.speed:g}); a fix every {interval:.3f} s"
        )
        agents = [
            DriverAgent(ctx, w.region, did, plan)
            for w in worlds
            for did, plan in zip(w.driver_ids, w.drivers, strict=True)
        ]
        # Not one of ctx's tasks: fixes go on until the drivers are retired, or a monitor
        # would see every heartbeat expire at the end and reassign what the drivers hold.
        gateway = Gateway(ctx, opts.regions)
        positions = asyncio.create_task(_positions(ctx, agents, gateway))
        try:
            with console.status(f"{len(agents)} drivers' apps connecting"):
                await _connect_all(agents)
            clock.wall0 = time.monotonic()  # the city starts once every driver is online
            record.wall_start = datetime.now(UTC)  # the wall time of ``sim_start``
            for agent in agents:
                ctx.spawn(agent.run())
            for world in worlds:
                ctx.spawn(customers(ctx, world))
                ctx.spawn(traffic(ctx, world))
            await _wait(ctx, wall_s, proc, console)
            if opts.drain_s > 0:
                await _drain(ctx, opts.regions, opts.drain_s / opts.speed, proc, console)
        finally:
            ctx.stop.set()
            record.wall_end = datetime.now(UTC)
            await ctx.cancel_all()
            positions.cancel()
            await asyncio.gather(positions, return_exceptions=True)
            await gateway.close()
            await retire_drivers(conns, worlds)
            await asyncio.gather(*(a.close() for a in agents))
            # A monitor may still be recording a driver that vanished just before the end.
            await asyncio.sleep(2 * settings.fleet_monitor_interval_s + 0.5)
            for world in worlds:  # leave the roads as they were found, the orders settled
                await set_traffic(ctx, world, 1.0)
                await close_unserved(ctx, world)


async def _connect_all(agents: list[DriverAgent], at_once: int = 50) -> None:
    """Every driver's app online, ``at_once`` handshakes at a time."""
    gate = asyncio.Semaphore(at_once)

    async def one(agent: DriverAgent) -> None:
        async with gate:
            await agent.go_online()

    await asyncio.gather(*(one(a) for a in agents))


async def _positions(ctx: SimContext, agents: list[DriverAgent], gateway: Gateway) -> None:
    """The shared tick: every online driver's fix, each ``fix_interval_s``."""
    while True:
        started = time.monotonic()
        now = ctx.clock.elapsed_sim_s()
        sent = await gateway.send([f for a in agents if (f := a.fix(now)) is not None])
        took = time.monotonic() - started
        record = ctx.record
        record.fixes_sent += sent
        record.fix_ticks += 1
        record.fix_tick_max_s = round(max(record.fix_tick_max_s, took), 4)
        await asyncio.sleep(max(0.0, ctx.fix_interval_s - took))


async def _drain(
    ctx: SimContext,
    regions: list[str],
    wall_s: float,
    proc: asyncio.subprocess.Process | None,
    console: Console,
) -> None:
    """No new orders: go on until none of the run's orders is active any more (or ``wall_s``
    passes), so that what is still cooking or on the road at the end is served too."""
    deadline = time.monotonic() + wall_s
    ours = set(ctx.record.orders)
    token = ctx.token(Role.OPS, "ops_sim", regions=regions)
    while time.monotonic() < deadline:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"the backend exited with code {proc.returncode}")
        resp = await ctx.call("GET", "/api/ops/orders", token,
                              params=[("region", r) for r in regions])  # fmt: skip
        if resp.status_code == 200:
            active = [o for o in resp.json()["orders"] if o["order_id"] in ours]
            if not active:
                console.print(f"{ctx.clock.now():%H:%M} every order of the run is settled")
                return
        await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    console.print(f"{ctx.clock.now():%H:%M} the drain is over; orders still active stay so")


async def _wait(
    ctx: SimContext, wall_s: float, proc: asyncio.subprocess.Process | None, console: Console
) -> None:
    """Until the run's time is up (or the backend dies), with a line of progress now and then."""
    deadline = time.monotonic() + wall_s
    r = ctx.record
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 10.0))
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"the backend exited with code {proc.returncode}")
        console.print(
            f"{ctx.clock.now():%H:%M} placed {len(r.orders)} (refused {r.orders_refused}), "
            f"delivered {r.deliveries}; offers accepted {r.offers_accepted}, declined "
            f"{r.offers_declined}, missed {r.offers_missed}; offline {r.drivers_went_offline} "
            f"({r.offline_mid_delivery} mid-delivery)"
        )
