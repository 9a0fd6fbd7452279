"""Roads (API.md): routes between points through the region's road graph."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ontheway.api.deps import Caller, State
from ontheway.errors import InvalidInput
from ontheway.regions import LatLng

router = APIRouter(tags=["roads"])


def parse_point(text: str, field: str) -> LatLng:
    """A ``lat,lng`` query value as a point; ``InvalidInput`` naming the field otherwise."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lng = float(parts[0]), float(parts[1])
    except ValueError:
        raise InvalidInput(
            f"{field} must be 'lat,lng' in degrees, got {text!r}",
            field=field,
            code="invalid_coordinates",
        ) from None
    if not (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90 and -180 <= lng <= 180):
        raise InvalidInput(
            f"{field} is not a coordinate: latitude in [-90, 90], longitude in [-180, 180]",
            field=field,
            code="invalid_coordinates",
        )
    return LatLng(lat=lat, lng=lng)


@router.get("/api/route")
async def route(
    state: State,
    _: Caller,
    from_: Annotated[str, Query(alias="from", description="start, 'lat,lng'")],
    to: Annotated[str, Query(description="end, 'lat,lng'")],
    via: Annotated[list[str] | None, Query(description="stops in between, 'lat,lng'")] = None,
) -> dict[str, Any]:
    """The fastest route from -> via... -> to: distance, duration, legs, geometry, steps."""
    stops = [parse_point(from_, "from")]
    stops += [parse_point(v, "via") for v in via or []]
    stops.append(parse_point(to, "to"))
    return (await state.roads.route(stops)).to_dict()
