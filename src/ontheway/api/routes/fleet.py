"""Drivers' locations and status, nearby drivers for ops, and the driver app's WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from pydantic import BaseModel, Field
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ontheway.api.deps import AppState, Caller, OpsCaller, State
from ontheway.api.routes.offers import socket_answer
from ontheway.auth import Principal, Role, decode_token
from ontheway.dispatch.offering import Offers
from ontheway.errors import Forbidden, InvalidInput, OnTheWayError, Unauthenticated
from ontheway.fleet import keys
from ontheway.fleet.model import (
    DRIVER_ID_PATTERN,
    METRES_PER_MILE,
    DriverStatus,
    Fix,
    LocationBatchIn,
    LocationIn,
    Outcome,
    VehicleType,
    read_location_message,
)
from ontheway.fleet.service import Fleet

router = APIRouter(tags=["drivers"])

WS_UNAUTHENTICATED = 4401
WS_FORBIDDEN = 4403
WS_UNKNOWN_DRIVER = 4404


def fleet_of(request: Request) -> Fleet:
    """The process's fleet (opened by the lifespan)."""
    fleet: Fleet = request.app.state.fleet
    return fleet


FleetDep = Annotated[Fleet, Depends(fleet_of)]


class StatusIn(BaseModel):
    driver_id: str = Field(pattern=DRIVER_ID_PATTERN)
    status: Literal["available", "offline"]


def _error_body(exc: OnTheWayError) -> dict[str, Any]:
    return exc.to_body()["error"]


@router.post("/api/driver/location", status_code=202)
async def report_location(body: LocationIn, caller: Caller, fleet: FleetDep) -> dict[str, Any]:
    """One location fix (the seed's shape); 202 once it is stored (or ignored as stale)."""
    ingestor = fleet.ingestor
    outcome = await ingestor.submit(ingestor.admit(body, caller))
    return {"driver_id": body.driver_id, "stale": outcome is Outcome.STALE}


@router.post("/api/driver/locations", status_code=202)
async def report_locations(
    body: LocationBatchIn, caller: Caller, fleet: FleetDep
) -> dict[str, Any]:
    """A batch of fixes: the good ones land, the bad ones are listed with their error."""
    ingestor = fleet.ingestor
    now = time.time()
    rejected: list[dict[str, Any]] = []
    waiting: list[tuple[int, asyncio.Future[Outcome]]] = []
    for index, entry in enumerate(body.updates):
        try:
            waiting.append((index, ingestor.submit(ingestor.admit(entry, caller, now))))
        except OnTheWayError as exc:
            rejected.append({"index": index, "error": _error_body(exc)})
    results = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
    accepted = stale = 0
    for (index, _), result in zip(waiting, results, strict=True):
        if isinstance(result, OnTheWayError):
            rejected.append({"index": index, "error": _error_body(result)})
        elif isinstance(result, BaseException):
            raise result
        else:
            accepted += 1
            stale += result is Outcome.STALE
    rejected.sort(key=lambda r: int(r["index"]))
    return {"accepted": accepted, "stale": stale, "rejected": rejected}


@router.post("/api/driver/status")
async def set_status(body: StatusIn, caller: Caller, fleet: FleetDep) -> dict[str, str]:
    """A driver goes available or offline (``busy`` follows its capacity)."""
    caller.require_role(Role.DRIVER)
    if caller.sub != body.driver_id:
        raise Forbidden("a driver may only set its own status", field="driver_id")
    home = await fleet.store.require_home(body.driver_id)
    status = await fleet.store.set_status(home.region, home.driver_id, DriverStatus(body.status))
    return {"driver_id": body.driver_id, "status": status.value}


