import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ontheway.auth import Role
from ontheway.bench.common import free_port
from ontheway.orders.store import ShardAccess
from tests.e2e.conftest import Server, start_server, stop_server
from tests.helpers import order_body


def place(
    server: Server,
    customer: str,
    body: dict[str, Any],
    **headers: str,
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/orders",
        json=body,
        headers={**server.auth(Role.CUSTOMER, customer), **headers},
    )


async def order_rows(shards: ShardAccess, customer: str) -> int:
    async with shards.connection("sf") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM orders WHERE customer_id = %s", (customer,)
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])


def test_a_customer_places_an_order_and_only_the_right_callers_see_it(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][0]
    resp = place(server, f"user_{uid}", order_body(restaurant))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["status"] == "searching_driver" and order["region"] == "sf"
    assert order["total"].count(".") == 1 and len(order["total"].split(".")[1]) == 2
    url = f"{server.base_url}/api/orders/{order['order_id']}"
    allowed = [
        (Role.CUSTOMER, f"user_{uid}"),
        (Role.RESTAURANT, restaurant["restaurant_id"]),
        (Role.OPS, "ops_1"),
    ]
    for role, sub in allowed:
        assert httpx.get(url, headers=server.auth(role, sub)).status_code == 200
    refused = [
        (Role.CUSTOMER, "user_someone_else"),
        (Role.RESTAURANT, "rest_sf_other0"),
        (Role.DRIVER, "drv_sf_nobody"),
    ]
    for role, sub in refused:
        assert httpx.get(url, headers=server.auth(role, sub)).status_code == 403
    nyc_ops = server.token(Role.OPS, "ops_2", regions=["nyc"])
    assert httpx.get(url, headers={"Authorization": f"Bearer {nyc_ops}"}).status_code == 403
    assert httpx.get(url).status_code == 401


def test_the_delivery_flow_over_http_with_its_audit_trail(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][1]
    resp = place(server, f"user_{uid}", order_body(restaurant))
    assert resp.status_code == 201, resp.text
    oid = resp.json()["order_id"]
    driver = sf["drivers"][0]["driver_id"]
    server.report_position(driver, restaurant["lat"], restaurant["lng"])
    base = f"{server.base_url}/api/orders/{oid}"
    rest_auth = server.auth(Role.RESTAURANT, restaurant["restaurant_id"])
    assert (
        httpx.post(f"{base}/confirm", json={"prep_time_s": 600}, headers=rest_auth).status_code
        == 200
    )
    active = httpx.get(f"{server.base_url}/api/restaurant/orders", headers=rest_auth).json()
    assert oid in {o["order_id"] for o in active}
    assign = httpx.post(
        f"{server.base_url}/api/ops/orders/{oid}/assign",
        json={"driver_id": driver},
        headers=server.auth(Role.OPS, "ops_1"),
    )
    assert assign.status_code == 200 and assign.json()["assigned_driver_id"] == driver
    other = server.auth(Role.DRIVER, sf["drivers"][1]["driver_id"])
    assert httpx.post(f"{base}/arrived", headers=other).status_code == 403
    mine = server.auth(Role.DRIVER, driver)
    early = httpx.post(f"{base}/delivered", headers=mine)
    assert early.status_code == 409 and early.json()["error"]["code"] == "illegal_transition"
    assert httpx.post(f"{base}/arrived", headers=mine).status_code == 200
    assert httpx.post(f"{base}/ready", headers=rest_auth).status_code == 200
    picked = httpx.post(f"{base}/picked-up", headers=mine).json()
    cancel = httpx.post(f"{base}/cancel", headers=server.auth(Role.CUSTOMER, f"user_{uid}"))
    assert cancel.status_code == 409
    done = httpx.post(f"{base}/delivered", headers=mine).json()
    assert done["status"] == "delivered" and done["payment_status"] == "captured"
    events = httpx.get(f"{base}/events", headers=server.auth(Role.CUSTOMER, f"user_{uid}"))
    assert [e["event_type"] for e in events.json()] == [
        "ORDER_PLACED",
        "ORDER_CONFIRMED",
        "DRIVER_ASSIGNED",
        "DRIVER_ARRIVED_RESTAURANT",
        "ORDER_READY",
        "ORDER_PICKED_UP",
        "ORDER_DELIVERED",
    ]
    at_pickup = httpx.get(
        base, params={"at": picked["pickup_time"]}, headers=server.auth(Role.OPS, "ops_1")
    ).json()
    assert at_pickup["status"] == "picked_up"
    now = httpx.get(
        base, params={"at": "2999-01-01T00:00:00Z"}, headers=server.auth(Role.OPS, "ops_1")
    ).json()
    assert now["status"] == "delivered"


