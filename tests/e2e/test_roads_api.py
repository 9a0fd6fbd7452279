import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.orders.ids import new_id
from ontheway.regions import Catalog
from ontheway.roads.delivery import zones_graph
from ontheway.roads.store import drop_graph
from tests.e2e.conftest import Server

SF = Path(__file__).parents[1] / "data" / "osm" / "san-francisco-downtown-drive.osm.bz2"
UNION_SQUARE = "37.7880,-122.4075"
CHINATOWN = "37.7941,-122.4078"
FERRY_BUILDING = "37.7955,-122.3937"


@pytest.fixture(scope="package")
def sf_roads(server: Server) -> Server:
    """The server, with downtown San Francisco imported (by the CLI) as the map of sf."""
    result = subprocess.run(
        [sys.executable, "-m", "ontheway", "roads", "import", "--region", "sf", str(SF)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return server


def get_route(
    server: Server, role: Role = Role.CUSTOMER, **params: str | list[str]
) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/api/route",
        params=params,
        headers=server.auth(role, "user_1" if role is Role.CUSTOMER else "drv_001"),
        timeout=30,
    )


def test_a_route_across_downtown_has_distance_duration_legs_geometry_and_steps(
    sf_roads: Server,
) -> None:
    response = get_route(sf_roads, **{"from": UNION_SQUARE, "to": FERRY_BUILDING})
    assert response.status_code == 200, response.text
    body = response.json()
    assert 1000 < body["distance_m"] < 4000
    assert 60 < body["duration_s"] < 900
    assert len(body["legs"]) == 1
    assert body["legs"][0]["duration_s"] == body["duration_s"]
    assert all(len(point) == 2 for point in body["geometry"])
    assert body["geometry"][0][0] == pytest.approx(37.788, abs=0.002)
    assert body["geometry"][-1][1] == pytest.approx(-122.3937, abs=0.003)
    assert body["steps"][0]["turn"] == "depart"
    assert body["steps"][-1]["turn"] == "arrive"
    assert {"street", "turn", "distance_m", "instruction"} <= set(body["steps"][1])


def test_any_role_may_ask_for_a_route(sf_roads: Server) -> None:
    response = get_route(sf_roads, Role.DRIVER, **{"from": UNION_SQUARE, "to": CHINATOWN})
    assert response.status_code == 200, response.text


def test_a_route_through_a_stop_has_two_legs(sf_roads: Server) -> None:
    response = get_route(sf_roads, **{"from": UNION_SQUARE, "via": CHINATOWN, "to": FERRY_BUILDING})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["legs"]) == 2
    assert body["duration_s"] == pytest.approx(
        sum(leg["duration_s"] for leg in body["legs"]), abs=0.2
    )


@pytest.mark.parametrize(
    ("params", "status", "code", "field"),
    [
        ({"from": "37.788", "to": FERRY_BUILDING}, 422, "invalid_coordinates", "from"),
        ({"from": UNION_SQUARE, "to": "north,west"}, 422, "invalid_coordinates", "to"),
        ({"from": UNION_SQUARE, "to": "95,-122.4"}, 422, "invalid_coordinates", "to"),
        ({"from": UNION_SQUARE, "to": "nan,-122.4"}, 422, "invalid_coordinates", "to"),
        ({"from": UNION_SQUARE, "to": UNION_SQUARE}, 422, "same_point", "to"),
        ({"from": UNION_SQUARE, "to": "37.60,-122.10"}, 422, "outside_road_map", "to"),
        ({"from": "0.5,0.5", "to": UNION_SQUARE}, 422, "outside_all_regions", None),
        ({"from": "35.68,139.76", "to": "35.69,139.70"}, 404, "no_road_map", "region"),
        ({"from": UNION_SQUARE}, 422, "invalid_input", "to"),
    ],
)
def test_a_bad_route_request_is_a_json_error_naming_the_field(
    sf_roads: Server, params: dict[str, str], status: int, code: str, field: str | None
) -> None:
    response = get_route(sf_roads, **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)


def test_a_route_needs_a_token(sf_roads: Server) -> None:
    response = httpx.get(
        f"{sf_roads.base_url}/api/route", params={"from": UNION_SQUARE, "to": CHINATOWN}
    )
    assert response.status_code == 401


