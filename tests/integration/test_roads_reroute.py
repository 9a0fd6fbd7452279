"""After a traffic change: active deliveries re-routed (ROUTE_UPDATED, the tracker's ``eta``, the
driver's ``route``), other orders left alone, and the delivery zones rebuilt on the new times;
over the downtown San Francisco map as Medellín's (see test_orders_eta)."""

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.fleet import keys
from ontheway.fleet.tracking import ChannelHub
from ontheway.orders.audit import STATE_FIELDS, rebuild
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import order_view
from ontheway.regions import BBox, LatLng, load_catalog
from ontheway.roads.delivery import (
    load_restaurants,
    rebuild_zones,
    refresh_zones,
    zone_verdict,
    zones_graph,
)
from ontheway.roads.importer import import_osm
from ontheway.roads.reroute import TrafficFollowUp, follow_up
from ontheway.roads.store import drop_graph
from ontheway.roads.traffic import AreaFactor, RoadFactor, TrafficChange
from ontheway.settings import Settings
from tests.e2e.conftest import Server, start_server, stop_server
from tests.helpers import order_for
from tests.integration.test_orders_eta import (
    DATA,
    FERRY_BUILDING,
    MOSCONE,
    NEAR_UNION_SQUARE,
    UNION_SQUARE,
    World,
    deliver_to,
    place_to,
    put_driver,
    world_fixture,
)

world = world_fixture("medellin")


@pytest.fixture
def follow(world: World, conns: Connections, settings: Settings) -> TrafficFollowUp:
    quick = settings.model_copy(update={"reroute_min_change_s": 5.0})
    return follow_up(world.orders, world.roads, world.fleet, conns, world.catalog, quick)


