"""Offers over the API of a real server: accept and decline over HTTP and ``/ws/driver``,
expiry by the server's sweeper, and the dispatch worker making offers as a process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.dispatch.dispatcher import Dispatcher
from ontheway.fleet import keys
from ontheway.fleet.store import FleetStore
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from tests.e2e.conftest import Server
from tests.e2e.test_events_api import start, stop, stream_env  # noqa: F401 (a fixture)
from tests.helpers import order_body
from tests.integration.test_dispatch_dispatcher import (  # noqa: F401 (fixtures)
    fleet,
    place,
    roads,
    town,
)
from tests.integration.test_dispatch_offers import (  # noqa: F401 (fixtures)
    Offered,
    cancel,
    kinds,
    offered,
    offering,
    pair,
)


def api(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=20)


async def answer(server: Server, driver: str, oid: str, kind: str) -> httpx.Response:
    async with api(server) as http:
        return await http.post(
            f"/api/orders/{oid}/{kind}", headers=server.auth(Role.DRIVER, driver)
        )


async def test_the_offered_driver_accepts_over_http_and_is_assigned(
    server: Server,
    fleet: FleetStore,  # noqa: F811
    offered: Offered,  # noqa: F811
) -> None:
    oid, best, other = offered.order_id, offered.best, offered.next_
    async with api(server) as http:
        listed = await http.get("/api/driver/offers", headers=server.auth(Role.DRIVER, best))
        assert listed.status_code == 200, listed.text
        assert [o["order_id"] for o in listed.json() if o["order_id"] == oid] == [oid]
        theirs = await http.get("/api/driver/offers", headers=server.auth(Role.DRIVER, other))
        assert all(o["order_id"] != oid for o in theirs.json())
    refused = await answer(server, other, oid, "accept")
    assert refused.status_code == 403, refused.text
    taken = await answer(server, best, oid, "accept")
    assert taken.status_code == 200, taken.text
    order = taken.json()
    assert order["status"] == "driver_assigned" and order["assigned_driver_id"] == best
    assert oid in await fleet.active_orders("sf", best)
    again = await answer(server, best, oid, "accept")
    assert again.status_code == 409 and again.json()["error"]["code"] == "no_open_offer"


async def test_a_declined_offer_goes_to_the_next_driver_over_http(
    server: Server,
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best, next_ = offered.order_id, offered.best, offered.next_
    declined = await answer(server, best, oid, "decline")
    assert declined.status_code == 200 and declined.json() == {"order_id": oid, "declined": True}
    assert oid not in await fleet.active_orders("sf", best)
    assert (await offering.dispatch(oid)).driver_id == next_
    late = await answer(server, best, oid, "accept")
    assert late.status_code == 409 and late.json()["error"]["code"] == "offer_expired"
    assert (await answer(server, next_, oid, "accept")).status_code == 200
    assert (await queries.get(oid))["driver_id"] == next_


async def test_an_expired_offer_cannot_be_accepted_and_nothing_changes(
    server: Server,
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],  # noqa: F811
    uid: str,
) -> None:
    best, _ = pair
    offering.offers.timeout_s = 1.0
    oid = await place(orders, town, uid)
    await offering.dispatch(oid)
    deadline = time.monotonic() + 20
    while "OFFER_EXPIRED" not in await kinds(queries, oid):  # the server's sweeper
        assert time.monotonic() < deadline, f"offer not expired:\n{server.diagnosis()}"
        await asyncio.sleep(0.2)
    late = await answer(server, best, oid, "accept")
    assert late.status_code == 409 and late.json()["error"]["code"] == "offer_expired"
    row = await queries.get(oid)
    assert row["status"] == "searching_driver" and row["driver_id"] is None
    assert oid not in await fleet.active_orders("sf", best)
    assert "DRIVER_ASSIGNED" not in await kinds(queries, oid)
    await cancel(orders, oid)


async def test_two_accepts_racing_over_http_assign_the_order_once(
    server: Server,
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best = offered.order_id, offered.best
    replies = await asyncio.gather(*(answer(server, best, oid, "accept") for _ in range(4)))
    assert sorted(r.status_code for r in replies) == [200, 409, 409, 409]
    assert (await kinds(queries, oid)).count("DRIVER_ASSIGNED") == 1


def driver_socket(server: Server, driver: str) -> Any:
    base = server.base_url.replace("http://", "ws://")
    return connect(f"{base}/ws/driver?token={server.token(Role.DRIVER, driver)}")


async def receive(ws: ClientConnection, kind: str, order_id: str) -> dict[str, Any]:
    """The next message of type ``kind`` about the order (others are skipped: notifications,
    or offers of other tests' orders that other processes on the shared stack dispatch)."""
    deadline = time.monotonic() + 30
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind} message"
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(decode=True), left))
        if message.get("type") == kind and message.get("order_id") == order_id:
            return message