@router.get("/api/drivers/nearby")
async def nearby(
    state: State,
    caller: OpsCaller,
    fleet: FleetDep,
    lat: Annotated[float, Query(ge=-90, le=90, allow_inf_nan=False)],
    lng: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_mi: Annotated[float, Query(gt=0, le=25, allow_inf_nan=False)] = 2.0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    vehicle_type: Annotated[list[VehicleType] | None, Query()] = None,
) -> list[dict[str, Any]]:
    """Ops: available drivers with spare capacity near a point, nearest first."""
    region = state.catalog.region_for(lat, lng).region
    caller.require_region(region)
    found = await fleet.store.find_available(
        region, lat, lng, radius_mi * METRES_PER_MILE, limit, vehicle_type
    )
    return [
        {
            "driver_id": c.driver_id,
            "distance_mi": round(c.distance_mi, 4),
            "lat": c.lat,
            "lng": c.lng,
            "vehicle_type": c.vehicle_type.value,
            "active_orders": c.active_orders,
        }
        for c in found
    ]


@router.get("/api/ops/fleet/stats", tags=["operations"])
async def ingest_stats(_: OpsCaller, fleet: FleetDep) -> dict[str, int]:
    """Ops: this process's ingest counters since start-up."""
    return dict(vars(fleet.ingestor.stats))


# -- the driver app's WebSocket ---------------------------------------------------------------


def ws_principal(ws: WebSocket, state: AppState) -> Principal:
    """The caller of a socket: a bearer header, or ``?token=`` (browsers cannot set headers)."""
    header = ws.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        token = ws.query_params.get("token", "")
    if not token.strip():
        raise Unauthenticated(
            "send 'Authorization: Bearer <token>' or ?token=<token>", code="missing_token"
        )
    return decode_token(state.jwt_key, token.strip())


class DriverSocket:
    """One driver app (or gateway) connection: fixes and answers to offers in; errors, acks,
    answers' results and the driver's inbox (offers, routes, notifications) out."""

    def __init__(self, ws: WebSocket, fleet: Fleet, caller: Principal, offers: Offers) -> None:
        self.ws = ws
        self.ingestor = fleet.ingestor
        self.caller = caller
        self.offers = offers
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._acks: set[asyncio.Task[None]] = set()
        self._alone_failed = self._fix_failed  # one bound method, not one per message

    async def forward(self, inbox: asyncio.Queue[dict[str, Any]]) -> None:
        """Pass the driver's inbox messages on to the socket."""
        while True:
            self.outbox.put_nowait(await inbox.get())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _answer(self, kind: str, order_id: object) -> None:
        self.outbox.put_nowait(await socket_answer(self.offers, self.caller, kind, order_id))

    async def writer(self) -> None:
        """Send queued messages in order (a socket has one writer)."""
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client went away
            while True:
                message = await self.outbox.get()
                await self.ws.send_text(json.dumps(message))

    def error(self, exc: OnTheWayError, *, index: int | None = None) -> None:
        message: dict[str, Any] = {"type": "error", "error": _error_body(exc)}
        if index is not None:
            message["index"] = index
        self.outbox.put_nowait(message)

    def handle(self, text: str) -> None:
        """Admit and queue the fixes of one message; report what is wrong with it."""
        fast = read_location_message(text)
        if fast is not None:
            self._admit(fast.fixes, fast.batch, fast.seq)
            return
        try:
            data = json.loads(text)
        except ValueError as exc:
            self.error(InvalidInput(f"the message is not valid JSON: {exc}", code="malformed_json"))
            return
        if isinstance(data, dict) and data.get("type") in ("accept", "decline"):
            self._spawn(self._answer(str(data["type"]), data.get("order_id")))
            return
        batch = isinstance(data, dict) and "updates" in data
        entries = data["updates"] if batch else [data]
        if not isinstance(entries, list):
            self.error(InvalidInput("updates must be a list of locations", field="updates"))
            return
        self._admit(entries, batch, data.get("seq") if isinstance(data, dict) else None)

    def _admit(self, entries: Sequence[object], batch: bool, seq: object) -> None:
        now = time.time()
        rejected: list[tuple[int, OnTheWayError]] = []
        admitted: list[tuple[int, Fix]] = []
        for index, entry in enumerate(entries):
            try:
                admitted.append((index, self.ingestor.admit(entry, self.caller, now)))
            except OnTheWayError as exc:
                rejected.append((index, exc))
        if seq is not None:
            waiting = [(index, self.ingestor.submit(fix)) for index, fix in admitted]
            self._spawn(self._ack(seq, rejected, waiting))
            return
        for index, problem in rejected:
            self.error(problem, index=index if batch else None)
        if not batch:
            for _, fix in admitted:
                self.ingestor.submit_nowait(fix, self._alone_failed)
            return

        def failed(exc: OnTheWayError, fix: Fix) -> None:  # rare: its index is looked up then
            self.error(exc, index=next(i for i, f in admitted if f is fix))

        for _, fix in admitted:
            self.ingestor.submit_nowait(fix, failed)

    def _fix_failed(self, exc: OnTheWayError, fix: Fix) -> None:
        self.error(exc)

    async def _ack(
        self,
        seq: object,
        rejected: list[tuple[int, OnTheWayError]],
        waiting: list[tuple[int, asyncio.Future[Outcome]]],
    ) -> None:
        results = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
        listed = [{"index": i, "error": _error_body(e)} for i, e in rejected]
        accepted = stale = 0
        for (index, _), result in zip(waiting, results, strict=True):
            if isinstance(result, OnTheWayError):
                listed.append({"index": index, "error": _error_body(result)})
            elif not isinstance(result, BaseException):
                accepted += 1
                stale += result is Outcome.STALE
        listed.sort(key=lambda r: int(str(r["index"])))
        self.outbox.put_nowait(
            {"type": "ack", "seq": seq, "accepted": accepted, "stale": stale, "rejected": listed}
        )


