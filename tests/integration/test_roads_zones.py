from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import h3
import pytest
from falkordb.asyncio import FalkorDB

from ontheway.connections import Connections, GraphStore
from ontheway.orders.ids import new_id
from ontheway.orders.restaurants import RestaurantQueries
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, LatLng
from ontheway.roads.delivery import (
    NoDeliveryZone,
    can_deliver,
    load_restaurants,
    rebuild_zones,
    zone_verdict,
)
from ontheway.roads.importer import import_osm
from ontheway.roads.routing import RoadService
from ontheway.roads.store import drop_graph
from ontheway.settings import Settings

DATA = Path(__file__).parents[1] / "data" / "osm"
UNION_SQUARE = (37.7880, -122.4075)
CHINATOWN = (37.7941, -122.4078)
OFF_MAP = (37.7300, -122.4800)  # in San Francisco, far from the downtown extract
IN_THE_BAY = (37.7950, -122.3850)  # 2.1 km from Union Square as the crow flies


async def add_restaurant(
    conns: Connections, catalog: Catalog, at: tuple[float, float], radius_m: int, uid: str
) -> str:
    restaurant_id = new_id("rest", "sf")
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO restaurants (restaurant_id, name, region, location, delivery_radius_m,"
            " prep_time_mean_s, prep_time_sd_s) VALUES (%s, %s, 'sf',"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, 600, 60)",
            (restaurant_id, f"Zone test {uid}", at[1], at[0], radius_m),
        )
    return restaurant_id


async def set_radius(
    conns: Connections, catalog: Catalog, restaurant_id: str, radius_m: int
) -> None:
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute(
            "UPDATE restaurants SET delivery_radius_m = %s WHERE restaurant_id = %s",
            (radius_m, restaurant_id),
        )


async def near_and_far(
    conns: Connections, catalog: Catalog, uid: str
) -> tuple[str, str, list[dict[str, Any]]]:
    """A restaurant at Union Square delivering within 2.5 km, one off the map, and both as
    the zones' builder reads them."""
    near = await add_restaurant(conns, catalog, UNION_SQUARE, 2500, uid)
    far = await add_restaurant(conns, catalog, OFF_MAP, 3000, uid)
    return near, far, await load_restaurants(conns, catalog, "sf", [near, far])


@pytest.fixture(scope="module")
async def roads(settings: Settings, catalog: Catalog) -> AsyncIterator[RoadService]:
    store = GraphStore(settings.require_falkordb_url(), 60)
    db = await store.db()
    await import_osm(db, "sf", DATA / "san-francisco-downtown-drive.osm.bz2")
    yield RoadService(store, catalog)
    await store.aclose()


@pytest.fixture
async def zones(
    roads: RoadService, uid: str, conns: Connections, catalog: Catalog
) -> AsyncIterator[tuple[FalkorDB, str]]:
    """A zones graph of the test's own; the restaurants the test added are removed after."""
    db = await roads.graph_db()
    name = f"zones:{{sf}}:test_{uid}"
    yield db, name
    await drop_graph(db, name)
    async with conns.shard_connection(catalog.shard_for("sf")) as conn, conn.transaction():
        await conn.execute("DELETE FROM restaurants WHERE name = %s", (f"Zone test {uid}",))


async def test_a_restaurant_delivers_where_the_road_reaches_within_its_radius_in_one_lookup(
    conns: Connections,
    catalog: Catalog,
    roads: RoadService,
    zones: tuple[FalkorDB, str],
    uid: str,
) -> None:
    db, name = zones
    near, far, restaurants = await near_and_far(conns, catalog, uid)
    assert [r["restaurant_id"] for r in restaurants] == sorted([near, far])
    summary = await rebuild_zones(roads, db, "sf", restaurants, graph=name)
    assert summary.off_map == [far] and summary.cells > 20

    here = await can_deliver(db, "sf", near, *CHINATOWN, graph=name)
    assert here.can_deliver and here.travel_time_s is not None
    # The zone's time is the route's to the centre of the cell, on the same weights.
    centre = h3.cell_to_latlng(h3.latlng_to_cell(*CHINATOWN, 9))
    route = await roads.route(
        [LatLng(lat=UNION_SQUARE[0], lng=UNION_SQUARE[1]), LatLng(lat=centre[0], lng=centre[1])]
    )
    assert here.travel_time_s == pytest.approx(route.duration_s, abs=0.01)

    assert not (await can_deliver(db, "sf", near, 37.8050, -122.4300, graph=name)).can_deliver
    assert not (await can_deliver(db, "sf", far, *UNION_SQUARE, graph=name)).can_deliver
    with pytest.raises(NoDeliveryZone) as caught:
        await can_deliver(db, "sf", "rest_sf_unknown0000", *UNION_SQUARE, graph=name)
    assert caught.value.field == "restaurant_id"


