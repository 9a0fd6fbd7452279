"""The region catalog: the cities ontheway serves, their boxes, timezones and shards.

A region is a metro area described by an axis-aligned bounding box in WGS 84
degrees. Boxes never cross the antimeridian and no two boxes of a catalog may
touch or overlap, so every point belongs to at most one region. The packaged
catalog lives in ``data/regions.json``; an optional override file of the same
shape adds regions or replaces regions with the same id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ontheway.errors import ConfigurationError, InvalidInput, NotFound

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

_PACKAGE = "ontheway.regions"
_DATA_DIR = "data"
_DATA_FILE = "regions.json"
_PACKAGED_SOURCE = "packaged region catalog ontheway/regions/data/regions.json"


class CatalogError(ConfigurationError):
    """The region catalog (packaged or override file) is missing or invalid."""

    code = "catalog_error"


class UnknownRegion(NotFound):
    """No region has the requested id."""

    code = "unknown_region"

    def __init__(self, message: str, *, field: str | None = "region", code: str | None = None):
        super().__init__(message, field=field, code=code)


class OutsideAllRegions(InvalidInput):
    """A coordinate lies in no region (or is not a valid coordinate at all)."""

    code = "outside_all_regions"


Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False)]
_SNAKE_ID = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"


class LatLng(BaseModel):
    """A WGS 84 point in degrees."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lat: Latitude
    lng: Longitude


class BBox(BaseModel):
    """An axis-aligned box in degrees, edges included; never crosses the antimeridian."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_lat: Latitude
    min_lng: Longitude
    max_lat: Latitude
    max_lng: Longitude

    @model_validator(mode="after")
    def _min_below_max(self) -> Self:
        if not self.min_lat < self.max_lat:
            raise ValueError(f"min_lat {self.min_lat} must be below max_lat {self.max_lat}")
        if not self.min_lng < self.max_lng:
            raise ValueError(f"min_lng {self.min_lng} must be below max_lng {self.max_lng}")
        return self

    def contains(self, lat: float, lng: float) -> bool:
        """Return whether the point lies inside the box or on its edge."""
        return self.min_lat <= lat <= self.max_lat and self.min_lng <= lng <= self.max_lng

    @property
    def area_m2(self) -> float:
        """The box's area in square metres (flat: good to a few percent for a city)."""
        metres_per_degree = 111_320.0
        mid_lat = math.radians((self.min_lat + self.max_lat) / 2)
        height = (self.max_lat - self.min_lat) * metres_per_degree
        return height * (self.max_lng - self.min_lng) * metres_per_degree * math.cos(mid_lat)

    def overlaps(self, other: BBox) -> bool:
        """Return whether the two boxes share any point (touching edges count)."""
        return (
            self.min_lat <= other.max_lat
            and other.min_lat <= self.max_lat
            and self.min_lng <= other.max_lng
            and other.min_lng <= self.max_lng
        )


class Region(BaseModel):
    """One served metro area; ``model_dump()`` is exactly its API representation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str = Field(pattern=_SNAKE_ID, max_length=40)
    name: str = Field(min_length=1, max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    center: LatLng
    bbox: BBox
    timezone: str
    shard: str = Field(pattern=_SNAKE_ID, max_length=40)

    @field_validator("timezone")
    @classmethod
    def _iana_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(f"{value!r} is not an IANA timezone name") from exc
        return value

    @model_validator(mode="after")
    def _center_in_bbox(self) -> Self:
        if not self.bbox.contains(self.center.lat, self.center.lng):
            raise ValueError(f"center of region {self.region!r} lies outside its bbox")
        return self

    @property
    def tzinfo(self) -> ZoneInfo:
        """Return the region's timezone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)

    def to_api(self) -> dict[str, Any]:
        """Return the API shape: region, name, country, center, bbox, timezone, shard."""
        return self.model_dump()


