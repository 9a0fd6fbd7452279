"""The region catalog: packaged data, point lookup, shards and override files."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ontheway.errors import ConfigurationError, InvalidInput, NotFound
from ontheway.regions import (
    BBox,
    Catalog,
    CatalogError,
    OutsideAllRegions,
    Region,
    UnknownRegion,
    load_catalog,
)

REQUIRED = [
    "sf", "nyc", "la", "chicago", "houston", "boston", "baltimore", "seattle", "toronto",
    "mexico_city", "sao_paulo", "london", "paris", "berlin", "madrid", "monaco", "helsinki",
    "stockholm", "tokyo", "singapore", "sydney", "mumbai",
]  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def region_entry(region_id: str, lat: float, lng: float, half: float = 0.1) -> dict[str, Any]:
    return {
        "region": region_id,
        "name": region_id.title(),
        "country": "PT",
        "center": {"lat": lat, "lng": lng},
        "bbox": {
            "min_lat": lat - half,
            "min_lng": lng - half,
            "max_lat": lat + half,
            "max_lng": lng + half,
        },
        "timezone": "Atlantic/Azores",
        "shard": "europe",
    }


def write_override(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"regions": entries}), encoding="utf-8")
    return path


def test_the_packaged_catalog_has_exactly_100_regions(catalog: Catalog) -> None:
    assert len(catalog) == 100
    assert len({region.region for region in catalog}) == 100


def test_the_packaged_catalog_has_exactly_three_shards(catalog: Catalog) -> None:
    assert catalog.shards() == ["americas", "asia_pacific", "europe"]


def test_the_packaged_catalog_includes_the_required_cities(catalog: Catalog) -> None:
    missing = [region_id for region_id in REQUIRED if region_id not in catalog]
    assert missing == []


def test_no_two_packaged_bounding_boxes_overlap(catalog: Catalog) -> None:
    for first, second in itertools.combinations(catalog, 2):
        assert not first.bbox.overlaps(second.bbox), (first.region, second.region)


def test_every_packaged_timezone_is_a_valid_iana_name(catalog: Catalog) -> None:
    for region in catalog:
        assert ZoneInfo(region.timezone).key == region.timezone


def test_every_packaged_center_lies_inside_its_box_of_realistic_size(catalog: Catalog) -> None:
    for region in catalog:
        box = region.bbox
        assert box.contains(region.center.lat, region.center.lng), region.region
        assert 0.05 <= box.max_lat - box.min_lat <= 1.0, region.region
        assert 0.1 <= box.max_lng - box.min_lng <= 1.0, region.region
        assert len(region.country) == 2 and region.country.isupper(), region.region


def test_the_sf_box_covers_the_bay_area_core_and_both_extracts(catalog: Catalog) -> None:
    box = catalog.get("sf").bbox
    for lat, lng in [
        (37.60, -122.55), (37.95, -122.10),  # Bay Area core
        (37.776, -122.439), (37.806, -122.391),  # downtown SF extract
        (37.803, -122.319), (37.821, -122.290),  # West Oakland extract
    ]:  # fmt: skip
        assert box.contains(lat, lng), (lat, lng)


def test_the_monaco_and_mexico_city_boxes_cover_their_extracts(catalog: Catalog) -> None:
    monaco, mexico = catalog.get("monaco").bbox, catalog.get("mexico_city").bbox
    assert monaco.contains(43.714, 7.349) and monaco.contains(43.770, 7.491)
    assert mexico.contains(19.35, -99.25) and mexico.contains(19.50, -99.05)


@pytest.mark.parametrize(
    ("lat", "lng", "expected"),
    [
        (37.7880, -122.4075, "sf"),  # Union Square, downtown SF
        (37.8120, -122.3000, "sf"),  # West Oakland
        (43.7396, 7.4276, "monaco"),  # Monte Carlo
        (19.4326, -99.1332, "mexico_city"),  # Zócalo
        (40.7580, -73.9855, "nyc"),  # Times Square
        (-33.8568, 151.2153, "sydney"),  # Opera House
    ],
)
def test_region_for_finds_the_region_holding_the_point(
    catalog: Catalog, lat: float, lng: float, expected: str
) -> None:
    assert catalog.region_for(lat, lng).region == expected


def test_a_point_in_the_middle_of_the_atlantic_is_outside_all_regions(catalog: Catalog) -> None:
    with pytest.raises(OutsideAllRegions, match=r"lat=30\.0, lng=-40\.0") as info:
        catalog.region_for(30.0, -40.0)
    assert isinstance(info.value, InvalidInput)
    assert info.value.status == 422
    assert info.value.code == "outside_all_regions"


@pytest.mark.parametrize(
    ("lat", "lng"), [(math.nan, 0.0), (37.78, math.nan), (91.0, 0.0), (0.0, -181.0)]
)
def test_nan_or_out_of_range_coordinates_are_refused(
    catalog: Catalog, lat: float, lng: float
) -> None:
    with pytest.raises(OutsideAllRegions, match="invalid coordinates"):
        catalog.region_for(lat, lng)


def test_shard_for_returns_the_shard_of_each_region(catalog: Catalog) -> None:
    assert catalog.shard_for("sf") == "americas"
    assert catalog.shard_for("london") == "europe"
    assert catalog.shard_for("monaco") == "europe"
    assert catalog.shard_for("tokyo") == "asia_pacific"


def test_an_unknown_region_id_raises_unknown_region(catalog: Catalog) -> None:
    with pytest.raises(UnknownRegion, match="atlantis") as info:
        catalog.shard_for("atlantis")
    assert isinstance(info.value, NotFound)
    assert (info.value.status, info.value.code, info.value.field) == (
        404,
        "unknown_region",
        "region",
    )


def test_a_region_dumps_to_exactly_the_api_shape(catalog: Catalog) -> None:
    assert catalog.get("sf").to_api() == {
        "region": "sf",
        "name": "San Francisco Bay Area",
        "country": "US",
        "center": {"lat": 37.7749, "lng": -122.4194},
        "bbox": {"min_lat": 37.55, "min_lng": -122.6, "max_lat": 38.0, "max_lng": -122.05},
        "timezone": "America/Los_Angeles",
        "shard": "americas",
    }


def test_a_region_with_an_unknown_timezone_is_rejected(catalog: Catalog) -> None:
    data = catalog.get("sf").model_dump() | {"timezone": "Mars/Olympus_Mons"}
    with pytest.raises(ValidationError, match="IANA"):
        Region.model_validate(data)


def test_a_box_with_min_above_max_is_rejected() -> None:
    with pytest.raises(ValidationError, match="below"):
        BBox(min_lat=1.0, min_lng=0.0, max_lat=0.0, max_lng=1.0)


def test_a_catalog_with_overlapping_boxes_names_both_regions(catalog: Catalog) -> None:
    sf = catalog.get("sf")
    twin = sf.model_copy(update={"region": "sf_twin"})
    with pytest.raises(CatalogError, match=r"'sf'.*'sf_twin'|'sf_twin'.*'sf'"):
        Catalog([sf, twin])


def test_an_override_file_adds_a_region_and_replaces_one(catalog: Catalog, tmp_path: Path) -> None:
    london = catalog.get("london").model_dump()
    london["name"] = "Greater London"
    london["shard"] = "europe_west"
    override = write_override(
        tmp_path / "regions.json", [region_entry("ponta_delgada", 37.74, -25.67), london]
    )

    merged = load_catalog(override)

    assert len(merged) == 101
    assert merged.region_for(37.74, -25.67).region == "ponta_delgada"
    assert merged.get("london").name == "Greater London"
    assert merged.shard_for("london") == "europe_west"
    assert merged.shards() == ["americas", "asia_pacific", "europe", "europe_west"]


def test_an_override_that_overlaps_an_existing_region_is_refused(tmp_path: Path) -> None:
    override = write_override(tmp_path / "regions.json", [region_entry("ribeira", 38.72, -9.14)])
    with pytest.raises(CatalogError, match="'lisbon'") as info:
        load_catalog(override)
    assert "ribeira" in info.value.message
    assert str(override) in info.value.message


def test_a_malformed_override_file_gives_a_catalog_error_naming_the_path(tmp_path: Path) -> None:
    override = tmp_path / "broken.json"
    override.write_text('{"regions": [', encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON") as info:
        load_catalog(override)
    assert str(override) in info.value.message
    assert isinstance(info.value, ConfigurationError)
    assert info.value.status == 500


def test_an_override_entry_with_a_bad_field_names_the_path_and_the_entry(tmp_path: Path) -> None:
    entry = region_entry("ponta_delgada", 37.74, -25.67) | {"timezone": "Nowhere/Land"}
    override = write_override(tmp_path / "regions.json", [entry])
    with pytest.raises(CatalogError, match="ponta_delgada") as info:
        load_catalog(override)
    assert str(override) in info.value.message
    assert "timezone" in info.value.message


def test_a_missing_override_file_gives_a_catalog_error_naming_the_path(tmp_path: Path) -> None:
    override = tmp_path / "absent.json"
    with pytest.raises(CatalogError, match="does not exist") as info:
        load_catalog(override)
    assert str(override) in info.value.message


def test_an_override_that_is_not_a_regions_object_is_refused(tmp_path: Path) -> None:
    override = tmp_path / "list.json"
    override.write_text("[]", encoding="utf-8")
    with pytest.raises(CatalogError, match="must be a JSON object") as info:
        load_catalog(override)
    assert str(override) in info.value.message


def test_a_box_knows_its_area_in_square_metres() -> None:
    # 0.1 degree of latitude by 0.1 of longitude at 37.75 N: 11.13 km by 8.80 km.
    box = BBox(min_lat=37.7, min_lng=-122.5, max_lat=37.8, max_lng=-122.4)
    assert box.area_m2 == pytest.approx(11_132 * 8_800, rel=0.005)
