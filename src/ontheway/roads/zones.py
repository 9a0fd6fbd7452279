"""Delivery zones: the H3 cells a restaurant delivers to, from travel by road. Pure: no database.

A zone is an H3 cell at resolution 9 (cells of about 0.1 km², edges of about 200 m). A
restaurant delivers to a cell when the cell's centre lies on the road map (within
``CELL_SNAP_M`` of a routable node) and the road from the restaurant reaches it within the
restaurant's limits: the shortest road distance at most its ``delivery_radius_m`` (the radius
is measured along roads, not as the crow flies, so a cell across a river or a freeway with no
crossing nearby is left out), and, when a travel-time limit is set, the fastest route within
it. Each cell keeps the fastest travel time (seconds, on the weights of the moment, traffic
included) and the shortest road distance (metres); snapping offsets are not added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import h3
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from ontheway.roads.geo import haversine_m_arrays
from ontheway.roads.graph import RoadGraph
from ontheway.roads.network import RoadNetwork

H3_RESOLUTION = 9
CELL_SNAP_M = 250.0
"""A cell whose centre lies farther than this from every routable node is off the road map."""


@dataclass(frozen=True)
class ZoneCell:
    """One cell a restaurant delivers to, with the travel to its centre."""

    h3: str
    travel_time_s: float
    distance_m: float


def cell_of(lat: float, lng: float) -> str:
    """The zone (H3 cell at ``H3_RESOLUTION``) that contains a point."""
    return str(h3.latlng_to_cell(lat, lng, H3_RESOLUTION))


def distance_matrix(graph: RoadGraph) -> csr_matrix:
    """The n x n sparse matrix of road lengths (of parallel roads, the shortest)."""
    return graph.matrix(graph.distance_m)


def zone_cells(
    network: RoadNetwork,
    times: csr_matrix,
    distances: csr_matrix,
    lat: float,
    lng: float,
    radius_m: float,
    max_travel_s: float | None = None,
) -> list[ZoneCell] | None:
    """The cells a restaurant at (lat, lng) delivers to, or None when it is off the road map.
    ``times`` and ``distances`` are the network's matrices (``graph.matrix()`` and
    ``distance_matrix``), built once for all the restaurants of a region."""
    start = network.snap(lat, lng)
    if start is None:
        return None
    limit = np.inf if max_travel_s is None else max_travel_s
    fastest = dijkstra(times, indices=start.node, limit=limit)
    shortest = dijkstra(distances, indices=start.node, limit=radius_m)
    spacing_m = h3.average_hexagon_edge_length(H3_RESOLUTION, unit="m") * math.sqrt(3)
    rings = math.ceil(radius_m / spacing_m) + 1
    cells = list(h3.grid_disk(h3.latlng_to_cell(lat, lng, H3_RESOLUTION), rings))
    centres = np.array([h3.cell_to_latlng(c) for c in cells], dtype=np.float64).reshape(-1, 2)
    c_lat, c_lng = centres[:, 0], centres[:, 1]
    crow_m = haversine_m_arrays(np.full(len(cells), lat), np.full(len(cells), lng), c_lat, c_lng)
    nodes = network.snap_many(c_lat, c_lng, limit_m=CELL_SNAP_M)
    # A road distance is never much shorter than the crow's (snapping aside).
    keep = (crow_m <= radius_m + CELL_SNAP_M) & (nodes >= 0)
    on_map = np.where(keep, nodes, 0)
    travel_s, road_m = fastest[on_map], shortest[on_map]
    keep &= np.isfinite(travel_s) & (road_m <= radius_m)
    return [
        ZoneCell(str(cells[i]), round(float(travel_s[i]), 3), round(float(road_m[i]), 2))
        for i in np.flatnonzero(keep)
    ]
