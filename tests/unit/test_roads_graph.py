from pathlib import Path

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.geo import haversine_m
from ontheway.roads.graph import MIN_TIME_S, build_graph
from ontheway.roads.osm import OsmExtract, OsmWay, read_osm
from ontheway.roads.tags import KPH_PER_MPH

DATA = Path(__file__).parents[1] / "data" / "osm"

# Four points about 111 m apart along a meridian.
P = {i: (37.79 + i * 0.001, -122.40) for i in range(1, 8)}


def way(way_id: int, nodes: list[int], missing: tuple[int, ...] = (), **tags: str) -> OsmWay:
    coords = tuple(None if n in missing else P[n] for n in nodes)
    return OsmWay(way_id, {"highway": "residential", **tags}, tuple(nodes), coords)


def graph_of(*ways: OsmWay):  # type: ignore[no-untyped-def]
    return build_graph(OsmExtract(ways=list(ways)))


def roads(graph) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    osm = graph.node_osm_id
    return {(int(osm[a]), int(osm[b])) for a, b in zip(graph.src, graph.dst, strict=True)}


def test_a_two_way_street_gives_a_road_each_way_per_segment() -> None:
    graph, report = graph_of(way(10, [1, 2, 3], name="Pine"))
    assert roads(graph) == {(1, 2), (2, 1), (2, 3), (3, 2)}
    assert graph.node_count == 3
    assert set(graph.name) == {"Pine"}
    assert set(graph.osm_way_id.tolist()) == {10}
    assert report.dropped_ways == report.trimmed_ways == 0


def test_a_oneway_street_is_driven_along_its_nodes_and_minus_one_against_them() -> None:
    assert roads(graph_of(way(1, [1, 2, 3], oneway="yes"))[0]) == {(1, 2), (2, 3)}
    assert roads(graph_of(way(1, [1, 2, 3], oneway="-1"))[0]) == {(2, 1), (3, 2)}


def test_travel_time_is_distance_over_the_maxspeed_in_its_unit() -> None:
    graph, _ = graph_of(way(1, [1, 2], oneway="yes", maxspeed="30 mph"))
    expected_m = haversine_m(*P[1], *P[2])
    assert graph.distance_m[0] == pytest.approx(expected_m, abs=0.005)  # to the centimetre
    assert graph.speed_kph[0] == pytest.approx(30 * KPH_PER_MPH, abs=0.005)
    expected_s = expected_m / (30 * KPH_PER_MPH / 3.6)
    assert graph.base_time_s[0] == pytest.approx(expected_s, abs=0.001)  # to the millisecond
    assert graph.time_s[0] == graph.base_time_s[0]


def test_a_way_cut_at_the_border_is_trimmed_to_the_nodes_the_file_has() -> None:
    graph, report = graph_of(way(1, [1, 2, 3, 4, 5, 6], missing=(4,), oneway="yes"))
    assert roads(graph) == {(1, 2), (2, 3), (5, 6)}
    assert report.trimmed_ways == 1
    assert report.dropped_ways == 0


def test_ways_without_two_consecutive_nodes_in_the_file_are_dropped() -> None:
    graph, report = graph_of(
        way(1, [1, 2], oneway="yes"),
        way(2, [3, 4, 5], missing=(3, 4, 5)),
        way(3, [3, 4, 5], missing=(4,)),
        way(4, [6, 7], oneway="reversible"),
    )
    assert roads(graph) == {(1, 2)}
    assert report.dropped_ways == 3


def test_nodes_shared_by_ways_join_them_and_repeated_nodes_add_no_road() -> None:
    graph, _ = graph_of(way(1, [1, 2, 2], oneway="yes"), way(2, [2, 3], oneway="yes"))
    assert graph.node_count == 3
    assert roads(graph) == {(1, 2), (2, 3)}


def test_two_nodes_at_one_place_still_take_a_little_time() -> None:
    same_place = OsmWay(1, {"highway": "residential"}, (1, 2), (P[1], P[1]))
    graph, _ = build_graph(OsmExtract(ways=[same_place]))
    assert graph.time_s.min() == MIN_TIME_S


def test_the_weight_matrix_keeps_the_cheapest_of_parallel_roads() -> None:
    graph, _ = graph_of(
        way(1, [1, 2], oneway="yes", maxspeed="10"), way(2, [1, 2], oneway="yes", maxspeed="50")
    )
    assert graph.road_count == 2
    matrix = graph.matrix()
    assert matrix.nnz == 1
    assert matrix[0, 1] == pytest.approx(graph.time_s.min())


def test_the_largest_strong_component_leaves_out_one_way_dead_ends() -> None:
    graph, _ = graph_of(way(1, [1, 2, 3]), way(2, [3, 4], oneway="yes"))
    count, _ = graph.strong_components()
    assert count == 2
    mask = graph.largest_component_mask()
    assert sorted(graph.node_osm_id[mask].tolist()) == [1, 2, 3]


def test_west_oakland_drops_its_ghost_ways_without_failing() -> None:
    graph, report = build_graph(read_osm(DATA / "west-oakland.osm.bz2"))
    assert report.dropped_ways >= 89
    assert graph.node_count == 1032
    assert np.isfinite(graph.lat).all() and np.isfinite(graph.lng).all()
    assert graph.lat.min() > 37.80 and graph.lat.max() < 37.83  # no New Jersey, no Canada


def test_monaco_has_roads_against_the_node_order_of_its_minus_one_ways() -> None:
    extract = read_osm(DATA / "monaco.osm.pbf")
    reversed_ways = {w.id: w for w in extract.ways if w.tags.get("oneway") == "-1"}
    assert len(reversed_ways) == 3
    graph, _ = build_graph(extract)
    index = {int(osm): i for i, osm in enumerate(graph.node_osm_id)}
    for way_id, w in reversed_ways.items():
        mine = graph.osm_way_id == way_id
        first, second = index[w.node_ids[0]], index[w.node_ids[1]]
        assert ((graph.src[mine] == second) & (graph.dst[mine] == first)).any()
        assert not ((graph.src[mine] == first) & (graph.dst[mine] == second)).any()


def test_every_node_of_the_largest_component_reaches_every_other() -> None:
    graph, _ = build_graph(read_osm(DATA / "san-francisco-downtown-drive.osm.bz2"))
    mask = graph.largest_component_mask()
    nodes = np.flatnonzero(mask)[:20]
    times = dijkstra(graph.matrix(), indices=nodes)
    assert np.isfinite(times[:, mask]).all()
