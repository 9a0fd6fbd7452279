import h3
import numpy as np
import pytest

from ontheway.roads.geo import haversine_m
from ontheway.roads.graph import build_graph
from ontheway.roads.network import RoadNetwork
from ontheway.roads.osm import OsmExtract, OsmWay
from ontheway.roads.zones import H3_RESOLUTION, cell_of, distance_matrix, zone_cells

SOUTH, NORTH = 37.790, 37.7935  # two streets about 390 m apart
WEST, EAST = -122.420, -122.400  # about 1.76 km long, joined only at the east end
LNGS = [round(WEST + i * 0.001, 3) for i in range(21)]


def street(way_id: int, points: list[tuple[float, float]], first_id: int) -> OsmWay:
    ids = tuple(range(first_id, first_id + len(points)))
    return OsmWay(way_id, {"highway": "residential", "maxspeed": "36"}, ids, tuple(points))


@pytest.fixture(scope="module")
def network() -> RoadNetwork:
    south = street(1, [(SOUTH, g) for g in LNGS], 100)
    north = street(2, [(NORTH, g) for g in LNGS], 200)
    join = OsmWay(
        3, {"highway": "residential", "maxspeed": "36"}, (120, 220), ((SOUTH, EAST), (NORTH, EAST))
    )
    graph, _ = build_graph(OsmExtract(ways=[south, north, join]))
    return RoadNetwork("test", graph)


def cells_of(network: RoadNetwork, radius_m: float, max_travel_s: float | None = None):  # type: ignore[no-untyped-def]
    graph = network.graph
    return zone_cells(
        network, graph.matrix(), distance_matrix(graph), SOUTH, WEST, radius_m, max_travel_s
    )


def test_a_restaurant_delivers_to_the_cells_along_the_road_within_its_radius(network) -> None:  # type: ignore[no-untyped-def]
    cells = cells_of(network, 1000)
    assert cells
    here = {c.h3: c for c in cells}
    assert cell_of(SOUTH, WEST) in here
    assert cell_of(SOUTH, WEST + 0.008) in here  # 700 m east along the street
    assert all(c.distance_m <= 1000 for c in cells)
    # 36 km/h is 10 m/s: the time follows the road distance.
    for c in cells:
        assert c.travel_time_s == pytest.approx(c.distance_m / 10, abs=0.5)


def test_a_cell_near_as_the_crow_flies_but_far_by_road_is_left_out(network) -> None:  # type: ignore[no-untyped-def]
    across = cell_of(NORTH, WEST)  # 390 m away, 3.9 km by road
    lat, lng = h3.cell_to_latlng(across)
    assert haversine_m(SOUTH, WEST, lat, lng) < 600
    assert across not in {c.h3 for c in cells_of(network, 1000)}
    assert across in {c.h3 for c in cells_of(network, 4500)}


def test_cells_off_the_road_map_are_left_out(network) -> None:  # type: ignore[no-untyped-def]
    cells = {c.h3 for c in cells_of(network, 4500)}
    assert cell_of(SOUTH - 0.01, WEST + 0.005) not in cells  # 1 km south of every road


def test_a_travel_time_limit_shrinks_the_zone(network) -> None:  # type: ignore[no-untyped-def]
    wide, narrow = cells_of(network, 1500), cells_of(network, 1500, max_travel_s=60)
    assert narrow and len(narrow) < len(wide)
    assert all(c.travel_time_s <= 60 for c in narrow)


def test_a_restaurant_off_the_road_map_has_no_zone(network) -> None:  # type: ignore[no-untyped-def]
    graph = network.graph
    far = zone_cells(network, graph.matrix(), distance_matrix(graph), 37.70, -122.42, 3000)
    assert far is None


def test_zones_are_h3_cells_of_resolution_nine() -> None:
    cell = cell_of(37.79, -122.41)
    assert h3.get_resolution(cell) == H3_RESOLUTION == 9
    assert np.isclose(h3.cell_to_latlng(cell)[0], 37.79, atol=0.003)
