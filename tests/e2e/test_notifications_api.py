"""Notifications over HTTP and WebSocket: each caller sees, reads and hears only its own."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from ontheway.auth import Role
from ontheway.bench.common import free_port
from ontheway.connections import Connections
from ontheway.events.consumers import NOTIFICATIONS
from ontheway.fleet import keys
from ontheway.fleet.tracking import publish_inbox
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from tests.e2e.conftest import Server, start_server, stop_server
from tests.e2e.test_events_api import start, stop, stream_env  # noqa: F401 (a fixture)
from tests.e2e.test_ratings_api import placed
from tests.helpers import order_for
from tests.integration.test_notifications import handle_all


async def next_message(ws: ClientConnection, timeout_s: float = 10) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(decode=True), timeout_s))
    return message


def ws_url(server: Server, path: str, role: Role, sub: str) -> str:
    base = server.base_url.replace("http://", "ws://")
    return f"{base}{path}?token={server.token(role, sub)}"


async def subscribed(conns: Connections, channel: str) -> None:
    """Wait until the server follows the channel (its socket is ready to forward)."""
    deadline = time.monotonic() + 10
    while (await conns.require_redis().pubsub_numsub(channel))[0][1] == 0:
        assert time.monotonic() < deadline, f"nobody follows {channel}"
        await asyncio.sleep(0.05)


async def searching_order(
    orders: OrderService, conns: Connections, sf: dict[str, Any], customer: str
) -> str:
    """An order that found no driver yet, its notifications handled (and pushed)."""
    order, _ = await orders.place(customer, order_for(sf["restaurants"][1]))
    oid = str(order["order_id"])
    await orders.note(oid, EventType.NO_DRIVER_FOUND, "dispatch", {"waited_s": 120})
    await handle_all(conns, replace(NOTIFICATIONS, name=f"notifications-{customer}"), oid)
    return oid


def _stream_id(raw: Any) -> tuple[int, ...]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return tuple(int(part) for part in text.split("-"))


async def read_by_group(conns: Connections, stream: str, group: str, order_id: str) -> None:
    """Wait until the consumer group was handed the order's first event (its worker is up)."""
    redis, deadline = conns.require_redis(), time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, f"{group} did not read the event of {order_id}"
        entries = await redis.xrange(stream)
        mine = [_stream_id(e) for e, fields in entries if order_id.encode() in fields[b"event"]]
        for info in await redis.xinfo_groups(stream) if mine else []:
            name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
            if name == group and _stream_id(info["last-delivered-id"]) >= mine[0]:
                return
        await asyncio.sleep(0.1)


