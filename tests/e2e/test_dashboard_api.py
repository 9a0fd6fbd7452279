"""The dashboard's API on a real server: the road network to draw and the live feed of a
region (drivers, active orders, KPIs), with who may see them."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ontheway.auth import Role
from ontheway.bench.common import free_port
from ontheway.connections import Connections
from ontheway.regions import Catalog
from ontheway.roads.store import graph_exists, graph_name
from ontheway.seeding import seed_with_fleet
from ontheway.settings import Settings
from tests.e2e.conftest import Server
from tests.e2e.test_fleet_tracking import report
from tests.helpers import order_body

SF_DOWNTOWN = Path(__file__).parents[1] / "data" / "osm" / "san-francisco-downtown-drive.osm.bz2"
UNION_SQUARE = (37.7880, -122.4075)


@pytest.fixture(scope="package")
async def sf_map(server: Server, conns: Connections) -> Server:
    """The server, with a road map of sf: the one the other tests use when there is one,
    else downtown San Francisco imported by the CLI (never replacing a graph in use)."""
    assert conns.graphs is not None
    if not await graph_exists(await conns.graphs.db(), graph_name("sf")):
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "ontheway",
                "roads",
                "import",
                "--region",
                "sf",
                str(SF_DOWNTOWN),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            env=dict(os.environ),
        )
        assert result.returncode == 0, result.stderr
    return server


@pytest.fixture(scope="module")
async def crew(conns: Connections, catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """A seeded corner of sf of this module's own: a restaurant, customers, four drivers."""
    return await seed_with_fleet(
        conns,
        catalog,
        settings,
        "sf",
        restaurants=1,
        customers=2,
        drivers=4,
        seed=random.randrange(1 << 30),
    )


def ops_token(server: Server, regions: list[str] | None = None) -> str:
    return server.token(Role.OPS, "ops_dash", regions=regions)


async def set_status(server: Server, driver: str, status: str) -> None:
    """The driver goes ``available`` or ``offline`` (an offline dot stays on the map, grey)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        resp = await http.post(
            "/api/driver/status",
            json={"driver_id": driver, "status": status},
            headers=server.auth(Role.DRIVER, driver),
        )
    assert resp.status_code == 200, resp.text


async def go_offline(server: Server, driver: str) -> None:
    await set_status(server, driver, "offline")


async def go_online(server: Server, driver: str) -> None:
    await set_status(server, driver, "available")


async def place_and_assign(
    server: Server, restaurant: dict[str, Any], customer: str, driver: str, **body: Any
) -> str:
    """A customer's order, assigned by ops to ``driver``; returns its id."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as http:
        resp = await http.post(
            "/api/orders",
            json=order_body(restaurant, **body),
            headers=server.auth(Role.CUSTOMER, customer),
        )
        assert resp.status_code == 201, resp.text
        order_id: str = resp.json()["order_id"]
        resp = await http.post(
            f"/api/ops/orders/{order_id}/assign",
            json={"driver_id": driver},
            headers=server.auth(Role.OPS, "ops_dash"),
        )
        assert resp.status_code == 200, resp.text
    return order_id


def live_url(server: Server, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"{server.base_url.replace('http://', 'ws://')}/ws/ops/live?{query}"


async def next_snapshot(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(decode=True), 15))
    assert message["type"] == "snapshot", message
    return message


