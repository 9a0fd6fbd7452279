"""Notifications (any role, each caller its own): the list over every shard, marking one
read, and ``WS /ws/notifications``, which forwards everything pushed to the caller's inbox."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, WebSocket
from starlette.websockets import WebSocketDisconnect

from ontheway.api.deps import AppState, Caller, State
from ontheway.api.routes.fleet import WS_FORBIDDEN, WS_UNAUTHENTICATED, ws_principal
from ontheway.errors import OnTheWayError
from ontheway.fleet import keys
from ontheway.fleet.service import Fleet
from ontheway.notifications.store import NotificationQueries

router = APIRouter(tags=["notifications"])


def _queries(state: AppState) -> NotificationQueries:
    return NotificationQueries(state.conns, state.catalog)


@router.get("/api/notifications")
async def list_notifications(
    state: State,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    unread: bool = False,
) -> dict[str, Any]:
    """The caller's notifications, newest first, from every shard; the shards that are
    down are listed under ``unavailable``."""
    return await _queries(state).for_recipient(caller.sub, limit, unread)


@router.post("/api/notifications/{notification_id}/read")
async def mark_read(state: State, caller: Caller, notification_id: str) -> dict[str, Any]:
    """Mark one of the caller's notifications read (404 for anyone else's)."""
    return await _queries(state).mark_read(caller.sub, notification_id)


@router.websocket("/ws/notifications")
async def notifications_socket(ws: WebSocket) -> None:
    """Everything pushed to the caller's inbox (notifications, and a driver's offers and
    routes) as it happens; the client only listens."""
    state: AppState = ws.app.state.ontheway
    fleet: Fleet = ws.app.state.fleet
    await ws.accept()
    try:
        caller = ws_principal(ws, state)
    except OnTheWayError as exc:
        await ws.send_text(json.dumps(exc.to_body() | {"type": "error"}))
        await ws.close(WS_UNAUTHENTICATED if exc.status == 401 else WS_FORBIDDEN)
        return
    async with fleet.hub.follow(keys.inbox_channel(caller.sub)) as queue:
        forward = asyncio.create_task(_forward(ws, queue))
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass
        finally:
            forward.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await forward


async def _forward(ws: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    while True:
        await ws.send_text(json.dumps(await queue.get()))
