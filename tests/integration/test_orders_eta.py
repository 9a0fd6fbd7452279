"""The estimate promised at placement (by road, or by straight line without a map) and the
delivery zone at placement, over the downtown San Francisco map imported as the map of a region
nobody else's tests use (Detroit, given San Francisco's box in a catalog of the test's own): so
that nobody else's orders, drivers or traffic meet ours, while the ids stay those of a region
the project's catalog knows (the session's audit reads every order with it)."""

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from falkordb.asyncio import FalkorDB

from ontheway.connections import Connections, GraphStore
from ontheway.errors import Conflict, InvalidInput
from ontheway.events.consumers import record_placed
from ontheway.events.model import Event
from ontheway.fleet.model import DriverStatus, Fix
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, LatLng
from ontheway.roads import planning
from ontheway.roads.delivery import load_restaurants, rebuild_zones, zones_graph
from ontheway.roads.importer import import_osm
from ontheway.roads.matrix import VERSION_CHECK_S
from ontheway.roads.planning import (
    DROPOFF_SERVICE_S,
    PICKUP_SERVICE_S,
    STRAIGHT_LINE_HANDOVER_S,
    STRAIGHT_LINE_SPEED_MPS,
    PlacementEstimator,
)
from ontheway.roads.routing import RoadService
from ontheway.roads.store import drop_graph, graph_name
from ontheway.seeding import seed_with_fleet
from ontheway.settings import Settings
from tests.helpers import order_for
from tests.integration.test_roads_routing import region

DATA = Path(__file__).parents[1] / "data" / "osm"
UNION_SQUARE = LatLng(lat=37.7880, lng=-122.4075)
NEAR_UNION_SQUARE = LatLng(lat=37.7905, lng=-122.4075)  # about 280 m north
FERRY_BUILDING = LatLng(lat=37.7955, lng=-122.3937)  # about 1.5 km
MOSCONE = LatLng(lat=37.7840, lng=-122.4010)
OFF_MAP = LatLng(lat=37.7300, lng=-122.4800)  # in the region's box, far from the extract
AWAY = LatLng(lat=37.0, lng=-121.0)  # beyond any search radius


@dataclass
class World:
    region: str
    catalog: Catalog
    shards: ShardAccess
    roads: RoadService
    orders: OrderService
    queries: OrderQueries
    fleet: FleetStore
    db: FalkorDB
    restaurants: list[dict[str, Any]]
    drivers: list[str]


async def move_restaurant(
    shards: ShardAccess, world_region: str, restaurant_id: str, at: LatLng, radius_m: int
) -> None:
    async with shards.connection(world_region) as conn:
        await conn.execute(
            "UPDATE restaurants SET location = ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
            " delivery_radius_m = %s, prep_time_mean_s = 600, is_open = true"
            " WHERE restaurant_id = %s",
            (at.lng, at.lat, radius_m, restaurant_id),
        )


async def open_world(
    settings: Settings, conns: Connections, region_id: str
) -> tuple[World, GraphStore]:
    """The downtown map as ``region_id``'s: three restaurants (Union Square, Moscone, off the
    map), three drivers known to the fleet (no position yet)."""
    catalog = Catalog([region(region_id, (37.70, -122.50, 37.85, -122.35), "America/Los_Angeles")])
    store = GraphStore(settings.require_falkordb_url(), 60)
    db = await store.db()
    await import_osm(db, region_id, DATA / "san-francisco-downtown-drive.osm.bz2")
    seeded = await seed_with_fleet(
        conns,
        catalog,
        settings,
        region_id,
        restaurants=3,
        customers=1,
        drivers=3,
        seed=random.randrange(1 << 30),
    )
    shards = ShardAccess(conns, catalog)
    restaurants = seeded["restaurants"]
    for r, at in zip(restaurants, (UNION_SQUARE, MOSCONE, OFF_MAP), strict=True):
        await move_restaurant(shards, region_id, r["restaurant_id"], at, 3000)
        r["lat"], r["lng"] = at.lat, at.lng
    roads = RoadService(store, catalog)
    world = World(
        region=region_id,
        catalog=catalog,
        shards=shards,
        roads=roads,
        orders=OrderService(shards, roads),
        queries=OrderQueries(shards),
        fleet=open_store(conns.require_redis(), settings),
        db=db,
        restaurants=restaurants,
        drivers=[d["driver_id"] for d in seeded["drivers"]],
    )
    return world, store


