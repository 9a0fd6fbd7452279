"""The ``seed`` command's wiring: the region's shard (restaurants, menus, customers, drivers)
and the fleet's registry of drivers in Redis."""

from __future__ import annotations

from typing import Any

from ontheway.connections import Connections
from ontheway.fleet.model import VehicleType
from ontheway.fleet.service import open_store
from ontheway.orders.seed import seed_region
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, load_catalog
from ontheway.settings import Settings


async def seed_with_fleet(
    conns: Connections,
    catalog: Catalog,
    settings: Settings,
    region_id: str,
    *,
    restaurants: int,
    customers: int,
    drivers: int,
    seed: int,
) -> dict[str, Any]:
    """Seed one region in PostgreSQL and register its drivers with the fleet."""
    result = await seed_region(
        ShardAccess(conns, catalog), catalog.get(region_id), restaurants=restaurants,
        customers=customers, drivers=drivers, seed=seed,
    )  # fmt: skip
    store = open_store(conns.require_redis(), settings)
    await store.register_many(
        [(d["driver_id"], region_id, VehicleType(d["vehicle_type"])) for d in result.drivers]
    )
    return result.to_json()


async def seed_command(
    settings: Settings,
    region_id: str,
    *,
    restaurants: int,
    customers: int,
    drivers: int,
    seed: int,
) -> dict[str, Any]:
    """Seed one region and return the ids created."""
    catalog = load_catalog(settings.region_catalog)
    catalog.get(region_id)
    conns = await Connections.open(settings, shards=[catalog.shard_for(region_id)], pool_max=2)
    try:
        return await seed_with_fleet(
            conns, catalog, settings, region_id, restaurants=restaurants, customers=customers,
            drivers=drivers, seed=seed,
        )  # fmt: skip
    finally:
        await conns.close()
