import math

import numpy as np
import pytest

from ontheway.roads.graph import MIN_TIME_S, build_graph
from ontheway.roads.osm import OsmExtract, OsmWay
from ontheway.roads.traffic import (
    FULL_REBUILD_ROADS,
    INCREMENTAL_MAX,
    AreaFactor,
    InvalidTraffic,
    RoadFactor,
    StreetFactor,
    TrafficChange,
    check_factor,
    pad_target,
    plan_write,
    select_roads,
    travel_times,
)

P = {i: (37.79 + i * 0.001, -122.40) for i in range(1, 8)}


def way(way_id: int, nodes: list[int], name: str) -> OsmWay:
    return OsmWay(
        way_id, {"highway": "residential", "name": name}, tuple(nodes), tuple(P[n] for n in nodes)
    )


@pytest.fixture
def graph():  # type: ignore[no-untyped-def]
    built, _ = build_graph(OsmExtract(ways=[way(1, [1, 2, 3], "Pine"), way(2, [3, 4, 5], "Oak")]))
    return built


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf, -math.inf, 20.5, 1e9])
def test_a_factor_that_is_not_above_zero_finite_and_at_most_twenty_is_refused(bad: float) -> None:
    with pytest.raises(InvalidTraffic) as caught:
        check_factor(bad, "edges.0.traffic_factor")
    assert caught.value.field == "edges.0.traffic_factor"


def test_factors_between_zero_and_twenty_are_accepted() -> None:
    assert check_factor(0.5, "f") == 0.5
    assert check_factor(20, "f") == 20.0


def test_roads_are_chosen_by_id_by_street_and_by_area_the_most_specific_winning(graph) -> None:  # type: ignore[no-untyped-def]
    pine = {i for i, n in enumerate(graph.name) if n == "Pine"}
    change = TrafficChange(
        roads=(RoadFactor(0, 3.0),),
        streets=(StreetFactor("  pine ", 2.0),),
        areas=(AreaFactor(P[5][0], P[5][1], 120, 1.5),),
    )
    chosen = select_roads(graph, change)
    assert chosen[0] == 3.0
    assert {r for r, f in chosen.items() if f == 2.0} == pine - {0}
    near_five = {r for r, f in chosen.items() if f == 1.5}
    assert near_five and all(graph.name[r] == "Oak" for r in near_five)
    assert len(near_five) < graph.road_count - len(pine)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (TrafficChange(), "edges", "invalid_traffic"),
        (
            TrafficChange(roads=(RoadFactor(0, 1.0), RoadFactor(99, 1.0))),
            "edges.1.road_id",
            "unknown_road",
        ),
        (TrafficChange(roads=(RoadFactor(-1, 1.0),)), "edges.0.road_id", "unknown_road"),
        (TrafficChange(roads=(RoadFactor(0, 0.0),)), "edges.0.traffic_factor", "invalid_traffic"),
        (TrafficChange(streets=(StreetFactor("Elm", 2.0),)), "streets.0.name", "unknown_street"),
        (TrafficChange(areas=(AreaFactor(0.0, 0.0, 100, 2.0),)), "areas.0", "invalid_traffic"),
        (
            TrafficChange(areas=(AreaFactor(*P[2], 100, math.nan),)),
            "areas.0.traffic_factor",
            "invalid_traffic",
        ),
    ],
)
def test_a_bad_traffic_change_names_its_field(graph, change, field, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidTraffic) as caught:
        select_roads(graph, change)
    assert (caught.value.field, caught.value.code) == (field, code)


def test_travel_time_is_base_time_times_factor_rounded_to_the_millisecond() -> None:
    base = np.array([10.0, 1.234, 0.004])
    times = travel_times(base, np.array([1.5, 3.0, 0.5]))
    assert times.tolist() == [15.0, 3.702, MIN_TIME_S]


def test_a_few_changed_roads_are_written_alone_and_many_are_padded_to_force_a_rebuild() -> None:
    assert pad_target(INCREMENTAL_MAX, 200_000) == INCREMENTAL_MAX
    assert pad_target(1000, 200_000) == max(FULL_REBUILD_ROADS, 14_000)
    assert pad_target(1000, 5_000) == 5_000
    assert pad_target(50_000, 200_000) == 50_000


def test_a_padded_write_rewrites_other_roads_to_their_own_weights() -> None:
    graph, _ = build_graph(OsmExtract(ways=[way(1, [1, 2, 3, 4, 5, 6, 7], "Pine")]))
    assert graph.road_count == INCREMENTAL_MAX + 2
    few = plan_write(graph, {0: 2.0})
    assert few.rows == [[0, 2.0, round(graph.base_time_s[0] * 2, 3)]]
    assert not few.full_rebuild
    chosen = dict.fromkeys(range(INCREMENTAL_MAX + 1), 2.0)
    many = plan_write(graph, chosen)
    assert many.full_rebuild and many.changed == INCREMENTAL_MAX + 1
    assert sorted(row[0] for row in many.rows) == list(range(graph.road_count))
    assert [row for row in many.rows if row[0] not in chosen] == [[INCREMENTAL_MAX + 1, None, None]]