async def close_world(world: World, store: GraphStore) -> None:
    """Drop the graphs; take the drivers off the map (a later run must not find them)."""
    for driver in world.drivers:
        await put_driver(world, driver, None)
        with contextlib.suppress(Conflict):
            await world.fleet.set_status(world.region, driver, DriverStatus.OFFLINE)
    await drop_graph(world.db, zones_graph(world.region))
    await drop_graph(world.db, graph_name(world.region))
    await store.aclose()


def world_fixture(region_id: str) -> Any:
    """A module's ``world`` fixture: the downtown map as ``region_id``'s (see open_world)."""

    @pytest.fixture(scope="module")
    async def world(settings: Settings, conns: Connections) -> AsyncIterator[World]:
        opened, store = await open_world(settings, conns, region_id)
        yield opened
        await close_world(opened, store)

    return world


world = world_fixture("detroit")


async def put_driver(world: World, driver_id: str, at: LatLng | None) -> None:
    """Place a driver (available) at a point, or (None) far from every restaurant: rather than
    offline, which another process's dispatcher offering it an order would refuse."""
    at = at or AWAY
    fix = Fix(driver_id, world.region, at.lat, at.lng, time.time())
    await world.fleet.apply_fixes(world.region, [fix])
    await world.fleet.set_status(world.region, driver_id, DriverStatus.AVAILABLE)


def deliver_to(point: LatLng) -> dict[str, Any]:
    return {"lat": point.lat, "lng": point.lng, "address": "1 Test St"}


async def placed_event(world: World, order_id: str) -> dict[str, Any]:
    events = await world.queries.events(order_id)
    assert events[0]["event_type"] == "ORDER_PLACED"
    data: dict[str, Any] = events[0]["data"]
    return data


