"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np

from ontheway.orders.models import PlaceOrder
from ontheway.roads.graph import RoadGraph


def order_body(
    restaurant: dict[str, Any], quantity: int = 1, tip: str = "2.00", **overrides: Any
) -> dict[str, Any]:
    """A valid order body: the first two items, delivered 300 m north of the restaurant."""
    body: dict[str, Any] = {
        "restaurant_id": restaurant["restaurant_id"],
        "items": [
            {"item_id": item["item_id"], "quantity": quantity} for item in restaurant["items"][:2]
        ],
        "delivery_location": {
            "lat": restaurant["lat"] + 0.0027,
            "lng": restaurant["lng"],
            "address": "1 Test St",
        },
        "tip": tip,
    }
    body.update(overrides)
    return body


def order_for(
    restaurant: dict[str, Any], quantity: int = 1, tip: str = "2.00", **overrides: Any
) -> PlaceOrder:
    """The same, as the validated command."""
    return PlaceOrder.model_validate(order_body(restaurant, quantity, tip, **overrides))


def synthetic_roads(
    lat: Any,
    lng: Any,
    src: list[int],
    dst: list[int],
    times_s: Any,
    *,
    distance_m: float = 100.0,
    classes: list[str] | None = None,
) -> RoadGraph:
    """A road graph made up for a test: nodes at ``lat``/``lng``, roads ``src[i] -> dst[i]``
    taking ``times_s[i]`` at free flow and now, unnamed, 30 km/h."""
    m = len(src)
    times = np.asarray(times_s, dtype=np.float64)
    return RoadGraph(
        node_osm_id=np.arange(len(lat), dtype=np.int64),
        lat=np.asarray(lat, dtype=np.float64),
        lng=np.asarray(lng, dtype=np.float64),
        src=np.array(src, dtype=np.int64),
        dst=np.array(dst, dtype=np.int64),
        distance_m=np.full(m, distance_m),
        base_time_s=times,
        time_s=times.copy(),
        speed_kph=np.full(m, 30.0),
        road_class=classes if classes is not None else ["residential"] * m,
        name=[None] * m,
        osm_way_id=np.arange(m, dtype=np.int64),
    )


def grid_links(size: int) -> list[tuple[int, int]]:
    """The neighbouring junctions of a ``size`` x ``size`` grid numbered row by row, each
    pair once (right, then down)."""
    return [
        (i * size + j, (i + di) * size + j + dj)
        for i in range(size)
        for j in range(size)
        for di, dj in ((0, 1), (1, 0))
        if i + di < size and j + dj < size
    ]


def run_cli(
    *args: str, env: dict[str, str] | None = None, inherit: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m ontheway ARGS`` in a process of its own, its output captured: ``env`` adds
    to this process's environment, or is the whole environment when ``inherit`` is False."""
    return subprocess.run(
        [sys.executable, "-m", "ontheway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})} if inherit else env,
    )
