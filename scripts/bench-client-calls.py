"""Client CPU per call, on the local stack (`ontheway stack up`), in loops of calls:

1. a Lua script called through redis-py's ``Script`` against the same call packed by hiredis
   and sent on a pooled connection (``FleetStore._call``);
2. a 1 x 1 travel-time matrix on the San Francisco downtown map, asking the graph for the
   map's weights before each matrix (``VERSION_CHECK_S`` = 0) against trusting them for
   ``VERSION_CHECK_S`` (imports the map as ``roads:{sf}`` if it is missing).

    .venv/bin/python scripts/bench-client-calls.py

CPU is this process's user + system time (``os.times``) over the loop, divided by the calls.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hiredis

from ontheway import runner
from ontheway.connections import GraphStore, redis_client
from ontheway.regions import LatLng, load_catalog
from ontheway.roads import matrix
from ontheway.roads.importer import import_osm
from ontheway.roads.routing import RoadService
from ontheway.roads.store import graph_exists, graph_name
from ontheway.settings import load_settings

SF_MAP = Path(__file__).parents[1] / "tests/data/osm/san-francisco-downtown-drive.osm.bz2"
SCRIPT = "return ARGV[1]"


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def loop(label: str, call: Callable[[], Awaitable[Any]], n: int) -> None:
    for _ in range(n // 10):
        await call()
    cpu, wall = cpu_s(), time.perf_counter()
    for _ in range(n):
        await call()
    per_cpu, per_wall = (cpu_s() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6
    print(f"{label}: {per_cpu:.0f} µs of client CPU per call ({per_wall:.0f} µs wall)")


async def main() -> None:
    settings = load_settings()
    redis = redis_client(settings.require_redis_url(), settings.dependency_timeout_s)
    script = redis.register_script(SCRIPT)
    await redis.script_load(SCRIPT)
    pool = redis.connection_pool

    async def via_script() -> Any:
        return await script(keys=["k{x}"], args=["a", 1, 2.5, "b"])

    async def packed() -> Any:
        command = hiredis.pack_command(("EVALSHA", script.sha, 1, "k{x}", "a", 1, 2.5, "b"))
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(command)
            return await conn.read_response()
        finally:
            await pool.release(conn)

    for _ in range(2):
        await loop("redis-py Script call", via_script, 20_000)
        await loop("packed on a pooled connection", packed, 20_000)
    await redis.aclose()

    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    db = await store.db()
    if not await graph_exists(db, graph_name("sf")):
        await import_osm(db, "sf", SF_MAP)
    roads = RoadService(store, load_catalog(settings.region_catalog))
    network = await roads.network("sf")
    rng = random.Random(1)
    nodes = rng.sample(network.routable.tolist(), 400)
    points = [
        LatLng(lat=float(network.graph.lat[i]), lng=float(network.graph.lng[i])) for i in nodes
    ]
    pairs = iter([(points[i], points[i + 1]) for i in range(0, 400, 2)] * 1000)

    async def one_matrix() -> Any:
        a, b = next(pairs)
        return await roads.matrix([a], [b])

    trusted = matrix.VERSION_CHECK_S
    for _ in range(2):
        matrix.VERSION_CHECK_S = 0.0
        await loop("1 x 1 matrix, asking the graph each time", one_matrix, 1_000)
        matrix.VERSION_CHECK_S = trusted
        await loop(f"1 x 1 matrix, trusting the weights for {trusted} s", one_matrix, 1_000)
    await store.aclose()


if __name__ == "__main__":
    runner.run(main())