def post_traffic(server: Server, body: object, token: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/ops/traffic",
        content=json.dumps(body),  # json.dumps writes NaN, as a careless client might
        headers={
            "Authorization": f"Bearer {token or server.token(Role.OPS, 'ops_1')}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )


EVERYWHERE = {"lat": 37.79, "lng": -122.40, "radius_m": 20_000, "traffic_factor": 1.0}


def test_ops_slow_a_street_and_the_next_route_follows_until_traffic_clears(
    sf_roads: Server,
) -> None:
    trip = {"from": UNION_SQUARE, "to": FERRY_BUILDING}
    before = get_route(sf_roads, **trip).json()
    street = next(step["street"] for step in before["steps"] if step["street"])
    response = post_traffic(
        sf_roads, {"region": "sf", "streets": [{"name": street, "traffic_factor": 8}]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["changed_roads"] > 0
    slower = get_route(sf_roads, **trip).json()
    assert slower["duration_s"] > before["duration_s"]
    road = post_traffic(sf_roads, {"region": "sf", "edges": [{"road_id": 0, "traffic_factor": 2}]})
    assert road.json()["changed_roads"] == 1
    cleared = post_traffic(sf_roads, {"region": "sf", "areas": [EVERYWHERE]})
    assert cleared.status_code == 200, cleared.text
    assert get_route(sf_roads, **trip).json()["duration_s"] == before["duration_s"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        (
            {"edges": [{"road_id": 1, "traffic_factor": 0}]},
            422,
            "invalid_input",
            "edges.0.traffic_factor",
        ),
        (
            {"edges": [{"road_id": 1, "traffic_factor": -2}]},
            422,
            "invalid_input",
            "edges.0.traffic_factor",
        ),
        (
            {"edges": [{"road_id": 1, "traffic_factor": float("nan")}]},
            422,
            "invalid_input",
            "edges.0.traffic_factor",
        ),
        (
            {"edges": [{"road_id": 1, "traffic_factor": 21}]},
            422,
            "invalid_input",
            "edges.0.traffic_factor",
        ),
        (
            {
                "edges": [
                    {"road_id": 1, "traffic_factor": 2},
                    {"road_id": 10**9, "traffic_factor": 2},
                ]
            },
            422,
            "unknown_road",
            "edges.1.road_id",
        ),
        (
            {"streets": [{"name": "Nowhere Lane", "traffic_factor": 2}]},
            422,
            "unknown_street",
            "streets.0.name",
        ),
        ({"areas": [{**EVERYWHERE, "radius_m": 0}]}, 422, "invalid_input", "areas.0.radius_m"),
        ({}, 422, "invalid_traffic", "edges"),
        (
            {"region": "atlantis", "edges": [{"road_id": 1, "traffic_factor": 2}]},
            404,
            "unknown_region",
            "region",
        ),
        (
            {"region": "tokyo", "edges": [{"road_id": 1, "traffic_factor": 2}]},
            404,
            "no_road_map",
            "region",
        ),
    ],
)
def test_a_bad_traffic_change_is_an_error_naming_the_field_and_changes_nothing(
    sf_roads: Server, body: dict[str, object], status: int, code: str, field: str
) -> None:
    trip = {"from": UNION_SQUARE, "to": CHINATOWN}
    before = get_route(sf_roads, **trip).json()["duration_s"]
    response = post_traffic(sf_roads, {"region": "sf", **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert get_route(sf_roads, **trip).json()["duration_s"] == before


def test_only_ops_of_the_region_may_set_traffic(sf_roads: Server) -> None:
    body = {"region": "sf", "areas": [EVERYWHERE]}
    customer = post_traffic(sf_roads, body, sf_roads.token(Role.CUSTOMER, "user_1"))
    assert customer.status_code == 403
    elsewhere = sf_roads.token(Role.OPS, "ops_2", regions=["nyc"])
    assert post_traffic(sf_roads, body, elsewhere).status_code == 403
    assert (
        post_traffic(sf_roads, body, sf_roads.token(Role.OPS, "ops_3", regions=["sf"])).status_code
        == 200
    )


@pytest.fixture
async def zoned_restaurant(
    sf_roads: Server, conns: Connections, catalog: Catalog, uid: str
) -> AsyncIterator[str]:
    """A restaurant at Union Square delivering 2.5 km by road, its zones built by the CLI."""
    restaurant_id = new_id("rest", "sf")
    sql = (
        "INSERT INTO restaurants (restaurant_id, name, region, location, delivery_radius_m,"
        " prep_time_mean_s, prep_time_sd_s) VALUES (%s, %s, 'sf',"
        " ST_SetSRID(ST_MakePoint(-122.4075, 37.7880), 4326)::geography, 2500, 600, 60)"
    )
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute(sql, (restaurant_id, f"Zone test {uid}"))
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ontheway", "roads", "zones", "--region", "sf"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "delivery cells for" in result.stdout
    yield restaurant_id
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute("DELETE FROM restaurants WHERE restaurant_id = %s", (restaurant_id,))
    # The CLI zoned every San Francisco restaurant: left in place, the zones would refuse
    # later tests' random addresses that their restaurants' radius allows (they are not by road).
    assert conns.graphs is not None
    await drop_graph(await conns.graphs.db(), zones_graph("sf"))


def can_deliver(server: Server, restaurant_id: str, **params: object) -> httpx.Response:
    return httpx.get(
        f"{server.base_url}/api/restaurants/{restaurant_id}/can-deliver",
        params=params,  # type: ignore[arg-type]
        headers=server.auth(Role.CUSTOMER, "user_1"),
        timeout=30,
    )


async def test_a_restaurant_can_deliver_inside_its_zone_and_not_outside(
    sf_roads: Server, zoned_restaurant: str
) -> None:
    inside = can_deliver(sf_roads, zoned_restaurant, lat=37.7941, lng=-122.4078)
    assert inside.status_code == 200, inside.text
    assert inside.json()["can_deliver"] is True
    assert 30 < inside.json()["travel_time_s"] < 600
    outside = can_deliver(sf_roads, zoned_restaurant, lat=37.7300, lng=-122.4800)
    assert outside.json() == {"can_deliver": False, "travel_time_s": None, "distance_m": None}


@pytest.mark.parametrize(
    ("restaurant", "params", "status", "code", "field"),
    [
        (
            "rest_sf_0000unknown0000",
            {"lat": 37.79, "lng": -122.41},
            404,
            "no_delivery_zone",
            "restaurant_id",
        ),
        ("not-an-id", {"lat": 37.79, "lng": -122.41}, 404, "unknown_restaurant", "restaurant_id"),
        ("zoned", {"lat": 95, "lng": -122.41}, 422, "invalid_input", "lat"),
        ("zoned", {"lat": 37.79}, 422, "invalid_input", "lng"),
    ],
)
async def test_a_bad_can_deliver_question_is_an_error_naming_the_field(
    sf_roads: Server,
    zoned_restaurant: str,
    restaurant: str,
    params: dict[str, object],
    status: int,
    code: str,
    field: str,
) -> None:
    asked = zoned_restaurant if restaurant == "zoned" else restaurant
    response = can_deliver(sf_roads, asked, **params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == (code, field)


def plan(server: Server, body: object) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/api/route/plan",
        json=body,
        headers=server.auth(Role.DRIVER, "drv_001"),
        timeout=30,
    )


def test_a_driver_gets_its_stops_in_order_pickups_first_with_an_arrival_at_each(
    sf_roads: Server,
) -> None:
    stops = [
        {"lat": 37.7955, "lng": -122.3937, "order_id": "a", "kind": "dropoff", "service_s": 60},
        {"lat": 37.7941, "lng": -122.4078, "order_id": "a", "kind": "pickup", "service_s": 120},
        {"lat": 37.7840, "lng": -122.4010, "order_id": "b", "kind": "dropoff"},
    ]
    response = plan(sf_roads, {"driver": {"lat": 37.7880, "lng": -122.4075}, "stops": stops})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["exact"] is True
    order = [s["index"] for s in body["stops"]]
    assert sorted(order) == [0, 1, 2] and order.index(1) < order.index(0)
    arrivals = [s["arrival_s"] for s in body["stops"]]
    assert arrivals == sorted(arrivals) and body["finish_s"] >= arrivals[-1]


@pytest.mark.parametrize(
    ("stops", "field"),
    [
        ([], "stops"),
        ([{"lat": 37.79, "lng": -122.40, "order_id": "a", "kind": "deliver"}], "stops.0.kind"),
        ([{"lat": 37.79, "lng": -122.40, "order_id": "a", "kind": "pickup"}], "stops.0.order_id"),
        ([{"lat": 91, "lng": -122.40, "order_id": "a", "kind": "dropoff"}], "stops.0.lat"),
    ],
)
def test_a_bad_stop_plan_request_names_the_field(
    sf_roads: Server, stops: list[object], field: str
) -> None:
    response = plan(sf_roads, {"driver": {"lat": 37.7880, "lng": -122.4075}, "stops": stops})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
