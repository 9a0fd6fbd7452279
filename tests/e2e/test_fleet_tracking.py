import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.fleet import keys
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.fleet.tracking import publish_status
from tests.e2e.conftest import Server
from tests.helpers import order_body


async def next_message(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(decode=True), 10))
    return message


def track_url(server: Server, order_id: str, token: str) -> str:
    base = server.base_url.replace("http://", "ws://")
    return f"{base}/ws/orders/{order_id}/track?token={token}"


async def assigned_order(
    server: Server, store: FleetStore, sf: dict[str, Any], customer: str, slot: int
) -> tuple[str, str]:
    """An order of ``customer`` assigned to a seeded driver who holds it in Redis."""
    restaurant = sf["restaurants"][slot % len(sf["restaurants"])]
    driver = sf["drivers"][-1 - slot]["driver_id"]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        resp = await http.post(
            "/api/orders", json=order_body(restaurant), headers=server.auth(Role.CUSTOMER, customer)
        )
        assert resp.status_code == 201, resp.text
        order_id = resp.json()["order_id"]
        await report(server, driver, restaurant["lat"], restaurant["lng"])
        resp = await http.post(
            f"/api/ops/orders/{order_id}/assign",
            json={"driver_id": driver},
            headers=server.auth(Role.OPS, "ops_1"),
        )
        assert resp.status_code == 200, resp.text
    return order_id, driver


async def report(server: Server, driver: str, lat: float, lng: float) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        resp = await http.post(
            "/api/driver/location",
            json={"driver_id": driver, "lat": lat, "lng": lng, "timestamp": time.time()},
            headers=server.auth(Role.DRIVER, driver),
        )
        assert resp.status_code == 202, resp.text


async def test_the_customer_follows_the_drivers_positions_and_status_changes(
    server: Server, conns: Connections, sf: dict[str, Any], uid: str
) -> None:
    store = open_store(conns.require_redis(), server.settings)
    customer = f"user_{uid}"
    restaurant = sf["restaurants"][0]
    order_id, driver = await assigned_order(server, store, sf, customer, 0)
    await report(server, driver, restaurant["lat"], restaurant["lng"])
    await store.add_order("sf", driver, order_id)
    token = server.token(Role.CUSTOMER, customer)
    async with connect(track_url(server, order_id, token)) as ws:
        assert await next_message(ws) == {"type": "status", "status": "driver_assigned"}
        first = await next_message(ws)
        assert first["type"] == "driver_location"
        assert first["lat"] == pytest.approx(restaurant["lat"], abs=1e-5)
        await report(server, driver, restaurant["lat"] + 0.001, restaurant["lng"])
        moved = await next_message(ws)
        assert moved["type"] == "driver_location"
        assert moved["lat"] == pytest.approx(restaurant["lat"] + 0.001, abs=1e-5)
        assert set(moved) == {"type", "lat", "lng", "timestamp"}
        await publish_status(conns.require_redis(), order_id, "picked_up")
        assert await next_message(ws) == {"type": "status", "status": "picked_up"}
    channel = keys.tracking_channel(order_id)
    redis = conns.require_redis()
    deadline = time.monotonic() + 10
    while (await redis.pubsub_numsub(channel))[0][1] != 0:
        assert time.monotonic() < deadline, "the server kept its subscription"
        await asyncio.sleep(0.1)
    await store.remove_order("sf", driver, order_id)


async def test_a_customer_cannot_follow_another_customers_order(
    server: Server, conns: Connections, sf: dict[str, Any], uid: str
) -> None:
    store = open_store(conns.require_redis(), server.settings)
    order_id, _ = await assigned_order(server, store, sf, f"user_{uid}", 1)
    intruder = server.token(Role.CUSTOMER, f"user_other_{uid}")
    async with connect(track_url(server, order_id, intruder)) as ws:
        assert (await next_message(ws))["error"]["code"] == "forbidden"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_driver_whose_heartbeat_expires_mid_delivery_is_reported_unavailable(
    server: Server, conns: Connections, sf: dict[str, Any], uid: str
) -> None:
    store = open_store(conns.require_redis(), server.settings)
    customer = f"user_{uid}"
    order_id, driver = await assigned_order(server, store, sf, customer, 2)
    restaurant = sf["restaurants"][2 % len(sf["restaurants"])]
    await report(server, driver, restaurant["lat"], restaurant["lng"])
    await store.add_order("sf", driver, order_id)
    # The heartbeat runs out: exactly what a TTL expiry leaves behind.
    redis = conns.require_redis()
    await redis.delete(keys.status("sf", driver))
    await redis.zadd(keys.heartbeats("sf"), {driver: 0})
    url = f"{server.base_url}/api/orders/{order_id}"
    deadline = time.monotonic() + 15
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            order = (await http.get(url, headers=server.auth(Role.OPS, "ops_1"))).json()
            if order["status"] == "searching_driver_again":
                break
            assert time.monotonic() < deadline, f"never reported:\n{server.diagnosis()}"
            await asyncio.sleep(0.2)
        events = (await http.get(f"{url}/events", headers=server.auth(Role.OPS, "ops_1"))).json()
    unavailable = [e for e in events if e["event_type"] == "DRIVER_UNAVAILABLE"]
    assert len(unavailable) == 1
    assert unavailable[0]["data"]["driver_id"] == driver
    assert await store.active_orders("sf", driver) == set()
