"""The world of a benchmark (``bench dispatch``, ``bench orders``), kept apart from everything
else and removed afterwards: a shard database of its own on the local cluster, a region of its
own (an OpenStreetMap extract moved into open sea), its restaurants, customers and available
drivers, and its stream. Nothing a benchmark writes is left for the servers of the stack to
find (orders searching for a driver, events for the relay)."""

from __future__ import annotations

import bz2
import gzip
import json
import math
import random
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ontheway.bench.common import server_pids, unlink_matching
from ontheway.connections import Connections
from ontheway.errors import InvalidInput
from ontheway.events.relay import cursor_name, start_at_end
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.service import open_store
from ontheway.orders.seed import seed_region
from ontheway.orders.store import ShardAccess
from ontheway.regions import load_catalog
from ontheway.roads.importer import import_osm
from ontheway.roads.routing import RoadService
from ontheway.schema.admin import migrate_shards
from ontheway.settings import Settings

SHIFT_LNG = -3.0  # downtown San Francisco moved here is open sea: no served region overlaps
VEHICLES = (VehicleType.BICYCLE, VehicleType.SCOOTER, VehicleType.CAR, VehicleType.CAR)

# Stamps each placement and assignment with PostgreSQL's clock when its transaction commits:
# a deferred constraint trigger runs inside COMMIT, just before the commit record is flushed.
COMMIT_STAMPS = """
CREATE TABLE bench_commits (order_id text NOT NULL, event_type text NOT NULL,
                            committed_at timestamptz NOT NULL);
CREATE INDEX bench_commits_order ON bench_commits (order_id);
CREATE FUNCTION bench_commit_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bench_commits VALUES (NEW.order_id, NEW.event_type, clock_timestamp());
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER bench_commit_stamp AFTER INSERT ON order_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.event_type IN ('ORDER_PLACED', 'DRIVER_ASSIGNED'))
    EXECUTE FUNCTION bench_commit_stamp();
"""


def _read_osm_text(path: Path) -> str:
    if path.name.endswith(".osm.bz2"):
        return bz2.decompress(path.read_bytes()).decode()
    if path.name.endswith(".osm.gz"):
        return gzip.decompress(path.read_bytes()).decode()
    if path.name.endswith(".osm"):
        return path.read_text()
    raise InvalidInput(f"{path}: the bench takes an .osm, .osm.bz2 or .osm.gz file", field="map")


def shifted_map(source: Path, target: Path) -> tuple[float, float, float, float]:
    """Write ``source`` moved ``SHIFT_LNG`` degrees of longitude (same latitude: distances
    and travel times unchanged) to ``target``; returns its (min_lat, min_lng, max_lat,
    max_lng)."""
    text = re.sub(
        r'lon="(-?[\d.]+)"', lambda m: f'lon="{float(m.group(1)) + SHIFT_LNG:.7f}"',
        _read_osm_text(source),
    )  # fmt: skip
    target.write_text(text)
    lats = [float(v) for v in re.findall(r'<node [^>]*lat="(-?[\d.]+)"', text)]
    lngs = [float(v) for v in re.findall(r'<node [^>]*lon="(-?[\d.]+)"', text)]
    return min(lats), min(lngs), max(lats), max(lngs)


