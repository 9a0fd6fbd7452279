"""Restaurants (API.md): browsing by place, and one restaurant with its menu."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ontheway.api.deps import Caller, State
from ontheway.regions import Latitude, Longitude

router = APIRouter(tags=["restaurants"])


@router.get("/api/restaurants")
async def restaurants_near(
    state: State,
    _: Caller,
    lat: Annotated[Latitude, Query()],
    lng: Annotated[Longitude, Query()],
    radius_mi: Annotated[float, Query(gt=0, le=25)] = 3.0,
) -> list[dict[str, Any]]:
    """Restaurants that deliver to the point, nearest first."""
    return await state.restaurants.near(lat, lng, radius_mi)


@router.get("/api/restaurants/{restaurant_id}")
async def restaurant(state: State, _: Caller, restaurant_id: str) -> dict[str, Any]:
    """One restaurant with its menu."""
    return await state.restaurants.get(restaurant_id)
