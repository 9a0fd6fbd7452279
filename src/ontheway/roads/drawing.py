"""A region's roads as a drawing: the segments to paint on a map with no tile server. Pure.

A road graph holds each two-way street twice (one road per direction); a drawing needs it
once. Coordinates are rounded to 5 decimals (about a metre), which is finer than a screen
pixel at any zoom a city map is looked at, and makes the JSON small.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ontheway.roads.graph import RoadGraph

COORD_DECIMALS = 5

# Drawn from the most to the least important: the page draws the first classes widest.
ROAD_CLASS_ORDER = (
    "motorway",
    "trunk",
    "primary",
    "secondary",
    "tertiary",
    "unclassified",
    "residential",
    "living_street",
    "service",
)


def _class_rank(road_class: str) -> int:
    base = road_class.removesuffix("_link")
    return ROAD_CLASS_ORDER.index(base) if base in ROAD_CLASS_ORDER else len(ROAD_CLASS_ORDER)


def road_drawing(region: str, import_id: str, graph: RoadGraph) -> dict[str, Any]:
    """The roads of ``graph`` once per pair of intersections, as indexes into a node list.

    Flat lists, to keep large maps quick to encode and small to send: ``nodes`` is
    ``[lat0, lng0, lat1, lng1, ...]`` (only the nodes some segment uses), ``segments`` is
    ``[a0, b0, class0, a1, b1, class1, ...]`` (node indexes and an index into ``classes``,
    most important class first), and ``bbox`` bounds the nodes in degrees.
    """
    drawing: dict[str, Any] = {"region": region, "import_id": import_id}
    low = np.minimum(graph.src, graph.dst)
    high = np.maximum(graph.src, graph.dst)
    keep = np.flatnonzero(low != high)  # a loop road draws nothing
    if not len(keep):
        return drawing | {"bbox": None, "classes": [], "nodes": [], "segments": []}
    # One key per unordered pair of intersections: the first road of each pair is drawn.
    _, first = np.unique(low[keep] * graph.node_count + high[keep], return_index=True)
    kept_roads = keep[first]
    pairs = np.stack([low[kept_roads], high[kept_roads]], axis=1)
    used, inverse = np.unique(pairs.ravel(), return_inverse=True)
    lat = np.round(graph.lat[used], COORD_DECIMALS)
    lng = np.round(graph.lng[used], COORD_DECIMALS)
    codes: dict[str, int] = {}
    class_of_road = np.fromiter(
        (codes.setdefault(c, len(codes)) for c in graph.road_class), np.int64, graph.road_count
    )[kept_roads]
    present = set(np.unique(class_of_road).tolist())
    drawn = {c for c, code in codes.items() if code in present}
    names = sorted(drawn, key=lambda c: (_class_rank(c), c))
    rank = np.array([names.index(c) if c in drawn else -1 for c in codes], dtype=np.int64)
    segments = np.column_stack([inverse.reshape(-1, 2), rank[class_of_road]])
    return drawing | {
        "bbox": {
            "min_lat": float(lat.min()),
            "min_lng": float(lng.min()),
            "max_lat": float(lat.max()),
            "max_lng": float(lng.max()),
        },
        "classes": names,
        "nodes": np.column_stack([lat, lng]).ravel().tolist(),
        "segments": segments.ravel().tolist(),
    }