async def following(conns: Connections, driver: str) -> None:
    """Wait until the server follows the driver's inbox."""
    deadline = time.monotonic() + 10
    redis = conns.require_redis()
    while (await redis.pubsub_numsub(keys.inbox_channel(driver)))[0][1] == 0:
        assert time.monotonic() < deadline, "the socket does not follow the inbox"
        await asyncio.sleep(0.05)


async def test_the_dispatch_worker_offers_on_the_socket_and_the_driver_accepts_there(
    server: Server,
    conns: Connections,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],  # noqa: F811
    uid: str,
    stream_env: dict[str, str],  # noqa: F811
) -> None:
    best, _ = pair
    relay = await start(stream_env, "relay")
    worker = await start(stream_env, "worker", "--consumer", "dispatch")
    try:
        async with driver_socket(server, best) as ws:
            await following(conns, best)
            async with api(server) as http:
                placed = await http.post(
                    "/api/orders",
                    json=order_body(town["restaurant"]),
                    headers=server.auth(Role.CUSTOMER, f"user_{uid}"),
                )
            assert placed.status_code == 201, placed.text
            oid = placed.json()["order_id"]
            offer = await receive(ws, "offer", oid)
            assert offer["order_id"] == oid and offer["expires_at"] > time.time()
            assert set(offer) >= {"restaurant", "dropoff", "travel_time_s"}
            await ws.send(json.dumps({"type": "accept", "order_id": oid}))
            accepted = await receive(ws, "accepted", oid)
            assert accepted["order"]["status"] == "driver_assigned"
            route = await receive(ws, "route", oid)
            assert route["order_id"] == oid and route["route"]["geometry"]
            assert route["route"]["duration_s"] > 0
    finally:
        await stop(worker, relay)
    assert (await queries.get(oid))["driver_id"] == best


async def test_a_reconnecting_driver_gets_its_offer_and_declines_it_on_the_socket(
    server: Server,
    offered: Offered,  # noqa: F811
) -> None:
    # Offered before the app connected: the socket sends the open offers on connect.
    oid, best = offered.order_id, offered.best
    async with driver_socket(server, best) as ws:
        assert (await receive(ws, "offer", oid))["expires_at"] > time.time()
        await ws.send(json.dumps({"type": "decline", "order_id": oid}))
        assert await receive(ws, "declined", oid) == {"type": "declined", "order_id": oid}
        await ws.send(json.dumps({"type": "accept", "order_id": oid}))
        error = await receive(ws, "error", oid)
        assert error["error"]["code"] == "offer_expired"


async def test_cancelling_an_offered_order_releases_the_driver_at_once_and_tells_it(
    server: Server,
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best = offered.order_id, offered.best
    assert oid in await fleet.active_orders("sf", best)
    async with driver_socket(server, best) as ws:
        await receive(ws, "offer", oid)
        async with api(server) as http:
            done = await http.post(
                f"/api/orders/{oid}/cancel", headers=server.auth(Role.OPS, "ops_1")
            )
        assert done.status_code == 200, done.text
        assert await receive(ws, "offer_withdrawn", oid) == {
            "type": "offer_withdrawn",
            "order_id": oid,
        }
    # Released now, not at the offer's deadline (20 s away).
    assert oid not in await fleet.active_orders("sf", best)
    late = await answer(server, best, oid, "accept")
    assert late.status_code == 409, late.text
    assert (await queries.get(oid))["status"] == "cancelled"
