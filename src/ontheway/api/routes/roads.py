"""Roads (API.md): routes between points through the region's road graph, and traffic."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ontheway.api.deps import AppState, Caller, OpsCaller, State
from ontheway.api.routes.fleet import FleetDep
from ontheway.errors import InvalidInput
from ontheway.fleet.service import Fleet
from ontheway.orders.ids import region_of
from ontheway.regions import Latitude, LatLng, Longitude
from ontheway.roads.delivery import can_deliver
from ontheway.roads.planning import plan_driver_stops
from ontheway.roads.reroute import TrafficFollowUp, follow_up
from ontheway.roads.sequence import Stop
from ontheway.roads.traffic import MAX_FACTOR, AreaFactor, RoadFactor, StreetFactor, TrafficChange

router = APIRouter(tags=["roads"])
MAX_PLAN_STOPS = 20  # a matrix of 21 x 21 CCH queries: about a quarter of a second


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


Factor = Annotated[
    float,
    Field(gt=0, le=MAX_FACTOR, allow_inf_nan=False, description="1 = free flow, 2 = twice as slow"),
]


class RoadFactorIn(BaseModel):
    road_id: int
    traffic_factor: Factor


class StreetFactorIn(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    traffic_factor: Factor


class AreaFactorIn(BaseModel):
    lat: Latitude
    lng: Longitude
    radius_m: Annotated[float, Field(gt=0, le=50_000, allow_inf_nan=False)]
    traffic_factor: Factor


class TrafficIn(BaseModel):
    """``POST /api/ops/traffic``: factors by road id (API.md), by street name or by area."""

    model_config = ConfigDict(extra="forbid")

    region: Annotated[str, Field(min_length=1, max_length=64)]
    edges: Annotated[list[RoadFactorIn], Field(max_length=250_000)] = []
    streets: Annotated[list[StreetFactorIn], Field(max_length=1000)] = []
    # Each area is one pass over every road of the map (about 5 ms on Mexico City).
    areas: Annotated[list[AreaFactorIn], Field(max_length=100)] = []


def traffic_follow_up(request: Request, state: AppState, fleet: Fleet) -> TrafficFollowUp:
    """The process's follow-up of traffic changes (zones, re-routes), made on first use."""
    found: TrafficFollowUp | None = getattr(request.app.state, "traffic_follow_up", None)
    if found is None:
        found = follow_up(
            state.orders, state.roads, fleet.store, state.conns, state.catalog, state.settings
        )
        request.app.state.traffic_follow_up = found
    return found


@router.post("/api/ops/traffic")
async def set_traffic(
    request: Request, state: State, caller: OpsCaller, fleet: FleetDep, body: TrafficIn
) -> dict[str, Any]:
    """Set traffic factors (ops of the region); the next route follows the new times. The
    region's zones and active deliveries' routes follow in the background (ROUTE_UPDATED)."""
    state.catalog.get(body.region)
    caller.require_region(body.region)
    change = TrafficChange(
        roads=tuple(RoadFactor(e.road_id, e.traffic_factor) for e in body.edges),
        streets=tuple(StreetFactor(s.name, s.traffic_factor) for s in body.streets),
        areas=tuple(AreaFactor(a.lat, a.lng, a.radius_m, a.traffic_factor) for a in body.areas),
    )
    result = (await state.roads.update_traffic(body.region, change)).to_dict()
    traffic_follow_up(request, state, fleet).changed(body.region)
    return {**result, "follow_up": "scheduled"}


@router.get("/api/restaurants/{restaurant_id}/can-deliver")
async def can_deliver_here(
    state: State,
    _: Caller,
    restaurant_id: str,
    lat: Annotated[Latitude, Query()],
    lng: Annotated[Longitude, Query()],
) -> dict[str, Any]:
    """Whether the restaurant delivers to the point (its delivery zone), and the travel time."""
    region = region_of(restaurant_id, "rest")
    state.catalog.get(region)
    db = await state.roads.graph_db()
    return (await can_deliver(db, region, restaurant_id, lat, lng)).to_dict()


class PointIn(BaseModel):
    lat: Latitude
    lng: Longitude


class StopIn(PointIn):
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    kind: Literal["pickup", "dropoff"]
    service_s: Annotated[float, Field(ge=0, le=3600, allow_inf_nan=False)] = 0.0


class StopPlanIn(BaseModel):
    """``POST /api/route/plan``: a driver's stops to put in order (an addition to API.md)."""

    model_config = ConfigDict(extra="forbid")

    driver: PointIn
    stops: Annotated[list[StopIn], Field(min_length=1, max_length=MAX_PLAN_STOPS)]
    objective: Literal["finish", "deliveries"] = "finish"


@router.post("/api/route/plan")
async def plan_stops_route(state: State, _: Caller, body: StopPlanIn) -> dict[str, Any]:
    """The best order of a driver's pickups and drop-offs, with the arrival at each stop."""
    stops = [
        (LatLng(lat=s.lat, lng=s.lng), Stop(s.order_id, s.kind, s.service_s)) for s in body.stops
    ]
    driver = LatLng(lat=body.driver.lat, lng=body.driver.lng)
    plan = await plan_driver_stops(state.roads, driver, stops, body.objective)
    return {
        "objective": body.objective,
        "exact": plan.exact,
        "finish_s": round(plan.finish_s, 1),
        "stops": [
            {
                "index": i,
                "order_id": body.stops[i].order_id,
                "kind": body.stops[i].kind,
                "lat": body.stops[i].lat,
                "lng": body.stops[i].lng,
                "arrival_s": round(arrival, 1),
            }
            for i, arrival in zip(plan.order, plan.arrival_s, strict=True)
        ],
    }