@router.websocket("/ws/driver")
async def driver_socket(ws: WebSocket) -> None:
    """The driver app's socket: location objects (or ``{"updates": [...]}``) and answers to
    offers (``{"type": "accept"|"decline", "order_id"}``) in; errors, acks (for messages that
    carry ``seq``), answers' results and the driver's inbox (its open offers first, then
    offers, routes, notifications as they come) out. Ops tokens act as gateways, no inbox."""
    state: AppState = ws.app.state.ontheway
    fleet: Fleet = ws.app.state.fleet
    await ws.accept()
    try:
        caller = ws_principal(ws, state)
        if caller.role is Role.DRIVER:
            await fleet.store.require_home(caller.sub)
        elif caller.role is not Role.OPS:
            raise Forbidden(f"the role {caller.role} may not report locations")
    except OnTheWayError as exc:
        await ws.send_text(json.dumps({"type": "error", "error": _error_body(exc)}))
        code = {401: WS_UNAUTHENTICATED, 404: WS_UNKNOWN_DRIVER}.get(exc.status, WS_FORBIDDEN)
        await ws.close(code)
        return
    socket = DriverSocket(ws, fleet, caller, ws.app.state.offers)
    writer = asyncio.create_task(socket.writer())
    inbox: contextlib.AbstractAsyncContextManager[asyncio.Queue[dict[str, Any]] | None] = (
        fleet.hub.follow(keys.inbox_channel(caller.sub))
        if caller.role is Role.DRIVER
        else contextlib.nullcontext(None)
    )
    async with inbox as messages:
        forward = None
        if messages is not None:  # a driver: its open offers again (it may have missed them)
            for offer in await socket.offers.open_for(caller.sub):
                socket.outbox.put_nowait(offer)
            forward = asyncio.create_task(socket.forward(messages))
        try:
            await _receive(ws, socket, fleet)
        finally:
            if forward is not None:
                forward.cancel()
            writer.cancel()
            if ws.client_state is WebSocketState.CONNECTED:
                await ws.close()


async def _receive(ws: WebSocket, socket: DriverSocket, fleet: Fleet) -> None:
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                socket.error(InvalidInput("send locations as JSON text frames"))
                continue
            socket.handle(text)
            if fleet.ingestor.congested:
                await fleet.ingestor.room()  # stop reading: TCP slows the sender down
