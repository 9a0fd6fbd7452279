import numpy as np
import pytest

from ontheway.roads.geo import bearing_deg, haversine_m
from ontheway.roads.graph import build_graph
from ontheway.roads.network import RoadNetwork
from ontheway.roads.osm import OsmExtract, OsmWay

P = {
    1: (37.7900, -122.4000),
    2: (37.7910, -122.4000),
    3: (37.7910, -122.3990),
    4: (37.7920, -122.3990),  # the end of a one-way spur: not in the largest component
}


def network() -> RoadNetwork:
    ways = [
        OsmWay(1, {"highway": "residential"}, (1, 2, 3), (P[1], P[2], P[3])),
        OsmWay(2, {"highway": "residential", "oneway": "yes"}, (3, 4), (P[3], P[4])),
    ]
    graph, _ = build_graph(OsmExtract(ways=ways))
    return RoadNetwork("import-1", graph)


def test_a_point_snaps_to_the_nearest_node_with_its_distance() -> None:
    snap = network().snap(37.79101, -122.40001)
    assert snap is not None
    assert (snap.lat, snap.lng) == P[2]
    assert snap.distance_m == pytest.approx(haversine_m(37.79101, -122.40001, *P[2]))


def test_a_point_never_snaps_to_a_node_it_could_not_leave() -> None:
    snap = network().snap(*P[4])
    assert snap is not None
    assert (snap.lat, snap.lng) == P[3]


def test_a_point_far_from_every_road_does_not_snap() -> None:
    assert network().snap(37.80, -122.40) is None  # about 1 km north


def test_node_ids_outside_the_network_mean_another_import() -> None:
    roads = network()
    assert roads.has_nodes([0, 1])
    assert not roads.has_nodes([0, roads.graph.node_count])
    assert not roads.has_nodes([-1, 0])
    assert roads.has_nodes([])


def test_the_roads_along_a_path_are_those_joining_its_nodes() -> None:
    roads = network()
    g = roads.graph
    path = [int(g.src[0]), int(g.dst[0])]
    (road,) = roads.roads_along(path).tolist()
    assert (g.src[road], g.dst[road]) == (path[0], path[1])
    with pytest.raises(ValueError, match="no road joins"):
        roads.roads_along([path[0], path[0]])


def test_of_parallel_roads_the_path_takes_the_fastest_on_the_current_weights() -> None:
    ways = [
        OsmWay(1, {"highway": "residential", "name": "Slow"}, (1, 2), (P[1], P[2])),
        OsmWay(2, {"highway": "primary", "name": "Fast"}, (1, 2), (P[1], P[2])),
    ]
    graph, _ = build_graph(OsmExtract(ways=ways))
    roads = RoadNetwork("parallel", graph)
    a, b = (
        int(np.flatnonzero(graph.node_osm_id == 1)[0]),
        int(np.flatnonzero(graph.node_osm_id == 2)[0]),
    )
    (chosen,) = roads.roads_along([a, b]).tolist()
    assert graph.name[chosen] == "Fast"
    roads.set_times(np.array([chosen]), np.array([999.0]), None)  # a jam on it
    (chosen,) = roads.roads_along([a, b]).tolist()
    assert graph.name[chosen] == "Slow"


def test_distances_and_bearings_are_in_metres_and_compass_degrees() -> None:
    assert haversine_m(0, 0, 0, 1) == pytest.approx(111_195, rel=1e-3)
    assert bearing_deg(0, 0, 1, 0) == pytest.approx(0)
    assert bearing_deg(0, 0, 0, 1) == pytest.approx(90)
    assert bearing_deg(0, 0, -1, 0) == pytest.approx(180)
