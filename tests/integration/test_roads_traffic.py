import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from falkordb.asyncio import FalkorDB
from scipy.sparse.csgraph import dijkstra

from ontheway.connections import GraphStore
from ontheway.regions import Catalog, LatLng
from ontheway.roads import matrix as matrix_module
from ontheway.roads.graph import RoadGraph
from ontheway.roads.importer import import_osm
from ontheway.roads.matrix import VERSION_CHECK_S
from ontheway.roads.planning import slowdown
from ontheway.roads.routing import RoadService
from ontheway.roads.store import drop_graph, graph_name, read_graph
from ontheway.roads.traffic import (
    AreaFactor,
    InvalidTraffic,
    RoadFactor,
    StreetFactor,
    TrafficChange,
    plan_write,
    travel_times,
)
from ontheway.roads.weights import write_weights
from ontheway.settings import Settings
from tests.integration.test_roads_routing import (
    Imported,
    assert_matrix_equals_dijkstra,
    assert_routes_equal_dijkstra,
    force_matrix_path,
    region,
)

DATA = Path(__file__).parents[1] / "data" / "osm"
UNION_SQUARE = LatLng(lat=37.7880, lng=-122.4075)
FERRY_BUILDING = LatLng(lat=37.7955, lng=-122.3937)


@pytest.fixture(scope="module")
def region_id() -> str:
    return f"sftraffic_{random.getrandbits(40):010x}"


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[FalkorDB]:
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    client = await store.db()
    yield client
    await client.connection.connection_pool.disconnect()
    await store.aclose()


def catalog_of(region_id: str) -> Catalog:
    return Catalog([region(region_id, (37.70, -122.50, 37.85, -122.35), "America/Los_Angeles")])


@pytest.fixture(scope="module")
async def service(settings: Settings, region_id: str, db: FalkorDB) -> AsyncIterator[RoadService]:
    catalog = catalog_of(region_id)
    await import_osm(db, region_id, DATA / "san-francisco-downtown-drive.osm.bz2")
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    try:
        yield RoadService(store, catalog)
    finally:
        await drop_graph(db, graph_name(region_id))
        await store.aclose()


async def stored(db: FalkorDB, region_id: str) -> RoadGraph:
    loaded = await read_graph(db, graph_name(region_id))
    assert loaded is not None
    return loaded[1]


async def test_routes_after_a_thousand_roads_change_take_exactly_dijkstras_time_on_the_new_weights(
    service: RoadService, db: FalkorDB, region_id: str
) -> None:
    before = await stored(db, region_id)
    rng = np.random.default_rng(11)
    roads = rng.choice(before.road_count, size=1000, replace=False)
    factors = rng.uniform(0.5, 8.0, size=1000).round(2)
    change = TrafficChange(
        roads=tuple(RoadFactor(int(r), float(f)) for r, f in zip(roads, factors, strict=True))
    )
    result = await service.update_traffic(region_id, change)
    assert (result.changed_roads, result.full_rebuild) == (1000, True)
    after = await stored(db, region_id)
    expected = before.time_s.copy()
    expected[roads] = travel_times(before.base_time_s[roads], factors)
    assert after.time_s.tolist() == expected.tolist()
    await assert_routes_equal_dijkstra(service, Imported(region_id, after))
    await assert_matrix_equals_dijkstra(service, Imported(region_id, after))