async def place_to(
    world: World, restaurant: dict[str, Any], point: LatLng, customer: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Order from ``restaurant`` to ``point``: the order and its ORDER_PLACED data."""
    body = order_for(restaurant, delivery_location=deliver_to(point))
    order, _ = await world.orders.place(customer, body)
    return order, await placed_event(world, order["order_id"])


def when(order: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(order[key].replace("Z", "+00:00"))


async def test_the_estimate_by_road_is_the_sum_of_its_legs_and_follows_the_nearest_driver(
    world: World, uid: str
) -> None:
    first, second, third = world.drivers
    await put_driver(world, first, MOSCONE)
    await put_driver(world, second, None)
    await put_driver(world, third, None)
    order, data = await place_to(world, world.restaurants[0], FERRY_BUILDING, f"user_{uid}")
    assert data["eta_method"] == "road"
    legs = data["eta_legs"]
    assert legs["to_restaurant_from"] == "nearest_driver"
    assert legs["driver"] == {"driver_id": first, "lat": pytest.approx(MOSCONE.lat, abs=1e-5),
                              "lng": pytest.approx(MOSCONE.lng, abs=1e-5)}  # fmt: skip
    driver_at = LatLng(lat=legs["driver"]["lat"], lng=legs["driver"]["lng"])
    to_restaurant = (await world.roads.route([driver_at, UNION_SQUARE])).duration_s
    to_customer = (await world.roads.route([UNION_SQUARE, FERRY_BUILDING])).duration_s
    assert legs["to_restaurant_s"] == pytest.approx(to_restaurant, abs=0.06)
    assert legs["to_customer_s"] == pytest.approx(to_customer, abs=0.06)
    assert legs["food_ready_s"] == 600
    expected_s = max(to_restaurant, 600) + PICKUP_SERVICE_S + to_customer + DROPOFF_SERVICE_S
    promised = (when(order, "estimated_delivery") - when(order, "created_at")).total_seconds()
    assert promised == pytest.approx(expected_s, abs=0.2)  # legs kept to 0.1 s
    assert legs["delivered_s"] == pytest.approx(expected_s, abs=0.06)
    # No traffic on this map: both ways take their free-flow time.
    assert (legs["traffic_to_restaurant"], legs["traffic_to_customer"]) == (1.0, 1.0)


async def test_the_drivers_near_a_restaurant_are_read_once_per_ttl_and_then_again(
    world: World,
) -> None:
    """Within ``supply_ttl_s`` a restaurant's next estimate reuses the drivers found near it
    (one fleet search and one search of the map per restaurant, not per order); after, a
    driver who came nearer is found."""
    first, second, third = world.drivers
    await put_driver(world, first, MOSCONE)
    await put_driver(world, second, None)
    await put_driver(world, third, None)
    estimator = PlacementEstimator(
        world.roads, world.fleet, allowance_s=300, drivers=5, radius_m=8000, supply_ttl_s=1.5
    )
    restaurant_id = world.restaurants[0]["restaurant_id"]  # at Union Square
    before = await estimator.supply(world.region, restaurant_id, UNION_SQUARE)
    assert before.driver is not None and before.driver["driver_id"] == first
    assert before.drivers_near == 1
    await put_driver(world, first, None)
    await put_driver(world, second, NEAR_UNION_SQUARE)
    assert await estimator.supply(world.region, restaurant_id, UNION_SQUARE) == before
    await asyncio.sleep(1.6)
    after = await estimator.supply(world.region, restaurant_id, UNION_SQUARE)
    assert after.driver is not None and after.driver["driver_id"] == second
    near = (await world.roads.route([NEAR_UNION_SQUARE, UNION_SQUARE])).duration_s
    assert after.to_restaurant_s == pytest.approx(near, abs=0.06)
    assert after.traffic == 1.0  # no traffic on this map


async def test_without_a_near_driver_the_estimate_takes_the_assignment_allowance(
    world: World, settings: Settings, uid: str
) -> None:
    for driver in world.drivers:
        await put_driver(world, driver, None)
    order, data = await place_to(world, world.restaurants[1], UNION_SQUARE, f"user_{uid}")
    legs = data["eta_legs"]  # the restaurant is at Moscone
    assert legs["to_restaurant_from"] == "allowance" and legs["driver"] is None
    assert legs["to_restaurant_s"] == settings.eta_assignment_allowance_s
    to_customer = (await world.roads.route([MOSCONE, UNION_SQUARE])).duration_s
    promised = (when(order, "estimated_delivery") - when(order, "created_at")).total_seconds()
    expected = max(settings.eta_assignment_allowance_s, 600) + PICKUP_SERVICE_S + to_customer
    assert promised == pytest.approx(expected + DROPOFF_SERVICE_S, abs=0.2)  # legs kept to 0.1 s


async def test_a_restaurant_off_the_map_gets_the_straight_line_estimate_and_says_why(
    world: World, uid: str
) -> None:
    customer = LatLng(lat=OFF_MAP.lat + 0.005, lng=OFF_MAP.lng)
    order, data = await place_to(world, world.restaurants[2], customer, f"user_{uid}")
    assert data["eta_method"] == "straight_line"
    legs = data["eta_legs"]
    assert legs["reason"] == "outside_road_map"
    promised = (when(order, "estimated_delivery") - when(order, "created_at")).total_seconds()
    expected = 600 + STRAIGHT_LINE_HANDOVER_S + order["distance_m"] / STRAIGHT_LINE_SPEED_MPS
    assert promised == pytest.approx(expected, abs=0.2)  # legs kept to 0.1 s
    assert legs["distance_m"] == pytest.approx(order["distance_m"], abs=0.06)


async def test_a_region_found_without_zones_is_asked_again_only_after_the_check_interval(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    answers = planning.zone_answers

    async def counting(db: FalkorDB, region: str, *args: Any) -> Any:
        asked.append(region)
        return await answers(db, region, *args)

    monkeypatch.setattr(planning, "zone_answers", counting)
    estimator = PlacementEstimator(world.roads, world.fleet, allowance_s=300, drivers=5,
                                   radius_m=8000)  # fmt: skip
    restaurant_id = world.restaurants[0]["restaurant_id"]
    for _ in range(3):  # this module's region has no zones graph (dropped by the fixture)
        assert await estimator._zone(world.region, restaurant_id, FERRY_BUILDING) is None
    assert asked == [world.region]
    await asyncio.sleep(VERSION_CHECK_S)
    assert await estimator._zone(world.region, restaurant_id, FERRY_BUILDING) is None
    assert asked == [world.region] * 2


async def test_with_zones_an_address_the_road_does_not_reach_in_time_is_refused_inside_the_radius(
    world: World, conns: Connections, uid: str
) -> None:
    restaurant = world.restaurants[0]  # Union Square, radius 3,000 m
    far = order_for(restaurant, delivery_location=deliver_to(FERRY_BUILDING))
    near = order_for(restaurant, delivery_location=deliver_to(NEAR_UNION_SQUARE))
    # No zones yet: the radius decides, and the Ferry Building lies within 3 km.
    order, _ = await world.orders.place(f"user_{uid}", far)
    assert order["status"] == "searching_driver"
    ids = [r["restaurant_id"] for r in world.restaurants]
    rows = await load_restaurants(conns, world.catalog, world.region, ids)
    summary = await rebuild_zones(world.roads, world.db, world.region, rows, max_travel_s=90)
    assert summary.cells > 0 and summary.off_map == [world.restaurants[2]["restaurant_id"]]
    # A placement found the region without zones: it looks again after VERSION_CHECK_S.
    await asyncio.sleep(VERSION_CHECK_S)
    with pytest.raises(InvalidInput) as refused:
        await world.orders.place(f"user_{uid}_far", far)
    assert (refused.value.code, refused.value.field) == (
        "outside_delivery_zone",
        "delivery_location",
    )
    accepted, _ = await world.orders.place(f"user_{uid}_near", near)
    assert accepted["status"] == "searching_driver"
    # A restaurant off the map has no zone to trust: its radius still decides.
    customer = LatLng(lat=OFF_MAP.lat + 0.005, lng=OFF_MAP.lng)
    placed, _ = await place_to(world, world.restaurants[2], customer, f"user_{uid}_off")
    assert placed["status"] == "searching_driver"
    assert placed["created_at"] < accepted["estimated_delivery"]  # sanity of the fields
    assert timedelta(0) < when(accepted, "estimated_delivery") - when(accepted, "created_at")


async def test_the_eta_consumer_keeps_the_method_and_the_legs_of_the_promise(
    world: World, uid: str
) -> None:
    body = order_for(world.restaurants[0], delivery_location=deliver_to(NEAR_UNION_SQUARE))
    order, _ = await world.orders.place(f"user_{uid}", body)
    placed = (await world.queries.events(order["order_id"]))[0]
    event = Event(
        str(placed["event_id"]), order["order_id"], placed["event_type"], placed["ts"],
        placed["data"], placed["actor"], "americas", 0,
    )  # fmt: skip
    async with world.shards.connection(world.region) as conn, conn.transaction():
        await record_placed(conn, event)
        await record_placed(conn, event)  # a second delivery changes nothing
        cur = await conn.execute(
            "SELECT eta_method, eta_legs, promised_delivery FROM order_timings WHERE order_id = %s",
            (order["order_id"],),
        )
        row = await cur.fetchone()
        await conn.execute("DELETE FROM order_timings WHERE order_id = %s", (order["order_id"],))
    assert row is not None and row["eta_method"] == "road"
    assert row["eta_legs"] == placed["data"]["eta_legs"]
    assert row["promised_delivery"] == when(order, "estimated_delivery")


async def test_after_the_map_is_imported_again_the_estimate_is_by_road_on_the_new_import(
    settings: Settings, conns: Connections, uid: str
) -> None:
    """The placement's estimate keeps the map it loaded; when the map is imported again under
    it (new node ids), its matrix notices and reloads: still by road, still the route's time."""
    opened, store = await open_world(settings, conns, "lima")
    try:
        _, before = await place_to(opened, opened.restaurants[0], FERRY_BUILDING, f"user_{uid}")
        first_import = (await opened.roads.network(opened.region)).import_id
        await import_osm(opened.db, opened.region, DATA / "san-francisco-downtown-drive.osm.bz2")
        await asyncio.sleep(VERSION_CHECK_S)  # how long a process trusts the map it holds
        _, after = await place_to(opened, opened.restaurants[0], FERRY_BUILDING, f"user_{uid}")
        assert (await opened.roads.network(opened.region)).import_id != first_import
        assert before["eta_method"] == after["eta_method"] == "road"
        to_customer = (await opened.roads.route([UNION_SQUARE, FERRY_BUILDING])).duration_s
        assert after["eta_legs"]["to_customer_s"] == pytest.approx(to_customer, abs=0.06)
    finally:
        await close_world(opened, store)
