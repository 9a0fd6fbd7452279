"""What an estimate is made of: its stage, the baseline's legs and the model's features. Pure.

The estimate in legs, as the industry splits it (world seconds from the moment it is made):
time to assign a driver, the driver's way to the restaurant, the wait for the food, the pickup,
the way to the customer and the hand-over. The route-based baseline: travel times from the
road graph (with the current traffic), the preparation from the restaurant's profile (or its
own confirmation), the fixed service times; assigning takes no time in the baseline (the
seed's assumption) — a model learns what it really takes.

Every feature is known when the estimate is made: nothing the simulator hides (a kitchen's
true preparation time, a driver's own speed, how a trip's traffic will change) is read, only
what the platform saw happen before (recent kitchen times, a driver's recent pace) and the
traffic on the way now (the legs' times by road over their times at free flow).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """When an estimate is made."""

    PLACEMENT = "placement"
    ASSIGNMENT = "assignment"
    PICKUP = "pickup"
    REROUTE = "reroute"


STAGE_CODE = {Stage.PLACEMENT: 0, Stage.ASSIGNMENT: 1, Stage.PICKUP: 2, Stage.REROUTE: 3}


@dataclass(frozen=True)
class Legs:
    """The baseline's legs, world seconds from the moment of the estimate."""

    assign_s: float
    to_restaurant_s: float
    prep_remaining_s: float
    pickup_service_s: float
    to_customer_s: float
    dropoff_service_s: float

    @property
    def wait_s(self) -> float:
        """Waiting for the food: preparation not finished when the driver arrives."""
        return max(0.0, self.prep_remaining_s - self.assign_s - self.to_restaurant_s)

    @property
    def total_s(self) -> float:
        """The baseline: max(arrival, food ready) + pickup + the way + the hand-over."""
        return (
            max(self.assign_s + self.to_restaurant_s, self.prep_remaining_s)
            + self.pickup_service_s
            + self.to_customer_s
            + self.dropoff_service_s
        )

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 1) for k, v in asdict(self).items()} | {
            "wait_s": round(self.wait_s, 1),
            "total_s": round(self.total_s, 1),
        }


@dataclass(frozen=True)
class Context:
    """What the platform knows beside the route (None: not known)."""

    elapsed_s: float  # since placement, world seconds
    restaurant_prep_recent_s: float | None  # mean placement-to-ready of its last orders
    restaurant_prep_n: int  # how many of them
    restaurant_queue: int  # its orders placed and not picked up yet
    confirmed_prep_s: float | None  # the kitchen's own estimate, once it confirmed
    driver_pace: float | None  # the driver's recent actual / baseline drive to customers
    driver_distance_m: float | None  # straight line, driver to restaurant
    drivers_near: int | None = None  # available drivers found near the restaurant
    region_assign_recent_s: float | None = None  # the region's last orders' time to assign
    region_waiting: int | None = None  # the region's orders waiting for a driver
    region_active: int | None = None  # the region's orders under way
    driver_active: int | None = None  # orders the driver holds (this one included)
    # Traffic on the way now: its time by road over its time at free flow (1: none).
    traffic_to_restaurant: float | None = None
    traffic_to_customer: float | None = None


FEATURES = (
    "stage", "baseline_s", "assign_s", "to_restaurant_s", "prep_remaining_s", "wait_s",
    "to_customer_s", "elapsed_s", "hour", "weekday", "rest_prep_recent_s", "rest_prep_n",
    "rest_queue", "confirmed_prep_s", "driver_pace", "driver_distance_m",
    "drivers_near", "region_assign_recent_s", "region_waiting", "region_active",
    "driver_active", "traffic_to_restaurant", "traffic_to_customer",
)  # fmt: skip


def _num(value: float | int | None) -> float:
    return math.nan if value is None else float(value)


def feature_row(stage: Stage, legs: Legs, ctx: Context, at: datetime) -> dict[str, float]:
    """The model's features, by name (NaN: unknown; LightGBM handles missing values)."""
    return {
        "stage": float(STAGE_CODE[stage]),
        "baseline_s": legs.total_s,
        "assign_s": legs.assign_s,
        "to_restaurant_s": legs.to_restaurant_s,
        "prep_remaining_s": legs.prep_remaining_s,
        "wait_s": legs.wait_s,
        "to_customer_s": legs.to_customer_s,
        "elapsed_s": ctx.elapsed_s,
        "hour": at.hour + at.minute / 60,
        "weekday": float(at.weekday()),
        "rest_prep_recent_s": _num(ctx.restaurant_prep_recent_s),
        "rest_prep_n": float(ctx.restaurant_prep_n),
        "rest_queue": float(ctx.restaurant_queue),
        "confirmed_prep_s": _num(ctx.confirmed_prep_s),
        "driver_pace": _num(ctx.driver_pace),
        "driver_distance_m": _num(ctx.driver_distance_m),
        "drivers_near": _num(ctx.drivers_near),
        "region_assign_recent_s": _num(ctx.region_assign_recent_s),
        "region_waiting": _num(ctx.region_waiting),
        "region_active": _num(ctx.region_active),
        "driver_active": _num(ctx.driver_active),
        "traffic_to_restaurant": _num(ctx.traffic_to_restaurant),
        "traffic_to_customer": _num(ctx.traffic_to_customer),
    }


def vector(row: dict[str, Any]) -> list[float]:
    """A stored feature row in the model's column order (missing or null: NaN)."""
    out = []
    for name in FEATURES:
        value = row.get(name)
        out.append(math.nan if value is None else float(value))
    return out


def jsonable(row: dict[str, float]) -> dict[str, float | None]:
    """A feature row for a JSON column (NaN as null)."""
    return {k: None if math.isnan(v) else round(v, 4) for k, v in row.items()}
