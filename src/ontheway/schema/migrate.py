"""Versioned SQL migrations (``sql/NNNN_name.sql``), applied in order to every shard.

Each migration runs in its own transaction and is recorded with its checksum in
``schema_migrations``; a shard that is already current is left alone, and an applied file
that was edited afterwards is refused rather than silently skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from ontheway.errors import ConfigurationError

# Any constant works; it keeps two migrating processes from interleaving on one shard.
_LOCK_KEY = 0x0_7E_4A_1


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version (the file name without .sql), text and checksum."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def packaged_migrations() -> list[Migration]:
    """The migrations shipped in the package, in order."""
    folder = resources.files("ontheway.schema") / "sql"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def migrate(
    conn: psycopg.AsyncConnection[Any], migrations: list[Migration] | None = None
) -> list[str]:
    """Apply the migrations a shard lacks; return the versions applied (empty if current)."""
    pending_list = migrations if migrations is not None else packaged_migrations()
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version, checksum FROM schema_migrations")
        applied = {str(v): str(c) for v, c in await cur.fetchall()}
        done: list[str] = []
        for migration in pending_list:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise ConfigurationError(
                        f"migration {migration.version} was changed after it was applied; "
                        "write a new migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql.encode())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                    (migration.version, migration.checksum),
                )
            done.append(migration.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
