"""Monthly partitions of ``orders``, ``payments`` and ``order_events``.

The partitions of the current and the next month are created ahead (at migration, at API
start and hourly while it runs). Archival detaches whole months: the events and payments
first, since they reference the orders of the same month.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import tuple_row

log = logging.getLogger(__name__)

# Referencing tables first: that is the order in which a month can be detached.
PARTITIONED_TABLES = ("order_events", "payments", "orders")


def month_start(day: date) -> date:
    """The first day of the month of ``day``."""
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after the month of ``day``."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    """Name of one month's partition, e.g. ``orders_y2026m11``."""
    return f"{table}_y{month.year:04d}m{month.month:02d}"


async def ensure_partitions(
    conn: psycopg.AsyncConnection[Any], now: datetime | None = None, months_ahead: int = 1
) -> list[str]:
    """Create the partitions of this month and the next ``months_ahead``; return the new ones."""
    today = (now or datetime.now(UTC)).date()
    created: list[str] = []
    for offset in range(months_ahead + 1):
        start = add_months(month_start(today), offset)
        end = add_months(start, 1)
        for table in reversed(PARTITIONED_TABLES):
            name = partition_name(table, start)
            cur = conn.cursor(row_factory=tuple_row)
            row = await (await cur.execute("SELECT to_regclass(%s)", (name,))).fetchone()
            if row is not None and row[0] is not None:
                continue
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
                ).format(
                    sql.Identifier(name),
                    sql.Identifier(table),
                    sql.Literal(f"{start.isoformat()} 00:00:00+00"),
                    sql.Literal(f"{end.isoformat()} 00:00:00+00"),
                )
            )
            created.append(name)
    return created


async def attached_months(conn: psycopg.AsyncConnection[Any]) -> list[date]:
    """The months that have an attached ``orders`` partition, oldest first."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'orders'::regclass ORDER BY c.relname"
    )
    months = []
    for (name,) in await cur.fetchall():
        suffix = str(name).rsplit("_y", 1)[-1]
        months.append(date(int(suffix[:4]), int(suffix[5:7]), 1))
    return months


async def detach_before(conn: psycopg.AsyncConnection[Any], before: date) -> list[str]:
    """Detach (not drop) every month before ``before``; the tables stay for archival."""
    detached: list[str] = []
    for month in await attached_months(conn):
        if month >= month_start(before):
            continue
        async with conn.transaction():
            for table in PARTITIONED_TABLES:
                name = partition_name(table, month)
                await conn.execute(
                    sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                )
                detached.append(name)
    return detached


async def keep_partitions_ahead(pools: dict[str, Any], interval_s: float = 3600.0) -> None:
    """Create next month's partitions on every shard, now and every ``interval_s``, for as
    long as the process runs. A shard that is down is logged and tried again next round."""
    while True:
        for shard, pool in pools.items():
            try:
                async with pool.connection() as conn:
                    await ensure_partitions(conn)
            except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
                log.warning("partitions of shard %s not checked: %s", shard, exc)
        await asyncio.sleep(interval_s)