async def listed(server: Server, role: Role, sub: str, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        resp = await http.get("/api/notifications", params=params, headers=server.auth(role, sub))
    assert resp.status_code == 200, resp.text
    assert resp.json()["unavailable"] == []
    found: list[dict[str, Any]] = resp.json()["notifications"]
    return found


async def test_each_caller_lists_and_reads_only_its_own_notifications(
    server: Server, conns: Connections, orders: OrderService, sf: dict[str, Any], uid: str
) -> None:
    owner, other = f"user_{uid}", f"user_{uid}b"
    oid = await searching_order(orders, conns, sf, owner)
    mine = await listed(server, Role.CUSTOMER, owner)
    assert [(n["order_id"], n["kind"], n["read_at"]) for n in mine] == [
        (oid, "no_driver_found", None)
    ]
    restaurant = sf["restaurants"][1]["restaurant_id"]
    theirs = await listed(server, Role.RESTAURANT, restaurant, limit=500)
    assert [n["kind"] for n in theirs if n["order_id"] == oid] == ["new_order"]
    assert await listed(server, Role.CUSTOMER, other) == []
    read = f"/api/notifications/{mine[0]['notification_id']}/read"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        for role, sub in (
            (Role.CUSTOMER, other),
            (Role.OPS, "ops_1"),
            (Role.RESTAURANT, restaurant),
        ):
            resp = await http.post(read, headers=server.auth(role, sub))
            assert resp.status_code == 404, resp.text
        assert (await http.post(read)).status_code == 401
        resp = await http.post(read, headers=server.auth(Role.CUSTOMER, owner))
        assert resp.status_code == 200 and resp.json()["read_at"] is not None
        bad = await http.post(
            f"/api/notifications/ntf_nowhere_{'0' * 32}/read",
            headers=server.auth(Role.CUSTOMER, owner),
        )
        assert bad.status_code == 404 and bad.json()["error"]["field"] == "notification_id"
        assert (await http.get("/api/notifications")).status_code == 401
        resp = await http.get(
            "/api/notifications", params={"limit": 0}, headers=server.auth(Role.CUSTOMER, owner)
        )
        assert resp.status_code == 422
    assert await listed(server, Role.CUSTOMER, owner, unread="true") == []
    assert [n["read_at"] is not None for n in await listed(server, Role.CUSTOMER, owner)] == [True]


async def test_the_notifications_socket_pushes_the_callers_notifications_and_no_others(
    server: Server, conns: Connections, orders: OrderService, sf: dict[str, Any], uid: str
) -> None:
    owner, other = f"user_{uid}", f"user_{uid}b"
    path = "/ws/notifications"
    async with (
        connect(ws_url(server, path, Role.CUSTOMER, owner)) as mine,
        connect(ws_url(server, path, Role.CUSTOMER, other)) as theirs,
    ):
        await subscribed(conns, keys.inbox_channel(owner))
        await subscribed(conns, keys.inbox_channel(other))
        oid = await searching_order(orders, conns, sf, owner)
        pushed = await next_message(mine)
        assert (pushed["type"], pushed["kind"], pushed["order_id"]) == (
            "notification",
            "no_driver_found",
            oid,
        )
        first = (await listed(server, Role.CUSTOMER, owner))[0]
        assert pushed["notification_id"] == first["notification_id"]
        # The other customer's first message is the marker sent after: nothing of the owner's.
        await publish_inbox(conns.require_redis(), other, {"type": "marker"})
        assert await next_message(theirs) == {"type": "marker"}
    async with connect(f"{server.base_url.replace('http', 'ws')}{path}") as anonymous:
        refused = await next_message(anonymous)
        assert refused["type"] == "error" and refused["error"]["code"] == "missing_token"


async def test_the_tracking_socket_carries_the_customers_notifications_about_that_order(
    server: Server, conns: Connections, orders: OrderService, sf: dict[str, Any], uid: str
) -> None:
    customer = f"user_{uid}"
    order, _ = await orders.place(customer, order_for(sf["restaurants"][1]))
    oid = order["order_id"]
    track = ws_url(server, f"/ws/orders/{oid}/track", Role.CUSTOMER, customer)
    async with connect(track) as ws:
        assert await next_message(ws) == {"type": "status", "status": "searching_driver"}
        await subscribed(conns, keys.inbox_channel(customer))
        await searching_order(orders, conns, sf, customer)  # another order: not forwarded
        await orders.note(oid, EventType.NO_DRIVER_FOUND, "dispatch", {"waited_s": 60})
        await handle_all(conns, replace(NOTIFICATIONS, name=f"notifications-{uid}"), oid)
        pushed = await next_message(ws)
        assert (pushed["type"], pushed["order_id"], pushed["kind"]) == (
            "notification",
            oid,
            "no_driver_found",
        )


async def test_the_notifications_worker_tells_the_restaurant_of_a_new_order_live(
    server: Server,
    conns: Connections,
    sf: dict[str, Any],
    uid: str,
    stream_env: dict[str, str],  # noqa: F811 (the imported fixture)
) -> None:
    restaurant = sf["restaurants"][2]
    relay = await start(stream_env, "relay")
    worker = await start(stream_env, "worker", "--consumer", "notifications")
    try:
        path = "/ws/notifications"
        async with connect(
            ws_url(server, path, Role.RESTAURANT, restaurant["restaurant_id"])
        ) as ws:
            await subscribed(conns, keys.inbox_channel(restaurant["restaurant_id"]))
            oid = await placed(server, restaurant, f"user_{uid}")
            deadline = time.monotonic() + 30
            pushed: dict[str, Any] = {}
            while pushed.get("order_id") != oid:
                pushed = await next_message(ws, max(0.1, deadline - time.monotonic()))
            # Another notifications worker (an `ontheway run` on the default stream) may have
            # pushed it first: make sure ours is up and took the event before stopping it.
            stream = f"events:{stream_env['ONTHEWAY_EVENT_STREAM']}"
            await read_by_group(conns, stream, "notifications", oid)
            assert (
                pushed["kind"] == "new_order"
                and pushed["recipient_id"] == restaurant["restaurant_id"]
            )
    finally:
        codes = await stop(worker, relay)
    # Read the pipes to their end (which closes them) and look for crashes.
    errors = [(await p.stderr.read()).decode() for p in (worker, relay) if p.stderr]
    printed = [(await p.stdout.read()).decode() for p in (worker, relay) if p.stdout]
    assert codes == [0, 0], errors
    assert not any("Traceback" in text for text in errors)
    assert "handled" in printed[0]


async def test_with_a_shard_down_the_others_answer_and_the_dead_one_is_named(
    server: Server, conns: Connections, orders: OrderService, sf: dict[str, Any], uid: str
) -> None:
    customer = f"user_{uid}"
    oid = await searching_order(orders, conns, sf, customer)
    dsns = dict(server.settings.shard_dsns)
    dsns["europe"] = f"postgresql://ontheway@127.0.0.1:{free_port()}/ontheway_europe"
    base, proc = start_server(
        {"ONTHEWAY_SHARD_DSNS": json.dumps(dsns), "ONTHEWAY_DEPENDENCY_TIMEOUT_S": "1"},
        expect_status=503,
    )
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            resp = await http.get(
                "/api/notifications", headers=server.auth(Role.CUSTOMER, customer)
            )
    finally:
        stop_server(proc)
    assert resp.status_code == 200, resp.text
    assert [n["order_id"] for n in resp.json()["notifications"]] == [oid]
    (dead,) = resp.json()["unavailable"]
    assert dead["shard"] == "europe" and "london" in dead["regions"]
