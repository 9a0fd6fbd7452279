"""The slow path: positions to PostgreSQL, off the hot path.

``HistoryWriter`` listens to the ingest: every applied fix is buffered in memory, and a
background task writes the buffer to ``driver_location_history`` (partitioned by day) with COPY,
one batch per shard every ``fleet_history_flush_s``. Each driver's latest fix is also kept, and
written to ``drivers.current_location`` every ``fleet_slow_path_interval_s`` (so at most once a
minute per driver) in one UPDATE per shard. Day partitions are created ahead and dropped past
``fleet_history_retention_days``.

History is for analytics, not for the live state: when a shard is down the buffer is kept up
to ``MAX_BUFFERED`` fixes and then the oldest are dropped (and counted), so the API never grows
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ontheway import tasks
from ontheway.connections import Connections, dependency_errors
from ontheway.errors import OnTheWayError
from ontheway.fleet.model import Fix
from ontheway.regions import Catalog
from ontheway.settings import Settings

log = logging.getLogger(__name__)

TABLE = "driver_location_history"
MAX_BUFFERED = 1_000_000
PARTITION_CHECK_S = 3600.0


def partition_name(day: date) -> str:
    """One day's partition, e.g. ``driver_location_history_d20261125``."""
    return f"{TABLE}_d{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The day of a partition name (None for other tables)."""
    prefix = f"{TABLE}_d"
    if not name.startswith(prefix):
        return None
    try:
        return datetime.strptime(name[len(prefix) :], "%Y%m%d").date()
    except ValueError:
        return None


def expired_partitions(names: Sequence[str], today: date, retention_days: int) -> list[str]:
    """The partitions whose whole day lies before the retention window."""
    oldest = today - timedelta(days=retention_days)
    return sorted(n for n in names if (day := partition_day(n)) is not None and day < oldest)


async def ensure_day_partitions(conn: psycopg.AsyncConnection[Any], today: date) -> None:
    """Create yesterday's, today's and tomorrow's partitions (a fix may be minutes old)."""
    for offset in (-1, 0, 1):
        day = today + timedelta(days=offset)
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
            ).format(
                sql.Identifier(partition_name(day)),
                sql.Identifier(TABLE),
                sql.Literal(datetime.combine(day, datetime.min.time(), UTC)),
                sql.Literal(datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)),
            )
        )


async def drop_expired_partitions(
    conn: psycopg.AsyncConnection[Any], today: date, retention_days: int
) -> list[str]:
    """Drop the day partitions past retention; return their names."""
    cur = await conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass",
        (TABLE,),
    )
    names = [str(row[0]) for row in await cur.fetchall()]
    dropped = expired_partitions(names, today, retention_days)
    for name in dropped:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    return dropped


@dataclass
class HistoryStats:
    written: int = 0
    dropped: int = 0
    drivers_updated: int = 0


