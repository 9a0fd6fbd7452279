"""The local stack as a whole: PostgreSQL and Redis + FalkorDB under the state directory.

``up`` also writes ``<state_dir>/ontheway.env`` (the shard DSNs, the Redis and FalkorDB URLs,
local mode and a JWT secret generated once), which ``load_settings`` reads and which a shell
may source (``set -a; . .ontheway/ontheway.env; set +a``) to the same values.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from ontheway.connections import Connections
from ontheway.errors import ConfigurationError
from ontheway.health import DependencyState, check_all
from ontheway.settings import ENV_FILE_NAME, Settings
from ontheway.stack.postgres import PostgresStack
from ontheway.stack.redis import RedisStack


@dataclass(frozen=True)
class PartStatus:
    """One server of the stack as ``status`` shows it."""

    name: str
    port: int
    pid: int | None
    checks: list[DependencyState]

    @property
    def healthy(self) -> bool:
        return self.pid is not None and bool(self.checks) and all(c.ok for c in self.checks)


@dataclass(frozen=True)
class LocalStack:
    """The servers that ``ontheway stack`` manages for one state directory."""

    state_dir: Path
    postgres: PostgresStack
    redis: RedisStack

    @classmethod
    def from_settings(cls, settings: Settings, shards: list[str]) -> LocalStack:
        state = settings.state_dir
        return cls(
            state_dir=state,
            postgres=PostgresStack(
                state / "postgres", settings.stack_pg_port, shards, settings.stack_pg_bindir
            ),
            redis=RedisStack(
                state / "redis", settings.stack_redis_port, settings.stack_redis_allocator
            ),
        )

    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE_NAME

    def up(self) -> dict[str, str]:
        """Start every server (idempotent) and write the env file; returns what each did."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        result = {"postgres": self.postgres.up(), "redis+falkordb": self.redis.up()}
        self.write_env_file()
        return result

    def down(self) -> dict[str, str]:
        """Stop exactly the servers that ``up`` started."""
        return {"redis+falkordb": self.redis.down(), "postgres": self.postgres.down()}

    def write_env_file(self) -> None:
        """Write the stack's addresses to the env file, keeping the JWT secret it holds."""
        secret = None
        if self.env_file.is_file():
            for line in self.env_file.read_text().splitlines():
                if line.startswith("ONTHEWAY_JWT_SECRET="):
                    secret = _unquoted(line.split("=", 1)[1])
        dsns = {shard: self.postgres.dsn(shard) for shard in self.postgres.shards}
        values = {
            "ONTHEWAY_LOCAL": "true",
            "ONTHEWAY_SHARD_DSNS": json.dumps(dsns),
            "ONTHEWAY_REDIS_URL": self.redis.url,
            "ONTHEWAY_FALKORDB_URL": self.redis.url,
            "ONTHEWAY_JWT_SECRET": secret or secrets.token_urlsafe(32),
        }
        lines = [
            "# Written by `ontheway stack up`; environment variables override these.",
            *(f"{name}={_quoted(value)}" for name, value in values.items()),
        ]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o600)

    async def status(self, settings: Settings) -> list[PartStatus]:
        """Each server with its port, PID and health checks."""
        # Check the servers of this stack, whatever the environment points the app at.
        ours = settings.model_copy(
            update={
                "shard_dsns": {s: self.postgres.dsn(s) for s in self.postgres.shards},
                "redis_url": self.redis.url,
                "falkordb_url": self.redis.url,
            }
        )
        # A server that is down shows in its row; the pools' own reconnection errors, logged
        # while the checks wait, would only bury the table.
        pool_log = logging.getLogger("psycopg.pool")
        level, pool_log.level = pool_log.level, logging.CRITICAL
        try:
            conns = await Connections.open(ours, shards=list(self.postgres.shards), pool_max=2)
            try:
                checks = await check_all(conns)
            finally:
                await conns.close()
        finally:
            pool_log.setLevel(level)
        pg = [c for c in checks if c.name.startswith("postgres:")]
        return [
            PartStatus("postgres", self.postgres.port, self.postgres.running_pid(), pg),
            PartStatus(
                "redis",
                self.redis.port,
                self.redis.running_pid(),
                [c for c in checks if c.name == "redis"],
            ),
            PartStatus(
                "falkordb",
                self.redis.port,
                self.redis.running_pid(),
                [c for c in checks if c.name == "falkordb"],
            ),
        ]


def _quoted(value: str) -> str:
    """``value`` in single quotes, which bash and python-dotenv both read back unchanged.

    Inside single quotes bash takes every character as it is, while python-dotenv still
    decodes a backslash before a backslash or a quote and expands ``${NAME}``: a value with
    a quote, a backslash or ``${`` is refused (the stack's DSNs, URLs and secret hold none).
    """
    if "'" in value or "\\" in value or "${" in value:
        raise ConfigurationError(
            f"cannot write {value!r} to {ENV_FILE_NAME}: a quote, a backslash or ${{ in it "
            "would not read back the same"
        )
    return f"'{value}'"


def _unquoted(value: str) -> str:
    """A value as ``_quoted`` wrote it, or as it was written before values were quoted."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == "'" else value
