"""Health, the region catalog and the ops view of the dependencies."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from ontheway.api.deps import AppState, Caller, OpsCaller, State
from ontheway.events.relay import cursor_name, relay_lag
from ontheway.health import check_all

router = APIRouter()


async def relay_lags(state: AppState) -> dict[str, dict[str, float] | None]:
    """Each shard's outbox lag (None when the shard cannot tell: unreachable, or no relay
    has run on it for this stream yet)."""
    shards = sorted(state.conns.shards)
    stream = state.settings.event_stream
    lags = await asyncio.gather(
        *(relay_lag(state.conns, s, cursor_name(stream, s)) for s in shards),
        return_exceptions=True,
    )
    return {
        shard: None if isinstance(lag, BaseException) or lag is None
        else {"events": lag.events, "seconds": round(lag.seconds, 3)}
        for shard, lag in zip(shards, lags, strict=True)
    }  # fmt: skip


@router.get("/health", tags=["operations"])
async def health(state: State) -> JSONResponse:
    """Each dependency's state and the outbox relay's lag; 503 with the error body when a
    dependency is down. No token needed."""
    checks, relay = await asyncio.gather(check_all(state.conns), relay_lags(state))
    deps = {c.name: {"ok": c.ok, "latency_ms": c.latency_ms} for c in checks}
    down = [c for c in checks if not c.ok]
    if not down:
        return JSONResponse({"status": "ok", "dependencies": deps, "relay": relay})
    message = "; ".join(f"{c.name}: {c.detail}" for c in down)
    return JSONResponse(
        {
            "status": "unavailable",
            "dependencies": deps,
            "error": {"code": "dependency_unavailable", "message": message, "field": None},
        },
        status_code=503,
    )


@router.get("/api/ops/dependencies", tags=["operations"])
async def dependencies(state: State, _: OpsCaller) -> list[dict[str, Any]]:
    """Every dependency with its version, latency and problem, for operators."""
    return [c.to_dict() for c in await check_all(state.conns)]


@router.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
async def metrics(state: State, _: OpsCaller) -> PlainTextResponse:
    """Prometheus metrics (ops token): dependency health and the relay's lag per shard."""
    registry = CollectorRegistry()
    up = Gauge(
        "ontheway_dependency_up", "1 when the dependency answers", ["dependency"], registry=registry
    )
    lag_events = Gauge(
        "ontheway_relay_lag_events", "order events not yet published", ["shard"], registry=registry
    )
    lag_seconds = Gauge(
        "ontheway_relay_lag_seconds",
        "age of the oldest unpublished event",
        ["shard"],
        registry=registry,
    )
    checks, relay = await asyncio.gather(check_all(state.conns), relay_lags(state))
    for check in checks:
        up.labels(check.name).set(1 if check.ok else 0)
    for shard, lag in relay.items():
        if lag is not None:
            lag_events.labels(shard).set(lag["events"])
            lag_seconds.labels(shard).set(lag["seconds"])
    return PlainTextResponse(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/regions", tags=["operations"])
async def regions(state: State, _: Caller) -> list[dict[str, Any]]:
    """The region catalog."""
    return [region.model_dump(mode="json") for region in state.catalog]