class HistoryWriter:
    """Buffers applied fixes and writes them to each region's shard in batches."""

    def __init__(self, conns: Connections, catalog: Catalog, settings: Settings) -> None:
        self.conns = conns
        self.catalog = catalog
        self.flush_s = settings.fleet_history_flush_s
        self.slow_path_s = settings.fleet_slow_path_interval_s
        self.retention_days = settings.fleet_history_retention_days
        self.stats = HistoryStats()
        self._buffer: list[Fix] = []
        self._latest: dict[str, Fix] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._partitions_checked: dict[str, tuple[date, float]] = {}

    def on_applied(self, fixes: Sequence[Fix]) -> None:
        """The ingest's listener: remember the fixes (no I/O here)."""
        self._buffer.extend(fixes)
        if len(self._buffer) > MAX_BUFFERED:
            excess = len(self._buffer) - MAX_BUFFERED
            del self._buffer[:excess]
            self.stats.dropped += excess
        for fix in fixes:
            self._latest[fix.driver_id] = fix

    def start(self) -> None:
        """Start the two periodic writers."""
        self._tasks = [
            asyncio.create_task(self._every(self.flush_s, self.write_history), name="history"),
            asyncio.create_task(self._every(self.slow_path_s, self.write_current), name="current"),
        ]

    async def aclose(self) -> None:
        """Stop, writing what is buffered once more."""
        await tasks.stop(self._tasks)
        with contextlib.suppress(OnTheWayError):
            await self.write_history()
            await self.write_current()

    async def _every(self, period_s: float, write: Any) -> None:
        while True:
            await asyncio.sleep(period_s)
            try:
                await write()
            except OnTheWayError as exc:
                log.warning("fleet history: %s (retrying)", exc.message)
            except Exception:  # logged and retried next period; the live state is unaffected
                log.exception("fleet history failed (retrying)")

    def _by_shard(self, fixes: Sequence[Fix]) -> dict[str, list[Fix]]:
        grouped: dict[str, list[Fix]] = defaultdict(list)
        for fix in fixes:
            grouped[self.catalog.shard_for(fix.region)].append(fix)
        return grouped

    async def write_history(self) -> int:
        """COPY the buffered fixes to their shards; on failure they go back to the buffer."""
        taken, self._buffer = self._buffer, []
        pending = list(self._by_shard(taken).items())
        written = 0
        for index, (shard, fixes) in enumerate(pending):
            try:
                await self._copy(shard, fixes)
            except OnTheWayError:
                # This shard and the ones not tried yet go back, ahead of newer fixes.
                self._buffer[:0] = [fix for _, rest in pending[index:] for fix in rest]
                raise
            written += len(fixes)
            self.stats.written += len(fixes)
        return written

    async def _copy(self, shard: str, fixes: list[Fix]) -> None:
        with dependency_errors(f"the shard {shard!r}"):
            async with self.conns.pool(shard).connection() as conn:
                await self._partitions(shard, conn)
                async with (
                    conn.cursor() as cur,
                    cur.copy(
                        f"COPY {TABLE} (driver_id, region, recorded_at, location) FROM STDIN"
                    ) as copy,
                ):
                    for fix in fixes:
                        await copy.write_row(
                            (
                                fix.driver_id,
                                fix.region,
                                datetime.fromtimestamp(fix.timestamp, UTC),
                                f"SRID=4326;POINT({fix.lng} {fix.lat})",
                            )
                        )

    async def _partitions(self, shard: str, conn: psycopg.AsyncConnection[Any]) -> None:
        today = datetime.now(UTC).date()
        checked = self._partitions_checked.get(shard)
        if checked and checked[0] == today and time.monotonic() - checked[1] < PARTITION_CHECK_S:
            return
        await ensure_day_partitions(conn, today)
        dropped = await drop_expired_partitions(conn, today, self.retention_days)
        if dropped:
            log.info("fleet history: dropped %s on %s", ", ".join(dropped), shard)
        await conn.commit()
        self._partitions_checked[shard] = (today, time.monotonic())

    async def write_current(self) -> int:
        """Write each driver's latest position to ``drivers`` (one UPDATE per shard)."""
        taken, self._latest = self._latest, {}
        updated = 0
        for shard, fixes in self._by_shard(list(taken.values())).items():
            with dependency_errors(f"the shard {shard!r}"):
                async with self.conns.pool(shard).connection() as conn:
                    cur = await conn.execute(
                        "UPDATE drivers d SET current_location ="
                        " ST_SetSRID(ST_MakePoint(v.lng, v.lat), 4326)::geography,"
                        " location_updated_at = to_timestamp(v.ts), region = v.region"
                        " FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::float8[],"
                        " %s::text[]) AS v(driver_id, lat, lng, ts, region)"
                        " WHERE d.driver_id = v.driver_id"
                        " AND (d.location_updated_at IS NULL"
                        " OR d.location_updated_at < to_timestamp(v.ts))",
                        (
                            [f.driver_id for f in fixes],
                            [f.lat for f in fixes],
                            [f.lng for f in fixes],
                            [f.timestamp for f in fixes],
                            [f.region for f in fixes],
                        ),
                    )
                    updated += cur.rowcount
        self.stats.drivers_updated += updated
        return updated
