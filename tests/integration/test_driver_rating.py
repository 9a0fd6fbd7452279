"""A driver's rating is the mean of its latest ratings, read from an index whatever the
driver's history."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ontheway.notifications.ratings import RECENT_RATINGS, refresh_driver_rating
from ontheway.orders.store import ShardAccess


@pytest.fixture
async def driver(shards: ShardAccess, uid: str) -> AsyncIterator[str]:
    """A driver of its own, rated by a customer of its own (``user_rate_<driver>``)."""
    driver_id = f"drv_sf_rate{uid}"
    customer = f"user_rate_{driver_id}"
    async with shards.connection("sf") as conn:
        await conn.execute("INSERT INTO customers (customer_id) VALUES (%s)", (customer,))
        await conn.execute(
            "INSERT INTO drivers (driver_id, name, vehicle_type, region)"
            " VALUES (%s, 'Rated', 'car', 'sf')",
            (driver_id,),
        )
    yield driver_id
    async with shards.connection("sf") as conn:
        await conn.execute("DELETE FROM ratings WHERE driver_id = %s", (driver_id,))
        await conn.execute("DELETE FROM drivers WHERE driver_id = %s", (driver_id,))
        await conn.execute("DELETE FROM customers WHERE customer_id = %s", (customer,))


async def rate(shards: ShardAccess, driver: str, stars: list[int], start: datetime) -> None:
    async with shards.connection("sf") as conn:
        await conn.execute(
            "INSERT INTO ratings (order_id, customer_id, driver_id, rating, created_at)"
            " SELECT %(driver)s || '_' || n || '_' || %(start)s::text,"
            "  'user_rate_' || %(driver)s, %(driver)s, s, %(start)s + n * interval '1 s'"
            " FROM unnest(%(stars)s::int[]) WITH ORDINALITY AS t(s, n)",
            {"driver": driver, "stars": stars, "start": start},
        )


async def test_a_drivers_rating_is_the_mean_of_its_latest_ratings(
    shards: ShardAccess, driver: str
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # Two bad ratings long ago, then RECENT_RATINGS good ones: the old ones no longer count.
    await rate(shards, driver, [1, 1], start)
    await rate(shards, driver, [5] * RECENT_RATINGS, start + timedelta(days=1))
    async with shards.connection("sf") as conn:
        assert await refresh_driver_rating(conn, driver) == Decimal("5.00")
    await rate(shards, driver, [1], start + timedelta(days=2))
    async with shards.connection("sf") as conn:
        assert await refresh_driver_rating(conn, driver) == Decimal("4.99")  # (499 * 5 + 1) / 500
    # The index gives the latest ratings in order: no reading and sorting every rating of the
    # driver. (A fresh test table has no statistics: the planner is told what a large one
    # would make it choose.)
    async with shards.connection("sf") as conn, conn.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await conn.execute(f"SET LOCAL {setting} = off")
        cur = await conn.execute(
            "EXPLAIN SELECT rating FROM ratings WHERE driver_id = %s"
            " ORDER BY created_at DESC LIMIT %s",
            (driver, RECENT_RATINGS),
        )
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    assert "Scan using ratings_driver_recent" in plan and "Sort" not in plan, plan
