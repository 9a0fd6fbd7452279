"""Retention: the rows that matter only for a while, deleted from a shard once older than
their settings' days. Orders, payments and events are kept (old months are detached for
archival instead: ``db detach``); these grow with every event and serve no one after:

- ``processed_events``: a consumer's record that it handled an event (deduplication). An
  event is redelivered within minutes (pending entries are claimed after ``claim_idle_s``,
  dead-lettered after a few failures), so a week is ample.
- ``idempotency_keys``: a retry of a placement after that returns a new order.
- ``notifications``: a recipient's inbox.
- ``eta_estimates``: the log of every estimate made (the ETA model learns from recent ones).

Deleted in batches of ``BATCH`` rows, each its own statement (no long transaction, no long
lock), by the API every hour (``prune_every``) and by ``ontheway db prune``. One pruner
per shard at a time: the others skip it (an advisory lock)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from ontheway.settings import Settings

BATCH = 10_000
LOCK = 0x6F7477_7072  # "otw" "pr": the pruner's advisory lock on a shard


@dataclass(frozen=True)
class Retained:
    """A table whose rows are deleted ``days`` after ``column``."""

    table: str
    column: str
    setting: str

    def days(self, settings: Settings) -> float:
        days: float = getattr(settings, self.setting)
        return days


RETAINED = (
    Retained("processed_events", "processed_at", "retention_processed_events_days"),
    Retained("idempotency_keys", "created_at", "retention_idempotency_keys_days"),
    Retained("notifications", "created_at", "retention_notifications_days"),
    Retained("eta_estimates", "made_at", "retention_eta_estimates_days"),
)


async def prune_expired(
    conn: psycopg.AsyncConnection[Any], settings: Settings, now: datetime
) -> dict[str, int] | None:
    """Delete the rows past retention on this shard; the rows deleted per table, or None
    when another pruner holds the shard. ``conn`` in autocommit, with tuple rows."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS mine", (LOCK,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    try:
        deleted = {}
        for retained in RETAINED:
            before = now - timedelta(days=retained.days(settings))
            deleted[retained.table] = await _prune(conn, retained, before)
        return deleted
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK,))


async def _prune(conn: psycopg.AsyncConnection[Any], retained: Retained, before: datetime) -> int:
    statement = sql.SQL(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s))"
    ).format(table=sql.Identifier(retained.table), column=sql.Identifier(retained.column))
    deleted = 0
    while True:
        cur = await conn.execute(statement, (before, BATCH))
        deleted += cur.rowcount
        if cur.rowcount < BATCH:
            return deleted
