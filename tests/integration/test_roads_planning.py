import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ontheway.connections import GraphStore
from ontheway.regions import Catalog, LatLng
from ontheway.roads.importer import import_osm
from ontheway.roads.planning import (
    DROPOFF_SERVICE_S,
    PICKUP_SERVICE_S,
    estimate_delivery,
    plan_driver_stops,
)
from ontheway.roads.routing import RoadService
from ontheway.roads.sequence import Stop
from ontheway.roads.store import drop_graph, graph_name
from ontheway.settings import Settings
from tests.integration.test_roads_routing import region

DATA = Path(__file__).parents[1] / "data" / "osm"
DRIVER = LatLng(lat=37.7880, lng=-122.4075)  # Union Square
CHINATOWN = LatLng(lat=37.7941, lng=-122.4078)
FERRY_BUILDING = LatLng(lat=37.7955, lng=-122.3937)
MOSCONE = LatLng(lat=37.7840, lng=-122.4010)
FINANCIAL = LatLng(lat=37.7930, lng=-122.4000)


@pytest.fixture(scope="module")
async def service(settings: Settings) -> AsyncIterator[RoadService]:
    region_id = f"sfplan_{random.getrandbits(40):010x}"
    catalog = Catalog([region(region_id, (37.70, -122.50, 37.85, -122.35), "America/Los_Angeles")])
    store = GraphStore(settings.require_falkordb_url(), 60)
    db = await store.db()
    await import_osm(db, region_id, DATA / "san-francisco-downtown-drive.osm.bz2")
    try:
        yield RoadService(store, catalog)
    finally:
        await drop_graph(db, graph_name(region_id))
        await store.aclose()


async def test_a_drivers_stops_come_in_the_fastest_order_and_their_etas_are_the_routes_times(
    service: RoadService,
) -> None:
    stops = [
        (FERRY_BUILDING, Stop("a", "dropoff", 60)),
        (CHINATOWN, Stop("a", "pickup", 120)),
        (MOSCONE, Stop("b", "pickup", 120)),
        (FINANCIAL, Stop("b", "dropoff", 60)),
    ]
    plan = await plan_driver_stops(service, DRIVER, stops)
    assert plan.exact
    assert plan.order.index(1) < plan.order.index(0)  # a's pickup before its drop-off
    assert plan.order.index(2) < plan.order.index(3)
    points = [DRIVER, *(stops[i][0] for i in plan.order)]
    route = await service.route(points)
    now = 0.0
    for leg, i, arrival in zip(route.legs, plan.order, plan.arrival_s, strict=True):
        now += leg.duration_s
        assert arrival == pytest.approx(now, abs=1e-6)
        now += stops[i][1].service_s
    assert plan.finish_s == pytest.approx(now, abs=1e-6)


async def test_an_orders_estimated_delivery_adds_travel_preparation_and_service_times(
    service: RoadService,
) -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    to_restaurant = (await service.route([DRIVER, CHINATOWN])).duration_s
    to_customer = (await service.route([CHINATOWN, FERRY_BUILDING])).duration_s
    waiting = await estimate_delivery(service, now, DRIVER, CHINATOWN, FERRY_BUILDING, 1800)
    expected = 1800 + PICKUP_SERVICE_S + to_customer + DROPOFF_SERVICE_S
    assert waiting.delivered_s == pytest.approx(expected)
    assert waiting.estimated_delivery == now + timedelta(seconds=waiting.delivered_s)
    ready = await estimate_delivery(service, now, DRIVER, CHINATOWN, FERRY_BUILDING, 0)
    assert ready.to_restaurant_s == pytest.approx(to_restaurant)
    assert ready.delivered_s == pytest.approx(
        to_restaurant + PICKUP_SERVICE_S + to_customer + DROPOFF_SERVICE_S
    )
