"""Health checks of each dependency, shared by ``GET /health`` and ``ontheway stack status``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

import psycopg_pool
import redis.asyncio as aioredis

from ontheway.connections import Connections, GraphStore, dependency_errors
from ontheway.errors import OnTheWayError


@dataclass(frozen=True)
class DependencyState:
    """One dependency's health: ok or not, its version, how long the check took."""

    name: str
    ok: bool
    version: str | None
    latency_ms: float
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _timed(
    name: str,
    timeout_s: float,
    probe: Callable[[], Awaitable[str]],
) -> DependencyState:
    start = time.perf_counter()
    try:
        with dependency_errors(name):
            version = await asyncio.wait_for(probe(), timeout_s)
    except OnTheWayError as exc:
        elapsed = (time.perf_counter() - start) * 1000
        return DependencyState(name, False, None, round(elapsed, 2), exc.message)
    except Exception as exc:  # a health check reports any failure instead of raising it
        elapsed = (time.perf_counter() - start) * 1000
        return DependencyState(name, False, None, round(elapsed, 2), f"{type(exc).__name__}: {exc}")
    elapsed = (time.perf_counter() - start) * 1000
    return DependencyState(name, True, version, round(elapsed, 2))


async def check_shard(
    shard: str,
    pool: psycopg_pool.AsyncConnectionPool,
    timeout_s: float,
) -> DependencyState:
    """Check one PostgreSQL shard: the server answers and PostGIS is enabled."""

    async def probe() -> str:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT current_setting('server_version'), postgis_lib_version()"
            )
            row = await cur.fetchone()
            assert row is not None
            return f"PostgreSQL {row[0]}, PostGIS {row[1]}"

    return await _timed(f"postgres:{shard}", timeout_s, probe)


async def check_redis(client: aioredis.Redis, timeout_s: float) -> DependencyState:
    """Check Redis: it answers PING; report its version."""

    async def probe() -> str:
        await client.ping()
        info = await client.info("server")
        return f"Redis {info['redis_version']}"

    return await _timed("redis", timeout_s, probe)


async def check_falkordb(graphs: GraphStore, timeout_s: float) -> DependencyState:
    """Check FalkorDB: a Cypher query runs; report the module's version."""

    async def probe() -> str:
        db = await graphs.db()
        # A write query: a read-only one fails on a graph that does not exist yet.
        result = await db.select_graph("ontheway_health").query("RETURN 1")
        if result.result_set != [[1]]:
            raise OnTheWayError(f"unexpected answer {result.result_set!r}")
        modules = await db.connection.execute_command("MODULE", "LIST")
        version = next((_module_version(m) for m in modules if _module_name(m) == "graph"), "?")
        return f"FalkorDB {version}"

    return await _timed("falkordb", timeout_s, probe)


def _module_fields(entry: Any) -> dict[str, Any]:
    """MODULE LIST entries are flat [key, value, ...] lists (RESP2) or dicts (RESP3)."""
    if isinstance(entry, dict):
        return entry
    return dict(zip(entry[::2], entry[1::2], strict=True))


def _module_name(entry: Any) -> str:
    return str(_module_fields(entry).get("name", ""))


def _module_version(entry: Any) -> str:
    ver = int(_module_fields(entry).get("ver", 0))
    return f"{ver // 10000}.{ver // 100 % 100}.{ver % 100}"


async def check_all(conns: Connections) -> list[DependencyState]:
    """Check every dependency of this process concurrently."""
    timeout = conns.settings.dependency_timeout_s
    checks: list[Awaitable[DependencyState]] = [
        check_shard(shard, pool, timeout) for shard, pool in sorted(conns.shards.items())
    ]
    if conns.redis is not None:
        checks.append(check_redis(conns.redis, timeout))
    if conns.graphs is not None:
        checks.append(check_falkordb(conns.graphs, timeout))
    return list(await asyncio.gather(*checks))
