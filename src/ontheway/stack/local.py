"""The local stack as a whole: PostgreSQL and Redis + FalkorDB under the state directory.

``up`` also writes ``<state_dir>/ontheway.env`` (the shard DSNs, the Redis and FalkorDB URLs,
local mode and a JWT secret generated once), which ``load_settings`` reads.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from ontheway.connections import Connections
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
            redis=RedisStack(state / "redis", settings.stack_redis_port),
        )

    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE_NAME

    def up(self) -> dict[str, str]:
        """Start every server (idempotent) and write the env file; returns what each did."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        result = {"postgres": self.postgres.up(), "redis+falkordb": self.redis.up()}
        self._write_env_file()
        return result

    def down(self) -> dict[str, str]:
        """Stop exactly the servers that ``up`` started."""
        return {"redis+falkordb": self.redis.down(), "postgres": self.postgres.down()}

    def _write_env_file(self) -> None:
        secret = None
        if self.env_file.is_file():
            for line in self.env_file.read_text().splitlines():
                if line.startswith("ONTHEWAY_JWT_SECRET="):
                    secret = line.split("=", 1)[1]
        dsns = {shard: self.postgres.dsn(shard) for shard in self.postgres.shards}
        lines = [
            "# Written by `ontheway stack up`; environment variables override these.",
            "ONTHEWAY_LOCAL=true",
            f"ONTHEWAY_SHARD_DSNS={json.dumps(dsns)}",
            f"ONTHEWAY_REDIS_URL={self.redis.url}",
            f"ONTHEWAY_FALKORDB_URL={self.redis.url}",
            f"ONTHEWAY_JWT_SECRET={secret or secrets.token_urlsafe(32)}",
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
