import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from falkordb.asyncio import FalkorDB
from scipy.sparse.csgraph import dijkstra

from ontheway.connections import GraphStore
from ontheway.errors import DependencyUnavailable
from ontheway.regions import BBox, Catalog, LatLng, OutsideAllRegions, Region
from ontheway.roads import matrix as matrix_module
from ontheway.roads.errors import NoRoadMap, OutsideRoadMap, SamePoint, Unreachable
from ontheway.roads.graph import RoadGraph, build_graph
from ontheway.roads.importer import import_osm
from ontheway.roads.matrix import VERSION_CHECK_S
from ontheway.roads.network import Snap
from ontheway.roads.osm import OsmRestriction, read_osm
from ontheway.roads.routing import RoadService
from ontheway.roads.store import drop_graph, graph_name, read_graph
from ontheway.settings import Settings

DATA = Path(__file__).parents[1] / "data" / "osm"
PAIRS = 60


@dataclass
class Imported:
    region: str
    graph: RoadGraph


def region(name: str, box: tuple[float, float, float, float], tz: str) -> Region:
    min_lat, min_lng, max_lat, max_lng = box
    return Region(
        region=name,
        name=name,
        country="US",
        center=LatLng(lat=(min_lat + max_lat) / 2, lng=(min_lng + max_lng) / 2),
        bbox=BBox(min_lat=min_lat, min_lng=min_lng, max_lat=max_lat, max_lng=max_lng),
        timezone=tz,
        shard="americas",
    )


@pytest.fixture(scope="module")
def uid_module() -> str:
    return f"{random.getrandbits(48):012x}"


@pytest.fixture(scope="module")
def catalog_(uid_module: str) -> Catalog:
    """Regions of this module's own: SF downtown, West Oakland, Monaco, a tiny test town."""
    return Catalog(
        [
            region(f"sfdt_{uid_module}", (37.70, -122.50, 37.85, -122.35), "America/Los_Angeles"),
            region(f"wo_{uid_module}", (37.79, -122.33, 37.85, -122.25), "America/Los_Angeles"),
            region(f"mc_{uid_module}", (43.70, 7.34, 43.78, 7.50), "Europe/Monaco"),
            region(f"town_{uid_module}", (10.0, 10.0, 10.1, 10.1), "UTC"),
            region(f"empty_{uid_module}", (20.0, 20.0, 20.1, 20.1), "UTC"),
        ]
    )


@pytest.fixture(scope="module")
async def db(settings: Settings) -> AsyncIterator[FalkorDB]:
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    client = await store.db()
    yield client
    await client.connection.connection_pool.disconnect()
    await store.aclose()


@pytest.fixture(scope="module")
async def service(
    settings: Settings, catalog_: Catalog, db: FalkorDB
) -> AsyncIterator[RoadService]:
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    yield RoadService(store, catalog_)
    client = await store.db()
    await client.connection.connection_pool.disconnect()
    await store.aclose()


async def _import(db: FalkorDB, region_id: str, path: Path) -> Imported:
    await import_osm(db, region_id, path)
    loaded = await read_graph(db, graph_name(region_id))
    assert loaded is not None
    return Imported(region_id, loaded[1])


@pytest.fixture(scope="module")
async def sf(db: FalkorDB, uid_module: str) -> AsyncIterator[Imported]:
    region_id = f"sfdt_{uid_module}"
    try:
        yield await _import(db, region_id, DATA / "san-francisco-downtown-drive.osm.bz2")
    finally:
        await drop_graph(db, graph_name(region_id))


@pytest.fixture(scope="module")
async def oakland(db: FalkorDB, uid_module: str) -> AsyncIterator[Imported]:
    region_id = f"wo_{uid_module}"
    try:
        yield await _import(db, region_id, DATA / "west-oakland.osm.bz2")
    finally:
        await drop_graph(db, graph_name(region_id))


@pytest.fixture(scope="module")
async def monaco(db: FalkorDB, uid_module: str) -> AsyncIterator[Imported]:
    region_id = f"mc_{uid_module}"
    try:
        yield await _import(db, region_id, DATA / "monaco.osm.pbf")
    finally:
        await drop_graph(db, graph_name(region_id))


