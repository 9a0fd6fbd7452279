"""Server time of the nearest-available search against the first ring it starts from, on the
local stack (`ontheway stack up`):

1. *clustered*: 200,000 drivers beside the routable nodes of the San Francisco downtown map,
   searched from beside those nodes, as `ontheway bench dispatch` places drivers and
   restaurants (imports the map as ``roads:{sf}`` if it is missing);
2. *uniform*: 200,000 drivers spread over a 30 x 30 km square, searched from random points,
   as `ontheway bench fleet` does.

    .venv/bin/python scripts/bench-search-rings.py

For each ``CROWDING`` (search.py) it runs the same 1,000 searches for the 10 nearest available
drivers within 2 miles and prints Redis's own time per call (``INFO commandstats``, so the
server must serve nothing else meanwhile), the ``GEOSEARCH`` calls per search and the client's
wall time per call. It deletes every key it made.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from pathlib import Path
from typing import Any

from ontheway import runner
from ontheway.bench.common import unlink_matching
from ontheway.connections import GraphStore, redis_client
from ontheway.fleet import search
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.store import FleetStore
from ontheway.regions import load_catalog
from ontheway.roads.importer import import_osm
from ontheway.roads.routing import RoadService
from ontheway.roads.store import graph_exists, graph_name
from ontheway.settings import load_settings

SF_MAP = Path(__file__).parents[1] / "tests/data/osm/san-francisco-downtown-drive.osm.bz2"
DRIVERS = 200_000
SEARCHES = 1_000
TWO_MILES_M = 3218.688
CROWDINGS = (1.0, 4.0, search.CROWDING, 64.0)
VEHICLES = list(VehicleType)
CAPACITIES = {"bicycle": 1, "scooter": 2, "car": 3}


def box_area_m2(points: list[tuple[float, float]]) -> float:
    lats, lngs = [p[0] for p in points], [p[1] for p in points]
    north_m = (max(lats) - min(lats)) * 111_320
    east_m = (max(lngs) - min(lngs)) * 111_320 * math.cos(math.radians(sum(lats) / len(lats)))
    return north_m * east_m


async def layout(
    store: FleetStore, region: str, places: list[tuple[float, float]], rng: random.Random
) -> None:
    """Drivers registered and placed (the ingest script, as the API writes them)."""
    ids = [f"r{region}_{i}" for i in range(len(places))]
    await store.register_many([(d, region, VEHICLES[i % 3]) for i, d in enumerate(ids)])
    now = time.time()
    fixes = [Fix(d, region, lat, lng, now) for d, (lat, lng) in zip(ids, places, strict=True)]
    for i in range(0, len(fixes), 1000):
        await store.apply_fixes(region, fixes[i : i + 1000])


async def measure(
    redis: Any, store_for: dict[float, FleetStore], region: str, points: list[tuple[float, float]]
) -> None:
    for crowding, store in store_for.items():
        await redis.config_resetstat()
        walls = []
        for lat, lng in points:
            start = time.perf_counter()
            found = await store.find_available(region, lat, lng, TWO_MILES_M, 10)
            walls.append((time.perf_counter() - start) * 1000)
            if len(found) != 10:
                raise RuntimeError(f"{len(found)} drivers found near ({lat}, {lng})")
        stats = await redis.info("commandstats")
        evals, geo = stats["cmdstat_evalsha"], stats["cmdstat_geosearch"]
        walls.sort()
        print(
            f"  crowding {crowding:g}: {evals['usec_per_call']:.0f} µs of Redis per search, "
            f"{geo['calls'] / evals['calls']:.2f} GEOSEARCH each; client wall p50 "
            f"{walls[len(walls) // 2]:.2f} ms, p99 {walls[int(len(walls) * 0.99)]:.2f} ms"
        )


async def main() -> None:
    settings = load_settings()
    redis = redis_client(settings.require_redis_url(), settings.dependency_timeout_s)
    graphs = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    db = await graphs.db()
    if not await graph_exists(db, graph_name("sf")):
        await import_osm(db, "sf", SF_MAP)
    network = await RoadService(graphs, load_catalog(settings.region_catalog)).network("sf")
    nodes = [
        (float(network.graph.lat[i]), float(network.graph.lng[i]))
        for i in network.routable.tolist()
    ]
    await graphs.aclose()
    rng = random.Random(5)
    jitter = 1e-4  # as bench/world.py: drivers within about 11 m of a node
    worlds = {
        "clustered": (
            [
                (lat + rng.uniform(-jitter, jitter), lng + rng.uniform(-jitter, jitter))
                for lat, lng in (rng.choice(nodes) for _ in range(DRIVERS))
            ],
            [(lat + jitter, lng) for lat, lng in (rng.choice(nodes) for _ in range(SEARCHES))],
        ),
        "uniform": (
            [
                (37.75 + rng.uniform(-0.135, 0.135), -124.8 + rng.uniform(-0.17, 0.17))
                for _ in range(DRIVERS)
            ],
            [
                (37.75 + rng.uniform(-0.08, 0.08), -124.8 + rng.uniform(-0.1, 0.1))
                for _ in range(SEARCHES)
            ],
        ),
    }
    try:
        for name, (places, points) in worlds.items():
            region = f"rings_{uuid.uuid4().hex[:8]}"
            area = box_area_m2(places)
            # The search sizes its first ring by area / CROWDING: scaling the area it is given
            # tries another crowding with the same script.
            stores = {
                c: FleetStore(
                    redis,
                    heartbeat_ttl_s=3600,
                    max_active_orders=CAPACITIES,
                    region_areas_m2={region: area * search.CROWDING / c},
                )
                for c in CROWDINGS
            }
            await layout(stores[search.CROWDING], region, places, rng)
            print(f"{name}: {DRIVERS:,} drivers over {area / 1e6:.1f} km2, {SEARCHES:,} searches")
            try:
                await measure(redis, stores, region, points)
            finally:
                await unlink_matching(redis, f"*{region}*")
    finally:
        await redis.aclose()


if __name__ == "__main__":
    runner.run(main())
