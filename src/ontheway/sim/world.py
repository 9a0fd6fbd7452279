"""A region's world for one run: planned from its road map, then written to the servers.

Restaurants (menus, stock) and customers come from the seeding function with a seed derived
from the run, so their ids are new for every run; the simulator then moves each restaurant
onto its planned road node, with a 6 km delivery radius, and gives its items ample stock.
Drivers get ids tagged with the run (``drv_sf_<run>n00042``), a row in PostgreSQL and a place
in the fleet's registry.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from ontheway.connections import Connections
from ontheway.errors import DependencyUnavailable
from ontheway.fleet import keys
from ontheway.fleet.model import VehicleType
from ontheway.fleet.service import open_store
from ontheway.orders.seed import seed_region
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings
from ontheway.sim.demand import PlannedOrder, generate_orders
from ontheway.sim.plan import (
    Behaviour,
    DriverPlan,
    RestaurantPlan,
    dropoff_nodes,
    plan_drivers,
    plan_restaurants,
)

# Addresses lie within 2.5 km as the crow flies (plan.DROPOFF_RADIUS_M); by road, through
# one-way streets, that can be half as far again, and zones (if built) are checked by road.
DELIVERY_RADIUS_M = 6000


@dataclass
class RegionWorld:
    """Everything the simulator knows of one region of the run."""

    region: str
    restaurants: list[RestaurantPlan]
    drivers: list[DriverPlan]
    dropoffs: list[list[tuple[float, float]]]
    orders: list[PlannedOrder]
    customer_count: int
    restaurant_ids: list[str] = field(default_factory=list)
    items: list[list[str]] = field(default_factory=list)  # per restaurant, its menu's ids
    customers: list[str] = field(default_factory=list)
    driver_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorldSize:
    """How many of each a region gets, and how much its customers order."""

    drivers: int
    restaurants: int
    customers: int
    orders_per_hour: float
    start_hour: float
    duration_s: float


def plan_world(
    seed: int, region: str, lat: Any, lng: Any, size: WorldSize, behaviour: Behaviour
) -> RegionWorld:
    """The region's restaurants, drivers and orders on its nodes (no I/O but reading the
    packaged preparation times, once a process)."""
    restaurants = plan_restaurants(seed, region, lat, lng, size.restaurants)
    dropoffs = [dropoff_nodes(seed, region, lat, lng, r) for r in restaurants]
    drivers = plan_drivers(seed, region, lat, lng, restaurants, size.drivers, behaviour)
    orders = generate_orders(
        seed, region, rate_per_h=size.orders_per_hour, start_hour=size.start_hour,
        duration_s=size.duration_s, popularity=[r.popularity for r in restaurants],
        dropoffs=dropoffs, customers=size.customers,
    )  # fmt: skip
    return RegionWorld(region, restaurants, drivers, dropoffs, orders, size.customers)


async def routable_nodes(roads: RoadService, region: str) -> tuple[Any, Any]:
    """Latitudes and longitudes of the region's routable nodes (``NoRoadMap`` if none)."""
    network = await roads.network(region)
    if not len(network.routable):
        raise DependencyUnavailable(f"the road map of {region!r} has no routable node")
    return network.graph.lat[network.routable], network.graph.lng[network.routable]


async def create_world(
    conns: Connections, catalog: Catalog, settings: Settings, world: RegionWorld, run_id: str
) -> None:
    """Write the world's restaurants, customers and drivers; fills in their ids."""
    region = world.region
    shards = ShardAccess(conns, catalog)
    seeded = await seed_region(
        shards, catalog.get(region), restaurants=len(world.restaurants),
        customers=world.customer_count,
        drivers=0, seed=zlib.crc32(f"{run_id}:{region}".encode()),
    )  # fmt: skip
    world.restaurant_ids = [r["restaurant_id"] for r in seeded.restaurants]
    world.items = [[i["item_id"] for i in r["items"]] for r in seeded.restaurants]
    world.customers = seeded.customers
    world.driver_ids = [f"drv_{region}_{run_id}n{d.index:05d}" for d in world.drivers]
    places = [
        (rid, plan.lng, plan.lat, int(plan.prep_median_s))
        for rid, plan in zip(world.restaurant_ids, world.restaurants, strict=True)
    ]
    drivers = [
        (did, f"Sim driver {d.index}", d.vehicle, d.rating, d.acceptance_rate, region, d.lng, d.lat)
        for did, d in zip(world.driver_ids, world.drivers, strict=True)
    ]
    async with shards.connection(region) as conn, conn.transaction():
        cur = conn.cursor()
        await cur.executemany(
            "UPDATE restaurants SET location = ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
            " prep_time_mean_s = %s, delivery_radius_m = %s WHERE restaurant_id = %s",
            [(lng, lat, prep, DELIVERY_RADIUS_M, rid) for rid, lng, lat, prep in places],
        )
        await cur.execute(
            "UPDATE inventory SET quantity = 100000 WHERE item_id = ANY(%s)",
            ([i for menu in world.items for i in menu],),
        )
        await cur.executemany(
            "INSERT INTO drivers (driver_id, name, vehicle_type, rating, acceptance_rate, region,"
            " current_location, location_updated_at) VALUES (%s, %s, %s, %s, %s, %s,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, now())",
            drivers,
        )
    store = open_store(conns.require_redis(), settings)
    await store.register_many(
        [(did, region, VehicleType(d.vehicle)) for did, d in zip(world.driver_ids, world.drivers,
                                                                 strict=True)]
    )  # fmt: skip


async def retire_drivers(conns: Connections, worlds: list[RegionWorld]) -> None:
    """Take the run's drivers off the live map at its end (they go off shift), so that no
    offline monitor, of this run's backend or any other, reassigns what they still hold
    once their apps fall silent. Their orders stay as they were: in flight at the end."""
    redis = conns.require_redis()
    for world in worlds:
        pipe = redis.pipeline(transaction=False)
        for driver_id in world.driver_ids:
            pipe.zrem(keys.heartbeats(world.region), driver_id)
            pipe.zrem(keys.locations(world.region), driver_id)
            pipe.hdel(keys.last_fix(world.region), driver_id)
            pipe.srem(keys.carrying(world.region), driver_id)
            pipe.delete(keys.status(world.region, driver_id),
                        keys.profile(world.region, driver_id),
                        keys.active_orders(world.region, driver_id))  # fmt: skip
        await pipe.execute()
