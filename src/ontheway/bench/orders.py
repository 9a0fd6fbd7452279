"""``ontheway bench orders``: orders placed per second through the service layer and through
the HTTP API, beside pgbench's TPC-B-like script on the same cluster in the same run.

The orders go to a world of the benchmark's own (``BenchWorld``: its shard database, its
region on a road map moved into open sea, its restaurants and drivers), removed afterwards:
thousands of orders left searching for a driver in a served region would be dispatched by the
next server started on the stack."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import re
import subprocess
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from ontheway import collector, runner
from ontheway.auth import Role, issue_token
from ontheway.bench.common import (
    LoadResult,
    closed_loop,
    cpu_ms_per,
    cpu_seconds,
    each,
    free_port,
)
from ontheway.bench.world import BenchWorld
from ontheway.connections import Connections
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import PlaceOrder
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import load_catalog
from ontheway.settings import Settings, load_settings
from ontheway.smoke import api_process
from ontheway.stack.postgres import find_bindir

BENCH_DB = "ontheway_pgbench"


def _bodies(world: BenchWorld, rng: random.Random, n: int) -> list[PlaceOrder]:
    bodies = []
    for _ in range(n):
        rest = rng.choice(world.restaurants)
        items = rng.sample(rest["items"], k=rng.randint(1, 3))
        lat, lng = world.near(rest["lat"], rest["lng"], rng)
        bodies.append(
            PlaceOrder.model_validate(
                {
                    "restaurant_id": rest["restaurant_id"],
                    "items": [
                        {"item_id": i["item_id"], "quantity": rng.randint(1, 2)} for i in items
                    ],
                    "delivery_location": {"lat": lat, "lng": lng},
                    "tip": f"{rng.randint(0, 800) / 100:.2f}",
                }
            )
        )
    return bodies


def _pgbench(settings: Settings, shard_dsn: str, clients: int, seconds: int) -> float:
    """TPS of pgbench's built-in TPC-B-like script on the same cluster (a database of its
    own, created as the cluster's superuser, which the local stack trusts on loopback)."""
    info = psycopg.conninfo.conninfo_to_dict(shard_dsn)
    admin = psycopg.conninfo.make_conninfo(shard_dsn, user="postgres", dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(BENCH_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    pgbench = str(find_bindir(settings.stack_pg_bindir) / "pgbench")
    common = [
        "-h",
        str(info.get("host", "127.0.0.1")),
        "-p",
        str(info.get("port", 5432)),
        "-U",
        "postgres",
        BENCH_DB,
    ]
    try:
        subprocess.run([pgbench, "-i", "-q", "-s", "10", *common], check=True, capture_output=True)
        out = subprocess.run(
            [pgbench, "-c", str(clients), "-j", "2", "-T", str(seconds), *common],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(BENCH_DB)))
    match = re.search(r"tps = ([\d.]+)", out)
    return float(match.group(1)) if match else float("nan")


async def _fill_history(world: BenchWorld, orders: int) -> None:
    """The ETA log of ``orders`` orders of the benchmark's region placed over the last two
    hours, spread over its restaurants (a third still waiting for a driver, a third on the
    way, a third delivered), as a busy region's would be: what a placement's estimate reads."""
    restaurants = [r["restaurant_id"] for r in world.restaurants]
    async with await psycopg.AsyncConnection.connect(world.dsn, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO order_timings (order_id, region, restaurant_id, placed_at, assigned_at,"
            " ready_at, picked_up_at, delivered_at)"
            " SELECT 'ord_' || %(region)s || '_h' || g, %(region)s,"
            "  (%(restaurants)s::text[])[1 + g %% cardinality(%(restaurants)s::text[])], p,"
            "  CASE WHEN g %% 3 > 0 THEN p + interval '2 minutes' END,"
            "  CASE WHEN g %% 3 > 0 THEN p + interval '12 minutes' END,"
            "  CASE WHEN g %% 3 = 2 THEN p + interval '14 minutes' END,"
            "  CASE WHEN g %% 3 = 2 THEN p + interval '30 minutes' END"
            " FROM generate_series(1, %(n)s) g,"
            "  LATERAL (SELECT now() - (g %% 7000) * interval '1 second' AS p) t",
            {"region": world.region, "restaurants": restaurants, "n": orders},
        )
        await conn.execute("ANALYZE order_timings")


def placer(
    service: OrderService, bodies: list[PlaceOrder], placed: list[str]
) -> Callable[[int], Awaitable[None]]:
    """The closed loop's call: place body ``n`` (cycling) for one of 997 customers and keep
    the order's id in ``placed``."""

    async def place(n: int) -> None:
        row, _ = await service.place(f"user_bench_{n % 997}", bodies[n % len(bodies)])
        placed.append(row["order_id"])

    return place


def _placer_main(
    env: dict[str, str],
    bodies: list[dict[str, Any]],
    clients: int,
    seconds: float,
    ready: Any,
    go: Any,
    report: Any,
    done: Any,
) -> None:
    """A placing process of its own (``processes`` > 1): the environment points it at the
    benchmark's world; warmed up, it says so on ``ready``, waits for ``go``, places for
    ``seconds``, reports its ``LoadResult`` and the ids it placed, and keeps its connections
    (their server processes' CPU is counted) until ``done``."""
    os.environ.update(env)
    runner.run(_place_here(bodies, clients, seconds, (ready, go, report, done)))


async def _place_here(
    bodies: list[dict[str, Any]], clients: int, seconds: float, signals: tuple[Any, ...]
) -> None:
    ready, go, report, done = signals
    settings = load_settings()
    catalog = load_catalog(settings.region_catalog)
    conns = await Connections.open(settings, shards=catalog.shards(), pool_max=max(20, clients))
    try:
        service = OrderService(ShardAccess(conns, catalog))
        orders = [PlaceOrder.model_validate(b) for b in bodies]
        placed: list[str] = []

        place = placer(service, orders, placed)

        await closed_loop(place, clients, 1.0)  # warm-up: pools filled, plans cached
        placed.clear()
        ready.put(os.getpid())
        if not await asyncio.to_thread(go.wait, 300):
            raise TimeoutError("no signal to start placing")
        with collector.serving():  # as the API's processes serve
            report.put((await closed_loop(place, clients, seconds), placed))
        await asyncio.to_thread(done.wait, 300)
    finally:
        await conns.close()


async def _place_in_processes(
    world: BenchWorld, bodies: list[PlaceOrder], clients: int, seconds: float, processes: int
) -> tuple[LoadResult, list[str], dict[str, float]]:
    """The service layer in ``processes`` processes of its own, ``clients`` split among them,
    as an API runs one process per core: their results merged, the ids placed and the CPU per
    order of the placing processes and the servers."""
    context = multiprocessing.get_context("spawn")
    ready, report = context.Queue(), context.Queue()
    go, done = context.Event(), context.Event()
    env = {**os.environ, **world.child_env()}
    payloads = [b.model_dump(mode="json") for b in bodies]
    share = [clients // processes + (i < clients % processes) for i in range(processes)]
    procs = [
        context.Process(
            target=_placer_main,
            args=(env, payloads, n, seconds, ready, go, report, done),
            daemon=True,
        )
        for n in share
        if n
    ]
    try:
        for proc in procs:
            proc.start()
        for _ in procs:  # each warmed up (imports, pools, plans) before the clock starts
            await _from(ready, procs)
        servers = await world.server_pids()
        groups = {"placing processes": [p.pid for p in procs if p.pid is not None]}
        before = cpu_seconds(servers, groups)
        go.set()
        results = [await _from(report, procs) for _ in procs]
        after = cpu_seconds(servers, groups)
    finally:
        done.set()
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
            if proc.is_alive():
                proc.kill()
    merged = LoadResult(
        sum(r.done for r, _ in results),
        sum(r.failed for r, _ in results),
        max(r.seconds for r, _ in results),
        [ms for r, _ in results for ms in r.latencies_ms],
    )
    placed = [order_id for _, ids in results for order_id in ids]
    return merged, placed, cpu_ms_per(before, after, merged.done + merged.failed)


async def _from(queue: Any, procs: list[Any]) -> Any:
    """The next message of ``queue``; an error as soon as one of ``procs`` died instead."""
    while True:
        try:
            return await asyncio.to_thread(queue.get, True, 1.0)
        except Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a placing process died (its error is above)") from None


async def run(
    settings: Settings,
    *,
    map_file: Path,
    clients: int,
    seconds: float,
    console: Console,
    history: int = 0,
    processes: int = 1,
) -> dict[str, LoadResult | float]:
    """Run the three measurements and print them side by side (``history``: orders of the
    last two hours in the region's ETA log first; ``processes``: the service layer's
    placements made by that many processes of their own)."""
    world = BenchWorld(settings, map_file, drivers=100, restaurants=200)
    results: dict[str, LoadResult | float] = {}
    try:
        with console.status("building the benchmark's shard, region, road map and restaurants"):
            await world.build(heartbeat_ttl_s=3600, commit_stamps=False, pool_max=max(20, clients))
        if history:
            with console.status(f"{history:,} orders of the last two hours in the ETA log"):
                await _fill_history(world, history)
        bodies = _bodies(world, random.Random(7), 5000)
        service = OrderService(world.shards())
        placed: list[str] = []

        place = placer(service, bodies, placed)

        with console.status("service layer"):
            if processes > 1:
                results["service"], placed, cpu = await _place_in_processes(
                    world, bodies, clients, seconds, processes
                )
            else:
                await closed_loop(place, clients, 1.0)  # warm-up: pools filled, plans cached
                placed.clear()
                servers = await world.server_pids()
                before = cpu_seconds(servers)
                with collector.serving():  # as the API's processes serve
                    results["service"] = run_ = await closed_loop(place, clients, seconds)
                cpu = cpu_ms_per(before, cpu_seconds(servers), run_.done + run_.failed)
        with console.status("status changes: assign, then cancel, the orders just placed"):
            drivers = world.driver_ids
            changed = placed[:2000]
            results["assign"] = await each(
                [
                    partial(
                        service.transition,
                        order_id,
                        EventType.DRIVER_ASSIGNED,
                        "bench",
                        driver_id=drivers[i % len(drivers)],
                    )
                    for i, order_id in enumerate(changed)
                ],
                clients,
            )
            results["cancel"] = await each(
                [
                    partial(service.transition, order_id, EventType.ORDER_CANCELLED, "bench")
                    for order_id in changed
                ],
                clients,
            )
        results["http"] = await _http(world, bodies, clients, seconds, console)
        with console.status("pgbench"):
            results["pgbench_tps"] = await asyncio.to_thread(
                _pgbench, settings, world.dsn, clients, int(seconds)
            )
    finally:
        await world.remove()
    _print(results, clients, seconds, console, processes)
    if cpu:
        shares = ", ".join(f"{name} {ms:.2f}" for name, ms in cpu.items())
        console.print(f"CPU per order placed through the service layer (ms): {shares}")
    return results


async def _http(
    world: BenchWorld, bodies: list[PlaceOrder], clients: int, seconds: float, console: Console
) -> LoadResult:
    """The same orders through ``POST /api/orders`` of a server in its own process."""
    key = world.settings.jwt_key()
    tokens = [issue_token(key, Role.CUSTOMER, f"user_bench_{i}") for i in range(clients)]
    payloads = [b.model_dump(mode="json") for b in bodies]
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with (
        api_process(free_port(), quiet=True, env={**os.environ, **world.child_env()}) as (base, _),
        httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client,
    ):

        async def call(n: int) -> None:
            resp = await client.post(
                "/api/orders",
                json=payloads[n % len(payloads)],
                headers={"Authorization": f"Bearer {tokens[n // 1_000_000]}"},
            )
            if resp.status_code != 201:
                raise RuntimeError(resp.text)

        await closed_loop(call, clients, 1.0)
        with console.status("HTTP API"):
            return await closed_loop(call, clients, seconds)


def _print(
    results: dict[str, LoadResult | float],
    clients: int,
    seconds: float,
    console: Console,
    processes: int = 1,
) -> None:
    table = Table(
        "path",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "failed",
        title=f"orders placed, {clients} concurrent clients, {seconds:.0f} s each",
    )
    labels = {
        "service": "service" if processes == 1 else f"service ({processes} processes)",
        "http": "http",
        "assign": "status change: assign (service; per second: changes)",
        "cancel": "status change: cancel (payment voided, stock put back)",
    }
    for name, label in labels.items():
        r = results[name]
        assert isinstance(r, LoadResult)
        table.add_row(
            label,
            f"{r.per_second:,.0f}",
            f"{r.percentile(50):.1f}",
            f"{r.percentile(99):.1f}",
            str(r.failed),
        )
    pgbench = results["pgbench_tps"]
    assert isinstance(pgbench, float)
    table.add_row("pgbench TPC-B (same cluster)", f"{pgbench:,.0f} tps", "", "", "")
    console.print(table)
    service = results["service"]
    assert isinstance(service, LoadResult)
    console.print(f"service layer / pgbench ratio: {service.per_second / pgbench:.2f}")