async def test_the_restaurant_list_follows_the_zones_by_road_where_they_can_be_trusted(
    conns: Connections,
    catalog: Catalog,
    roads: RoadService,
    zones: tuple[FalkorDB, str],
    uid: str,
) -> None:
    db, name = zones
    near, _, restaurants = await near_and_far(conns, catalog, uid)
    await rebuild_zones(roads, db, "sf", restaurants, graph=name)
    listing = RestaurantQueries(ShardAccess(conns, catalog), roads, zones_graph=lambda _: name)
    [here] = [r for r in await listing.near(*CHINATOWN, 3) if r["restaurant_id"] == near]
    zone = await can_deliver(db, "sf", near, *CHINATOWN, graph=name)
    assert here["travel_time_by"] == "road"
    assert here["travel_time_s"] == round(zone.travel_time_s or 0)
    # In the bay: within the radius as the crow flies, beyond any road of the zone.
    assert not (await can_deliver(db, "sf", near, *IN_THE_BAY, graph=name)).can_deliver
    assert near not in {r["restaurant_id"] for r in await listing.near(*IN_THE_BAY, 3)}
    # Without zones (none built for this graph name), the radius decides, as for placement.
    radius_only = RestaurantQueries(
        ShardAccess(conns, catalog), roads, zones_graph=lambda _: f"{name}_none"
    )
    [plain] = [r for r in await radius_only.near(*IN_THE_BAY, 3) if r["restaurant_id"] == near]
    assert plain["travel_time_by"] == "straight_line"


async def test_rebuilding_one_restaurant_replaces_its_zone_and_leaves_the_others(
    conns: Connections,
    catalog: Catalog,
    roads: RoadService,
    zones: tuple[FalkorDB, str],
    uid: str,
) -> None:
    db, name = zones
    first = await add_restaurant(conns, catalog, UNION_SQUARE, 2000, uid)
    second = await add_restaurant(conns, catalog, CHINATOWN, 2000, uid)
    both = await load_restaurants(conns, catalog, "sf", [first, second])
    before = await rebuild_zones(roads, db, "sf", both, graph=name)
    await set_radius(conns, catalog, first, 700)
    one = await load_restaurants(conns, catalog, "sf", [first])
    smaller = await rebuild_zones(roads, db, "sf", one, replace_all=False, graph=name)
    assert 0 < smaller.cells < before.cells / 2
    assert not (await can_deliver(db, "sf", first, 37.7955, -122.3990, graph=name)).can_deliver
    assert (await can_deliver(db, "sf", second, 37.7955, -122.3990, graph=name)).can_deliver


async def test_placement_trusts_a_zone_only_when_built_on_the_road_map_of_now(
    conns: Connections,
    catalog: Catalog,
    roads: RoadService,
    zones: tuple[FalkorDB, str],
    uid: str,
) -> None:
    db, name = zones
    assert await zone_verdict(db, "sf", "rest_sf_unknown0000", *CHINATOWN, graph=name) is None
    near, far, restaurants = await near_and_far(conns, catalog, uid)
    await rebuild_zones(roads, db, "sf", restaurants, graph=name)
    inside = await zone_verdict(db, "sf", near, *CHINATOWN, graph=name)
    assert inside is not None and inside.can_deliver
    assert inside == await can_deliver(db, "sf", near, *CHINATOWN, graph=name)
    outside = await zone_verdict(db, "sf", near, 37.8050, -122.4300, graph=name)
    assert outside is not None and not outside.can_deliver
    assert await zone_verdict(db, "sf", far, *UNION_SQUARE, graph=name) is None  # off the map
    assert await zone_verdict(db, "sf", "rest_sf_unknown0000", *CHINATOWN, graph=name) is None
    # Zones built on another import of the roads: no zone to trust, the radius decides.
    await db.select_graph(name).query("MATCH (m:ZonesMeta) SET m.import_id = 'an_old_import'")
    assert await zone_verdict(db, "sf", near, *CHINATOWN, graph=name) is None
    # A region without a road map has no zone to trust either.
    assert await zone_verdict(db, f"nomap_{uid}", near, *CHINATOWN, graph=name) is None
