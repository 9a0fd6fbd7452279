"""Schema work over every shard: migrate, keep partitions ahead, detach old months, delete
the rows past retention."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg

from ontheway.connections import dependency_errors
from ontheway.errors import OnTheWayError
from ontheway.schema.migrate import migrate
from ontheway.schema.partitions import detach_before, ensure_partitions
from ontheway.schema.retention import prune_expired
from ontheway.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
ShardJob = Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]


async def on_every_shard(
    settings: Settings,
    shards: list[str],
    job: ShardJob[T],
) -> dict[str, T]:
    """Run ``job`` on each shard over a connection of its own, shards in parallel."""

    async def one(shard: str) -> T:
        with dependency_errors(f"the orders shard {shard!r}"):
            async with await psycopg.AsyncConnection.connect(
                settings.dsn_for(shard),
                autocommit=True,
                connect_timeout=max(1, round(settings.dependency_timeout_s)),
            ) as conn:
                return await job(conn)

    results = await asyncio.gather(*(one(s) for s in shards))
    return dict(zip(shards, results, strict=True))


async def migrate_shards(settings: Settings, shards: list[str]) -> dict[str, list[str]]:
    """Apply pending migrations, then make sure this and next month's partitions exist."""

    async def job(conn: psycopg.AsyncConnection[Any]) -> list[str]:
        applied = await migrate(conn)
        await ensure_partitions(conn)
        return applied

    return await on_every_shard(settings, shards, job)


async def detach_shards(
    settings: Settings,
    shards: list[str],
    before: date,
) -> dict[str, list[str]]:
    """Detach every month before ``before`` on every shard, for archival."""

    async def job(conn: psycopg.AsyncConnection[Any]) -> list[str]:
        return await detach_before(conn, before)

    return await on_every_shard(settings, shards, job)


async def prune_shards(settings: Settings, shards: list[str]) -> dict[str, dict[str, int] | None]:
    """Delete the rows past retention on every shard: per shard, the rows deleted per table
    (None: another pruner was at work on it)."""

    async def job(conn: psycopg.AsyncConnection[Any]) -> dict[str, int] | None:
        return await prune_expired(conn, settings, datetime.now(UTC))

    return await on_every_shard(settings, shards, job)


async def prune_every(settings: Settings, shards: list[str], interval_s: float = 3600.0) -> None:
    """``prune_shards`` now and every ``interval_s``, for as long as the process runs; a shard
    that is down is logged and tried again next round."""
    while True:
        for shard in shards:
            try:
                deleted = (await prune_shards(settings, [shard]))[shard]
            except OnTheWayError as exc:
                log.warning("retention on shard %s not applied: %s", shard, exc.message)
                continue
            except Exception:  # logged and tried again next round; nothing else depends on it
                log.exception("retention on shard %s failed", shard)
                continue
            if deleted and any(deleted.values()):
                log.info("retention on shard %s: deleted %s", shard, deleted)
        await asyncio.sleep(interval_s)
