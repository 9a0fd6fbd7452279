"""Health, the region catalog and the ops view of the dependencies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ontheway.api.deps import Caller, OpsCaller, State
from ontheway.health import check_all

router = APIRouter()


@router.get("/health", tags=["operations"])
async def health(state: State) -> JSONResponse:
    """Each dependency's state; 503 with the error body when one is down. No token needed."""
    checks = await check_all(state.conns)
    deps = {c.name: {"ok": c.ok, "latency_ms": c.latency_ms} for c in checks}
    down = [c for c in checks if not c.ok]
    if not down:
        return JSONResponse({"status": "ok", "dependencies": deps})
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


@router.get("/api/regions", tags=["operations"])
async def regions(state: State, _: Caller) -> list[dict[str, Any]]:
    """The region catalog."""
    return [region.model_dump(mode="json") for region in state.catalog]
