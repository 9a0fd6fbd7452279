"""Drawing a road graph: each street once, loops left out, points rounded, classes ranked."""

from __future__ import annotations

import numpy as np

from ontheway.roads.drawing import road_drawing
from ontheway.roads.graph import RoadGraph
from tests.helpers import synthetic_roads


def graph(src: list[int], dst: list[int], classes: list[str]) -> RoadGraph:
    """Four intersections on a small square; the roads given."""
    return synthetic_roads(
        [37.7800001, 37.7800001, 37.7812345678, 37.79],
        [-122.41, -122.40, -122.40, -122.39],
        src,
        dst,
        np.ones(len(src)),
        distance_m=1.0,
        classes=classes,
    )


def test_a_two_way_street_is_drawn_once_and_a_loop_not_at_all() -> None:
    roads = graph(
        [0, 1, 1, 2, 2],
        [1, 0, 2, 2, 1],
        ["residential", "residential", "primary", "primary", "primary"],
    )
    drawing = road_drawing("sf", "imp", roads)
    assert drawing["classes"] == ["primary", "residential"]
    nodes, segments = drawing["nodes"], drawing["segments"]
    assert len(segments) == 2 * 3
    assert len(nodes) == 3 * 2  # node 3 has no road
    points = [(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
    drawn = {
        (
            frozenset({points[segments[s]], points[segments[s + 1]]}),
            drawing["classes"][segments[s + 2]],
        )
        for s in range(0, len(segments), 3)
    }
    assert drawn == {
        (frozenset({(37.78, -122.41), (37.78, -122.4)}), "residential"),
        (frozenset({(37.78, -122.4), (37.78123, -122.4)}), "primary"),
    }
    assert drawing["bbox"] == {
        "min_lat": 37.78,
        "min_lng": -122.41,
        "max_lat": 37.78123,
        "max_lng": -122.4,
    }


def test_links_rank_with_their_road_and_unknown_classes_come_last() -> None:
    roads = graph([0, 1, 2], [1, 2, 3], ["track", "motorway_link", "secondary"])
    assert road_drawing("sf", "imp", roads)["classes"] == ["motorway_link", "secondary", "track"]


def test_an_empty_graph_draws_nothing() -> None:
    drawing = road_drawing("sf", "imp", graph([], [], []))
    assert drawing["segments"] == [] and drawing["bbox"] is None
