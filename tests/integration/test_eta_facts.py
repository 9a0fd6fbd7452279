"""A region's facts for the promise at placement (its orders waiting and under way, its recent
time to assign) are read once per few seconds and region, not at every placement."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ontheway.eta.facts import RegionFacts, RestaurantFacts
from ontheway.orders.store import ShardAccess

KITCHEN = RestaurantFacts(prep_recent_s=600.0, prep_n=3, queue=1)


class CountedReads:
    """Connections to the sf shard for any region name, counted."""

    def __init__(self, shards: ShardAccess, fail: bool = False) -> None:
        self.shards = shards
        self.reads = 0
        self.fail = fail

    @asynccontextmanager
    async def __call__(self, region: str) -> AsyncIterator[Any]:
        self.reads += 1
        if self.fail:
            raise ConnectionError("shard down")
        async with self.shards.connection("sf") as conn:
            yield conn


async def add_waiting(shards: ShardAccess, region: str, n: int, *, assigned: bool = False) -> None:
    now = datetime.now(UTC)
    async with shards.connection("sf") as conn:
        for _ in range(n):
            await conn.execute(
                "INSERT INTO order_timings (order_id, region, restaurant_id, placed_at,"
                " assigned_at) VALUES (%s, %s, 'rest_x', %s, %s)",
                (f"ord_{region}_{uuid.uuid4().hex[:12]}", region, now - timedelta(minutes=5),
                 now - timedelta(minutes=4) if assigned else None),
            )  # fmt: skip


@pytest.fixture
async def region(shards: ShardAccess, uid: str) -> AsyncIterator[str]:
    name = f"facts_{uid}"
    yield name
    async with shards.connection("sf") as conn:
        await conn.execute("DELETE FROM order_timings WHERE region = %s", (name,))


async def test_a_regions_facts_are_read_once_per_ttl_and_shared_by_concurrent_placements(
    shards: ShardAccess, region: str
) -> None:
    await add_waiting(shards, region, 2)
    await add_waiting(shards, region, 1, assigned=True)
    reads = CountedReads(shards)
    facts = RegionFacts(time_scale=1.0, ttl_s=60.0)
    now = datetime.now(UTC)
    got = await asyncio.gather(*(facts.add_to(KITCHEN, region, now, reads) for _ in range(10)))
    assert reads.reads == 1
    first = got[0]
    assert (first.region_waiting, first.region_active) == (2, 1)
    assert first.assign_recent_s == pytest.approx(60.0)
    # The restaurant's own facts are kept as given.
    assert (first.prep_recent_s, first.prep_n, first.queue) == (600.0, 3, 1)

    await add_waiting(shards, region, 3)  # within the TTL: not seen yet
    again = await facts.add_to(KITCHEN, region, datetime.now(UTC), reads)
    assert (reads.reads, again.region_waiting) == (1, 2)
    # Another region is read on its own.
    other = await facts.add_to(KITCHEN, region + "_other", datetime.now(UTC), reads)
    assert (reads.reads, other.region_waiting) == (2, 0)

    # Past the TTL (here none), the next placement reads them again.
    fresh = RegionFacts(time_scale=1.0, ttl_s=0.0)
    seen = await fresh.add_to(KITCHEN, region, datetime.now(UTC), reads)
    assert (reads.reads, seen.region_waiting) == (3, 5)


async def test_a_failed_read_fails_its_placements_and_is_tried_again(
    shards: ShardAccess, region: str
) -> None:
    await add_waiting(shards, region, 1)
    facts = RegionFacts(time_scale=1.0, ttl_s=60.0)
    down = CountedReads(shards, fail=True)
    with pytest.raises(ConnectionError):
        await facts.add_to(KITCHEN, region, datetime.now(UTC), down)
    up = CountedReads(shards)
    got = await facts.add_to(KITCHEN, region, datetime.now(UTC), up)
    assert (up.reads, got.region_waiting) == (1, 1)
