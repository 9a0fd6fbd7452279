from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ontheway.api.live import KPI_SQL
from ontheway.orders.ids import created_span, new_id
from ontheway.orders.lifecycle import EventType
from ontheway.orders.pricing import money
from ontheway.orders.queries import (
    ACTIVE_STATUSES,
    DRIVER_ACTIVE_SQL,
    RESTAURANT_ACTIVE_SQL,
    SUMMARY_SQL,
    OrderQueries,
)
from ontheway.orders.service import OrderService
from ontheway.orders.store import ORDER_BY_ID, ShardAccess
from ontheway.schema.partitions import (
    PARTITIONED_TABLES,
    add_months,
    detach_before,
    ensure_partitions,
    month_start,
    partition_name,
)
from tests.helpers import order_for


async def test_the_customer_summary_counts_orders_per_day(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    customer = f"user_{uid}"
    delivered, _ = await orders.place(customer, order_for(sf["restaurants"][1]))
    cancelled, _ = await orders.place(customer, order_for(sf["restaurants"][2]))
    driver = sf["drivers"][0]["driver_id"]
    oid = delivered["order_id"]
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    for event in (
        EventType.DRIVER_ARRIVED_RESTAURANT,
        EventType.ORDER_PICKED_UP,
        EventType.ORDER_DELIVERED,
    ):
        await orders.transition(oid, event, driver)
    await orders.transition(cancelled["order_id"], EventType.ORDER_CANCELLED, customer)
    [today], unavailable = await queries.customer_summary(customer, 30)
    assert unavailable == []
    assert today["order_date"] == datetime.now(UTC).date().isoformat()
    assert (today["total_orders"], today["delivered"], today["cancelled"]) == (2, 1, 1)
    mean = (Decimal(delivered["total"]) + Decimal(cancelled["total"])) / 2
    assert today["avg_order_value"] == str(money(mean))
    assert today["avg_delivery_time_mins"] is not None


async def test_restaurant_and_driver_lists_hold_only_active_orders(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][3]
    kept, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    gone, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    await orders.transition(gone["order_id"], EventType.ORDER_CANCELLED, f"user_{uid}")
    active = {o["order_id"] for o in await queries.restaurant_active(restaurant["restaurant_id"])}
    assert kept["order_id"] in active and gone["order_id"] not in active
    driver = sf["drivers"][1]["driver_id"]
    await orders.transition(kept["order_id"], EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    mine = {o["order_id"] for o in await queries.driver_active(driver, "sf")}
    assert kept["order_id"] in mine


@pytest.mark.parametrize(
    ("sql", "params", "index"),
    [
        (
            SUMMARY_SQL,
            {"customer": "user_x", "since": datetime(2026, 1, 1, tzinfo=UTC), "regions": None},
            "customer_id_created_at",
        ),
        (
            SUMMARY_SQL,
            {"customer": "user_x", "since": datetime(2026, 1, 1, tzinfo=UTC), "regions": ["sf"]},
            "customer_id_created_at",
        ),
        (RESTAURANT_ACTIVE_SQL, ("rest_sf_x", ACTIVE_STATUSES), "restaurant_id_status"),
        (DRIVER_ACTIVE_SQL, ("drv_x", ACTIVE_STATUSES), "driver_id_status"),
    ],
)
async def test_each_list_query_is_served_by_an_index(
    shards: ShardAccess,
    sql: str,
    params: tuple[Any, ...] | dict[str, Any],
    index: str,
) -> None:
    async with shards.connection("sf") as conn, conn.transaction():
        # Test tables are small enough for a sequential scan to win; forbid it to see
        # which index the planner uses when the table is large.
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    assert "Index" in plan and index in plan, plan
    assert "Seq Scan on orders" not in plan


async def test_an_order_read_by_id_probes_only_its_months_partition(
    shards: ShardAccess,
) -> None:
    """The id's time bounds ``created_at``: one monthly partition of ``orders`` and of the
    payments read beside it, not every month the shard keeps."""
    order_id = new_id("ord", "sf")
    this_month = month_start(datetime.now(UTC).date())
    async with shards.connection("sf") as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute("EXPLAIN " + ORDER_BY_ID, (order_id, *created_span(order_id)))
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    assert f"on {partition_name('orders', this_month)} o" in plan, plan
    assert partition_name("orders", add_months(this_month, 1)) not in plan, plan


async def test_old_months_are_detached_for_archival_and_recent_ones_kept(
    shards: ShardAccess,
) -> None:
    old = date(2019, 3, 1)
    async with shards.connection("sf") as conn:
        created = await ensure_partitions(conn, datetime(2019, 3, 15, tzinfo=UTC), months_ahead=0)
        assert partition_name("orders", old) in created
        detached = await detach_before(conn, date(2019, 4, 1))
        assert sorted(detached) == sorted(
            partition_name(t, old) for t in ("orders", "payments", "order_events")
        )
        for name in detached:  # archived elsewhere in real life; dropped here
            await conn.execute(f"DROP TABLE {name}")
        now = datetime.now(UTC).date().replace(day=1)
        cur = await conn.execute("SELECT to_regclass(%s) AS t", (partition_name("orders", now),))
        row = await cur.fetchone()
        assert row is not None and row["t"] is not None


async def test_events_are_stored_compressed_with_lz4_in_every_partition(
    orders: OrderService, shards: ShardAccess, sf: dict[str, Any], uid: str
) -> None:
    """Migration 0013: an ORDER_PLACED's data (the order and its estimate, over the 2 kB at
    which PostgreSQL compresses) is stored with lz4, in this month's partition and in one
    made later; the unused index on seq alone is gone."""
    placed, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][1]))
    async with shards.connection("sf") as conn:
        cur = await conn.execute(
            "SELECT 'lz4' = ANY (enumvals) AS lz4 FROM pg_settings"
            " WHERE name = 'default_toast_compression'"
        )
        # The stack's PostgreSQL (Debian's) is built with lz4.
        assert await cur.fetchone() == {"lz4": True}
        cur = await conn.execute(
            "SELECT pg_column_compression(data) AS method FROM order_events"
            " WHERE order_id = %s AND event_type = 'ORDER_PLACED'",
            (placed["order_id"],),
        )
        assert await cur.fetchone() == {"method": "lz4"}
        await ensure_partitions(conn, datetime(2018, 5, 15, tzinfo=UTC), months_ahead=0)
        later = partition_name("order_events", date(2018, 5, 1))
        try:
            cur = await conn.execute(
                "SELECT attcompression AS c FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attname = 'data'",
                (later,),
            )
            assert await cur.fetchone() == {"c": "l"}
        finally:
            for name in await detach_before(conn, date(2018, 6, 1)):
                await conn.execute(f"DROP TABLE {name}")
        cur = await conn.execute("SELECT to_regclass('order_events_seq') AS i")
        assert await cur.fetchone() == {"i": None}