async def snapshot_until(ws: ClientConnection, test: Any, what: str) -> dict[str, Any]:
    """Snapshots until one passes ``test`` (a deadline, not a fixed wait)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        snap = await next_snapshot(ws)
        if test(snap):
            return snap
    raise AssertionError(f"no snapshot showed {what} within 20 s")


def get_network(server: Server, region: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(
        f"{server.base_url}/api/ops/roads/{region}/network", headers=headers, timeout=60
    )


def test_the_network_draws_each_street_once_with_rounded_points(sf_map: Server) -> None:
    resp = get_network(sf_map, "sf", ops_token(sf_map, ["sf"]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["region"] == "sf" and body["import_id"]
    nodes, segments = body["nodes"], body["segments"]
    assert len(segments) % 3 == 0 and len(segments) > 3 * 500
    pairs = [tuple(sorted(segments[i : i + 2])) for i in range(0, len(segments), 3)]
    assert len(pairs) == len(set(pairs)), "a street is drawn twice"
    assert all(a != b for a, b in pairs)
    assert all(0 <= c < len(body["classes"]) for c in segments[2::3])
    assert max(max(a, b) for a, b in pairs) == len(nodes) // 2 - 1
    assert all(round(x, 5) == x for x in nodes[:200])
    box = body["bbox"]
    assert 37.55 <= box["min_lat"] < box["max_lat"] <= 38.0
    assert -122.6 <= box["min_lng"] < box["max_lng"] <= -122.05
    again = get_network(sf_map, "sf", ops_token(sf_map))
    assert again.content == resp.content


def test_the_network_needs_an_ops_token_of_the_region(sf_map: Server) -> None:
    assert get_network(sf_map, "sf", None).status_code == 401
    customer = sf_map.token(Role.CUSTOMER, "user_dash")
    assert get_network(sf_map, "sf", customer).status_code == 403
    other = get_network(sf_map, "sf", ops_token(sf_map, ["nyc"]))
    assert other.status_code == 403
    assert other.json()["error"]["field"] == "region"


async def test_a_region_without_a_map_is_404_naming_the_import_command(
    sf_map: Server, conns: Connections, catalog: Catalog
) -> None:
    assert conns.graphs is not None
    db = await conns.graphs.db()
    bare = [r.region for r in catalog if not await graph_exists(db, graph_name(r.region))]
    assert bare, "every region has a road map: no region to test the 404 with"
    resp = get_network(sf_map, bare[0], ops_token(sf_map))
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "no_road_map"
    assert f"ontheway roads import --region {bare[0]}" in resp.json()["error"]["message"]
    unknown = get_network(sf_map, "atlantis", ops_token(sf_map))
    assert unknown.status_code == 404


async def test_the_live_feed_shows_drivers_moving_and_changing_status_and_orders(
    server: Server, crew: dict[str, Any]
) -> None:
    online, parked, driver = (d["driver_id"] for d in crew["drivers"][:3])
    restaurant = crew["restaurants"][0]
    # Offline before it ever reports: no dispatcher (of tests running beside these) takes it.
    await go_offline(server, parked)
    await report(server, parked, *UNION_SQUARE)
    await report(server, online, UNION_SQUARE[0] + 0.002, UNION_SQUARE[1])
    async with connect(live_url(server, region="sf", token=ops_token(server, ["sf"]))) as ws:
        snap = await snapshot_until(
            ws,
            lambda s: {online, parked} <= {d[0] for d in s["drivers"]},
            "both drivers",
        )
        mine = {d[0]: d for d in snap["drivers"]}
        assert mine[parked] == [parked, UNION_SQUARE[0], UNION_SQUARE[1], "offline"]
        assert mine[online][1:3] == pytest.approx([UNION_SQUARE[0] + 0.002, UNION_SQUARE[1]])
        assert mine[online][3] in ("available", "busy")  # busy: another test's offer
        assert snap["kpis"]["drivers_offline"] >= 1
        assert snap["kpis"]["drivers_available"] + snap["kpis"]["drivers_busy"] >= 1
        await report(server, parked, UNION_SQUARE[0] + 0.005, UNION_SQUARE[1] - 0.001)
        await snapshot_until(
            ws,
            lambda s: [parked, 37.793, -122.4085, "offline"] in s["drivers"],
            "the driver's new position",
        )
        await go_online(server, parked)
        await snapshot_until(
            ws,
            lambda s: any(d[0] == parked and d[3] != "offline" for d in s["drivers"]),
            "the driver online",
        )
        # Reported and assigned at once: the moment another test's dispatcher could use.
        await report(server, driver, restaurant["lat"], restaurant["lng"])
        order_id = await place_and_assign(server, restaurant, crew["customers"][0], driver)
        snap = await snapshot_until(
            ws,
            lambda s: any(o["order_id"] == order_id for o in s["orders"]),
            "the new order",
        )
        order = next(o for o in snap["orders"] if o["order_id"] == order_id)
        assert order["status"] == "driver_assigned"
        assert order["driver_id"] == driver
        assert order["restaurant"] == [round(restaurant["lat"], 5), round(restaurant["lng"], 5)]
        assert order["customer"][0] == pytest.approx(restaurant["lat"] + 0.0027, abs=1e-5)
        assert snap["kpis"]["orders_today"]["driver_assigned"] >= 1
        assert snap["kpis"]["active_orders"] >= 1
        assert snap["kpis"]["assigned_last_15_min"] >= 1
        assert snap["kpis"]["assignment_p50_s"] is not None


async def refused(url: str) -> tuple[dict[str, Any], int]:
    async with connect(url) as ws:
        first: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(decode=True), 10))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    return first, closed.value.rcvd.code


async def test_the_live_feed_refuses_callers_who_may_not_watch_the_region(server: Server) -> None:
    first, code = await refused(live_url(server, region="sf"))
    assert (first["type"], first["error"]["code"], code) == ("error", "missing_token", 4401)
    first, code = await refused(live_url(server, region="sf", token="not-a-token"))
    assert code == 4401
    customer = server.token(Role.CUSTOMER, "user_dash")
    first, code = await refused(live_url(server, region="sf", token=customer))
    assert (first["error"]["code"], code) == ("forbidden", 4403)
    first, code = await refused(live_url(server, region="sf", token=ops_token(server, ["nyc"])))
    assert (first["error"]["field"], code) == ("region", 4403)
    _, code = await refused(live_url(server, region="atlantis", token=ops_token(server)))
    assert code == 4404
    first, code = await refused(live_url(server, token=ops_token(server)))
    assert (first["error"]["field"], code) == ("region", 4422)


async def test_serve_prints_the_dashboard_url_with_an_ops_token(sf_map: Server) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "ontheway", "serve", "--port", str(port)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        prefix = f"dashboard: http://127.0.0.1:{port}/#token="
        assert line.startswith(prefix), line
        token = line.removeprefix(prefix).strip()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while True:
                try:
                    if (await http.get("/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server did not come up"
                await asyncio.sleep(0.1)
            page = await http.get("/")
            assert page.status_code == 200 and "/static/dashboard.js" in page.text
            assert (await http.get("/static/dashboard.js")).status_code == 200
            track = await http.get("/track/ord_sf_whatever")
            assert track.status_code == 200 and "/static/track.js" in track.text
            network = await http.get(
                "/api/ops/roads/sf/network", headers={"Authorization": f"Bearer {token}"}
            )
            assert network.status_code == 200, network.text
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
