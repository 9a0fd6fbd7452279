import json
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.fleet import keys
from ontheway.fleet.model import VehicleType
from ontheway.fleet.service import open_store
from tests.e2e.conftest import Server

SF = (37.7749, -122.4194)
Register = Callable[..., object]


@pytest.fixture
async def drivers(conns: Connections, server: Server, uid: str) -> AsyncIterator[list[str]]:
    """Three drivers registered in sf near the center, forgotten afterwards."""
    store = open_store(conns.require_redis(), server.settings)
    names = [f"drv_{uid}_{i}" for i in range(3)]
    for name in names:
        await store.register_driver(name, "sf", VehicleType.CAR)
    yield names
    redis = conns.require_redis()
    for name in names:
        await redis.delete(keys.profile("sf", name), keys.status("sf", name), keys.home(name))
        await redis.zrem(keys.locations("sf"), name)
        await redis.zrem(keys.heartbeats("sf"), name)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        yield http


def fix(driver: str, **changes: object) -> dict[str, object]:
    return {"driver_id": driver, "lat": SF[0], "lng": SF[1], "timestamp": time.time(), **changes}


def error_of(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "field"}
    return body["error"]  # type: ignore[no-any-return]


async def test_a_driver_reports_its_location_and_ops_find_it_nearby(
    server: Server, client: httpx.AsyncClient, drivers: list[str]
) -> None:
    me = drivers[0]
    resp = await client.post(
        "/api/driver/location",
        json=fix(me, lat=SF[0] + 0.001),
        headers=server.auth(Role.DRIVER, me),
    )
    assert resp.status_code == 202
    assert resp.json() == {"driver_id": me, "stale": False}
    found = await client.get(
        "/api/drivers/nearby",
        params={"lat": SF[0], "lng": SF[1], "radius_mi": 0.5, "limit": 100},
        headers=server.auth(Role.OPS, "ops_1"),
    )
    assert found.status_code == 200
    mine = [d for d in found.json() if d["driver_id"] == me]
    assert mine and mine[0]["distance_mi"] == pytest.approx(0.069, abs=0.002)
    assert mine[0]["vehicle_type"] == "car"
    bikes = await client.get(
        "/api/drivers/nearby",
        params={"lat": SF[0], "lng": SF[1], "radius_mi": 0.5, "vehicle_type": "bicycle"},
        headers=server.auth(Role.OPS, "ops_1"),
    )
    assert bikes.status_code == 200
    assert me not in {d["driver_id"] for d in bikes.json()}


async def test_nearby_is_for_ops_of_the_region_only(
    server: Server, client: httpx.AsyncClient
) -> None:
    params = {"lat": SF[0], "lng": SF[1]}
    nyc_ops = {"Authorization": f"Bearer {server.token(Role.OPS, 'ops_2', regions=['nyc'])}"}
    resp = await client.get("/api/drivers/nearby", params=params, headers=nyc_ops)
    assert resp.status_code == 403
    resp = await client.get(
        "/api/drivers/nearby", params=params, headers=server.auth(Role.DRIVER, "drv_1")
    )
    assert resp.status_code == 403


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"lat": 91.0}, "lat"),
        ({"lng": -181.0}, "lng"),
        ({"lat": "37.77"}, "lat"),
        ({"lng": "east"}, "lng"),
        ({"timestamp": time.time() + 86400}, "timestamp"),
        ({"timestamp": time.time() - 86400}, "timestamp"),
        ({"lat": 0.0, "lng": -150.0}, None),
    ],
)
async def test_bad_coordinates_and_timestamps_are_refused_naming_the_field(
    server: Server,
    client: httpx.AsyncClient,
    drivers: list[str],
    changes: dict[str, object],
    field: str | None,
) -> None:
    me = drivers[0]
    resp = await client.post(
        "/api/driver/location", json=fix(me, **changes), headers=server.auth(Role.DRIVER, me)
    )
    assert resp.status_code == 422
    assert error_of(resp)["field"] == field


async def test_nan_is_refused(
    server: Server, client: httpx.AsyncClient, drivers: list[str]
) -> None:
    me = drivers[0]
    body = f'{{"driver_id": "{me}", "lat": NaN, "lng": -122.4, "timestamp": {time.time()}}}'
    resp = await client.post(
        "/api/driver/location",
        content=body,
        headers={**server.auth(Role.DRIVER, me), "content-type": "application/json"},
    )
    assert resp.status_code in (400, 422)
    assert resp.status_code == 400 or error_of(resp)["field"] == "lat"


async def test_an_unknown_driver_is_404(
    server: Server, client: httpx.AsyncClient, uid: str
) -> None:
    ghost = f"ghost_{uid}"
    resp = await client.post(
        "/api/driver/location", json=fix(ghost), headers=server.auth(Role.DRIVER, ghost)
    )
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "unknown_driver"


async def test_a_driver_reporting_another_drivers_id_is_403(
    server: Server, client: httpx.AsyncClient, drivers: list[str]
) -> None:
    resp = await client.post(
        "/api/driver/location", json=fix(drivers[1]), headers=server.auth(Role.DRIVER, drivers[0])
    )
    assert resp.status_code == 403
    assert error_of(resp)["field"] == "driver_id"