async def test_a_matrix_asked_by_another_process_follows_a_traffic_change(
    settings: Settings,
    service: RoadService,
    db: FalkorDB,
    region_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    force_matrix_path(monkeypatch, "in_process")  # the path that holds weights in memory
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    other = RoadService(store, catalog_of(region_id))  # as in another process
    try:
        before = (await other.matrix([UNION_SQUARE], [FERRY_BUILDING]))[0][0]
        route = await service.route([UNION_SQUARE, FERRY_BUILDING])
        change = TrafficChange(roads=tuple(RoadFactor(r, 12.0) for r in route.legs[0].road_ids))
        await service.update_traffic(region_id, change)
        await asyncio.sleep(VERSION_CHECK_S)  # how long the other process trusts its weights
        after = (await other.matrix([UNION_SQUARE], [FERRY_BUILDING]))[0][0]
        assert before is not None and after is not None and after > before
        assert after == pytest.approx(
            (await service.route([UNION_SQUARE, FERRY_BUILDING])).duration_s, rel=1e-9
        )
        graph = await stored(db, region_id)
        await assert_matrix_equals_dijkstra(other, Imported(region_id, graph))
        await assert_matrix_equals_dijkstra(service, Imported(region_id, graph))
        # At free flow the way takes what it takes on the base weights, whatever the jam.
        free_flow = (await other.matrix([UNION_SQUARE], [FERRY_BUILDING], free_flow=True))[0][0]
        base = dijkstra(graph.matrix(graph.base_time_s), indices=route.legs[0].start.node)
        assert free_flow == pytest.approx(base[route.legs[0].end.node], rel=1e-9)
        jammed = await other.matrix([UNION_SQUARE], [FERRY_BUILDING])
        searched = await other.free_flow_matrix([UNION_SQUARE], [FERRY_BUILDING], jammed)
        assert searched[0][0] == free_flow != jammed[0][0]
        assert slowdown(after, free_flow) is not None and slowdown(after, free_flow) > 1.5
        free = TrafficChange(roads=tuple(RoadFactor(r, 1.0) for r in route.legs[0].road_ids))
        await service.update_traffic(region_id, free)  # the later tests expect no jam
        await asyncio.sleep(VERSION_CHECK_S)
        reset = (await other.matrix([UNION_SQUARE], [FERRY_BUILDING]))[0][0]
        assert reset == (await service.route([UNION_SQUARE, FERRY_BUILDING])).duration_s
    finally:
        await store.aclose()


async def test_a_process_asks_the_graph_for_its_weights_at_most_once_per_check_interval(
    settings: Settings, region_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_matrix_path(monkeypatch, "in_process")
    asked: list[str] = []
    read = matrix_module.read_version

    async def counting(db: FalkorDB, name: str) -> tuple[str, int] | None:
        asked.append(name)
        return await read(db, name)

    monkeypatch.setattr(matrix_module, "read_version", counting)
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    other = RoadService(store, catalog_of(region_id))
    try:
        for _ in range(3):
            assert (await other.matrix([UNION_SQUARE], [FERRY_BUILDING]))[0][0] is not None
        assert len(asked) == 1
        await asyncio.sleep(VERSION_CHECK_S)
        await other.matrix([UNION_SQUARE], [FERRY_BUILDING])
        assert len(asked) == 2
    finally:
        await store.aclose()


async def test_slowing_a_street_makes_the_next_route_follow_the_new_times(
    service: RoadService, db: FalkorDB, region_id: str
) -> None:
    route = await service.route([UNION_SQUARE, FERRY_BUILDING])
    street = next(s.street for s in route.steps if s.street)
    graph = await stored(db, region_id)
    named = [i for i, n in enumerate(graph.name) if n == street]
    await service.update_traffic(region_id, TrafficChange(streets=(StreetFactor(street, 6.0),)))
    slower = await service.route([UNION_SQUARE, FERRY_BUILDING])
    assert slower.duration_s > route.duration_s
    after = await stored(db, region_id)
    assert after.time_s[named].tolist() == travel_times(graph.base_time_s[named], 6.0).tolist()
    # Steps carry the roads' new times, whichever process changed them.
    assert sum(s.duration_s for s in slower.steps) == pytest.approx(slower.duration_s, abs=0.5)
    await assert_routes_equal_dijkstra(service, Imported(region_id, after))


async def test_a_few_roads_are_re_customised_in_place_and_routes_stay_exact(
    service: RoadService, db: FalkorDB, region_id: str
) -> None:
    route = await service.route([UNION_SQUARE, FERRY_BUILDING])
    first = route.legs[0].road_ids[:3]
    result = await service.update_traffic(
        region_id, TrafficChange(roads=tuple(RoadFactor(r, 15.0) for r in first))
    )
    assert (result.changed_roads, result.written_roads, result.full_rebuild) == (3, 3, False)
    after = await stored(db, region_id)
    assert after.time_s[first].tolist() == travel_times(after.base_time_s[first], 15.0).tolist()
    await assert_routes_equal_dijkstra(service, Imported(region_id, after))


async def test_an_area_resets_to_free_flow_every_road_within_it(
    service: RoadService, db: FalkorDB, region_id: str
) -> None:
    everywhere = AreaFactor(37.79, -122.40, 20_000, 1.0)
    await service.update_traffic(region_id, TrafficChange(areas=(everywhere,)))
    after = await stored(db, region_id)
    assert after.time_s.tolist() == after.base_time_s.tolist()
    await assert_matrix_equals_dijkstra(service, Imported(region_id, after))
    # No road under traffic: the free-flow matrix is the one just asked, not searched again.
    assert not (await service.network(region_id)).under_traffic
    now = await service.matrix([UNION_SQUARE], [FERRY_BUILDING])
    assert await service.free_flow_matrix([UNION_SQUARE], [FERRY_BUILDING], now) is now


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (TrafficChange(roads=(RoadFactor(0, 2.0), RoadFactor(10**9, 2.0))), "edges.1.road_id"),
        (
            TrafficChange(roads=(RoadFactor(0, 2.0), RoadFactor(1, float("nan")))),
            "edges.1.traffic_factor",
        ),
        (TrafficChange(roads=(RoadFactor(0, 25.0),)), "edges.0.traffic_factor"),
        (TrafficChange(roads=(RoadFactor(0, -1.0),)), "edges.0.traffic_factor"),
        (TrafficChange(streets=(StreetFactor("Nowhere Lane", 2.0),)), "streets.0.name"),
    ],
)
async def test_a_bad_traffic_change_is_refused_and_changes_nothing(
    service: RoadService, db: FalkorDB, region_id: str, change: TrafficChange, field: str
) -> None:
    before = await stored(db, region_id)
    with pytest.raises(InvalidTraffic) as caught:
        await service.update_traffic(region_id, change)
    assert caught.value.field == field
    after = await stored(db, region_id)
    assert after.time_s.tolist() == before.time_s.tolist()


async def test_a_write_planned_on_an_earlier_import_of_the_map_writes_nothing(
    service: RoadService, db: FalkorDB, region_id: str
) -> None:
    before = await stored(db, region_id)
    plan = plan_write(before, dict.fromkeys(range(50), 3.0))
    done = await write_weights(db, graph_name(region_id), "an-earlier-import", plan)
    assert not done.applied and done.written == 0
    assert (await stored(db, region_id)).time_s.tolist() == before.time_s.tolist()
