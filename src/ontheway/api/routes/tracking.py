"""Live tracking: ``WS /ws/orders/{order_id}/track`` for the order's customer (or ops), with
the customer's notifications about the order (``{"type": "notification", ...}``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from ontheway.api.deps import AppState
from ontheway.api.routes.fleet import WS_FORBIDDEN, ws_principal
from ontheway.errors import OnTheWayError
from ontheway.fleet import keys
from ontheway.fleet.service import Fleet
from ontheway.orders import access

router = APIRouter(tags=["tracking"])

WS_NOT_FOUND = 4404


@router.websocket("/ws/orders/{order_id}/track")
async def track_order(ws: WebSocket, order_id: str) -> None:
    """The order's status now and the assigned driver's last position, then every position,
    status change and estimate as they happen. Other customers' orders are refused (4403)."""
    state: AppState = ws.app.state.ontheway
    fleet: Fleet = ws.app.state.fleet
    await ws.accept()
    try:
        caller = ws_principal(ws, state)
        order = await state.order_queries.get(order_id)
        access.require_customer_or_ops(caller, order)
    except OnTheWayError as exc:
        await ws.send_text(json.dumps(exc.to_body() | {"type": "error"}))
        await ws.close({401: 4401, 404: WS_NOT_FOUND}.get(exc.status, WS_FORBIDDEN))
        return
    async with (
        fleet.hub.follow(keys.tracking_channel(order_id)) as queue,
        fleet.hub.follow(keys.inbox_channel(order["customer_id"])) as inbox,
    ):
        await ws.send_text(json.dumps({"type": "status", "status": order["status"]}))
        if order.get("driver_id"):
            fix = await fleet.store.last_fix(order["driver_id"])
            if fix is not None:
                await ws.send_text(json.dumps(_position(fix.lat, fix.lng, fix.timestamp)))
        forward = asyncio.create_task(_forward(ws, queue))
        notes = asyncio.create_task(_notifications_of(order_id, inbox, queue))
        try:
            with contextlib.suppress(WebSocketDisconnect):
                while (await ws.receive())["type"] != "websocket.disconnect":
                    pass  # the client only listens; anything it sends is ignored
        finally:
            forward.cancel()
            notes.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await forward
            with contextlib.suppress(asyncio.CancelledError):
                await notes


async def _notifications_of(
    order_id: str, inbox: asyncio.Queue[dict[str, Any]], out: asyncio.Queue[dict[str, Any]]
) -> None:
    """Pass the customer's notifications about this order on to the socket's queue (one
    writer per socket); a full queue loses its oldest message, as the hub's do."""
    while True:
        message = await inbox.get()
        if message.get("type") == "notification" and message.get("order_id") == order_id:
            if out.full():
                out.get_nowait()
            out.put_nowait(message)


def _position(lat: float, lng: float, timestamp: float) -> dict[str, Any]:
    return {"type": "driver_location", "lat": lat, "lng": lng, "timestamp": timestamp}


async def _forward(ws: WebSocket, queue: asyncio.Queue[dict[str, Any]]) -> None:
    while True:
        message = await queue.get()
        if message.get("type") == "driver_location":
            message = _position(message["lat"], message["lng"], message["timestamp"])
        await ws.send_text(json.dumps(message))
