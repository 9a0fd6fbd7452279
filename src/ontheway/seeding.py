"""The ``seed`` command's wiring: connections, the region's shard, the seed itself."""

from __future__ import annotations

from typing import Any

from ontheway.connections import Connections
from ontheway.orders.seed import seed_region
from ontheway.orders.store import ShardAccess
from ontheway.regions import load_catalog
from ontheway.settings import Settings


async def seed_command(
    settings: Settings, region_id: str, *, restaurants: int, customers: int, drivers: int, seed: int
) -> dict[str, Any]:
    """Seed one region and return the ids created."""
    catalog = load_catalog(settings.region_catalog)
    region = catalog.get(region_id)
    conns = await Connections.open(settings, shards=[catalog.shard_for(region_id)], pool_max=2)
    try:
        result = await seed_region(
            ShardAccess(conns, catalog),
            region,
            restaurants=restaurants,
            customers=customers,
            drivers=drivers,
            seed=seed,
        )
    finally:
        await conns.close()
    return result.to_json()
