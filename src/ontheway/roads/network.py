"""A region's road network held in the process: snapping points and describing roads.

Routes themselves come from FalkorDB's CCH index; this copy of the graph answers what the
index does not: which node a point snaps to (a KD-tree over the nodes of the largest strongly
connected component, so that any two snapped points are joined by a route both ways), the
length, name and shape of the roads a route takes, and travel-time matrices
(``roads.search``: one bounded search per row or column, where FalkorDB needs one search
per pair). ``weights_version`` is the graph's count of traffic writes that the roads'
``time_s`` here reflect; the service checks it against the graph's before a matrix, at most
every ``roads.matrix.VERSION_CHECK_S`` (``version_checked_at``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from ontheway.roads.chains import Chains
from ontheway.roads.geo import bearing_deg_arrays, haversine_m_arrays, project_m
from ontheway.roads.graph import RoadGraph
from ontheway.roads.search import MatrixSearch

SNAP_LIMIT_M = 500.0
"""A point farther than this from every routable node is outside the road map."""


@dataclass(frozen=True)
class Snap:
    """A point snapped to a node: the node, its position, and how far the point was."""

    node: int
    lat: float
    lng: float
    distance_m: float


class RoadNetwork:
    """One imported road graph in memory, identified by the import that wrote it."""

    def __init__(self, import_id: str, graph: RoadGraph, weights_version: int = 0) -> None:
        self.import_id = import_id
        self.graph = graph
        self.weights_version = weights_version
        self.version_checked_at = -math.inf
        """When (``time.monotonic``) the graph last confirmed this import and weights."""
        mask = graph.largest_component_mask()
        self.routable: NDArray[np.int64] = np.flatnonzero(mask).astype(np.int64)
        self._ref_lat = float(np.mean(graph.lat)) if graph.node_count else 0.0
        points = project_m(graph.lat[self.routable], graph.lng[self.routable], self._ref_lat)
        self._tree = cKDTree(points) if len(self.routable) else None
        self._chains = Chains(graph)
        self.under_traffic = False
        """Whether any road's time differs from its free-flow time (then free-flow matrices
        need a search of their own)."""
        self._note_traffic()
        self._search: MatrixSearch | None = self._matrix_search(graph.time_s.copy())
        self._free_flow: MatrixSearch | None = None
        self.road_names: NDArray[np.object_] = np.array(graph.name, dtype=object)
        # Roads sorted by (from, to) node, then id: the road between two nodes by bisection.
        road_keys = graph.src * graph.node_count + graph.dst
        self._road_order = np.argsort(road_keys, kind="stable")
        self._road_keys = road_keys[self._road_order]
        # Each road's compass bearing, for the turns of turn-by-turn steps.
        self.road_bearing_deg = bearing_deg_arrays(
            graph.lat[graph.src], graph.lng[graph.src], graph.lat[graph.dst], graph.lng[graph.dst]
        )

    def snap(self, lat: float, lng: float, limit_m: float = SNAP_LIMIT_M) -> Snap | None:
        """The nearest node of the largest strongly connected component, or None when none
        lies within ``limit_m`` metres."""
        return self.snap_points([lat], [lng], limit_m)[0]

    def snap_points(
        self, lat: Sequence[float], lng: Sequence[float], limit_m: float = SNAP_LIMIT_M
    ) -> list[Snap | None]:
        """``snap`` for each of a few points, with one query of the tree."""
        lats, lngs = np.asarray(lat, dtype=np.float64), np.asarray(lng, dtype=np.float64)
        nodes, distances = self._nearest(lats, lngs)
        at_lat, at_lng = self.graph.lat[nodes], self.graph.lng[nodes]
        return [
            Snap(node, a, b, d) if d <= limit_m else None
            for node, a, b, d in zip(
                nodes.tolist(), at_lat.tolist(), at_lng.tolist(), distances.tolist(), strict=True
            )
        ]

    def snap_many(
        self, lat: NDArray[np.float64], lng: NDArray[np.float64], limit_m: float = SNAP_LIMIT_M
    ) -> NDArray[np.int64]:
        """``snap`` for many points at once: each point's node, or -1 where none is near."""
        nodes, distances = self._nearest(lat, lng)
        result: NDArray[np.int64] = np.where(distances > limit_m, -1, nodes).astype(np.int64)
        return result

    def _nearest(
        self, lat: NDArray[np.float64], lng: NDArray[np.float64]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Each point's nearest routable node and its great-circle distance (inf: no map)."""
        if self._tree is None or not len(lat):
            return np.zeros(len(lat), dtype=np.int64), np.full(len(lat), np.inf)
        # The planar distance only ranks candidates; the reported one is great-circle.
        _, found = self._tree.query(project_m(lat, lng, self._ref_lat), k=1)
        nodes: NDArray[np.int64] = self.routable[found]
        distances = haversine_m_arrays(lat, lng, self.graph.lat[nodes], self.graph.lng[nodes])
        return nodes, distances

    def has_nodes(self, node_ids: Sequence[int]) -> bool:
        """Whether every node id belongs to this network (else the graph was re-imported)."""
        return not node_ids or (min(node_ids) >= 0 and max(node_ids) < self.graph.node_count)

    def roads_along(self, node_ids: Sequence[int]) -> NDArray[np.int64]:
        """The roads joining consecutive nodes of a path: of parallel roads, the fastest on
        the current weights (the one a shortest path takes; the lowest id on a tie)."""
        nodes = np.asarray(node_ids, dtype=np.int64)
        keys = nodes[:-1] * self.graph.node_count + nodes[1:]
        sorted_keys = self._road_keys
        lo = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        if (sorted_keys[lo] != keys).any():
            raise ValueError("a path steps between nodes that no road joins")
        roads: NDArray[np.int64] = self._road_order[lo]
        after = np.minimum(lo + 1, len(sorted_keys) - 1)
        for i in np.flatnonzero((sorted_keys[after] == keys) & (after > lo)).tolist():
            # Parallel roads (rare): the fastest of the run of equal keys.
            end = int(np.searchsorted(sorted_keys, keys[i], side="right"))
            parallel = self._road_order[lo[i] : end]
            roads[i] = parallel[int(np.argmin(self.graph.time_s[parallel]))]
        return roads

    def nodes_within(
        self, centres: Sequence[int], ends: Sequence[int], reach: float
    ) -> NDArray[np.int64]:
        """For each centre node, the routable nodes within ``reach`` times the straight-line
        distance to the farthest of ``ends``: what a search from it to them would settle."""
        if self._tree is None or not centres or not ends:
            return np.zeros(len(centres), dtype=np.int64)
        c, e = np.asarray(centres, dtype=np.int64), np.asarray(ends, dtype=np.int64)
        lat, lng = self.graph.lat, self.graph.lng
        farthest = (
            haversine_m_arrays(
                np.repeat(lat[c], len(e)),
                np.repeat(lng[c], len(e)),
                np.tile(lat[e], len(c)),
                np.tile(lng[e], len(c)),
            )
            .reshape(len(c), len(e))
            .max(axis=1)
        )
        points = project_m(lat[c], lng[c], self._ref_lat)
        counts: NDArray[np.int64] = np.asarray(
            self._tree.query_ball_point(points, farthest * reach, return_length=True),
            dtype=np.int64,
        )
        return counts

    def travel_times(
        self, sources: Sequence[int], targets: Sequence[int]
    ) -> dict[tuple[int, int], float]:
        """Seconds from each source node to each target node on the roads' current
        ``time_s``, keyed (source, target); pairs no road joins are absent. CPU-bound (a few
        milliseconds a row or column): async callers run it in a thread."""
        search = self._search
        if search is None:
            search = self._search = self._matrix_search(self.graph.time_s.copy())
        return search.times(sources, targets)

    def unsearched(self, starts: Sequence[int], backward: bool) -> list[int]:
        """Of ``starts``, those from which no search on the current weights is kept (a kept
        one answers without searching again, see ``MatrixSearch``)."""
        search = self._search
        if search is None:
            return list(starts)
        return [start for start in starts if not search.kept(start, backward)]

    def free_flow_times(
        self, sources: Sequence[int], targets: Sequence[int]
    ) -> dict[tuple[int, int], float]:
        """``travel_times`` with every road at free flow (``base_time_s``): against the
        current times, how much the traffic slows a way."""
        search = self._free_flow
        if search is None:
            search = self._free_flow = self._matrix_search(self.graph.base_time_s)
        return search.times(sources, targets)

    def _matrix_search(self, weights: NDArray[np.float64]) -> MatrixSearch:
        return MatrixSearch(self.graph, weights, self._chains)

    def set_times(
        self,
        road_ids: NDArray[np.int64],
        times_s: NDArray[np.float64],
        weights_version: int | None,
    ) -> None:
        """Give the roads ``road_ids`` their new travel times. ``weights_version`` is the
        graph's count of traffic writes that this makes current (None: not known, so the
        next matrix reads the weights again)."""
        self.graph.time_s[road_ids] = times_s
        self._search = None
        self.weights_version = -1 if weights_version is None else weights_version
        self._note_traffic()

    def reset_traffic(
        self, road_ids: Sequence[int], times_s: Sequence[float], weights_version: int
    ) -> None:
        """Every road at free flow except ``road_ids``, which take ``times_s``: the weights of
        the graph after ``weights_version`` traffic writes."""
        times = self.graph.base_time_s.copy()
        times[np.asarray(road_ids, dtype=np.int64)] = np.asarray(times_s, dtype=np.float64)
        self.graph.time_s = times
        self._search = None
        self.weights_version = weights_version
        self._note_traffic()

    def _note_traffic(self) -> None:
        self.under_traffic = bool((self.graph.time_s != self.graph.base_time_s).any())