async def test_a_flooding_driver_gets_429_and_other_drivers_are_unaffected(
    server: Server, client: httpx.AsyncClient, drivers: list[str]
) -> None:
    flooder, calm = drivers[0], drivers[1]
    batch = {"updates": [fix(flooder, timestamp=time.time() - 1 + i / 1000) for i in range(60)]}
    resp = await client.post(
        "/api/driver/locations", json=batch, headers=server.auth(Role.DRIVER, flooder)
    )
    codes = {r["error"]["code"] for r in resp.json()["rejected"]}
    assert codes == {"rate_limited"}
    single = await client.post(
        "/api/driver/location", json=fix(flooder), headers=server.auth(Role.DRIVER, flooder)
    )
    assert single.status_code == 429
    resp = await client.post(
        "/api/driver/location", json=fix(calm), headers=server.auth(Role.DRIVER, calm)
    )
    assert resp.status_code == 202


async def test_a_batch_lands_its_good_entries_and_lists_the_bad_ones(
    server: Server, client: httpx.AsyncClient, drivers: list[str], uid: str
) -> None:
    now = time.time()
    batch = {
        "updates": [
            fix(drivers[0], timestamp=now),
            fix(drivers[1], lat=123),
            "not an object",
            fix(f"ghost_{uid}"),
            fix(drivers[2], timestamp=now),
        ]
    }
    resp = await client.post(
        "/api/driver/locations", json=batch, headers=server.auth(Role.OPS, "ops_1")
    )
    assert resp.status_code == 202
    body = resp.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["error"]["code"]) for r in body["rejected"]] == [
        (1, "invalid_input"),
        (2, "invalid_input"),
        (3, "unknown_driver"),
    ]


async def test_a_driver_that_goes_offline_is_no_longer_nearby(
    server: Server, client: httpx.AsyncClient, drivers: list[str]
) -> None:
    me = drivers[2]
    auth = server.auth(Role.DRIVER, me)
    await client.post("/api/driver/location", json=fix(me), headers=auth)
    resp = await client.post(
        "/api/driver/status", json={"driver_id": me, "status": "offline"}, headers=auth
    )
    assert resp.json() == {"driver_id": me, "status": "offline"}
    found = await client.get(
        "/api/drivers/nearby",
        params={"lat": SF[0], "lng": SF[1], "radius_mi": 0.2, "limit": 100},
        headers=server.auth(Role.OPS, "ops_1"),
    )
    assert me not in {d["driver_id"] for d in found.json()}


# -- the WebSocket -----------------------------------------------------------------------------


def ws_url(server: Server, token: str | None) -> str:
    url = server.base_url.replace("http://", "ws://") + "/ws/driver"
    return f"{url}?token={token}" if token else url


async def next_message(ws: ClientConnection) -> dict[str, object]:
    message: dict[str, object] = json.loads(await ws.recv(decode=True))
    return message


async def test_the_socket_acks_good_fixes_and_explains_bad_ones_staying_open(
    server: Server, drivers: list[str]
) -> None:
    me = drivers[0]
    async with connect(ws_url(server, server.token(Role.DRIVER, me))) as ws:
        await ws.send("{not json")
        error = await next_message(ws)
        assert error["type"] == "error"
        assert error["error"]["code"] == "malformed_json"  # type: ignore[index]
        await ws.send(json.dumps(fix(me, lat="north")))
        error = await next_message(ws)
        assert error["error"]["field"] == "lat"  # type: ignore[index]
        await ws.send(json.dumps(fix(drivers[1])))
        error = await next_message(ws)
        assert error["error"]["code"] == "forbidden"  # type: ignore[index]
        await ws.send(json.dumps(fix(me, timestamp=time.time() + 3600)))
        error = await next_message(ws)
        assert error["error"]["field"] == "timestamp"  # type: ignore[index]
        await ws.send(json.dumps({**fix(me), "seq": 7}))
        ack = await next_message(ws)
        assert ack == {"type": "ack", "seq": 7, "accepted": 1, "stale": 0, "rejected": []}


async def test_a_gateway_batch_over_the_socket_lists_its_bad_entries(
    server: Server, drivers: list[str], uid: str
) -> None:
    async with connect(ws_url(server, server.token(Role.OPS, "ops_1"))) as ws:
        updates = [fix(drivers[0]), fix(drivers[1], lng=None), fix(f"ghost_{uid}")]
        await ws.send(json.dumps({"updates": updates, "seq": "a"}))
        ack = await next_message(ws)
        assert ack["accepted"] == 1
        assert [(r["index"], r["error"]["code"]) for r in ack["rejected"]] == [  # type: ignore[attr-defined]
            (1, "invalid_input"),
            (2, "unknown_driver"),
        ]


async def test_the_socket_refuses_missing_tokens_and_unknown_drivers(
    server: Server, uid: str
) -> None:
    async with connect(ws_url(server, None)) as ws:
        assert (await next_message(ws))["error"]["code"] == "missing_token"  # type: ignore[index]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    ghost = f"ghost_{uid}"
    async with connect(ws_url(server, server.token(Role.DRIVER, ghost))) as ws:
        assert (await next_message(ws))["error"]["code"] == "unknown_driver"  # type: ignore[index]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
