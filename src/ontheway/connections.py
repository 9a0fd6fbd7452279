"""Connections to the servers: one pool per PostgreSQL shard, Redis, FalkorDB.

Opened once at start-up (the API's lifespan, a worker's main) from the settings and closed at
the end. ``dependency_errors`` is the one place where client-library errors become ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
import redis.asyncio as aioredis
import redis.exceptions
from falkordb.asyncio import FalkorDB
from psycopg.rows import dict_row

from ontheway.errors import ConfigurationError, DependencyUnavailable
from ontheway.settings import Settings


@contextmanager
def dependency_errors(dependency: str) -> Iterator[None]:
    """Turn a client library's connection errors into ``DependencyUnavailable``."""
    try:
        yield
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise DependencyUnavailable(f"{dependency} is unavailable: {_why(exc)}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise DependencyUnavailable(f"{dependency} is unavailable: {_why(exc)}") from exc
    except (TimeoutError, OSError) as exc:
        raise DependencyUnavailable(f"{dependency} is unavailable: {_why(exc)}") from exc


def _why(exc: BaseException) -> str:
    """The error's message, or its kind when it has none (a timeout often has none)."""
    return str(exc) or f"{type(exc).__name__} (no answer in time)"


def redis_client(url: str, timeout_s: float, **kwargs: Any) -> aioredis.Redis:
    """A Redis client whose calls fail within ``timeout_s`` instead of hanging."""
    return aioredis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **kwargs
    )


@dataclass
class GraphStore:
    """The FalkorDB client, created on first use so that a graph server that is down at
    start-up makes requests fail with 503 instead of stopping the process."""

    url: str
    timeout_s: float
    _db: FalkorDB | None = field(default=None, init=False)
    _creating: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def db(self) -> FalkorDB:
        """Return the client, connecting on first use. Concurrent first uses make one
        client (a second one, overwritten, would leave its connections open)."""
        if self._db is not None:
            return self._db
        async with self._creating:
            if self._db is None:
                with dependency_errors("FalkorDB"):
                    # The client probes for a cluster with a blocking call: off the loop.
                    self._db = await asyncio.to_thread(
                        FalkorDB.from_url,
                        self.url,
                        socket_timeout=self.timeout_s,
                        socket_connect_timeout=self.timeout_s,
                    )
            return self._db

    async def aclose(self) -> None:
        """Close the client and its connection pool (the client's own aclose leaves the
        pool that ``from_url`` made open)."""
        if self._db is not None:
            await self._db.aclose()
            await self._db.connection.connection_pool.disconnect()
            self._db = None


def _plan_cache_option(settings: Settings) -> dict[str, str]:
    """The pooled connections' ``plan_cache_mode`` (a startup option). Generic plans: a
    statement psycopg has prepared (its fifth run on a connection) is not planned again at
    every run. PostgreSQL otherwise re-plans the ones whose custom plan prunes partitions
    at planning time (an order read by id and month: 0.34 ms of planning for 0.07 ms of
    execution); a generic plan prunes them when it starts instead."""
    mode = settings.pg_plan_cache_mode
    return {"options": f"-c plan_cache_mode={mode}"} if mode else {}


@dataclass
class Connections:
    """Every connection of one process, by dependency."""

    settings: Settings
    shards: dict[str, psycopg_pool.AsyncConnectionPool] = field(default_factory=dict)
    redis: aioredis.Redis | None = None
    graphs: GraphStore | None = None

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        shards: list[str],
        pool_max: int = 10,
    ) -> Connections:
        """Open pools without waiting for the servers: a server that is down gives 503s."""
        timeout = settings.dependency_timeout_s
        conns = cls(settings)
        for shard in shards:
            pool = psycopg_pool.AsyncConnectionPool(
                settings.dsn_for(shard),
                min_size=1,
                max_size=pool_max,
                open=False,
                timeout=timeout,
                # Autocommit: a statement alone is one round trip, not BEGIN, it and COMMIT
                # (a read of one order cost three); statements that must commit together
                # go in ``conn.transaction()``.
                kwargs={"connect_timeout": max(1, round(timeout)), "autocommit": True}
                | _plan_cache_option(settings),
                name=f"shard-{shard}",
            )
            await pool.open(wait=False)
            conns.shards[shard] = pool
        conns.redis = redis_client(settings.require_redis_url(), timeout)
        conns.graphs = GraphStore(settings.require_falkordb_url(), timeout)
        return conns

    def pool(self, shard: str) -> psycopg_pool.AsyncConnectionPool:
        """The pool of one shard."""
        try:
            return self.shards[shard]
        except KeyError:
            raise ConfigurationError(f"no connection pool for shard {shard!r}") from None

    @asynccontextmanager
    async def shard_connection(self, shard: str) -> AsyncIterator[Any]:
        """A connection of one shard that returns rows as dicts; errors become 503."""
        with dependency_errors(f"the orders shard {shard!r}"):
            async with self.pool(shard).connection() as conn:
                default = conn.row_factory
                conn.row_factory = dict_row  # type: ignore[assignment]
                try:
                    yield conn
                finally:
                    conn.row_factory = default

    def require_redis(self) -> aioredis.Redis:
        if self.redis is None:
            raise ConfigurationError("Redis is not connected")
        return self.redis

    async def close(self) -> None:
        """Close every pool and client."""
        for pool in self.shards.values():
            await pool.close()
        self.shards.clear()
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if self.graphs is not None:
            await self.graphs.aclose()
