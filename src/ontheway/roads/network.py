"""A region's road network held in the process: snapping points and describing roads.

Routes themselves come from FalkorDB's CCH index; this copy of the graph answers what the
index does not: which node a point snaps to (a KD-tree over the nodes of the largest strongly
connected component, so that any two snapped points are joined by a route both ways), and the
length, name and shape of the roads a route takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from ontheway.roads.geo import haversine_m, haversine_m_arrays, project_m
from ontheway.roads.graph import RoadGraph

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

    def __init__(self, import_id: str, graph: RoadGraph) -> None:
        self.import_id = import_id
        self.graph = graph
        mask = graph.largest_component_mask()
        self.routable: NDArray[np.int64] = np.flatnonzero(mask).astype(np.int64)
        self._ref_lat = float(np.mean(graph.lat)) if graph.node_count else 0.0
        points = project_m(graph.lat[self.routable], graph.lng[self.routable], self._ref_lat)
        self._tree = cKDTree(points) if len(self.routable) else None

    def snap(self, lat: float, lng: float, limit_m: float = SNAP_LIMIT_M) -> Snap | None:
        """The nearest node of the largest strongly connected component, or None when none
        lies within ``limit_m`` metres."""
        if self._tree is None:
            return None
        point = project_m(np.array([lat]), np.array([lng]), self._ref_lat)[0]
        # The planar distance only ranks candidates; the reported one is great-circle.
        _, found = self._tree.query(point, k=1)
        node = int(self.routable[int(found)])
        at_lat, at_lng = float(self.graph.lat[node]), float(self.graph.lng[node])
        distance = haversine_m(lat, lng, at_lat, at_lng)
        if distance > limit_m:
            return None
        return Snap(node, at_lat, at_lng, distance)

    def snap_many(
        self, lat: NDArray[np.float64], lng: NDArray[np.float64], limit_m: float = SNAP_LIMIT_M
    ) -> NDArray[np.int64]:
        """``snap`` for many points at once: each point's node, or -1 where none is near."""
        if self._tree is None or not len(lat):
            return np.full(len(lat), -1, dtype=np.int64)
        points = project_m(lat, lng, self._ref_lat)
        _, found = self._tree.query(points, k=1)
        nodes = self.routable[found]
        far = haversine_m_arrays(lat, lng, self.graph.lat[nodes], self.graph.lng[nodes]) > limit_m
        result: NDArray[np.int64] = np.where(far, -1, nodes).astype(np.int64)
        return result

    def has_roads(self, road_ids: Sequence[int] | NDArray[np.int64]) -> bool:
        """Whether every road id belongs to this network (else the graph was re-imported)."""
        ids = np.asarray(road_ids, dtype=np.int64)
        return not ids.size or bool(ids.min() >= 0 and ids.max() < self.graph.road_count)