def test_an_idempotency_key_returns_the_first_order_and_refuses_another_body(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    body = order_body(sf["restaurants"][2])
    first = place(server, f"user_{uid}", body, **{"Idempotency-Key": uid})
    again = place(server, f"user_{uid}", body, **{"Idempotency-Key": uid})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["order_id"] == first.json()["order_id"]
    other = place(server, f"user_{uid}", {**body, "tip": "9.00"}, **{"Idempotency-Key": uid})
    assert other.status_code == 409
    assert other.json()["error"]["field"] == "Idempotency-Key"


BAD_BODIES = {
    "quantity zero": ({"items": [{"item_id": "x", "quantity": 0}]}, "items.0.quantity"),
    "quantity negative": ({"items": [{"item_id": "x", "quantity": -3}]}, "items.0.quantity"),
    "quantity huge": ({"items": [{"item_id": "x", "quantity": 10**12}]}, "items.0.quantity"),
    "too many lines": (
        {"items": [{"item_id": f"i{n}", "quantity": 1} for n in range(31)]},
        "items",
    ),
    "no items": ({"items": []}, "items"),
    "latitude out of range": (
        {"delivery_location": {"lat": 91, "lng": 0}},
        "delivery_location.lat",
    ),
    "longitude out of range": (
        {"delivery_location": {"lat": 37.7, "lng": 181}},
        "delivery_location.lng",
    ),
    "longitude a string": (
        {"delivery_location": {"lat": 37.7, "lng": "west"}},
        "delivery_location.lng",
    ),
    "negative tip": ({"tip": "-1.00"}, "tip"),
    "tip with three decimals": ({"tip": "1.234"}, "tip"),
    "a 10 kB address": (
        {"delivery_location": {"lat": 37.79, "lng": -122.41, "address": "x" * 10_000}},
        "delivery_location.address",
    ),
    "a 10 kB restaurant id": ({"restaurant_id": "r" * 10_000}, "restaurant_id"),
    "SQL in an id": ({"restaurant_id": "rest_sf_x'; DROP TABLE orders; --"}, "restaurant_id"),
    "an unknown field": ({"coupon": "FREE"}, "coupon"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_bad_input_is_a_4xx_naming_the_field_and_leaves_nothing(
    server: Server,
    sf: dict[str, Any],
    shards: ShardAccess,
    uid: str,
    case: str,
) -> None:
    change, field = BAD_BODIES[case]
    resp = place(server, f"user_{uid}", {**order_body(sf["restaurants"][3]), **change})
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["field"] == field
    assert await order_rows(shards, f"user_{uid}") == 0


async def test_nan_coordinates_and_a_body_that_is_not_json_are_refused(
    server: Server,
    sf: dict[str, Any],
    shards: ShardAccess,
    uid: str,
) -> None:
    headers = {**server.auth(Role.CUSTOMER, f"user_{uid}"), "content-type": "application/json"}
    body = json.dumps(order_body(sf["restaurants"][3])).replace(
        '"lat": ' + str(sf["restaurants"][3]["lat"] + 0.0027), '"lat": NaN'
    )
    assert "NaN" in body
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as client:
        nan = await client.post("/api/orders", content=body)
        garbage = await client.post("/api/orders", content=b"{not json")
    assert nan.status_code == 422 and nan.json()["error"]["field"] == "delivery_location.lat"
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == "malformed_json"
    assert await order_rows(shards, f"user_{uid}") == 0


def test_sql_metacharacters_in_an_address_are_stored_as_text(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][4]
    address = "1 O'Farrell St'); DROP TABLE orders; --"
    body = order_body(restaurant)
    body["delivery_location"]["address"] = address
    resp = place(server, f"user_{uid}", body)
    assert resp.status_code == 201
    assert resp.json()["customer_location"]["address"] == address


def test_only_customers_place_orders(server: Server, sf: dict[str, Any]) -> None:
    resp = httpx.post(
        f"{server.base_url}/api/orders",
        json=order_body(sf["restaurants"][0]),
        headers=server.auth(Role.DRIVER, "drv_1"),
    )
    assert resp.status_code == 403


def test_restaurants_are_browsed_by_place_and_show_their_menu(
    server: Server,
    sf: dict[str, Any],
) -> None:
    restaurant = sf["restaurants"][0]
    auth = server.auth(Role.CUSTOMER, "user_browser")
    near = httpx.get(
        f"{server.base_url}/api/restaurants",
        headers=auth,
        params={"lat": restaurant["lat"], "lng": restaurant["lng"]},
    ).json()
    assert near[0]["restaurant_id"] == restaurant["restaurant_id"]
    assert near == sorted(near, key=lambda r: r["distance_m"])
    menu = httpx.get(
        f"{server.base_url}/api/restaurants/{restaurant['restaurant_id']}", headers=auth
    ).json()
    assert {i["item_id"] for i in menu["items"]} == {i["item_id"] for i in restaurant["items"]}
    missing = httpx.get(f"{server.base_url}/api/restaurants/rest_sf_nothere00", headers=auth)
    assert missing.status_code == 404


def test_when_one_shard_is_down_only_its_regions_answer_503(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    dsns = dict(server.settings.shard_dsns)
    dsns["europe"] = f"postgresql://ontheway@127.0.0.1:{free_port()}/ontheway_europe"
    base, proc = start_server(
        {"ONTHEWAY_SHARD_DSNS": json.dumps(dsns), "ONTHEWAY_DEPENDENCY_TIMEOUT_S": "1"},
        expect_status=503,
    )
    try:
        ops = server.auth(Role.OPS, "ops_1")
        ok = httpx.post(
            f"{base}/api/orders",
            json=order_body(sf["restaurants"][5]),
            headers=server.auth(Role.CUSTOMER, f"user_{uid}"),
        )
        assert ok.status_code == 201
        started = time.monotonic()
        london = httpx.get(f"{base}/api/orders/ord_london_0000000000", headers=ops, timeout=10)
        assert london.status_code == 503
        assert london.json()["error"]["code"] == "dependency_unavailable"
        assert time.monotonic() - started < 5
        listing = httpx.get(
            f"{base}/api/ops/orders", params={"region": ["sf", "london"]}, headers=ops, timeout=10
        ).json()
        assert ok.json()["order_id"] in {o["order_id"] for o in listing["orders"]}
        assert listing["unavailable"][0]["regions"] == ["london"]
        # A customer's summary spans the shards: the others answer, the header names the
        # regions left out.
        summary = httpx.get(
            f"{base}/api/customers/user_{uid}/orders/summary",
            headers=server.auth(Role.CUSTOMER, f"user_{uid}"),
            timeout=10,
        )
        assert summary.status_code == 200, summary.text
        assert [day["total_orders"] for day in summary.json()] == [1]
        left_out = summary.headers["Unavailable-Regions"].split(",")
        assert "london" in left_out and "sf" not in left_out
        # Limited to the regions of the shard that is down, nothing answers: 503.
        london_ops = server.token(Role.OPS, "ops_3", regions=["london", "paris"])
        down = httpx.get(
            f"{base}/api/customers/user_{uid}/orders/summary",
            headers={"Authorization": f"Bearer {london_ops}"},
            timeout=10,
        )
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "dependency_unavailable"
    finally:
        stop_server(proc)


def test_a_customer_changes_its_order_before_pickup_and_nobody_else_can(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][2]
    order = place(server, f"user_{uid}", order_body(restaurant)).json()
    url = f"{server.base_url}/api/orders/{order['order_id']}"
    item = restaurant["items"][0]["item_id"]
    change = {"items": [{"item_id": item, "quantity": 2}]}
    other = httpx.patch(url, json=change, headers=server.auth(Role.CUSTOMER, "user_other"))
    assert other.status_code == 403
    empty = httpx.patch(url, json={}, headers=server.auth(Role.CUSTOMER, f"user_{uid}"))
    assert empty.status_code == 422
    done = httpx.patch(url, json=change, headers=server.auth(Role.CUSTOMER, f"user_{uid}"))
    assert done.status_code == 200, done.text
    assert done.json()["items"] == [
        {
            "item_id": item,
            "name": restaurant["items"][0]["name"],
            "price": restaurant["items"][0]["price"],
            "quantity": 2,
        }
    ]


def assign_a_driver(
    server: Server, sf: dict[str, Any], order_id: str, restaurant: dict[str, Any], but: set[str]
) -> str:
    """Assign the order (as ops) to the first seeded driver, not in ``but``, with room for it:
    tests earlier in the session may have left some drivers at capacity."""
    for driver in (d["driver_id"] for d in sf["drivers"] if d["driver_id"] not in but):
        server.report_position(driver, restaurant["lat"], restaurant["lng"])
        resp = httpx.post(
            f"{server.base_url}/api/ops/orders/{order_id}/assign",
            json={"driver_id": driver},
            headers=server.auth(Role.OPS, "ops_1"),
        )
        if resp.status_code == 200:
            assert resp.json()["assigned_driver_id"] == driver
            return driver
        assert resp.status_code == 409, resp.text
    raise AssertionError("no seeded driver had room for one more order")


def cancel(server: Server, order_id: str) -> None:
    """Cancel as ops, which frees the driver's capacity for the tests that follow."""
    resp = httpx.post(
        f"{server.base_url}/api/orders/{order_id}/cancel", headers=server.auth(Role.OPS, "ops_1")
    )
    assert resp.status_code == 200, resp.text


def test_the_assigned_driver_reads_its_order(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][4]
    resp = place(server, f"user_{uid}", order_body(restaurant))
    assert resp.status_code == 201, resp.text
    oid = resp.json()["order_id"]
    try:
        driver = assign_a_driver(server, sf, oid, restaurant, but=set())
        seen = httpx.get(
            f"{server.base_url}/api/orders/{oid}", headers=server.auth(Role.DRIVER, driver)
        )
        assert seen.status_code == 200, seen.text
        assert seen.json()["assigned_driver_id"] == driver
    finally:
        cancel(server, oid)


def test_a_driver_lists_only_its_own_active_orders_and_a_customer_may_not(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][5]
    oids = []
    try:
        for _ in range(2):
            resp = place(server, f"user_{uid}", order_body(restaurant))
            assert resp.status_code == 201, resp.text
            oids.append(resp.json()["order_id"])
        mine, theirs = oids
        driver = assign_a_driver(server, sf, mine, restaurant, but=set())
        assign_a_driver(server, sf, theirs, restaurant, but={driver})
        url = f"{server.base_url}/api/driver/orders"
        listed = httpx.get(url, params={"region": "sf"}, headers=server.auth(Role.DRIVER, driver))
        assert listed.status_code == 200, listed.text
        ids = {o["order_id"] for o in listed.json()}
        assert mine in ids and theirs not in ids
        assert all(o["assigned_driver_id"] == driver for o in listed.json())
        customer = httpx.get(
            url, params={"region": "sf"}, headers=server.auth(Role.CUSTOMER, f"user_{uid}")
        )
        assert customer.status_code == 403
    finally:
        for oid in oids:
            cancel(server, oid)


def test_the_order_summary_is_the_customers_own(
    server: Server,
    sf: dict[str, Any],
    uid: str,
) -> None:
    customer = f"user_{uid}"
    before = datetime.now(UTC).date().isoformat()
    order = place(server, customer, order_body(sf["restaurants"][0])).json()
    cancel(server, order["order_id"])
    url = f"{server.base_url}/api/customers/{customer}/orders/summary"
    resp = httpx.get(url, params={"days": 30}, headers=server.auth(Role.CUSTOMER, customer))
    assert resp.status_code == 200, resp.text
    [today] = resp.json()
    assert {
        "order_date",
        "total_orders",
        "delivered",
        "cancelled",
        "avg_order_value",
        "avg_delivery_time_mins",
    } <= set(today)
    assert today["order_date"] in {before, datetime.now(UTC).date().isoformat()}
    assert (today["total_orders"], today["delivered"], today["cancelled"]) == (1, 0, 1)
    assert today["avg_order_value"] == order["total"]
    assert today["avg_delivery_time_mins"] is None
    assert "Unavailable-Regions" not in resp.headers
    other = server.auth(Role.CUSTOMER, f"user_other_{uid}")
    assert httpx.get(url, params={"days": 30}, headers=other).status_code == 403
    assert httpx.get(url, params={"days": 30}).status_code == 401
    # Ops see the orders of their regions only.
    for regions, count in ((None, 1), (["sf"], 1), (["nyc"], 0)):
        token = server.token(Role.OPS, "ops_1", regions=regions)
        seen = httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        assert sum(day["total_orders"] for day in seen) == count, regions
