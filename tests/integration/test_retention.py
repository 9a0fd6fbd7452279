"""Retention: rows past their settings' days are deleted from a shard, in batches, the recent
ones kept; one pruner per shard at a time; ``ontheway db prune`` does it on every shard."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from ontheway.schema import retention
from ontheway.schema.retention import RETAINED, prune_expired
from ontheway.settings import Settings
from tests.helpers import run_cli


@pytest.fixture
async def shard(settings: Settings) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(
        settings.dsn_for("americas"), autocommit=True
    ) as conn:
        yield conn


async def add_rows(conn: psycopg.AsyncConnection[Any], tag: str, at: datetime, n: int) -> None:
    """``n`` rows in each retained table, stamped ``at``, their ids marked with ``tag``."""
    for i in range(n):
        key, event = f"{tag}_{i}", uuid.uuid4()
        await conn.execute(
            "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES (%s, %s, %s)",
            (tag, event, at),
        )
        await conn.execute(
            "INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id, created_at)"
            " VALUES (%s, %s, 'h', 'ord_sf_x', %s)",
            (tag, key, at),
        )
        await conn.execute(
            "INSERT INTO notifications (notification_id, recipient_id, order_id, kind, title,"
            " body, created_at) VALUES (%s, %s, 'ord_sf_x', 'test', 't', 'b', %s)",
            (key, tag, at),
        )
        await conn.execute(
            "INSERT INTO eta_estimates (order_id, event_id, stage, made_at, baseline_s,"
            " predicted_s, low_s, high_s, estimated_delivery, method, features)"
            " VALUES (%s, %s, 'placement', %s, 1, 1, 1, 1, %s, 'test', '{}')",
            (key, event, at, at),
        )


WHERE_TAGGED = {
    "processed_events": "consumer = %s",
    "idempotency_keys": "customer_id = %s",
    "notifications": "recipient_id = %s",
    "eta_estimates": "order_id LIKE %s || '\\_%%'",
}


async def remove_rows(conn: psycopg.AsyncConnection[Any], tag: str) -> None:
    for table, condition in WHERE_TAGGED.items():
        await conn.execute(f"DELETE FROM {table} WHERE {condition}", (tag,))


async def count_rows(conn: psycopg.AsyncConnection[Any], tag: str) -> dict[str, int]:
    found = {}
    for table, condition in WHERE_TAGGED.items():
        cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE {condition}", (tag,))
        row = await cur.fetchone()
        found[table] = row[0] if row else -1
    return found


async def test_rows_past_retention_are_deleted_in_batches_and_recent_ones_kept(
    shard: psycopg.AsyncConnection[Any], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = f"ret_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    longest = max(r.days(settings) for r in RETAINED)
    old, recent = f"{tag}_old", f"{tag}_new"
    await add_rows(shard, old, now - timedelta(days=longest + 1), 7)
    await add_rows(shard, recent, now - timedelta(days=1), 2)
    monkeypatch.setattr(retention, "BATCH", 3)  # 7 old rows per table: three batches
    deleted = await prune_expired(shard, settings, now)
    assert deleted is not None
    assert all(deleted[r.table] >= 7 for r in RETAINED), deleted
    assert await count_rows(shard, old) == dict.fromkeys(deleted, 0)
    assert await count_rows(shard, recent) == dict.fromkeys(deleted, 2)
    # Each table has its own retention: 8 days old is past the keys', not the estimates'.
    week_old = f"{tag}_week"
    await add_rows(shard, week_old, now - timedelta(days=8), 1)
    await prune_expired(shard, settings, now)
    assert await count_rows(shard, week_old) == {
        "processed_events": 0,
        "idempotency_keys": 0,
        "notifications": 1,
        "eta_estimates": 1,
    }
    for tagged in (recent, week_old):  # leave nothing behind
        await remove_rows(shard, tagged)


async def test_one_pruner_per_shard_at_a_time(
    shard: psycopg.AsyncConnection[Any], settings: Settings
) -> None:
    async with await psycopg.AsyncConnection.connect(
        settings.dsn_for("americas"), autocommit=True
    ) as other:
        await other.execute("SELECT pg_advisory_lock(%s)", (retention.LOCK,))
        assert await prune_expired(shard, settings, datetime.now(UTC)) is None
        await other.execute("SELECT pg_advisory_unlock(%s)", (retention.LOCK,))
    assert await prune_expired(shard, settings, datetime.now(UTC)) is not None


def test_db_prune_reports_every_shard() -> None:
    done = run_cli("db", "prune")
    assert done.returncode == 0, done.stderr
    for shard in ("americas", "europe", "asia_pacific"):
        assert f"{shard}: deleted processed_events" in done.stdout.replace("\n", " ")