class BenchWorld:
    """Build with ``build``, remove with ``remove`` (which is safe after a failed build)."""

    def __init__(
        self,
        settings: Settings,
        map_file: Path,
        *,
        drivers: int,
        restaurants: int,
        spread_km: float = 0.0,
    ):
        self.base = settings
        self.settings = settings
        self.map_file = map_file
        self.drivers = drivers
        self.restaurant_count = restaurants
        self.spread_km = spread_km
        self.region = f"benchd_{uuid.uuid4().hex[:8]}"
        self.shard = self.region
        self.folder = Path(tempfile.mkdtemp(prefix=f"{self.region}-"))
        template = settings.dsn_for(load_catalog(settings.region_catalog).shard_for("sf"))
        self.dsn = psycopg.conninfo.make_conninfo(template, dbname=f"ontheway_{self.region}")
        self.admin = psycopg.conninfo.make_conninfo(template, user="postgres", dbname="postgres")
        self.conns: Connections | None = None
        self.driver_ids: list[str] = []
        self.restaurants: list[dict[str, Any]] = []
        self.customers: list[str] = []
        self.bbox = (0.0, 0.0, 0.0, 0.0)  # the road map's
        self.region_box = self.bbox

    def child_env(self) -> dict[str, str]:
        """The environment that points a process at this world."""
        return {
            "ONTHEWAY_SHARD_DSNS": json.dumps({self.shard: self.dsn}),
            "ONTHEWAY_REGION_CATALOG": str(self.folder / "catalog.json"),
            "ONTHEWAY_EVENT_STREAM": self.region,
        }

    def shards(self) -> ShardAccess:
        """Shard access over this world's connections and catalog."""
        assert self.conns is not None
        return ShardAccess(self.conns, load_catalog(self.settings.region_catalog))

    async def server_pids(self) -> dict[str, int]:
        """The main pids of this world's PostgreSQL and Redis servers when they run on this
        host (``bench.common.cpu_seconds``)."""
        assert self.conns is not None
        async with self.conns.shard_connection(self.shard) as conn:
            return await server_pids(conn, self.conns.require_redis())

    async def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of one statement on this world's shard."""
        assert self.conns is not None
        async with self.conns.shard_connection(self.shard) as conn:
            cur = await conn.execute(statement, params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    def near(self, lat: float, lng: float, rng: random.Random) -> tuple[float, float]:
        """A delivery address up to about 500 m from (lat, lng), inside the region."""
        min_lat, min_lng, max_lat, max_lng = self.bbox
        return (
            min(max_lat, max(min_lat, lat + rng.uniform(-0.0045, 0.0045))),
            min(max_lng, max(min_lng, lng + rng.uniform(-0.0055, 0.0055))),
        )

    async def build(
        self, *, heartbeat_ttl_s: int, commit_stamps: bool = True, pool_max: int = 20
    ) -> None:
        """Create the shard, the region and its map, restaurants, customers and drivers;
        ``commit_stamps``: stamp placements and assignments with their commit time (a
        trigger, which costs each transaction a row)."""
        await self._create_database()
        self.bbox = shifted_map(self.map_file, self.folder / "map.osm")
        self.region_box = self._spread_box()
        self._write_catalog()
        self.settings = self.base.model_copy(
            update={
                "shard_dsns": {**self.base.shard_dsns, self.shard: self.dsn},
                "region_catalog": self.folder / "catalog.json",
                "event_stream": self.region,
                "fleet_heartbeat_ttl_s": heartbeat_ttl_s,
            }
        )
        await migrate_shards(self.settings, [self.shard])
        self.conns = await Connections.open(self.settings, shards=[self.shard], pool_max=pool_max)
        if commit_stamps:
            async with self.conns.shard_connection(self.shard) as conn:
                await conn.execute(COMMIT_STAMPS)
                await conn.commit()
        graphs = self.conns.graphs
        assert graphs is not None  # Connections.open always makes one
        await import_osm(await graphs.db(), self.region, self.folder / "map.osm")
        roads = RoadService(graphs, load_catalog(self.settings.region_catalog))
        network = await roads.network(self.region)
        nodes = np.column_stack(
            (network.graph.lat[network.routable], network.graph.lng[network.routable])
        )
        rng = random.Random(5)
        await self._seed(nodes, rng)
        await self._drivers(nodes, rng)
        await start_at_end(self.conns, self.shard, cursor_name(self.region, self.shard))

    async def _create_database(self) -> None:
        owner = psycopg.conninfo.conninfo_to_dict(self.dsn).get("user", "ontheway")
        name = f"ontheway_{self.region}"
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(str(owner))
                )
            )
        admin = psycopg.conninfo.make_conninfo(self.admin, dbname=name)
        async with await psycopg.AsyncConnection.connect(admin, autocommit=True) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    def _write_catalog(self) -> None:
        min_lat, min_lng, max_lat, max_lng = self.region_box
        region = {
            "region": self.region,
            "name": "Dispatch benchmark",
            "country": "US",
            "center": {"lat": (min_lat + max_lat) / 2, "lng": (min_lng + max_lng) / 2},
            "bbox": {"min_lat": min_lat - 0.005, "min_lng": min_lng - 0.005,
                     "max_lat": max_lat + 0.005, "max_lng": max_lng + 0.005},
            "timezone": "America/Los_Angeles",
            "shard": self.shard,
        }  # fmt: skip
        (self.folder / "catalog.json").write_text(json.dumps({"regions": [region]}))

    def _spread_box(self) -> tuple[float, float, float, float]:
        """The region: the map's box, or a square of ``spread_km`` around its centre when
        that is larger (drivers spread at a city's density, restaurants on the map)."""
        min_lat, min_lng, max_lat, max_lng = self.bbox
        lat, lng = (min_lat + max_lat) / 2, (min_lng + max_lng) / 2
        half_lat = self.spread_km / 2 / 111.32
        half_lng = half_lat / math.cos(math.radians(lat))
        return (
            min(min_lat, lat - half_lat), min(min_lng, lng - half_lng),
            max(max_lat, lat + half_lat), max(max_lng, lng + half_lng),
        )  # fmt: skip

    async def _seed(self, nodes: Any, rng: random.Random) -> None:
        """Restaurants (menus, stock) and customers, each restaurant beside a road node."""
        shards = self.shards()
        catalog = load_catalog(self.settings.region_catalog)
        seeded = await seed_region(
            shards, catalog.get(self.region), restaurants=self.restaurant_count,
            customers=500, drivers=0, seed=17,
        )  # fmt: skip
        moved = []
        for rest in seeded.restaurants:
            lat, lng = nodes[rng.randrange(len(nodes))]
            rest |= {"lat": float(lat) + 0.0001, "lng": float(lng)}
            moved.append((rest["lng"], rest["lat"], rest["restaurant_id"]))
        async with shards.connection(self.region) as conn, conn.transaction():
            cur = conn.cursor()
            await cur.executemany(
                "UPDATE restaurants SET location = ST_MakePoint(%s, %s)::geography"
                " WHERE restaurant_id = %s",
                moved,
            )
            await conn.execute("UPDATE inventory SET quantity = 1000000")
        self.restaurants = seeded.restaurants
        self.customers = seeded.customers

    async def _drivers(self, nodes: Any, rng: random.Random) -> None:
        """Drivers in PostgreSQL (COPY) and in the fleet, each beside a random road node (or
        anywhere in the spread square)."""
        assert self.conns is not None
        ids = self.driver_ids = [f"drv_{self.region}_{i:07d}" for i in range(self.drivers)]
        async with self.conns.shard_connection(self.shard) as conn:
            async with conn.cursor().copy(
                "COPY drivers (driver_id, name, vehicle_type, rating, acceptance_rate, region,"
                " status) FROM STDIN"
            ) as copy:
                for i, driver_id in enumerate(ids):
                    await copy.write_row(
                        (driver_id, f"Driver {i}", VEHICLES[i % 4].value,
                         round(rng.uniform(4.2, 5.0), 2), round(rng.uniform(0.6, 1.0), 3),
                         self.region, "available")
                    )  # fmt: skip
            await conn.commit()
        store = open_store(self.conns.require_redis(), self.settings)
        await store.register_many([(d, self.region, VEHICLES[i % 4]) for i, d in enumerate(ids)])
        now = time.time()
        if self.spread_km:
            min_lat, min_lng, max_lat, max_lng = self._spread_box()
            picks = [(rng.uniform(min_lat, max_lat), rng.uniform(min_lng, max_lng)) for _ in ids]
        else:
            picks = nodes[[rng.randrange(len(nodes)) for _ in ids]]
        fixes = [
            Fix(d, self.region, float(lat) + rng.uniform(-1e-4, 1e-4),
                float(lng) + rng.uniform(-1e-4, 1e-4), now)
            for d, (lat, lng) in zip(ids, picks, strict=True)
        ]  # fmt: skip
        for i in range(0, len(fixes), 1000):
            await store.apply_fixes(self.region, fixes[i : i + 1000])

    async def remove(self) -> None:
        """Drop the database, the graph, the stream and every key of the region."""
        if self.conns is not None:
            # The region's keys and graph, its drivers' homes, its stream: all carry its name.
            await unlink_matching(self.conns.require_redis(), f"*{self.region}*")
            await self.conns.close()
            self.conns = None
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"ontheway_{self.region}")
                )
            )
        shutil.rmtree(self.folder, ignore_errors=True)
