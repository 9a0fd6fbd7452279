import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from ontheway.roads import search
from ontheway.roads.graph import RoadGraph
from ontheway.roads.matrix import cch_ms, in_process_ms
from ontheway.roads.network import RoadNetwork
from ontheway.roads.search import MatrixSearch
from tests.helpers import grid_links, synthetic_roads


def grid(size: int, seed: int) -> RoadGraph:
    """A ``size`` x ``size`` grid about 100 m apart, two-way roads of random times, plus one
    node joined to nothing (the last)."""
    rng = np.random.default_rng(seed)
    src: list[int] = []
    dst: list[int] = []
    for here, there in grid_links(size):
        src += [here, there]
        dst += [there, here]
    n = size * size + 1
    m = len(src)
    lat = np.array([37.7 + (k // size) * 0.0009 for k in range(n)])
    lng = np.array([-122.4 + (k % size) * 0.0011 for k in range(n)])
    return synthetic_roads(lat, lng, src, dst, np.round(rng.uniform(5, 60, m), 3))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_time_equals_a_whole_dijkstra_search(seed: int) -> None:
    graph = grid(15, seed)
    rng = np.random.default_rng(seed)
    sources = rng.choice(225, size=12, replace=False).tolist()
    targets = rng.choice(225, size=3, replace=False).tolist()
    full = dijkstra(graph.matrix())
    for rows, cols in ((sources, targets), (targets, sources)):  # backward, then forward
        found = MatrixSearch(graph, graph.time_s).times(rows, cols)
        assert set(found) == {(a, b) for a in rows for b in cols}
        for (a, b), time_s in found.items():
            assert time_s == pytest.approx(full[a, b], rel=1e-12, abs=1e-9)


def test_a_far_point_is_found_after_the_limit_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    # A guessed speed far too high: the first limits reach almost nothing.
    monkeypatch.setattr(search, "GUESS_SPEED_M_S", 1000.0)
    monkeypatch.setattr(search, "SLACK_S", 0.0)
    graph = grid(15, 4)
    found = MatrixSearch(graph, graph.time_s).times([0], [224])
    assert found[(0, 224)] == pytest.approx(dijkstra(graph.matrix(), indices=0)[224])


def test_a_point_no_road_joins_is_left_out_and_its_own_time_is_zero() -> None:
    graph = grid(6, 5)
    found = MatrixSearch(graph, graph.time_s).times([0, 36, 7], [7])
    assert (36, 7) not in found
    assert found[(7, 7)] == 0.0
    assert (0, 7) in found


def test_the_search_uses_the_weights_it_was_given() -> None:
    graph = grid(6, 6)
    slower = graph.time_s * 3
    found = MatrixSearch(graph, slower).times([0], [35])
    assert found[(0, 35)] == pytest.approx(3 * dijkstra(graph.matrix(), indices=0)[35])


def test_a_matrix_over_far_points_is_estimated_dearer_in_the_process_than_by_the_cch() -> None:
    network = RoadNetwork("grid", grid(30, 7))
    near = in_process_ms(network, [0, 1, 30, 31], [32])
    far = in_process_ms(network, [0, 1, 30, 899], [32])
    assert network.nodes_within([32], [0, 1, 30, 31], 1.0)[0] < 30
    assert network.nodes_within([32], [899], 1.0)[0] > 400
    assert near < far
    # On a map this small even a search of all of it costs less than four CCH searches.
    assert far < cch_ms(4, threads=2)


def counting_searches(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the limit of every Dijkstra search ``MatrixSearch`` runs."""
    limits: list[float] = []

    def counted(*args: object, **kwargs: float) -> object:
        limits.append(kwargs["limit"])
        return dijkstra(*args, **kwargs)

    monkeypatch.setattr(search, "dijkstra", counted)
    return limits


def test_a_kept_search_answers_the_next_ends_it_reaches_and_widens_for_farther_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = counting_searches(monkeypatch)
    graph = grid(15, 8)
    full = dijkstra(graph.matrix())
    matrix = MatrixSearch(graph, graph.time_s)
    assert matrix.times([112], [113])[(112, 113)] == pytest.approx(full[112, 113])
    searched = len(limits)
    assert searched >= 1 and matrix.kept(112, backward=False)
    # A nearer end, from the same start: answered by the kept search alone.
    assert matrix.times([112], [112 - 1])[(112, 111)] == pytest.approx(full[112, 111])
    assert len(limits) == searched
    # A farther end: a wider search, which then answers every end it reached.
    assert matrix.times([112], [0])[(112, 0)] == pytest.approx(full[112, 0])
    assert len(limits) > searched and limits[searched] > limits[searched - 1]
    searched = len(limits)
    for end in (14, 210, 224, 100):
        found = matrix.times([112], [end])
        assert found[(112, end)] == pytest.approx(full[112, end], rel=1e-12, abs=1e-9)
    assert len(limits) <= searched + 1
    # The other direction is another search.
    assert not matrix.kept(112, backward=True)
    assert matrix.times([0, 1], [112])[(0, 112)] == pytest.approx(full[0, 112])
    assert matrix.kept(112, backward=True)


def test_the_searches_kept_are_bounded_and_the_least_recently_used_goes_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(search, "TREE_CACHE_BYTES", 0)
    monkeypatch.setattr(search, "MIN_TREES", 2)
    graph = grid(6, 9)
    matrix = MatrixSearch(graph, graph.time_s)
    for start in (0, 1, 0, 2):
        matrix.times([start], [35])
    assert matrix.kept(0, backward=False) and matrix.kept(2, backward=False)
    assert not matrix.kept(1, backward=False)


def test_a_matrix_from_a_kept_search_is_estimated_free_in_the_process() -> None:
    network = RoadNetwork("grid", grid(30, 10))
    before = in_process_ms(network, [0], [899])
    assert before > 0
    network.travel_times([0], [899])
    assert in_process_ms(network, [0], [899]) == 0.0
    assert in_process_ms(network, [1], [899]) > 0