def node_point(graph: RoadGraph, node: int) -> LatLng:
    return LatLng(lat=float(graph.lat[node]), lng=float(graph.lng[node]))


async def assert_routes_equal_dijkstra(service: RoadService, imported: Imported) -> None:
    graph = imported.graph
    rng = np.random.default_rng(7)
    routable = np.flatnonzero(graph.largest_component_mask())
    sources = rng.choice(routable, size=PAIRS // 3, replace=False)
    times = dijkstra(graph.matrix(), indices=sources)
    checked = 0
    for row, source in enumerate(sources):
        for target in rng.choice(routable, size=3, replace=False):
            a, b = node_point(graph, int(source)), node_point(graph, int(target))
            if (a.lat, a.lng) == (b.lat, b.lng):
                continue
            route = await service.route([a, b])
            (leg,) = route.legs
            expected = times[row, leg.end.node] if leg.start.node == source else None
            if expected is None:  # two nodes at one place: compare from the snapped one
                expected = dijkstra(graph.matrix(), indices=[leg.start.node])[0, leg.end.node]
            assert leg.duration_s == pytest.approx(expected, rel=1e-9, abs=1e-9)
            # The roads returned form a path from start to end whose times add up.
            assert [int(graph.src[r]) for r in leg.road_ids[:1]] in ([leg.start.node], [])
            for before, after in zip(leg.road_ids, leg.road_ids[1:], strict=False):
                assert graph.dst[before] == graph.src[after]
            if leg.road_ids:
                assert graph.dst[leg.road_ids[-1]] == leg.end.node
            assert sum(graph.time_s[leg.road_ids]) == pytest.approx(leg.duration_s, rel=1e-9)
            assert route.distance_m == pytest.approx(sum(graph.distance_m[leg.road_ids]))
            checked += 1
    assert checked >= PAIRS - 3


async def test_routes_in_san_francisco_take_exactly_dijkstras_time(
    service: RoadService, sf: Imported
) -> None:
    await assert_routes_equal_dijkstra(service, sf)


async def test_routes_in_west_oakland_take_exactly_dijkstras_time(
    service: RoadService, oakland: Imported
) -> None:
    await assert_routes_equal_dijkstra(service, oakland)


async def test_routes_in_monaco_take_exactly_dijkstras_time(
    service: RoadService, monaco: Imported
) -> None:
    await assert_routes_equal_dijkstra(service, monaco)


# Union Square and the Ferry Building, downtown San Francisco.
UNION_SQUARE = LatLng(lat=37.7880, lng=-122.4075)
FERRY_BUILDING = LatLng(lat=37.7955, lng=-122.3937)
CHINATOWN = LatLng(lat=37.7941, lng=-122.4078)


async def test_a_route_has_geometry_from_start_to_end_and_named_steps(
    service: RoadService, sf: Imported
) -> None:
    route = await service.route([UNION_SQUARE, FERRY_BUILDING])
    body = route.to_dict()
    assert 1000 < body["distance_m"] < 4000
    assert 60 < body["duration_s"] < 900
    start, end = route.snapped
    assert body["geometry"][0] == [start.lat, start.lng]
    assert body["geometry"][-1] == [end.lat, end.lng]
    steps = body["steps"]
    assert steps[0]["turn"] == "depart" and steps[-1]["turn"] == "arrive"
    assert all(s["street"] for s in steps[:-1])
    assert sum(s["distance_m"] for s in steps) == pytest.approx(body["distance_m"], abs=1.0)


async def test_a_route_through_a_stop_has_one_leg_each_side_of_it(
    service: RoadService, sf: Imported
) -> None:
    direct = await service.route([UNION_SQUARE, CHINATOWN])
    second = await service.route([CHINATOWN, FERRY_BUILDING])
    route = await service.route([UNION_SQUARE, CHINATOWN, FERRY_BUILDING])
    assert len(route.legs) == 2
    assert route.legs[0].duration_s == direct.duration_s
    assert route.legs[1].duration_s == second.duration_s
    assert route.duration_s == direct.duration_s + second.duration_s
    assert [s.turn for s in route.steps].count("waypoint") == 1
    geometry = route.geometry
    assert len(geometry) == len(direct.geometry) + len(second.geometry) - 1


async def test_a_route_from_a_point_to_itself_is_refused(
    service: RoadService, sf: Imported
) -> None:
    with pytest.raises(SamePoint) as caught:
        await service.route([UNION_SQUARE, UNION_SQUARE])
    assert caught.value.field == "to"


async def test_a_point_far_from_every_road_of_the_map_is_refused(
    service: RoadService, sf: Imported
) -> None:
    outside_extract = LatLng(lat=37.72, lng=-122.48)  # in the region, not in the extract
    with pytest.raises(OutsideRoadMap) as caught:
        await service.route([UNION_SQUARE, outside_extract])
    assert caught.value.field == "to"


async def test_a_point_in_no_region_is_refused(service: RoadService, sf: Imported) -> None:
    with pytest.raises(OutsideAllRegions):
        await service.route([LatLng(lat=0.5, lng=0.5), UNION_SQUARE])


async def test_a_region_without_a_road_map_says_so(service: RoadService, uid_module: str) -> None:
    with pytest.raises(NoRoadMap) as caught:
        await service.route([LatLng(lat=20.01, lng=20.01), LatLng(lat=20.02, lng=20.02)])
    assert f"empty_{uid_module}" in caught.value.message


TOWN = """<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6">
  <node id="1" lat="10.010" lon="10.010"/>
  <node id="2" lat="10.011" lon="10.010"/>
  <node id="3" lat="10.011" lon="10.011"/>
  <node id="4" lat="10.010" lon="10.011"/>
  <node id="5" lat="10.009" lon="10.012"/>
  <way id="10"><nd ref="1"/><nd ref="2"/><nd ref="3"/><nd ref="4"/><nd ref="1"/>
    <tag k="highway" v="residential"/><tag k="name" v="Loop Road"/></way>
  <way id="11"><nd ref="4"/><nd ref="5"/>
    <tag k="highway" v="residential"/><tag k="oneway" v="yes"/><tag k="name" v="Dead End"/></way>
</osm>
"""


@pytest.fixture
async def town(db: FalkorDB, uid_module: str, tmp_path: Path) -> AsyncIterator[str]:
    """The tiny test town imported as its region's map (dropped at the end); its region."""
    region_id = f"town_{uid_module}"
    path = tmp_path / "town.osm"
    path.write_text(TOWN)
    await import_osm(db, region_id, path)
    try:
        yield region_id
    finally:
        await drop_graph(db, graph_name(region_id))


async def test_a_one_way_dead_end_cannot_be_left_and_is_never_snapped_to(
    service: RoadService, town: str
) -> None:
    network = await service.network(town)
    dead_end = int(np.flatnonzero(network.graph.node_osm_id == 5)[0])
    loop = int(np.flatnonzero(network.graph.node_osm_id == 1)[0])
    at_dead_end = Snap(dead_end, 10.009, 10.012, 0.0)
    on_loop = Snap(loop, 10.010, 10.010, 0.0)
    with pytest.raises(Unreachable):
        await service.leg(network, town, at_dead_end, on_loop)
    into = await service.leg(network, town, on_loop, at_dead_end)
    assert into.duration_s > 0
    snapped = network.snap(10.009, 10.012)
    assert snapped is not None and snapped.node != dead_end


async def test_a_reimported_map_is_picked_up_by_the_next_route(
    service: RoadService, db: FalkorDB, sf: Imported
) -> None:
    before = await service.network(sf.region)
    await import_osm(db, sf.region, DATA / "san-francisco-downtown-drive.osm.bz2")
    route = await service.route([UNION_SQUARE, FERRY_BUILDING])
    after = await service.network(sf.region)
    assert after.import_id != before.import_id
    assert route.duration_s > 0


def forbidden_turns(graph: RoadGraph, road_ids: list[int], rules: list[OsmRestriction]) -> list:  # type: ignore[type-arg]
    """The turns of a route that a restriction forbids."""
    bad = []
    for arriving, leaving in itertools.pairwise(road_ids):
        via = int(graph.node_osm_id[graph.dst[arriving]])
        for rule in rules:
            if rule.via_node != via or graph.osm_way_id[arriving] != rule.from_way:
                continue
            back = graph.dst[leaving] == graph.src[arriving]
            named = graph.osm_way_id[leaving] == rule.to_way and (
                rule.from_way != rule.to_way or back
            )
            if named != rule.mandatory:
                bad.append((rule.kind, rule.id))
    return bad


async def assert_routes_obey_restrictions(
    service: RoadService, imported: Imported, path: Path
) -> None:
    graph = imported.graph
    extract = read_osm(path)
    rules = extract.restrictions
    plain, _ = build_graph(extract)  # the same roads, every turn allowed
    plain_index = {int(osm): i for i, osm in enumerate(plain.node_osm_id)}
    network = await service.network(imported.region)
    tried = detours = 0
    for rule in rules:
        # From the node before the via node on the "from" way to every node one road past it,
        # forbidden turns included: the roads are those of the graph without restrictions.
        via = plain_index[rule.via_node]
        arriving = np.flatnonzero((plain.dst == via) & (plain.osm_way_id == rule.from_way))
        for r in arriving:
            for leaving in np.flatnonzero(plain.src == via):
                a = node_point(plain, int(plain.src[r]))
                b = node_point(plain, int(plain.dst[leaving]))
                if network.snap(a.lat, a.lng) is None or network.snap(b.lat, b.lng) is None:
                    continue
                if (a.lat, a.lng) == (b.lat, b.lng):
                    continue
                route = await service.route([a, b])
                leg = route.legs[0]
                assert forbidden_turns(graph, leg.road_ids, rules) == []
                unrestricted = dijkstra(
                    plain.matrix(), indices=[plain_index[int(graph.node_osm_id[leg.start.node])]]
                )[0, plain_index[int(graph.node_osm_id[leg.end.node])]]
                assert leg.duration_s >= unrestricted - 1e-9
                detours += leg.duration_s > unrestricted + 1e-9
                tried += 1
    assert tried >= len(rules) // 2
    assert detours > 0  # some routes would have made the forbidden turn


async def test_routes_in_west_oakland_never_make_a_forbidden_turn(
    service: RoadService, oakland: Imported
) -> None:
    await assert_routes_obey_restrictions(service, oakland, DATA / "west-oakland.osm.bz2")


async def test_routes_in_monaco_never_make_a_forbidden_turn(
    service: RoadService, monaco: Imported
) -> None:
    await assert_routes_obey_restrictions(service, monaco, DATA / "monaco.osm.pbf")


async def assert_matrix_equals_dijkstra(service: RoadService, imported: Imported) -> None:
    """Matrices of drivers near a restaurant and anywhere on the map, each time exactly the
    shortest on the graph's weights (read from the graph, whichever process wrote them)."""
    graph = imported.graph
    network = await service.network(imported.region)
    rng = np.random.default_rng(5)
    routable = np.flatnonzero(graph.largest_component_mask())
    reverse = graph.matrix().T.tocsr()
    for restaurant in rng.choice(routable, size=4, replace=False):
        near = (
            np.hypot(
                graph.lat[routable] - graph.lat[restaurant],
                graph.lng[routable] - graph.lng[restaurant],
            )
            < 0.01
        )
        drivers = np.concatenate([rng.choice(routable[near], size=6), rng.choice(routable, size=6)])
        points = [node_point(graph, int(n)) for n in drivers]
        target = node_point(graph, int(restaurant))
        matrix = await service.matrix(points, [target])
        to_target = dijkstra(reverse, indices=network.snap(target.lat, target.lng).node)
        for point, (time_s,) in zip(points, matrix, strict=True):
            snapped = network.snap(point.lat, point.lng)
            assert snapped is not None
            assert time_s == pytest.approx(to_target[snapped.node], rel=1e-9, abs=1e-9)


def force_matrix_path(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Make the service search matrices in the process, or ask them of the CCH."""
    if path == "in_process":
        monkeypatch.setattr(matrix_module, "CCH_PAIR_MS", 1e9)
    else:
        monkeypatch.setattr(matrix_module, "NODE_MS", 1e9)


@pytest.mark.parametrize("path", ["in_process", "cch"])
async def test_matrices_in_san_francisco_take_exactly_dijkstras_time(
    service: RoadService, sf: Imported, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    force_matrix_path(monkeypatch, path)
    await assert_matrix_equals_dijkstra(service, sf)


async def test_matrices_in_west_oakland_and_monaco_take_exactly_dijkstras_time(
    service: RoadService, oakland: Imported, monaco: Imported
) -> None:
    await assert_matrix_equals_dijkstra(service, oakland)
    await assert_matrix_equals_dijkstra(service, monaco)


async def test_a_travel_time_matrix_equals_the_routes_between_its_points(
    service: RoadService, sf: Imported
) -> None:
    origins = [UNION_SQUARE, CHINATOWN, FERRY_BUILDING]
    matrix = await service.matrix(origins, [FERRY_BUILDING, UNION_SQUARE])
    assert len(matrix) == 3 and all(len(row) == 2 for row in matrix)
    assert matrix[0][0] == (await service.route([UNION_SQUARE, FERRY_BUILDING])).duration_s
    assert matrix[1][1] == (await service.route([CHINATOWN, UNION_SQUARE])).duration_s
    assert matrix[2][0] == 0.0 and matrix[0][1] == 0.0


async def test_a_large_matrix_asked_in_several_queries_equals_the_routes(
    service: RoadService, sf: Imported
) -> None:
    rng = np.random.default_rng(11)
    nodes = rng.choice(np.flatnonzero(sf.graph.largest_component_mask()), size=9, replace=False)
    origins = [node_point(sf.graph, n) for n in nodes[:7]]
    destinations = [node_point(sf.graph, n) for n in nodes[7:]]
    matrix = await service.matrix(origins, destinations)
    for row, origin in zip(matrix, origins, strict=True):
        for time_s, destination in zip(row, destinations, strict=True):
            assert time_s == (await service.route([origin, destination])).duration_s


async def test_a_search_that_fails_leaves_no_weights_check_running(
    service: RoadService, sf: Imported, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search that fails leaves no weights check running after the call (the check runs
    first; it must never be left to finish on its own)."""
    force_matrix_path(monkeypatch, "in_process")
    network = await service.network(sf.region)

    def broken(sources: list[int], targets: list[int]) -> dict[tuple[int, int], float]:
        raise RuntimeError("search failed")

    monkeypatch.setattr(network, "travel_times", broken)
    before = asyncio.all_tasks()
    with pytest.raises(RuntimeError, match="search failed"):
        await service.matrix([UNION_SQUARE, CHINATOWN], [FERRY_BUILDING])
    assert asyncio.all_tasks() == before
    monkeypatch.undo()
    matrix = await service.matrix([UNION_SQUARE], [FERRY_BUILDING])
    assert matrix[0][0] == (await service.route([UNION_SQUARE, FERRY_BUILDING])).duration_s


async def test_a_matrix_after_a_reimport_is_asked_of_the_new_map(
    service: RoadService, db: FalkorDB, sf: Imported
) -> None:
    before = await service.network(sf.region)
    await import_osm(db, sf.region, DATA / "san-francisco-downtown-drive.osm.bz2")
    await asyncio.sleep(VERSION_CHECK_S)  # how long a process trusts the map it holds
    matrix = await service.matrix([UNION_SQUARE, CHINATOWN], [FERRY_BUILDING])
    after = await service.network(sf.region)
    assert after.import_id != before.import_id
    assert matrix[1][0] == (await service.route([CHINATOWN, FERRY_BUILDING])).duration_s


async def test_a_map_without_its_cch_index_makes_routes_fail_as_unavailable(
    service: RoadService, db: FalkorDB, town: str
) -> None:
    await db.select_graph(graph_name(town)).query(
        "DROP CCH INDEX FOR ()-[r:ROAD]->() ON (r.time_s)"
    )
    loop, corner = LatLng(lat=10.010, lng=10.010), LatLng(lat=10.011, lng=10.011)
    with pytest.raises(DependencyUnavailable, match="CCH index"):
        await service.route([loop, corner])
    # Matrices are searched in the process, on the weights read from the graph.
    assert (await service.matrix([loop], [corner]))[0][0] is not None