class Catalog:
    """An immutable set of regions with unique ids and pairwise disjoint boxes."""

    def __init__(self, regions: Iterable[Region]) -> None:
        """Build the catalog; raise ``CatalogError`` on a duplicate id or overlapping boxes."""
        by_id: dict[str, Region] = {}
        for region in regions:
            if region.region in by_id:
                raise CatalogError(f"duplicate region id {region.region!r}", field="region")
            by_id[region.region] = region
        self._regions = by_id
        self._check_disjoint()

    def _check_disjoint(self) -> None:
        ordered = sorted(self._regions.values(), key=lambda r: r.bbox.min_lat)
        for i, first in enumerate(ordered):
            for second in ordered[i + 1 :]:
                if second.bbox.min_lat > first.bbox.max_lat:
                    break
                if first.bbox.overlaps(second.bbox):
                    raise CatalogError(
                        f"regions {first.region!r} and {second.region!r} "
                        "have overlapping bounding boxes",
                        field="bbox",
                    )

    def get(self, region_id: str) -> Region:
        """Return the region with this id; raise ``UnknownRegion`` if there is none."""
        try:
            return self._regions[region_id]
        except KeyError:
            raise UnknownRegion(f"unknown region {region_id!r}") from None

    def region_for(self, lat: float, lng: float) -> Region:
        """Return the region whose box holds the point; raise ``OutsideAllRegions`` if none."""
        if not (
            math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180
        ):
            raise OutsideAllRegions(f"invalid coordinates lat={lat}, lng={lng}")
        for region in self._regions.values():
            if region.bbox.contains(lat, lng):
                return region
        raise OutsideAllRegions(f"point lat={lat}, lng={lng} lies outside every served region")

    def shard_for(self, region_id: str) -> str:
        """Return the shard of the region; raise ``UnknownRegion`` if there is none."""
        return self.get(region_id).shard

    def shards(self) -> list[str]:
        """Return the distinct shard names, sorted."""
        return sorted({region.shard for region in self._regions.values()})

    def __iter__(self) -> Iterator[Region]:
        """Iterate over the regions in catalog order."""
        return iter(self._regions.values())

    def __len__(self) -> int:
        """Return the number of regions."""
        return len(self._regions)

    def __contains__(self, region_id: object) -> bool:
        """Return whether a region with this id exists."""
        return isinstance(region_id, str) and region_id in self._regions

    def __repr__(self) -> str:
        """Return a short summary: region count and shards."""
        return f"Catalog({len(self)} regions, shards={self.shards()})"


def _parse(text: str, source: str) -> list[Region]:
    """Parse a catalog document ``{"regions": [...]}``; raise ``CatalogError`` naming source."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"{source} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("regions"), list):
        raise CatalogError(f'{source} must be a JSON object {{"regions": [...]}}')
    regions: list[Region] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["regions"]):
        label = f"regions[{index}]"
        if isinstance(entry, dict) and isinstance(entry.get("region"), str):
            label += f" ({entry['region']!r})"
        try:
            region = Region.model_validate(entry)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc']) or 'entry'}: {err['msg']}"
                for err in exc.errors()
            )
            raise CatalogError(f"{source}: {label} is invalid: {problems}") from exc
        if region.region in seen:
            raise CatalogError(f"{source}: duplicate region id {region.region!r}", field="region")
        seen.add(region.region)
        regions.append(region)
    return regions


def _read_override(path: Path) -> str:
    """Return the text of an override file; raise ``CatalogError`` naming the path."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CatalogError(f"region override file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise CatalogError(f"region override file {path} is not UTF-8 text") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CatalogError(f"cannot read region override file {path}: {reason}") from exc


def load_catalog(override_path: Path | None = None) -> Catalog:
    """Load the packaged catalog, apply the optional override file and validate the result."""
    packaged = resources.files(_PACKAGE).joinpath(_DATA_DIR).joinpath(_DATA_FILE)
    try:
        text = packaged.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read the {_PACKAGED_SOURCE}: {exc}") from exc
    merged = {region.region: region for region in _parse(text, _PACKAGED_SOURCE)}
    if override_path is None:
        return Catalog(merged.values())

    path = Path(override_path)
    source = f"region override file {path}"
    for region in _parse(_read_override(path), source):
        merged[region.region] = region
    try:
        return Catalog(merged.values())
    except CatalogError as exc:
        raise CatalogError(f"{exc.message} (after applying {source})", field=exc.field) from exc
