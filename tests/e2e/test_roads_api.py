import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ontheway.auth import Role
from tests.e2e.conftest import Server

SF = Path(__file__).parents[1] / "data" / "osm" / "san-francisco-downtown-drive.osm.bz2"
UNION_SQUARE = "37.7880,-122.4075"
CHINATOWN = "37.7941,-122.4078"
FERRY_BUILDING = "37.7955,-122.3937"


@pytest.fixture(scope="session")
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
