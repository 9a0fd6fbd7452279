"""Regions: the served cities, their bounding boxes, timezones and database shards."""

from ontheway.regions.catalog import (
    BBox,
    Catalog,
    CatalogError,
    Latitude,
    LatLng,
    Longitude,
    OutsideAllRegions,
    Region,
    UnknownRegion,
    load_catalog,
)

__all__ = [
    "BBox",
    "Catalog",
    "CatalogError",
    "LatLng",
    "Latitude",
    "Longitude",
    "OutsideAllRegions",
    "Region",
    "UnknownRegion",
    "load_catalog",
]
