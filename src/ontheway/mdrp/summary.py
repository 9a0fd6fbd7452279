"""The figures the research reports on a solution, computed as its evaluator does.

Click-to-door is drop-off minus placement, ready-to-pickup is pickup minus ready time (means;
the 90th percentile interpolates linearly, as pandas does). A courier's utilisation is its
minutes driving, picking up (the full pickup service per assignment) and dropping off (per
order) over its shift; the figure is the mean over every courier, idle ones included. A
courier earns the larger of pay per order x orders and pay per hour x shift hours; the cost
per order is the total pay over the orders delivered.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from ontheway.dispatch.policies import minutes
from ontheway.mdrp.instance import Instance
from ontheway.mdrp.solution import ON_LOCATION, Solution


@dataclass(frozen=True)
class Summary:
    """One solution's figures."""

    orders: int
    delivered: int
    undelivered_pct: float
    click_to_door_mean_min: float
    click_to_door_p90_min: float
    ready_to_pickup_mean_min: float
    utilisation: float
    orders_per_assignment: float
    total_pay: float
    cost_per_order: float

    def as_dict(self) -> dict[str, float | int]:
        """The figures by name (for JSON)."""
        return asdict(self)


def summarise(instance: Instance, solution: Solution) -> Summary:
    """The figures of ``solution`` on ``instance``."""
    params, travel = instance.params, instance.params.travel()
    points = {**instance.restaurants, **{o.id: o.xy for o in instance.orders.values()}}
    delivered = len(solution.orders)
    ctd = np.array([o.dropoff_min - o.placed_min for o in solution.orders], dtype=np.float64)
    r2p = np.array([o.pickup_min - o.ready_min for o in solution.orders], dtype=np.float64)
    busy = Counter[str]()
    for move in solution.moves:
        origin = (
            instance.couriers[move.courier].xy
            if move.origin == ON_LOCATION
            else points[move.origin]
        )
        busy[move.courier] += minutes(travel, origin, points[move.destination])
    for a in solution.assignments:
        busy[a.courier] += params.pickup_service_min
    per_courier = Counter(o.courier for o in solution.orders)
    for courier_id, count in per_courier.items():
        busy[courier_id] += params.dropoff_service_min * count
    shares, total_pay = [], 0.0
    for c in instance.couriers.values():
        shift_min = c.off_min - c.on_min
        shares.append(busy[c.id] / shift_min if shift_min else 0.0)
        total_pay += max(
            params.pay_per_order * per_courier[c.id], params.pay_per_hour * shift_min / 60
        )
    total = len(instance.orders)
    return Summary(
        orders=total,
        delivered=delivered,
        undelivered_pct=100.0 * (total - delivered) / total if total else 0.0,
        click_to_door_mean_min=float(ctd.mean()) if delivered else float("nan"),
        click_to_door_p90_min=float(np.percentile(ctd, 90)) if delivered else float("nan"),
        ready_to_pickup_mean_min=float(r2p.mean()) if delivered else float("nan"),
        utilisation=float(np.mean(shares)) if shares else 0.0,
        orders_per_assignment=delivered / len(solution.assignments)
        if solution.assignments
        else 0.0,
        total_pay=total_pay,
        cost_per_order=total_pay / delivered if delivered else float("nan"),
    )
