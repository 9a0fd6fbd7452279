"""Route-based plans over the road graph: a driver's stops in their best order with the ETA at
each (``roads.sequence`` on a CCH travel-time matrix), and an order's estimated delivery.

An order's delivery estimate: the driver reaches the restaurant (travel by road), waits for the
food if it is not ready yet (its preparation time), spends the pickup service time, drives to
the customer and spends the drop-off service time. The estimate and, later, the actual time are
what a learned model will be trained on; this is the road-based baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ontheway.regions import LatLng
from ontheway.roads.errors import Unreachable
from ontheway.roads.routing import RoadService
from ontheway.roads.sequence import Objective, Plan, Stop, plan_stops

PICKUP_SERVICE_S = 120.0
DROPOFF_SERVICE_S = 120.0


async def plan_driver_stops(
    roads: RoadService,
    driver: LatLng,
    stops: list[tuple[LatLng, Stop]],
    objective: Objective = "finish",
) -> Plan:
    """The best order of ``stops`` for a driver at ``driver`` and the arrival at each, by road
    (one many-to-many matrix from the CCH index, then ``sequence.plan_stops``)."""
    points = [driver, *(point for point, _ in stops)]
    matrix = await roads.many_to_many(points, points)
    return plan_stops(matrix, [stop for _, stop in stops], objective)


@dataclass(frozen=True)
class DeliveryEstimate:
    """The parts of an order's estimated delivery, in seconds from ``now``."""

    to_restaurant_s: float
    food_ready_s: float
    pickup_s: float
    to_customer_s: float
    delivered_s: float
    estimated_delivery: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "to_restaurant_s": round(self.to_restaurant_s, 1),
            "food_ready_s": round(self.food_ready_s, 1),
            "pickup_s": round(self.pickup_s, 1),
            "to_customer_s": round(self.to_customer_s, 1),
            "delivered_s": round(self.delivered_s, 1),
            "estimated_delivery": self.estimated_delivery.isoformat(),
        }


def delivery_estimate(
    now: datetime,
    to_restaurant_s: float,
    prep_remaining_s: float,
    to_customer_s: float,
    pickup_service_s: float = PICKUP_SERVICE_S,
    dropoff_service_s: float = DROPOFF_SERVICE_S,
) -> DeliveryEstimate:
    """Delivery = max(arrival at the restaurant, food ready) + pickup service + the drive to
    the customer + drop-off service (seconds; ``now`` is timezone-aware UTC)."""
    pickup = max(to_restaurant_s, prep_remaining_s) + pickup_service_s
    delivered = pickup + to_customer_s + dropoff_service_s
    return DeliveryEstimate(
        to_restaurant_s,
        prep_remaining_s,
        pickup,
        to_customer_s,
        delivered,
        now + timedelta(seconds=delivered),
    )


async def estimate_delivery(
    roads: RoadService,
    now: datetime,
    driver: LatLng,
    restaurant: LatLng,
    customer: LatLng,
    prep_remaining_s: float,
) -> DeliveryEstimate:
    """An order's estimated delivery from travel by road (one matrix query for both legs)."""
    matrix = await roads.many_to_many([driver, restaurant], [restaurant, customer])
    to_restaurant, to_customer = matrix[0][0], matrix[1][1]
    if to_restaurant is None or to_customer is None:
        raise Unreachable("no road joins the driver, the restaurant and the customer")
    return delivery_estimate(now, to_restaurant, prep_remaining_s, to_customer)
