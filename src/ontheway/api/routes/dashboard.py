"""The operations dashboard and the customer's tracking page, with the API they use.

``GET /`` is the dashboard and ``GET /track/{order_id}`` a customer's tracking page: static
HTML and plain JavaScript (``ontheway/api/static``) that call the same authenticated API as
any client, with the token taken from the URL fragment (``#token=...``, never sent to the
server in a URL). For the dashboard: ``GET /api/ops/roads/{region}/network`` (the roads to
draw) and ``WS /ws/ops/live?region=`` (a snapshot of drivers, active orders and KPIs every
second).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ontheway.api.deps import AppState, OpsCaller, State
from ontheway.api.live import LiveSnapshots
from ontheway.api.routes.fleet import WS_FORBIDDEN, ws_principal
from ontheway.auth import Role
from ontheway.errors import InvalidInput, OnTheWayError
from ontheway.roads.drawing import road_drawing

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
LIVE_INTERVAL_S = 1.0
WS_CLOSE_CODES = {401: 4401, 404: 4404, 422: 4422}


class Dashboard:
    """What the dashboard's routes keep per process: drawings by import, live snapshots."""

    def __init__(self, state: AppState) -> None:
        self.state = state
        self._drawings: dict[str, tuple[str, bytes]] = {}
        self.live = LiveSnapshots(
            state.conns.require_redis(),
            state.order_queries.shards,
            state.catalog,
            LIVE_INTERVAL_S * 0.9,
        )

    async def drawing(self, region: str) -> bytes:
        """The region's roads to draw, as JSON, built once per import of its map."""
        network = await self.state.roads.network(region)
        cached = self._drawings.get(region)
        if cached is not None and cached[0] == network.import_id:
            return cached[1]
        body = await asyncio.to_thread(
            lambda: json.dumps(
                road_drawing(region, network.import_id, network.graph), separators=(",", ":")
            ).encode()
        )
        self._drawings[region] = (network.import_id, body)
        return body


def dashboard_of(app: FastAPI, state: AppState) -> Dashboard:
    """The process's dashboard state, made on first use."""
    found: Dashboard | None = getattr(app.state, "dashboard", None)
    if found is None:
        found = Dashboard(state)
        app.state.dashboard = found
    return found


def mount_static(app: FastAPI) -> None:
    """Serve the pages' scripts and styles under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    """The operations dashboard (open it as ``/#token=<ops token>``)."""
    return FileResponse(STATIC_DIR / "index.html")


@router.get("/track/{order_id}", include_in_schema=False)
async def tracking_page(order_id: str) -> FileResponse:
    """The customer's tracking page of an order (``/track/<id>#token=<customer token>``)."""
    return FileResponse(STATIC_DIR / "track.html")


@router.get("/api/ops/roads/{region}/network", tags=["operations"])
async def road_network(request: Request, state: State, caller: OpsCaller, region: str) -> Response:
    """Ops of the region: its roads to draw, once per pair of intersections, as
    ``{region, import_id, bbox, classes, nodes: [lat, lng, ...], segments: [a, b, class,
    ...]}`` (flat lists; see roads/drawing.py); 404 naming the import command when the region
    has no map."""
    state.catalog.get(region)
    caller.require_region(region)
    body = await dashboard_of(request.app, state).drawing(region)
    return Response(body, media_type="application/json")


@router.websocket("/ws/ops/live")
async def live_feed(ws: WebSocket) -> None:
    """Ops of the region: ``{"type": "snapshot", "drivers": [[id, lat, lng, status]],
    "orders": [...], "kpis": {...}}`` every second; ``{"type": "error"}`` when a snapshot
    fails (the feed goes on). Refused with 4401, 4403, 4404 (unknown region) or 4422."""
    state: AppState = ws.app.state.ontheway
    await ws.accept()
    try:
        caller = ws_principal(ws, state)
        caller.require_role(Role.OPS)
        region = ws.query_params.get("region", "")
        if not region:
            raise InvalidInput("name the region: /ws/ops/live?region=<region>", field="region")
        state.catalog.get(region)
        caller.require_region(region)
    except OnTheWayError as exc:
        await ws.send_text(json.dumps(exc.to_body() | {"type": "error"}))
        await ws.close(WS_CLOSE_CODES.get(exc.status, WS_FORBIDDEN))
        return
    sender = asyncio.create_task(_send_snapshots(ws, dashboard_of(ws.app, state), region))
    try:
        with contextlib.suppress(WebSocketDisconnect):
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass  # the client only listens
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await sender
        if ws.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError):
                await ws.close()


async def _send_snapshots(ws: WebSocket, dashboard: Dashboard, region: str) -> None:
    while True:
        started = time.monotonic()
        message: dict[str, Any]
        try:
            message = await dashboard.live.get(region)
        except OnTheWayError as exc:
            message = exc.to_body() | {"type": "error"}
        await ws.send_text(json.dumps(message))
        await asyncio.sleep(max(0.0, LIVE_INTERVAL_S - (time.monotonic() - started)))
