"""``ontheway bench dispatch``: the time from an order's ``ORDER_PLACED`` commit to its first
``DRIVER_ASSIGNED`` commit, with the real outbox relay and dispatch workers (processes of
their own, as ``ontheway run`` starts them) on a Redis stream, many drivers in the region and
orders arriving on a schedule (open loop: arrivals do not wait for earlier orders).

What is measured: ``order_events.ts`` will not do — it is the writer's Python clock read
before its transaction begins, not a commit time. So the bench's database carries a deferred
constraint trigger that stamps ``clock_timestamp()`` on each ``ORDER_PLACED`` and
``DRIVER_ASSIGNED`` row when its transaction commits (deferred triggers run inside COMMIT,
just before the commit record is flushed). A latency is the assignment's stamp minus the
placement's: PostgreSQL's clock at both ends, from "about to commit" to "about to commit".

Everything lives apart from what tests and other runs use: a database of its own on the local
cluster (a shard of its own, ``benchd_<hex>``), a region of that name whose road map is the
given OpenStreetMap extract moved 3 degrees west (open sea, so that it overlaps no served
region; distances are unchanged), its own stream and keys. All of it is removed at the end.
Drivers report one position each, with a heartbeat long enough for the run (no location
ingest meanwhile: that is ``bench fleet``'s subject). They stand beside the map's road nodes,
or with ``spread_km`` anywhere in a square that wide around the map (a city's density: the
San Francisco extract's roads are mostly within 1.5 km of its centre, and 200,000 drivers on
them put many thousands in the fleet search's first 400 m ring).

The relay and the workers run ``run_relay`` and ``run_dispatch`` with the real dispatcher, each
in a process of its own (``python -m ontheway.bench.dispatch relay|worker SHARD``) whose
connections reach the bench's shard only: ``ontheway relay`` and ``ontheway worker`` open
every shard of the catalog, and would relay and dispatch other runs' orders. A worker takes
``batch`` events per fetch (10 by default) and handles those of different orders side by
side (``events.worker.work_batch``); a whole burst taken by one worker no longer waits in
line behind its first order.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ontheway import collector
from ontheway.bench.common import cpu_ms_per, cpu_seconds, percentile, run_stoppable
from ontheway.bench.world import BenchWorld
from ontheway.connections import Connections
from ontheway.events.factory import open_bus
from ontheway.events.relay import run_relay
from ontheway.orders.models import PlaceOrder
from ontheway.orders.service import OrderService
from ontheway.regions import load_catalog
from ontheway.runall import stop_parts
from ontheway.runner import run, run_until_signalled
from ontheway.settings import Settings, load_settings

WARMUP_ORDERS = 20


@dataclass(frozen=True)
class DispatchFigures:
    """What one run measured; latencies in ms, from commit to commit."""

    offered_per_s: float
    placed: int
    failed: int
    assigned: int
    placed_per_s: float
    assigned_per_s: float
    generator_lag_ms: float
    latencies_ms: list[float]
    relay_ms: list[float]  # ORDER_PLACED: commit -> XADD to the stream
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per order placed, per process
    # Redis's forks while the orders were placed (AOF rewrites, snapshots) and the last
    # one's pause of the server (ms; NaN: none).
    redis_forks: int = 0
    redis_fork_ms: float = float("nan")

    def percentile(self, q: int) -> float:
        """The q-th percentile of the latencies (q in 1..99), NaN when there are none."""
        return percentile(self.latencies_ms, q)


class DispatchBench:
    """One run: build the world, start the relay and the workers, place orders, measure."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        *,
        drivers: int,
        rate: float,
        seconds: float,
        workers: int,
        map_file: Path,
        restaurants: int = 200,
        batch: int = 10,
        spread_km: float = 0.0,
        warmup_s: float = 0.0,
    ) -> None:
        self.console = console
        self.rate = rate
        self.seconds = seconds
        self.warmup_s = warmup_s
        self.workers = workers
        self.batch = batch
        self.world = BenchWorld(
            settings, map_file, drivers=drivers, restaurants=restaurants, spread_km=spread_km
        )
        self.rng = random.Random(11)

    async def run(self) -> DispatchFigures:
        """Run the benchmark, print its figures and leave nothing behind."""
        world = self.world
        ttl_s = min(3600, int(self.seconds) + 600)
        parts: list[asyncio.subprocess.Process] = []
        try:
            with self.console.status("building the bench's shard, map, restaurants, drivers"):
                await world.build(heartbeat_ttl_s=ttl_s)
            parts = await self._start_parts()
            service = OrderService(world.shards())
            await self._redis_settled()
            with self.console.status("warming up (networks loaded, plans cached)"):
                ids, _, _ = await self._place(service, 10.0, WARMUP_ORDERS / 10.0)
                await self._wait_assigned(ids, 60.0)
            # parts[0] is the relay, the rest the workers (see _start_parts).
            groups = {"relay": [parts[0].pid], "workers": [p.pid for p in parts[1:]]}
            servers = await world.server_pids()
            before: dict[str, float] = {}

            def measuring() -> None:  # the measured orders begin: CPU from here on
                before.update(cpu_seconds(servers, groups))

            forks_before, _ = await self._redis_forks()
            # This process places as the API would, and with the API's collector settings:
            # without them, full collections walking the world's 200,000 drivers stopped it
            # for 50-100 ms about once a second.
            with (
                self.console.status(f"{self.rate:g} orders/s for {self.seconds:g} s"),
                collector.serving(),
            ):
                ids, failed, lag_ms = await self._place(
                    service, self.rate, self.seconds, self.warmup_s, measuring
                )
                await self._wait_assigned(ids, 30.0 + self.seconds)
                cpu = cpu_ms_per(before, cpu_seconds(servers, groups), len(ids))
            forks_after, fork_ms = await self._redis_forks()
            figures = await self._figures(ids, failed, lag_ms)
            figures.cpu_ms.update(cpu)
            figures = replace(
                figures,
                redis_forks=forks_after - forks_before,
                redis_fork_ms=fork_ms if forks_after > forks_before else float("nan"),
            )
        finally:
            await stop_parts({str(i): p for i, p in enumerate(parts)})
            with self.console.status("cleaning up"):
                await world.remove()
        self._report(figures)
        return figures

    async def _start_parts(self) -> list[asyncio.subprocess.Process]:
        env = {**os.environ, **self.world.child_env(), "ONTHEWAY_DISPATCH_AUTO_ACCEPT": "true"}
        shard = self.world.shard
        args = [sys.executable, "-m", "ontheway.bench.dispatch"]
        worker = [*args, "worker", shard, str(self.batch)]
        return [await asyncio.create_subprocess_exec(*args, "relay", shard, env=env)] + [
            await asyncio.create_subprocess_exec(*worker, env=env) for _ in range(self.workers)
        ]

    def _body(self) -> tuple[str, PlaceOrder]:
        rest = self.rng.choice(self.world.restaurants)
        items = self.rng.sample(rest["items"], k=self.rng.randint(1, 2))
        lat, lng = self.world.near(rest["lat"], rest["lng"], self.rng)
        body = PlaceOrder.model_validate(
            {
                "restaurant_id": rest["restaurant_id"],
                "items": [{"item_id": i["item_id"], "quantity": 1} for i in items],
                "delivery_location": {"lat": lat, "lng": lng},
                "tip": "2.00",
            }
        )
        return self.rng.choice(self.world.customers), body

    async def _place(
        self,
        service: OrderService,
        rate: float,
        seconds: float,
        warmup_s: float = 0.0,
        measuring: Callable[[], None] | None = None,
    ) -> tuple[list[str], int, float]:
        """Place ``rate`` orders/s for ``warmup_s`` then ``seconds`` on one fixed schedule,
        each in a task of its own; returns the ids placed after the warm-up, their failures
        and the generator's worst lag (ms) meanwhile. ``measuring`` is called when the
        measured orders begin."""
        loop = asyncio.get_running_loop()
        warm = round(rate * warmup_s)
        bodies = [self._body() for _ in range(warm + round(rate * seconds))]
        started = loop.time()
        lag_s = 0.0
        tasks = []
        for i, (customer, body) in enumerate(bodies):
            due = started + i / rate
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if i == warm:
                measured_from = loop.time()
                if measuring is not None:
                    measuring()
            if i >= warm:
                lag_s = max(lag_s, loop.time() - due)
            tasks.append(asyncio.create_task(service.place(customer, body)))
        done = (await asyncio.gather(*tasks, return_exceptions=True))[warm:]
        self.placed_s = loop.time() - measured_from
        ids = [r[0]["order_id"] for r in done if not isinstance(r, BaseException)]
        errors = [r for r in done if isinstance(r, BaseException)]
        if errors:
            self.console.print(f"[red]{len(errors)} placements failed[/], e.g. {errors[0]!r}")
        return ids, len(errors), lag_s * 1000

    async def _wait_assigned(self, ids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = await self.world.query(
                "SELECT count(DISTINCT order_id) AS n FROM bench_commits"
                " WHERE event_type = 'DRIVER_ASSIGNED' AND order_id = ANY(%s)",
                (ids,),
            )
            if rows[0]["n"] >= len(ids):
                return
            await asyncio.sleep(0.2)

    async def _figures(self, ids: list[str], failed: int, lag_ms: float) -> DispatchFigures:
        rows = await self.world.query(
            "SELECT p.order_id, extract(epoch FROM p.committed_at) AS placed_at,"
            " extract(epoch FROM min(a.committed_at)) AS assigned_at"
            " FROM bench_commits p LEFT JOIN bench_commits a"
            " ON a.order_id = p.order_id AND a.event_type = 'DRIVER_ASSIGNED'"
            " WHERE p.event_type = 'ORDER_PLACED' AND p.order_id = ANY(%s)"
            " GROUP BY p.order_id, p.committed_at",
            (ids,),
        )
        done = [r for r in rows if r["assigned_at"] is not None]
        streamed = await self._streamed_ms()
        first = min((float(r["placed_at"]) for r in rows), default=0.0)
        last = max((float(r["assigned_at"]) for r in done), default=first)
        return DispatchFigures(
            offered_per_s=self.rate,
            placed=len(ids),
            failed=failed,
            assigned=len(done),
            placed_per_s=len(ids) / self.placed_s if self.placed_s else 0.0,
            assigned_per_s=len(done) / (last - first) if last > first else 0.0,
            generator_lag_ms=lag_ms,
            latencies_ms=[(float(r["assigned_at"]) - float(r["placed_at"])) * 1000 for r in done],
            relay_ms=[
                streamed[r["order_id"]] - float(r["placed_at"]) * 1000
                for r in rows
                if r["order_id"] in streamed
            ],
        )

    async def _redis_forks(self) -> tuple[int, float]:
        """Redis's forks so far and the last one's pause of the server (ms)."""
        assert self.world.conns is not None
        stats = await self.world.conns.require_redis().info("stats")
        return int(stats["total_forks"]), int(stats["latest_fork_usec"]) / 1000

    async def _redis_settled(self, timeout_s: float = 120.0) -> None:
        """Wait for the AOF rewrite or snapshot that the world's bulk load (its drivers'
        keys) set off, if any, to end: the measured orders start on a settled server. One
        the orders themselves set off still falls in the window (``redis_forks``)."""
        assert self.world.conns is not None
        redis = self.world.conns.require_redis()
        deadline = time.monotonic() + timeout_s
        with self.console.status("waiting for Redis's rewrite of its append-only file"):
            while time.monotonic() < deadline:
                info = await redis.info("persistence")
                if not (info.get("aof_rewrite_in_progress") or info.get("rdb_bgsave_in_progress")):
                    return
                await asyncio.sleep(0.1)

    async def _streamed_ms(self) -> dict[str, float]:
        """When each ORDER_PLACED reached the stream: its entry id is Redis's clock (ms) at
        XADD, on the same machine as PostgreSQL's."""
        assert self.world.conns is not None
        redis = self.world.conns.require_redis()
        found: dict[str, float] = {}
        start = "-"
        stream = f"events:{self.world.region}"
        while True:
            entries: Any = await redis.xrange(stream, start, count=10_000)
            if not entries:
                return found
            for entry_id, fields in entries:
                event = json.loads(fields[b"event"])
                if event["event_type"] == "ORDER_PLACED":
                    found.setdefault(event["order_id"], float(entry_id.split(b"-")[0]))
            start = "(" + entries[-1][0].decode()

    def _report(self, f: DispatchFigures) -> None:
        out = self.console
        where = (
            f"over a {self.world.spread_km:g} km square around the road map"
            if self.world.spread_km
            else "on the road map"
        )
        out.print(
            f"[bold]bench dispatch[/] (region {self.world.region}, removed): "
            f"{self.world.drivers:,} available drivers {where}, "
            f"{len(self.world.restaurants)} restaurants on the map, {f.offered_per_s:g} orders/s "
            f"offered for {self.seconds:g} s (open loop, after {self.warmup_s:g} s at that rate "
            f"not measured); relay + {self.workers} dispatch "
            f"worker(s) in processes of their own, Redis stream; {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        out.print(
            f"  ORDER_PLACED commit -> DRIVER_ASSIGNED commit: p50 {f.percentile(50):.1f} ms, "
            f"p90 {f.percentile(90):.1f} ms, p99 {f.percentile(99):.1f} ms, "
            f"max {max(f.latencies_ms, default=float('nan')):.1f} ms (target p99 <= 100 ms)"
        )
        out.print(
            f"  of which the relay (commit -> XADD): p50 {percentile(f.relay_ms, 50):.1f} ms, "
            f"p99 {percentile(f.relay_ms, 99):.1f} ms; the rest is the stream, the worker's "
            "queue and the dispatch itself"
        )
        out.print(f"  orders assigned / placed: {f.assigned} / {f.placed} ({f.failed} failed)")
        if f.redis_forks:
            out.print(
                f"  Redis forked {f.redis_forks} time(s) meanwhile (append-only file rewritten or "
                f"snapshot: the server stops for the fork, {f.redis_fork_ms:.1f} ms the last, "
                "and the child takes a core while it writes)"
            )
        out.print(
            f"  rate reached: {f.placed_per_s:.1f} orders/s placed, {f.assigned_per_s:.1f}/s "
            f"assigned; generator's worst lag behind schedule {f.generator_lag_ms:.1f} ms"
        )
        if f.cpu_ms:
            labels = {"this process": "the generator (placing)"}
            shares = ", ".join(f"{labels.get(k, k)} {v:.1f}" for k, v in f.cpu_ms.items())
            out.print(
                f"  CPU per order (ms, from /proc): {shares}; in all "
                f"{sum(f.cpu_ms.values()):.1f}, {os.cpu_count()} cores"
            )


def run_dispatch_bench(settings: Settings, console: Console, **options: Any) -> DispatchFigures:
    """Run the dispatch benchmark and print its figures."""
    return run_stoppable(DispatchBench(settings, console, **options).run())


# -- the relay and the workers (processes of their own, on the bench's shard only) -----------


async def _part(role: str, shard: str, batch: int) -> None:
    from ontheway.dispatch.batching import run_dispatch
    from ontheway.dispatch.dispatcher import build_dispatcher

    settings = load_settings()

    async def main(conns: Connections, stop: asyncio.Event) -> None:
        bus = open_bus(settings, conns)
        try:
            if role == "relay":
                await run_relay(conns, bus, settings.event_stream, stop=stop)
            else:
                catalog = load_catalog(settings.region_catalog)
                regions = [r.region for r in catalog if r.shard == shard]  # the bench's own
                dispatcher = build_dispatcher(conns, settings)
                await run_dispatch(conns, bus, dispatcher, regions, stop=stop, batch=batch)
        finally:
            await bus.close()

    await run_until_signalled(settings, main, shards=[shard])


if __name__ == "__main__":
    run(_part(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 100))