async def attached_to(conn: Any, table: str) -> set[str]:
    """The names of the partitions attached to ``table``."""
    cur = await conn.execute(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass",
        (table,),
    )
    return {row["name"] for row in await cur.fetchall()}


async def test_this_and_next_months_partitions_exist_on_every_shard_and_are_made_once(
    shards: ShardAccess,
) -> None:
    this_month = month_start(datetime.now(UTC).date())
    one_region_per_shard = {shards.catalog.shard_for(r.region): r.region for r in shards.catalog}
    for region in one_region_per_shard.values():
        async with shards.connection(region) as conn:
            for table in PARTITIONED_TABLES:
                for month in (this_month, add_months(this_month, 1)):
                    name = partition_name(table, month)
                    cur = await conn.execute("SELECT to_regclass(%s) AS t", (name,))
                    row = await cur.fetchone()
                    assert row is not None and row["t"] is not None, f"{region}: no {name}"
                    assert name in await attached_to(conn, table), f"{region}: {name} detached"
    # December, so that "the next month" crosses into the next year.
    december, january = date(2099, 12, 1), date(2100, 1, 1)
    made = [partition_name(t, m) for m in (december, january) for t in PARTITIONED_TABLES]
    async with shards.connection("sf") as conn:
        try:
            first = await ensure_partitions(conn, datetime(2099, 12, 31, 23, tzinfo=UTC))
            assert sorted(first) == sorted(made)
            assert await ensure_partitions(conn, datetime(2099, 12, 1, tzinfo=UTC)) == []
            for table in PARTITIONED_TABLES:
                assert {partition_name(table, m) for m in (december, january)} <= (
                    await attached_to(conn, table)
                )
        finally:
            # An attached month cannot be dropped while the others' foreign keys point at
            # it: detach it first, referencing tables first.
            for month in (december, january):
                for table in PARTITIONED_TABLES:
                    name = partition_name(table, month)
                    if name in await attached_to(conn, table):
                        await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")


async def test_the_dashboards_figures_read_the_regions_day_not_the_shards_month(
    shards: ShardAccess,
) -> None:
    params = {"region": "sf", "tz": "America/Los_Angeles", "active": ACTIVE_STATUSES}
    async with shards.connection("sf") as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")  # a large month's plan
        cur = await conn.execute("EXPLAIN " + KPI_SQL, params)
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    # Today's and the last day's orders of the region from (region, created_at); the
    # assignments of the last 15 minutes from the assignment events' own index.
    assert "region_created_at_idx" in plan, plan
    assert "ts_idx" in plan and "Index Cond: (ts >=" in plan, plan
    assert "Seq Scan on orders" not in plan, plan
