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
last ``RATIO_WINDOW``, taken again every ``RELEARN_EVERY`` searches; ``1 / GUESS_SPEED_M_S`` at
first) plus ``SLACK_S``, and it grows by ``GROWTH`` until every point is reached, ending
with an unbounded search: each time is therefore exactly Dijkstra's on the same weights,
whatever the guess. A limit too high costs a search over a wider circle, one too low a
second search. On Mexico City, 20 drivers within 2 miles of a restaurant, one search with
the exact limit known takes 1.6 ms (median); with the limit from the 90th percentile and
growing by half, 3.3 ms (1.1 searches); from the 60th percentile growing by 30 %, 2.4 ms
(1.3 searches; measured with scipy alone, same machine, same run).

The searches run on the graph's core (``roads.chains``: the nodes in the middle of a street
left out, each street one road each way): 20 drivers anywhere on Mexico City, most of the
map, take 8.2 ms there against 13.6 ms for one whole search on every node (``ontheway bench
roads``, same run), and a start or an end in a street is joined to the street's two ends
at its cost along it. A time is only taken once it is within the limit: beyond it, a shorter
way may pass through an end the search has not reached. Points that no road joins (never
the case between nodes of the largest strongly connected component, where points snap) are
left out of the answer.

Times are seconds; ``weights`` are the roads' ``time_s``, one per road of the graph, in whole
milliseconds (``roads.traffic``), so a sum of them is too: the answer is rounded to the
millisecond, which removes the float noise of adding them in another order than FalkorDB
and makes a matrix's time equal to the route's. Nothing here touches a database.

A search's times are kept (``TREE_CACHE_BYTES`` of them, least recently used out) and answer
the next matrix from the same point in the same direction for every end within that search's
limit, without a search: a restaurant's way to each of its customers, the drivers' ways to a
restaurant. They are exact as long as the weights are, and a ``MatrixSearch`` lives on one
set of weights (the network makes a new one when traffic changes them). A kept search that
does not reach every end is replaced by a wider one (at least ``GROWTH`` times its limit), so
a busy restaurant's search soon covers its whole delivery area.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.chains import Chains, ChainWeights
from ontheway.roads.geo import haversine_m_arrays
from ontheway.roads.graph import RoadGraph

GUESS_SPEED_M_S = 6.0
SLACK_S = 30.0
GROWTH = 1.3
BOUNDED_TRIES = 8
"""Times the limit grows before the search runs unbounded."""
RATIO_WINDOW = 200
RATIO_QUANTILE = 60
RELEARN_EVERY = 8
TREE_CACHE_BYTES = 32 * 2**20
"""The memory a ``MatrixSearch`` keeps its searches' times in (8 bytes a core node each: on
San Francisco downtown's core of 653 nodes about 6,400 searches, on Mexico City's of 54,744
about 76); at least ``MIN_TREES`` are kept."""
MIN_TREES = 16


def plan_searches(
    sources: Iterable[int], targets: Iterable[int]
) -> tuple[list[int], list[int], bool]:
    """Where the searches start, what they must reach, and whether they run backwards: one
    search back from each target when there are fewer targets than sources, else one
    forward from each source (one source and one target: forward, so that a restaurant's
    search serves its next customers, see ``MatrixSearch``)."""
    rows, cols = sorted(set(sources)), sorted(set(targets))
    return (cols, rows, True) if len(cols) < len(rows) else (rows, cols, False)


@dataclass(frozen=True)
class _Kept:
    """A search's times of the core nodes (read only) and the limit it stopped at."""

    settled: NDArray[np.float64]
    limit_s: float


