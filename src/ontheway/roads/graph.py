"""The road graph, built from an OSM extract without touching any database.

Nodes are the distinct OSM nodes of the car roads, numbered 0..n-1 (the ``Intersection.id``
of the stored graph); every segment between two consecutive nodes of a way becomes one
directed ``ROAD`` per allowed direction, numbered 0..m-1. Distances are great-circle metres,
times seconds: ``base_time_s = distance_m / speed``, ``time_s = base_time_s * traffic_factor``.

Ways cut at the extract's border are trimmed to their runs of consecutive nodes that the file
contains; a way with no such run of two nodes is dropped. Turn restrictions are built in
afterwards, by ``restrictions.apply_restrictions``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from ontheway.roads.geo import haversine_m
from ontheway.roads.osm import OsmExtract
from ontheway.roads.tags import direction, speeds_kph, street_name

# A floor on a road's travel time: two OSM nodes may share a position, and a zero weight
# would make ties that different shortest-path algorithms break differently.
MIN_TIME_S = 0.01


@dataclass
class RoadGraph:
    """Nodes and directed roads as parallel arrays; road ``i`` runs ``src[i] -> dst[i]``."""

    node_osm_id: NDArray[np.int64]
    lat: NDArray[np.float64]
    lng: NDArray[np.float64]
    src: NDArray[np.int64]
    dst: NDArray[np.int64]
    distance_m: NDArray[np.float64]
    base_time_s: NDArray[np.float64]
    time_s: NDArray[np.float64]
    speed_kph: NDArray[np.float64]
    road_class: list[str]
    name: list[str | None]
    osm_way_id: NDArray[np.int64]

    @property
    def node_count(self) -> int:
        return len(self.lat)

    @property
    def road_count(self) -> int:
        return len(self.src)

    def matrix(self, weights: NDArray[np.float64] | None = None) -> csr_matrix:
        """The n x n sparse matrix of road weights (``time_s`` by default); of parallel roads
        between the same two nodes the cheapest counts, as a route would take it."""
        w = self.time_s if weights is None else weights
        order = np.lexsort((-w, self.dst, self.src))  # for each (src, dst), the cheapest last
        src, dst, w = self.src[order], self.dst[order], w[order]
        last = np.ones(len(src), dtype=bool)
        last[:-1] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
        n = self.node_count
        return csr_matrix((w[last], (src[last], dst[last])), shape=(n, n))

    def strong_components(self) -> tuple[int, NDArray[np.int32]]:
        """The number of strongly connected components and each node's component label."""
        count, labels = connected_components(self.matrix(), directed=True, connection="strong")
        return int(count), labels

    def largest_component_mask(self) -> NDArray[np.bool_]:
        """True for the nodes of the largest strongly connected component."""
        _, labels = self.strong_components()
        if len(labels) == 0:
            return np.zeros(0, dtype=bool)
        mask: NDArray[np.bool_] = labels == np.bincount(labels).argmax()
        return mask


@dataclass(frozen=True)
class BuildReport:
    """What the build kept and left out."""

    car_ways: int
    dropped_ways: int
    trimmed_ways: int


def _runs(coords: tuple[tuple[float, float] | None, ...]) -> list[tuple[int, int]]:
    """The [start, end) index ranges of consecutive present nodes, at least two long."""
    runs, start = [], None
    for i, c in enumerate((*coords, None)):
        if c is not None and start is None:
            start = i
        elif c is None and start is not None:
            if i - start >= 2:
                runs.append((start, i))
            start = None
    return runs


def build_graph(extract: OsmExtract) -> tuple[RoadGraph, BuildReport]:
    """Build the directed road graph of an extract; see the module docstring for the rules."""
    index: dict[int, int] = {}
    node_osm: list[int] = []
    lats: list[float] = []
    lngs: list[float] = []
    src: list[int] = []
    dst: list[int] = []
    dist: list[float] = []
    speed: list[float] = []
    klass: list[str] = []
    names: list[str | None] = []
    way_ids: list[int] = []
    dropped = trimmed = 0

    def node(osm_id: int, at: tuple[float, float]) -> int:
        found = index.get(osm_id)
        if found is None:
            found = index[osm_id] = len(node_osm)
            node_osm.append(osm_id)
            lats.append(at[0])
            lngs.append(at[1])
        return found

    for way in extract.ways:
        allowed = direction(way.tags)
        runs = _runs(way.coords)
        if allowed is None or not runs:
            dropped += 1
            continue
        if runs != [(0, len(way.coords))]:
            trimmed += 1
        fwd_kph, bwd_kph = speeds_kph(way.tags)
        road_class, name = way.tags["highway"], street_name(way.tags)
        for start, end in runs:
            for i in range(start, end - 1):
                a_at, b_at = way.coords[i], way.coords[i + 1]
                assert a_at is not None and b_at is not None
                a, b = node(way.node_ids[i], a_at), node(way.node_ids[i + 1], b_at)
                if a == b:
                    continue  # a node repeated in a row adds nothing
                length = haversine_m(a_at[0], a_at[1], b_at[0], b_at[1])
                for go, frm, to, kph in (
                    (allowed.forward, a, b, fwd_kph),
                    (allowed.backward, b, a, bwd_kph),
                ):
                    if go:
                        src.append(frm)
                        dst.append(to)
                        dist.append(length)
                        speed.append(kph)
                        klass.append(road_class)
                        names.append(name)
                        way_ids.append(way.id)

    # Rounded to centimetres, centiseconds and milliseconds: values with few digits survive
    # the text round trip through Cypher unchanged, so the graph holds exactly these weights.
    distance = np.array(dist, dtype=np.float64).round(2)
    speed_arr = np.array(speed, dtype=np.float64).round(2)
    base = np.maximum(distance / (speed_arr / 3.6), MIN_TIME_S).round(3)
    graph = RoadGraph(
        node_osm_id=np.array(node_osm, dtype=np.int64),
        lat=np.array(lats, dtype=np.float64),
        lng=np.array(lngs, dtype=np.float64),
        src=np.array(src, dtype=np.int64),
        dst=np.array(dst, dtype=np.int64),
        distance_m=distance,
        base_time_s=base,
        time_s=base.copy(),
        speed_kph=speed_arr,
        road_class=klass,
        name=names,
        osm_way_id=np.array(way_ids, dtype=np.int64),
    )
    report = BuildReport(
        car_ways=len(extract.ways),
        dropped_ways=dropped,
        trimmed_ways=trimmed,
    )
    return graph, report


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote: counts, components, what it left out, and how long it took."""

    region: str
    graph: str
    source: str
    nodes: int
    roads: int
    components: int
    largest_component_nodes: int
    car_ways: int
    dropped_ways: int
    trimmed_ways: int
    restrictions: int
    unusable_restrictions: int
    split_intersections: int
    read_s: float
    write_s: float
    index_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
