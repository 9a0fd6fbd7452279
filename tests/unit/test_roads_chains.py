import itertools

import numpy as np
import pytest
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.chains import Chains
from ontheway.roads.graph import RoadGraph
from ontheway.roads.search import MatrixSearch
from tests.helpers import grid_links, synthetic_roads


def streets(size: int, seed: int) -> RoadGraph:
    """A ``size`` x ``size`` grid of junctions whose streets bend through 0-3 nodes each,
    some one-way, some doubled by a parallel road; plus a loop that leaves a junction and
    comes back to it, an island ring of four nodes, and a dead end."""
    rng = np.random.default_rng(seed)
    n = size * size
    src: list[int] = []
    dst: list[int] = []

    def road(a: int, b: int) -> None:
        src.append(a)
        dst.append(b)

    def street(path: list[int]) -> None:
        # two-way, one-way either way, or two-way with one piece one-way
        kind = rng.choice(["both", "fwd", "bwd", "mixed"], p=[0.6, 0.15, 0.15, 0.1])
        for k, (a, b) in enumerate(itertools.pairwise(path)):
            if kind in ("both", "fwd") or (kind == "mixed" and k != 0):
                road(a, b)
            if kind in ("both", "bwd") or kind == "mixed":
                road(b, a)
            if rng.random() < 0.05:
                road(a, b)  # a parallel road
                road(b, a)

    def bend(k: int) -> list[int]:
        nonlocal n
        inner = list(range(n, n + k))
        n += k
        return inner

    for here, there in grid_links(size):
        street([here, *bend(int(rng.integers(0, 4))), there])
    street([0, *bend(3), 0])  # a loop back to the corner junction
    ring = bend(4)
    for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
        road(a, b)
        road(b, a)
    street([size * size - 1, *bend(2)])  # a dead end
    lat = 37.7 + rng.uniform(0, 0.01, n)
    lng = -122.4 + rng.uniform(0, 0.01, n)
    times = np.round(rng.uniform(2, 40, len(src)), 3)
    return synthetic_roads(lat, lng, src, dst, times, distance_m=50.0)


def test_chains_are_the_runs_of_nodes_with_two_neighbours() -> None:
    graph = streets(6, 1)
    chains = Chains(graph)
    assert chains.chain_count > 0
    for c in range(chains.chain_count):
        run = chains.nodes[chains.starts[c] : chains.starts[c + 1]]
        assert len(run) >= 3
        assert (chains.chain_of[run[[0, -1]]] == -1).all()  # both ends are in the core
        assert (chains.chain_of[run[1:-1]] == c).all()
    # The island ring has no core node to end at: it stays in the core.
    ring = np.arange(graph.node_count - 6, graph.node_count - 2)
    assert (chains.chain_of[ring] == -1).all()
    inner = chains.chain_of >= 0
    assert len(chains.core) + int(inner.sum()) == graph.node_count


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_searches_on_the_core_equal_dijkstra_on_the_whole_graph(seed: int) -> None:
    graph = streets(7, seed)
    full = dijkstra(graph.matrix())
    rng = np.random.default_rng(seed)
    search = MatrixSearch(graph, graph.time_s)
    every = np.arange(graph.node_count)
    for _ in range(6):
        rows = rng.choice(every, size=9, replace=False).tolist()
        cols = rng.choice(every, size=3, replace=False).tolist()
        for sources, targets in ((rows, cols), (cols, rows)):  # backward, then forward
            found = search.times(sources, targets)
            for a in sources:
                for b in targets:
                    if np.isfinite(full[a, b]):
                        assert found[(a, b)] == pytest.approx(full[a, b], abs=1e-9)
                    else:
                        assert (a, b) not in found


def test_every_pair_of_a_small_map_equals_dijkstra() -> None:
    graph = streets(4, 9)
    full = dijkstra(graph.matrix())
    weights = np.round(graph.time_s * 1.5, 3)  # whole milliseconds, as roads' times are
    search = MatrixSearch(graph, weights)
    slower = dijkstra(graph.matrix(weights))
    every = list(range(graph.node_count))
    for a in every:
        found = search.times([a], every)
        for b in every:
            if np.isfinite(slower[a, b]):
                assert found[(a, b)] == pytest.approx(slower[a, b], abs=1e-9)
            else:
                assert (a, b) not in found
    assert np.isfinite(full).sum() == np.isfinite(slower).sum()