class MatrixSearch:
    """Travel times between nodes of one graph on one set of road weights, searched on the
    graph's core (``roads.chains``)."""

    def __init__(
        self, graph: RoadGraph, weights: NDArray[np.float64], chains: Chains | None = None
    ) -> None:
        self._lat = graph.lat
        self._lng = graph.lng
        self._chains = Chains(graph) if chains is None else chains
        self._costs = ChainWeights(self._chains, weights)
        # A search sets the start node's two roads in the graph it runs on: one at a time.
        self._lock = threading.Lock()
        self._ratios: deque[float] = deque(maxlen=RATIO_WINDOW)
        self._ratio_s_per_m = 1 / GUESS_SPEED_M_S
        self._learnt = 0
        self._kept: OrderedDict[tuple[int, bool], _Kept] = OrderedDict()
        self._keep_at_most = max(MIN_TREES, TREE_CACHE_BYTES // (8 * (len(self._chains.core) + 1)))

    def times(self, sources: Iterable[int], targets: Iterable[int]) -> dict[tuple[int, int], float]:
        """The travel time from each source node to each target node, keyed (source, target);
        a pair that no road joins is absent, and a node's time to itself is 0."""
        starts, ends, backward = plan_searches(sources, targets)
        if not starts or not ends:
            return {}
        found: dict[tuple[int, int], float] = {}
        end_nodes = np.array(ends, dtype=np.int64)
        for start in starts:
            for end, time_s in zip(ends, self._reach(start, end_nodes, backward), strict=True):
                if np.isfinite(time_s):
                    key = (end, start) if backward else (start, end)
                    found[key] = round(float(time_s), 3)
        return found

    def _reach(self, start: int, ends: NDArray[np.int64], backward: bool) -> NDArray[np.float64]:
        """The times from ``start`` to each of ``ends`` (to ``start`` from each, ``backward``);
        inf where no road joins them. A kept search from ``start`` answers when it reaches
        every end (see the module's docstring)."""
        kept = self._kept_search(start, backward)
        floor_s = 0.0
        if kept is not None:
            times = self._times_of(kept.settled, start, ends, backward, kept.limit_s)
            if np.isfinite(times).all() or np.isinf(kept.limit_s):
                return times
            floor_s = kept.limit_s * GROWTH
        crow_m = haversine_m_arrays(
            np.full(len(ends), self._lat[start]),
            np.full(len(ends), self._lng[start]),
            self._lat[ends],
            self._lng[ends],
        )
        farthest_m = float(crow_m.max())
        limit_s = max(farthest_m * self._ratio_s_per_m + SLACK_S, floor_s)
        for _ in range(BOUNDED_TRIES):
            reached = self._search(start, ends, backward, limit_s)
            if np.isfinite(reached).all():
                self._learn(float(reached.max()), farthest_m)
                return reached
            limit_s *= GROWTH
        everywhere = self._search(start, ends, backward, np.inf)
        if np.isfinite(everywhere).all():
            self._learn(float(everywhere.max()), farthest_m)
        return everywhere

    def _kept_search(self, start: int, backward: bool) -> _Kept | None:
        with self._lock:
            kept = self._kept.get((start, backward))
            if kept is not None:
                self._kept.move_to_end((start, backward))
            return kept

    def _keep(self, start: int, backward: bool, kept: _Kept) -> None:
        with self._lock:
            self._kept[(start, backward)] = kept
            self._kept.move_to_end((start, backward))
            while len(self._kept) > self._keep_at_most:
                self._kept.popitem(last=False)

    def kept(self, start: int, backward: bool) -> bool:
        """Whether a search from ``start`` in that direction is kept (it answers every end
        within its limit without searching)."""
        return (start, backward) in self._kept

    def _search(
        self, start: int, ends: NDArray[np.int64], backward: bool, limit_s: float
    ) -> NDArray[np.float64]:
        """One search of the core stopped at ``limit_s``: the exact times of the ends it
        reaches within the limit, inf for the others. The search is kept (``_keep``)."""
        chains, costs = self._chains, self._costs
        roads = costs.backward if backward else costs.forward
        start_node = roads.shape[0] - 1
        rank = costs.core_rank
        # Where the search starts: the start itself, or its chain's two ends.
        chain = int(chains.chain_of[start])
        if chain < 0:
            entries = [(int(rank[start]), 0.0)]
        else:
            at = int(chains.position[start])
            first, last = int(chains.starts[chain]), int(chains.starts[chain + 1]) - 1
            ends_at = np.array([first, last], dtype=np.int64)
            here = np.full(2, at, dtype=np.int64)
            along = costs.cost_along(ends_at, here) if backward else costs.cost_along(here, ends_at)
            entries = [
                (int(rank[chains.nodes[pos]]), float(cost))
                for pos, cost in zip((first, last), along.tolist(), strict=True)
                if np.isfinite(cost)
            ]
            if len(entries) == 2 and entries[0][0] == entries[1][0]:  # a loop: one end
                entries = [min(entries, key=lambda entry: entry[1])]
        entries += [(start_node, 0.0)] * (2 - len(entries))  # an unused road: a loop
        with self._lock:
            roads.indices[-2:] = [node for node, _ in entries]
            roads.data[-2:] = [cost for _, cost in entries]
            settled: NDArray[np.float64] = dijkstra(roads, indices=start_node, limit=limit_s)
        settled.flags.writeable = False
        self._keep(start, backward, _Kept(settled, limit_s))
        return self._times_of(settled, start, ends, backward, limit_s)

    def _times_of(
        self,
        settled: NDArray[np.float64],
        start: int,
        ends: NDArray[np.int64],
        backward: bool,
        limit_s: float,
    ) -> NDArray[np.float64]:
        """The ends' times from a search's times of the core nodes: a chain node's through
        the nearer of its chain's ends (or along the chain, from a start in the same chain)."""
        chains, costs = self._chains, self._costs
        times = np.full(len(ends), np.inf)
        in_core = chains.chain_of[ends] < 0
        times[in_core] = settled[costs.core_rank[ends[in_core]]]
        inner = np.flatnonzero(~in_core)
        if len(inner):
            nodes = ends[inner]
            chain = chains.chain_of[nodes]
            at = chains.position[nodes]
            for end_at in (chains.starts[chain], chains.starts[chain + 1] - 1):
                via = settled[costs.core_rank[chains.nodes[end_at]]]
                along = costs.cost_along(at, end_at) if backward else costs.cost_along(end_at, at)
                times[inner] = np.minimum(times[inner], via + along)
            same = chain == chains.chain_of[start]
            if same.any():
                here = np.full(int(same.sum()), chains.position[start], dtype=np.int64)
                along = (
                    costs.cost_along(at[same], here)
                    if backward
                    else costs.cost_along(here, at[same])
                )
                times[inner[same]] = np.minimum(times[inner[same]], along)
        # A time beyond the limit may have a shorter way through an end not yet settled.
        times[times > limit_s] = np.inf
        return times

    def _learn(self, time_s: float, distance_m: float) -> None:
        """Keep the ratio of the farthest point's time to its distance for the next limits
        (the percentile taken again every ``RELEARN_EVERY`` searches: it costs about as much
        as a search of a small map)."""
        if distance_m > 0:
            self._ratios.append(time_s / distance_m)
            self._learnt += 1
            if self._learnt % RELEARN_EVERY == 0 or len(self._ratios) < RELEARN_EVERY:
                self._ratio_s_per_m = float(np.percentile(self._ratios, RATIO_QUANTILE))
