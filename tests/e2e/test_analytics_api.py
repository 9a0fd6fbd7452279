"""Per-day figures of drivers and restaurants: the analytics consumer over a real shard, read
back through ``GET /api/ops/analytics``."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import httpx

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.events.bus import Delivery
from ontheway.events.consumers import ANALYTICS
from ontheway.events.model import Event
from ontheway.events.worker import handle_once
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from tests.e2e.conftest import Server
from tests.helpers import order_for


async def figures(server: Server, kind: str, subject: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        got = await http.get(
            "/api/ops/analytics",
            params={"region": "sf", "kind": kind, "day": date.today().isoformat(), "limit": 1000},
            headers=server.auth(Role.OPS, "ops_1"),
        )
    assert got.status_code == 200, got.text
    return next((r for r in got.json() if r[f"{kind}_id"] == subject), None)


async def test_a_delivery_counts_for_its_driver_and_restaurant_with_preparation_time(
    server: Server,
    conns: Connections,
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant, driver = sf["restaurants"][3], sf["drivers"][2]["driver_id"]
    rest_id = restaurant["restaurant_id"]
    before = await figures(server, "restaurant", rest_id) or {"deliveries": 0, "prepared": 0}
    order, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    oid = order["order_id"]
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    await orders.transition(oid, EventType.DRIVER_ARRIVED_RESTAURANT, driver)
    await orders.note(oid, EventType.ORDER_READY, rest_id, {})
    await orders.transition(oid, EventType.ORDER_PICKED_UP, driver)
    await orders.transition(oid, EventType.ORDER_DELIVERED, driver)
    mine = replace(ANALYTICS, name=f"analytics-{uid}")
    for seen in await queries.events(oid):
        event = Event(
            event_id=str(seen["event_id"]), order_id=oid, event_type=seen["event_type"],
            ts=seen["ts"], data=seen["data"], actor=seen["actor"], shard="americas", seq=0,
        )  # fmt: skip
        assert await handle_once(conns, mine, Delivery(event, 1, None))
        if event.event_type in mine.handlers:  # handled twice: one effect
            assert not await handle_once(conns, mine, Delivery(event, 2, None))
    after = await figures(server, "restaurant", rest_id)
    assert after is not None
    assert (after["deliveries"], after["prepared"]) == (
        before["deliveries"] + 1,
        before["prepared"] + 1,
    )
    assert after["mean_preparation_min"] is not None and after["mean_preparation_min"] >= 0
    assert 0 <= after["on_time_share"] <= 1
    theirs = await figures(server, "driver", driver)
    assert theirs is not None and theirs["deliveries"] >= 1 and theirs["prepared"] == 0


async def test_analytics_are_for_ops_of_the_region(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        params = {"region": "sf", "day": date.today().isoformat()}
        other = await http.get(
            "/api/ops/analytics",
            params=params,
            headers={"Authorization": f"Bearer {server.token(Role.OPS, 'ops_2', regions=['nyc'])}"},
        )
        customer = await http.get(
            "/api/ops/analytics", params=params, headers=server.auth(Role.CUSTOMER, "user_1")
        )
        bad_day = await http.get(
            "/api/ops/analytics",
            params={"region": "sf", "day": "yesterday"},
            headers=server.auth(Role.OPS, "ops_1"),
        )
    assert (other.status_code, customer.status_code, bad_day.status_code) == (403, 403, 422)
    assert bad_day.json()["error"]["field"] is not None
