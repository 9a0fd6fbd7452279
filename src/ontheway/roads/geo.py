"""Geometry on the sphere: distances in metres, bearings in degrees, a local planar projection.

Coordinates are (lat, lng) in WGS 84 degrees. The projection is equirectangular around a
reference latitude: within a city (tens of kilometres) its distances are off by well under
1 %, which is ample for choosing the nearest road node.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_M = 6_371_008.8


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres between two points."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def haversine_m_arrays(
    lat1: NDArray[np.float64],
    lng1: NDArray[np.float64],
    lat2: NDArray[np.float64],
    lng2: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Great-circle distances in metres, element by element."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lng2 - lng1)
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    result: NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h)))
    return result


def bearing_deg(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Initial compass bearing from the first point to the second, in [0, 360)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lng2 - lng1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0


def bearing_deg_arrays(
    lat1: NDArray[np.float64],
    lng1: NDArray[np.float64],
    lat2: NDArray[np.float64],
    lng2: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``bearing_deg`` element by element."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(lng2 - lng1)
    x = np.sin(dl) * np.cos(p2)
    y = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    result: NDArray[np.float64] = np.degrees(np.arctan2(x, y)) % 360.0
    return result


def project_m(
    lat: NDArray[np.float64], lng: NDArray[np.float64], ref_lat: float
) -> NDArray[np.float64]:
    """Planar (x, y) in metres of each point, equirectangular around ``ref_lat``; shape (n, 2)."""
    scale = math.radians(1.0) * EARTH_RADIUS_M
    x = np.asarray(lng, dtype=np.float64) * scale * math.cos(math.radians(ref_lat))
    y = np.asarray(lat, dtype=np.float64) * scale
    return np.column_stack([x, y])
