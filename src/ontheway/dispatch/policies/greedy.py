"""The seed's choice, one order at a time: the best free driver for this order, now.

Orders are served first come, first served; each takes the free driver that
``dispatch.scoring.rank`` puts first (no ratings or acceptance rates here, so the quickest to
the restaurant, ties to the driver id), among those who can pick it up before their shift
ends. A driver leaves at once and waits at the restaurant if it arrives early; no bundles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ontheway.dispatch.policies.model import (
    Assignment,
    Driver,
    OpenOrder,
    Service,
    TravelTime,
    plan_route,
)
from ontheway.dispatch.scoring import Scored, rank


@dataclass(frozen=True)
class GreedyPolicy:
    """Per-order greedy assignment at every minute (every event lands on a whole minute)."""

    name: str = "greedy"
    interval_min: int = 1

    def decide(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Assignment]:
        """Assignments to start now: the oldest orders first, each to its best free driver."""
        free = {d.id: d for d in drivers if d.free_min <= now and d.capacity >= 1}
        chosen: list[Assignment] = []
        for order in sorted(orders, key=lambda o: (o.placed_min, o.id)):
            if not free:
                break
            pool = list(free.values())
            xy = np.array([d.xy for d in pool], dtype=np.float64)
            to_restaurant = travel(xy, np.asarray(order.restaurant_xy, dtype=np.float64))
            ready_by = max(now, order.ready_min - service.pickup_half)
            candidates = [
                Scored(d.id, 60.0 * float(t), None, None)
                for d, t in zip(pool, to_restaurant.tolist(), strict=True)
                if max(ready_by, now + t) + service.pickup_half <= d.off_min
            ]
            if not candidates:
                continue
            best = free.pop(rank(candidates)[0].driver_id)
            chosen.append(plan_route(best, [order], now, travel, service))
        return chosen
