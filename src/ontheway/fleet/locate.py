"""Which region holds a point, in well under a microsecond: a grid over the catalog. Pure.

``Catalog.region_for`` walks every region; the ingest path asks once per fix, tens of thousands
of times a second, so this index buckets the regions' boxes by whole-degree cells first. It
answers exactly as the catalog does (boxes include their edges; no two boxes overlap).
"""

from __future__ import annotations

import math

from ontheway.regions import Catalog, OutsideAllRegions

Box = tuple[float, float, float, float, str]  # min_lat, min_lng, max_lat, max_lng, region


class RegionLocator:
    """A grid index over a catalog's bounding boxes."""

    def __init__(self, catalog: Catalog) -> None:
        self._cells: dict[tuple[int, int], list[Box]] = {}
        for region in catalog:
            b = region.bbox
            box: Box = (b.min_lat, b.min_lng, b.max_lat, b.max_lng, region.region)
            for cell_lat in range(math.floor(b.min_lat), math.floor(b.max_lat) + 1):
                for cell_lng in range(math.floor(b.min_lng), math.floor(b.max_lng) + 1):
                    self._cells.setdefault((cell_lat, cell_lng), []).append(box)

    def region_for(self, lat: float, lng: float) -> str:
        """The id of the region whose box holds the point; ``OutsideAllRegions`` if none."""
        if not (-90 <= lat <= 90 and -180 <= lng <= 180):  # also false for NaN
            raise OutsideAllRegions(f"invalid coordinates lat={lat}, lng={lng}")
        for box in self._cells.get((math.floor(lat), math.floor(lng)), ()):
            if box[0] <= lat <= box[2] and box[1] <= lng <= box[3]:
                return box[4]
        raise OutsideAllRegions(f"point lat={lat}, lng={lng} lies outside every served region")
