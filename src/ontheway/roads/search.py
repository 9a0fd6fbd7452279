"""Travel-time matrices in the process: one bounded Dijkstra search per row or column.

Routes come from FalkorDB's CCH index, but a matrix does not: FalkorDB 4.22's
``db.idx.cch.query`` answers one source and one target per search, about 0.5 ms in the server
even between neighbours, so 20 drivers to a restaurant cost 20 searches (about 12 ms on the
Mexico City extract, over both of the server's threads). The matrices the platform asks for
join nearby points: drivers within a few kilometres of a restaurant, a restaurant and its
customers. One Dijkstra search from the restaurant over the reversed roads, stopped at a
travel-time limit, reaches them all after settling a few thousand nodes (about 1.6 ms on
Mexico City with the limit known, against 12 ms for a search of the whole map).

The limit is not known in advance. It is the farthest point's straight-line distance times a
ratio of travel time to distance learnt from the searches before (the 60th percentile of the
last ``RATIO_WINDOW``; ``1 / GUESS_SPEED_M_S`` at first) plus ``SLACK_S``, and it grows by
``GROWTH`` until every point is reached, ending with an unbounded search: each time is
therefore exactly Dijkstra's on the same weights, whatever the guess. A limit too high costs a
search over a wider circle, one too low a second search. On Mexico City, 20 drivers within 2
miles of a restaurant, one search with the exact limit known takes 1.6 ms (median); with the
limit from the 90th percentile and growing by half, 3.3 ms (1.1 searches); from the 60th
percentile growing by 30 %, 2.4 ms (1.3 searches; measured with scipy alone, same machine,
same run). Points that no road joins (never the case between nodes of the largest strongly
connected component, where points snap) are left out of the answer.

Times are seconds; ``weights`` are the roads' ``time_s``, one per road of the graph, in whole
milliseconds (``roads.traffic``), so a sum of them is too: the answer is rounded to the
millisecond, which removes the float noise of adding them in another order than FalkorDB
and makes a matrix's time equal to the route's. Nothing here touches a database.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.geo import haversine_m_arrays
from ontheway.roads.graph import RoadGraph

GUESS_SPEED_M_S = 6.0
SLACK_S = 30.0
GROWTH = 1.3
BOUNDED_TRIES = 8
"""Times the limit grows before the search runs unbounded."""
RATIO_WINDOW = 200
RATIO_QUANTILE = 60


def plan_searches(
    sources: Iterable[int], targets: Iterable[int]
) -> tuple[list[int], list[int], bool]:
    """Where the searches start, what they must reach, and whether they run backwards: one
    search back from each target when there are no more targets than sources, else one
    forward from each source."""
    rows, cols = sorted(set(sources)), sorted(set(targets))
    return (cols, rows, True) if len(cols) <= len(rows) else (rows, cols, False)


class MatrixSearch:
    """Travel times between nodes of one graph on one set of road weights."""

    def __init__(self, graph: RoadGraph, weights: NDArray[np.float64]) -> None:
        self._lat = graph.lat
        self._lng = graph.lng
        self._forward = graph.matrix(weights)
        self._backward = self._forward.T.tocsr()
        self._ratios: deque[float] = deque(maxlen=RATIO_WINDOW)
        self._ratio_s_per_m = 1 / GUESS_SPEED_M_S

    def times(self, sources: Iterable[int], targets: Iterable[int]) -> dict[tuple[int, int], float]:
        """The travel time from each source node to each target node, keyed (source, target);
        a pair that no road joins is absent, and a node's time to itself is 0."""
        starts, ends, backward = plan_searches(sources, targets)
        if not starts or not ends:
            return {}
        found: dict[tuple[int, int], float] = {}
        roads = self._backward if backward else self._forward
        end_nodes = np.array(ends, dtype=np.int64)
        for start in starts:
            for end, time_s in zip(ends, self._reach(roads, start, end_nodes), strict=True):
                if np.isfinite(time_s):
                    key = (end, start) if backward else (start, end)
                    found[key] = round(float(time_s), 3)
        return found

    def _reach(self, roads: csr_matrix, start: int, ends: NDArray[np.int64]) -> NDArray[np.float64]:
        """The times from ``start`` to each of ``ends`` over ``roads`` (inf: not joined)."""
        crow_m = haversine_m_arrays(
            np.full(len(ends), self._lat[start]),
            np.full(len(ends), self._lng[start]),
            self._lat[ends],
            self._lng[ends],
        )
        farthest_m = float(crow_m.max())
        limit_s = farthest_m * self._ratio_s_per_m + SLACK_S
        for _ in range(BOUNDED_TRIES):
            reached: NDArray[np.float64] = dijkstra(roads, indices=start, limit=limit_s)[ends]
            if np.isfinite(reached).all():
                self._learn(float(reached.max()), farthest_m)
                return reached
            limit_s *= GROWTH
        everywhere: NDArray[np.float64] = dijkstra(roads, indices=start)[ends]
        if np.isfinite(everywhere).all():
            self._learn(float(everywhere.max()), farthest_m)
        return everywhere

    def _learn(self, time_s: float, distance_m: float) -> None:
        """Keep the ratio of the farthest point's time to its distance for the next limits."""
        if distance_m > 0:
            self._ratios.append(time_s / distance_m)
            self._ratio_s_per_m = float(np.percentile(self._ratios, RATIO_QUANTILE))
