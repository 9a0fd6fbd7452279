from pathlib import Path

import numpy as np
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.graph import RoadGraph, build_graph
from ontheway.roads.osm import OsmExtract, OsmRestriction, OsmWay, read_osm
from ontheway.roads.restrictions import apply_restrictions

DATA = Path(__file__).parents[1] / "data" / "osm"

# A plus-shaped crossing at node 5: west 4, east 6, north 2, south 8, all two-way streets,
# plus a ring 4-1-2-3-6 round the north so that a forbidden left turn has a detour.
P = {
    1: (37.791, -122.401),
    2: (37.791, -122.400),
    3: (37.791, -122.399),
    4: (37.790, -122.401),
    5: (37.790, -122.400),
    6: (37.790, -122.399),
    8: (37.789, -122.400),
}
WEST, EAST, NORTH, SOUTH, RING = 100, 101, 102, 103, 104


def way(way_id: int, nodes: list[int]) -> OsmWay:
    tags = {"highway": "residential", "name": f"Way {way_id}"}
    return OsmWay(way_id, tags, tuple(nodes), tuple(P[n] for n in nodes))


CROSSING = [
    way(WEST, [4, 5]),
    way(EAST, [5, 6]),
    way(NORTH, [5, 2]),
    way(SOUTH, [8, 5]),
    way(RING, [4, 1, 2, 3, 6]),
]


def build(*rules: OsmRestriction) -> RoadGraph:
    graph, _ = build_graph(OsmExtract(ways=list(CROSSING), restrictions=list(rules)))
    split, _ = apply_restrictions(graph, list(rules))
    return split


def fastest(graph: RoadGraph, from_osm: int, to_osm: int) -> float:
    starts = np.flatnonzero(graph.node_osm_id == from_osm)
    ends = np.flatnonzero(graph.node_osm_id == to_osm)
    times = dijkstra(graph.matrix(), indices=starts)
    return float(times[:, ends].min())


def turns(graph: RoadGraph) -> set[tuple[int, int]]:
    """Every (arriving way, leaving way) pair the graph allows at node 5."""
    five = set(np.flatnonzero(graph.node_osm_id == 5).tolist())
    allowed = set()
    for arriving in range(graph.road_count):
        if graph.dst[arriving] in five:
            for leaving in np.flatnonzero(graph.src == graph.dst[arriving]):
                allowed.add((int(graph.osm_way_id[arriving]), int(graph.osm_way_id[leaving])))
    return allowed


def test_without_restrictions_the_graph_is_unchanged() -> None:
    graph, _ = build_graph(OsmExtract(ways=list(CROSSING)))
    same, report = apply_restrictions(graph, [])
    assert same is graph
    assert report.applied == 0


def test_a_no_left_turn_removes_only_that_turn() -> None:
    rule = OsmRestriction(1, "no_left_turn", SOUTH, 5, WEST)
    allowed = turns(build(rule))
    assert (SOUTH, WEST) not in allowed
    assert {(SOUTH, EAST), (SOUTH, NORTH), (NORTH, WEST), (EAST, WEST)} <= allowed


def test_a_forbidden_turn_makes_the_route_take_the_detour() -> None:
    plain = build()
    restricted = build(OsmRestriction(1, "no_left_turn", SOUTH, 5, WEST))
    assert fastest(restricted, 8, 4) > fastest(plain, 8, 4)
    assert fastest(restricted, 8, 6) == fastest(plain, 8, 6)


def test_an_only_straight_on_leaves_just_that_turn() -> None:
    rule = OsmRestriction(1, "only_straight_on", SOUTH, 5, NORTH)
    allowed = turns(build(rule))
    assert {turn for turn in allowed if turn[0] == SOUTH} == {(SOUTH, NORTH)}
    assert (WEST, EAST) in allowed


def test_a_no_u_turn_forbids_turning_back_along_the_same_way() -> None:
    rule = OsmRestriction(1, "no_u_turn", WEST, 5, WEST)
    graph = build(rule)
    five = set(np.flatnonzero(graph.node_osm_id == 5).tolist())
    four = int(np.flatnonzero(graph.node_osm_id == 4)[0])
    for arriving in np.flatnonzero(graph.osm_way_id == WEST):
        if graph.dst[arriving] in five:
            leaving = np.flatnonzero(graph.src == graph.dst[arriving])
            assert four not in graph.dst[leaving].tolist()


def test_a_restriction_whose_ways_do_not_meet_at_its_node_is_unusable() -> None:
    graph, _ = build_graph(OsmExtract(ways=list(CROSSING)))
    _, report = apply_restrictions(graph, [OsmRestriction(1, "no_left_turn", SOUTH, 4, WEST)])
    assert (report.applied, report.unusable) == (0, 1)
    _, report = apply_restrictions(graph, [OsmRestriction(2, "no_left_turn", SOUTH, 999, WEST)])
    assert (report.applied, report.unusable) == (0, 1)


def forbidden_turns_taken(graph: RoadGraph, rules: list[OsmRestriction]) -> int:
    """How many roads-pairs of the graph turn where a rule forbids it (must be none)."""
    by_via: dict[int, list[OsmRestriction]] = {}
    for rule in rules:
        by_via.setdefault(rule.via_node, []).append(rule)
    bad = 0
    for arriving in range(graph.road_count):
        via = int(graph.node_osm_id[graph.dst[arriving]])
        for rule in by_via.get(via, []):
            if graph.osm_way_id[arriving] != rule.from_way:
                continue
            for leaving in np.flatnonzero(graph.src == graph.dst[arriving]):
                back = graph.dst[leaving] == graph.src[arriving]
                to = graph.osm_way_id[leaving] == rule.to_way
                named = to and (rule.from_way != rule.to_way or back)
                bad += int(named != rule.mandatory)
    return bad


def test_the_real_restrictions_of_west_oakland_and_monaco_are_all_built_in() -> None:
    for name, applied in (("west-oakland.osm.bz2", 3), ("monaco.osm.pbf", 27)):
        extract = read_osm(DATA / name)
        graph, _ = build_graph(extract)
        split, report = apply_restrictions(graph, extract.restrictions)
        assert report.applied == applied
        assert split.node_count > graph.node_count
        assert forbidden_turns_taken(split, extract.restrictions) == 0
        assert forbidden_turns_taken(graph, extract.restrictions) > 0
