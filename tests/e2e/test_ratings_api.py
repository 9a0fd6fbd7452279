"""Rating a delivery over HTTP: its customer, once, after delivery, from 1 to 5."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.settings import Settings
from tests.e2e.conftest import Server
from tests.helpers import order_body
from tests.integration.test_notifications import new_driver


async def placed(server: Server, restaurant: dict[str, Any], customer: str) -> str:
    """An order of ``customer`` placed over the API."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        resp = await http.post(
            "/api/orders", json=order_body(restaurant), headers=server.auth(Role.CUSTOMER, customer)
        )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


async def delivered_order(
    server: Server, conns: Connections, settings: Settings, sf: dict[str, Any], uid: str
) -> tuple[str, str]:
    """An order of ``user_<uid>`` placed, assigned, picked up and delivered over the API;
    returns it and its driver (one of the test's own)."""
    restaurant = sf["restaurants"][3]
    driver = await new_driver(conns, settings, f"drv_{uid}")
    oid = await placed(server, restaurant, f"user_{uid}")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        fix = {"driver_id": driver, "lat": restaurant["lat"], "lng": restaurant["lng"]}
        resp = await http.post(
            "/api/driver/location",
            json={**fix, "timestamp": time.time()},
            headers=server.auth(Role.DRIVER, driver),
        )
        assert resp.status_code == 202, resp.text
        resp = await http.post(
            f"/api/ops/orders/{oid}/assign",
            json={"driver_id": driver},
            headers=server.auth(Role.OPS, "ops_1"),
        )
        assert resp.status_code == 200, resp.text
        for step in ("arrived", "picked-up", "delivered"):
            resp = await http.post(
                f"/api/orders/{oid}/{step}", headers=server.auth(Role.DRIVER, driver)
            )
            assert resp.status_code == 200, resp.text
    return oid, driver


async def rate(server: Server, oid: str, role: Role, sub: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        return await http.post(
            f"/api/orders/{oid}/rating", json=body, headers=server.auth(role, sub)
        )


async def test_the_customer_rates_a_delivered_order_once_and_the_rating_is_audited(
    server: Server, conns: Connections, settings: Settings, sf: dict[str, Any], uid: str
) -> None:
    oid, driver = await delivered_order(server, conns, settings, sf, uid)
    customer = f"user_{uid}"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        url, as_customer = f"/api/orders/{oid}/rating", server.auth(Role.CUSTOMER, customer)
        unrated = await http.get(url, headers=as_customer)
        assert unrated.status_code == 404 and unrated.json()["error"]["code"] == "not_rated"
    resp = await rate(server, oid, Role.CUSTOMER, customer, {"rating": 4, "comment": "warm"})
    assert resp.status_code == 201, resp.text
    assert {k: resp.json()[k] for k in ("order_id", "driver_id", "rating", "comment")} == {
        "order_id": oid,
        "driver_id": driver,
        "rating": 4,
        "comment": "warm",
    }
    again = await rate(server, oid, Role.CUSTOMER, customer, {"rating": 1})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_rated"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        events = await http.get(f"/api/orders/{oid}/events", headers=as_customer)
        seen = await http.get(url, headers=server.auth(Role.DRIVER, driver))
        assert seen.status_code == 200 and seen.json() == resp.json()
        other = await http.get(url, headers=server.auth(Role.CUSTOMER, f"{customer}x"))
        assert other.status_code == 403
    rated = [e for e in events.json() if e["event_type"] == "ORDER_RATED"]
    assert [(e["actor"], e["data"]["rating"], e["data"]["driver_id"]) for e in rated] == [
        (customer, 4, driver)
    ]


async def test_only_the_orders_own_customer_may_rate_it(
    server: Server, conns: Connections, settings: Settings, sf: dict[str, Any], uid: str
) -> None:
    oid, driver = await delivered_order(server, conns, settings, sf, uid)
    restaurant = sf["restaurants"][3]["restaurant_id"]
    for role, sub in (
        (Role.CUSTOMER, f"user_{uid}x"),
        (Role.DRIVER, driver),
        (Role.RESTAURANT, restaurant),
        (Role.OPS, "ops_1"),
    ):
        resp = await rate(server, oid, role, sub, {"rating": 5})
        assert resp.status_code == 403, (role, resp.text)
    unknown = await rate(
        server, "ord_sf_00000000000000zzzz", Role.CUSTOMER, "user_1", {"rating": 5}
    )
    assert unknown.status_code == 404


async def test_an_order_not_yet_delivered_cannot_be_rated(
    server: Server, sf: dict[str, Any], uid: str
) -> None:
    customer = f"user_{uid}"
    oid = await placed(server, sf["restaurants"][3], customer)
    refused = await rate(server, oid, Role.CUSTOMER, customer, {"rating": 5})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_delivered"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rating": 0}, "rating"),
        ({"rating": 6}, "rating"),
        ({"rating": "five"}, "rating"),
        ({"rating": 4.5}, "rating"),
        ({}, "rating"),
        ({"rating": 3, "comment": "x" * 501}, "comment"),
    ],
)
async def test_a_bad_rating_is_refused_with_422_naming_the_field(
    server: Server, body: dict[str, Any], field: str, uid: str
) -> None:
    resp = await rate(server, "ord_sf_00000000000000zzzz", Role.CUSTOMER, f"user_{uid}", body)
    assert resp.status_code == 422, resp.text
    assert field in str(resp.json()["error"]["field"])