async def route_updates(world: World, order_id: str) -> list[dict[str, Any]]:
    events = await world.queries.events(order_id)
    return [e for e in events if e["event_type"] == EventType.ROUTE_UPDATED.value]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def next_message(queue: asyncio.Queue[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The next message of ``kind`` on the queue (others skipped), within a deadline."""
    async with asyncio.timeout(10):
        while True:
            message = await queue.get()
            if message.get("type") == kind:
                return message


async def assert_audit_matches(world: World, order_id: str) -> None:
    rebuilt = rebuild(await world.queries.events(order_id))
    view = order_view(await world.queries.get(order_id))
    assert rebuilt is not None and {k: rebuilt[k] for k in STATE_FIELDS} == {
        k: view[k] for k in STATE_FIELDS
    }


async def test_traffic_on_an_active_deliverys_road_moves_its_eta_and_tells_customer_and_driver(
    world: World, follow: TrafficFollowUp, conns: Connections, uid: str
) -> None:
    driver, other, _ = world.drivers
    await put_driver(world, driver, MOSCONE)
    await put_driver(world, other, MOSCONE)
    body = order_for(world.restaurants[0], delivery_location=deliver_to(FERRY_BUILDING))
    active, _ = await world.orders.place(f"user_{uid}", body)
    await world.orders.transition(
        active["order_id"], EventType.DRIVER_ASSIGNED, "system", driver_id=driver
    )
    waiting, _ = await world.orders.place(f"user_{uid}_w", body)
    done, _ = await world.orders.place(f"user_{uid}_d", body)
    for event in (
        EventType.DRIVER_ASSIGNED,
        EventType.DRIVER_ARRIVED_RESTAURANT,
        EventType.ORDER_PICKED_UP,
        EventType.ORDER_DELIVERED,
    ):
        await world.orders.transition(done["order_id"], event, other, driver_id=other)
    # A first run settles the estimate on the route from the driver as it is now.
    await follow.run_once(world.region)
    before = await world.queries.get(active["order_id"])
    route = await world.roads.route([MOSCONE, UNION_SQUARE, FERRY_BUILDING])
    used = sorted({r for leg in route.legs for r in leg.road_ids})
    hub = ChannelHub(conns.require_redis())
    try:
        async with (
            hub.follow(keys.tracking_channel(active["order_id"])) as tracking,
            hub.follow(keys.inbox_channel(driver)) as inbox,
        ):
            slow = TrafficChange(roads=tuple(RoadFactor(r, 8.0) for r in used))
            await world.roads.update_traffic(world.region, slow)
            follow.changed(world.region)
            await follow.wait(world.region)
            assert follow.last[world.region].updated >= 1
            later = (await route_updates(world, active["order_id"]))[-1]
            assert later["data"]["reason"] == "traffic"
            assert later["data"]["duration_s"] > route.duration_s + 30
            assert at(later["data"]["estimated_delivery"]) > before["estimated_delivery"]
            eta = await next_message(tracking, "eta")
            assert eta["estimated_delivery"] == later["data"]["estimated_delivery"]
            pushed = await next_message(inbox, "route")
            assert pushed["order_id"] == active["order_id"]
            assert pushed["route"]["duration_s"] == later["data"]["duration_s"]

            back = TrafficChange(roads=tuple(RoadFactor(r, 1.0) for r in used))
            await world.roads.update_traffic(world.region, back)
            follow.changed(world.region)
            await follow.wait(world.region)
            earlier = (await route_updates(world, active["order_id"]))[-1]
            assert earlier["data"]["duration_s"] == pytest.approx(route.duration_s, abs=0.2)
            assert at(earlier["data"]["estimated_delivery"]) < at(
                later["data"]["estimated_delivery"]
            )
            assert (await next_message(tracking, "eta"))["estimated_delivery"] == earlier["data"][
                "estimated_delivery"
            ]
    finally:
        await hub.aclose()
    row = order_view(await world.queries.get(active["order_id"]))
    assert row["estimated_delivery"] == earlier["data"]["estimated_delivery"]
    placed = (await world.queries.events(active["order_id"]))[0]
    assert placed["data"]["order"]["estimated_delivery"] == active["estimated_delivery"]
    await assert_audit_matches(world, active["order_id"])
    for untouched in (waiting, done):
        assert await route_updates(world, untouched["order_id"]) == []
        now = await world.queries.get(untouched["order_id"])
        assert order_view(now)["estimated_delivery"] == untouched["estimated_delivery"]


async def test_delivery_zones_follow_a_traffic_change(
    world: World, follow: TrafficFollowUp, conns: Connections
) -> None:
    restaurant = world.restaurants[0]["restaurant_id"]
    rows = await load_restaurants(conns, world.catalog, world.region)
    await rebuild_zones(world.roads, world.db, world.region, rows, max_travel_s=90)

    async def near_ok() -> bool:
        verdict = await zone_verdict(
            world.db, world.region, restaurant, NEAR_UNION_SQUARE.lat, NEAR_UNION_SQUARE.lng
        )
        assert verdict is not None
        return verdict.can_deliver

    assert await near_ok()
    jam = AreaFactor(UNION_SQUARE.lat, UNION_SQUARE.lng, 400, 20.0)
    await world.roads.update_traffic(world.region, TrafficChange(areas=(jam,)))
    follow.changed(world.region)
    await follow.wait(world.region)
    assert not await near_ok()
    clear = AreaFactor(UNION_SQUARE.lat, UNION_SQUARE.lng, 400, 1.0)
    await world.roads.update_traffic(world.region, TrafficChange(areas=(clear,)))
    follow.changed(world.region)
    await follow.wait(world.region)
    assert await near_ok()
    await drop_graph(world.db, zones_graph(world.region))


@pytest.fixture(scope="module")
def served(
    world: World, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A real server whose catalog has the test's region in San Francisco's box (San Francisco
    moved out of the way, in this server only), announcing changes of 5 s or more."""
    sf = load_catalog(settings.region_catalog).get("sf")
    away = BBox(min_lat=-60.1, min_lng=-150.1, max_lat=-60.0, max_lng=-150.0)
    moved = sf.model_copy(update={"bbox": away, "center": LatLng(lat=-60.05, lng=-150.05)})
    path = tmp_path_factory.mktemp("catalog") / "regions.json"
    regions = [moved, world.catalog.get(world.region)]
    path.write_text(json.dumps({"regions": [r.model_dump(mode="json") for r in regions]}))
    env = {"ONTHEWAY_REGION_CATALOG": str(path), "ONTHEWAY_REROUTE_MIN_CHANGE_S": "5"}
    base, proc = start_server(env)
    yield Server(base, proc, settings)
    stop_server(proc)


async def socket_message(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next message of ``kind`` on a socket (others skipped), within a deadline."""
    async with asyncio.timeout(20):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv(decode=True))
            if message.get("type") == kind:
                return message


async def subscribed(conns: Connections, channel: str) -> None:
    """Until the server follows the channel (a message published before would be lost)."""
    redis = conns.require_redis()
    async with asyncio.timeout(10):
        while True:
            if (await redis.pubsub_numsub(channel))[0][1]:
                return
            await asyncio.sleep(0.05)


async def test_ops_traffic_over_http_reroutes_in_the_background_and_reaches_both_sockets(
    world: World, served: Server, conns: Connections, uid: str
) -> None:
    driver, customer = world.drivers[2], f"user_{uid}"
    await put_driver(world, driver, MOSCONE)
    order, _ = await place_to(world, world.restaurants[0], FERRY_BUILDING, customer)
    oid = order["order_id"]
    await world.orders.transition(oid, EventType.DRIVER_ASSIGNED, "system", driver_id=driver)
    route = await world.roads.route([MOSCONE, UNION_SQUARE, FERRY_BUILDING])
    used = sorted({r for leg in route.legs for r in leg.road_ids})
    ws = served.base_url.replace("http://", "ws://")
    track_token = served.token(Role.CUSTOMER, customer)
    async with (
        connect(f"{ws}/ws/orders/{oid}/track?token={track_token}") as track,
        connect(f"{ws}/ws/driver?token={served.token(Role.DRIVER, driver)}") as inbox,
    ):
        await subscribed(conns, keys.tracking_channel(oid))
        await subscribed(conns, keys.inbox_channel(driver))
        async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
            resp = await http.post(
                "/api/ops/traffic",
                json={
                    "region": world.region,
                    "edges": [{"road_id": r, "traffic_factor": 8} for r in used],
                },
                headers=served.auth(Role.OPS, "ops_1"),
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["follow_up"] == "scheduled"
        eta = await socket_message(track, "eta")
        pushed = await socket_message(inbox, "route")
    assert pushed["order_id"] == oid and pushed["route"]["duration_s"] > route.duration_s
    updates = await route_updates(world, oid)
    assert [u["data"]["estimated_delivery"] for u in updates] == [eta["estimated_delivery"]]
    assert at(eta["estimated_delivery"]) > at(order["estimated_delivery"])
    assert (
        order_view(await world.queries.get(oid))["estimated_delivery"] == eta["estimated_delivery"]
    )


async def test_zones_built_on_an_earlier_import_are_not_trusted_until_rebuilt(
    world: World, conns: Connections
) -> None:
    restaurant = world.restaurants[0]["restaurant_id"]
    rows = await load_restaurants(conns, world.catalog, world.region, [restaurant])
    await rebuild_zones(world.roads, world.db, world.region, rows)

    async def verdict() -> Any:
        return await zone_verdict(
            world.db, world.region, restaurant, NEAR_UNION_SQUARE.lat, NEAR_UNION_SQUARE.lng
        )

    assert (await verdict()).can_deliver
    await import_osm(world.db, world.region, DATA / "san-francisco-downtown-drive.osm.bz2")
    assert await verdict() is None  # placement falls back to the radius
    summary = await refresh_zones(world.roads, world.db, conns, world.catalog, world.region)
    assert summary is not None and summary.cells > 0
    assert (await verdict()).can_deliver
