"""Rolling-horizon batches: bundle per restaurant, one assignment for all, commit what must
start now.

Every ``interval_min`` minutes the policy takes every open order and every driver free now or
within ``lookahead_min`` (a driver finishing a delivery, or starting its shift, counts from
where and when it will be free). Orders of one restaurant are bundled, consecutively by ready
time, ``size`` at a time, where ``size`` is the number of orders ready within ``soon_min`` per
driver free by then, rounded up and capped at ``max_bundle``: with drivers to spare every
order rides alone; when they run short, bundles stretch them. A bundle's orders are ready within
``ready_gap_min`` of its first (or of now, when the first is already late: a late pickup
waits for nothing). Its drop-offs follow the sequence with the smallest sum of drop-off times.

One minimum-cost assignment (scipy's ``linear_sum_assignment``) then matches bundles with
drivers. A pair costs the sum of its orders' click-to-door minutes if that driver took the
bundle (leaving when it is free), minus a large reward per order (``cover_reward``, far above
any click-to-door time), so that as many orders as
possible are covered when drivers are short, minus the minutes its orders have already waited
(``wait_weight``), so that the oldest are covered first, plus ``pay_weight`` minutes per order
beyond what the driver's guaranteed pay already covers, which breaks ties (several drivers in
time for a pickup) towards drivers paid anyway, plus ``later_weight`` minutes per order for
every minute until the driver is free: a plan that waits for a busy driver is fragile (the
orders placed meanwhile compete for it), so a driver free now is preferred when it is barely
later. A driver who could not pick up before the end of its shift, or whose capacity is too
small, is not a candidate. Of the matches, only those whose driver is free now and who would
pick up later if it left one round later are committed; the rest stay open and are planned
again at the next round, with whatever new orders and freed drivers it brings.

A committed bundle then takes along other open orders of its restaurant ready by its pickup,
when that delays none of its own drop-offs by more than ``join_delay_min`` and the orders it
takes gain more than the orders aboard lose (against their pickups in the matching; an order the
matching left without a driver always gains): a driver saved where drivers run short for a
moment, which the bundle sizes, counting drivers over ``soon_min``, may not see.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from ontheway.dispatch.policies.model import (
    Assignment,
    Driver,
    OpenOrder,
    Service,
    TravelTime,
    minutes,
    plan_route,
)

COVER_REWARD_MIN = 1_000.0
INFEASIBLE = 1e12


@dataclass(frozen=True)
class Bundle:
    """Orders of one restaurant in drop-off sequence, with their drop-off offsets from pickup."""

    orders: tuple[OpenOrder, ...]
    offsets_min: tuple[int, ...]

    @property
    def latest_ready_min(self) -> int:
        """When the last order of the bundle is ready."""
        return max(o.ready_min for o in self.orders)


def sequence(orders: Sequence[OpenOrder], travel: TravelTime, service: Service) -> Bundle:
    """The drop-off order with the smallest sum of drop-off times (every permutation)."""
    best: Bundle | None = None
    for perm in itertools.permutations(orders):
        clock, here, offsets = service.pickup_half, perm[0].restaurant_xy, []
        for order in perm:
            clock += minutes(travel, here, order.dropoff_xy) + service.dropoff_half
            offsets.append(clock)
            clock, here = clock + service.dropoff_half, order.dropoff_xy
        if best is None or sum(offsets) < sum(best.offsets_min):
            best = Bundle(tuple(perm), tuple(offsets))
    assert best is not None
    return best


@dataclass(frozen=True)
class BatchedPolicy:
    """Bundles and a minimum-cost assignment every few minutes, on a rolling horizon."""

    name: str = "batched"
    interval_min: int = 1
    max_bundle: int = 3
    ready_gap_min: int = 8
    lookahead_min: int = 30
    soon_min: int = 10
    wait_weight: float = 1.0
    pay_weight: float = 0.5
    cover_reward: float = COVER_REWARD_MIN
    later_weight: float = 0.3
    join_delay_min: int = 6

    def bundles(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Bundle]:
        """The open orders cut into bundles of one restaurant, sized by the drivers soon free."""
        soon = sum(1 for d in drivers if d.free_min <= now + self.soon_min)
        due = sum(1 for o in orders if o.ready_min <= now + self.soon_min)
        size = min(self.max_bundle, max(1, math.ceil(due / max(1, soon))))
        by_restaurant: dict[str, list[OpenOrder]] = defaultdict(list)
        for order in orders:
            by_restaurant[order.restaurant].append(order)
        cut: list[Bundle] = []
        for restaurant in sorted(by_restaurant):
            group: list[OpenOrder] = []
            for order in sorted(by_restaurant[restaurant], key=lambda o: (o.ready_min, o.id)):
                if group and (
                    len(group) == size
                    or order.ready_min - max(group[0].ready_min, now) > self.ready_gap_min
                ):
                    cut.append(sequence(group, travel, service))
                    group = []
                group.append(order)
            cut.append(sequence(group, travel, service))
        return cut

    def decide(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Assignment]:
        """Assignments to start now, from one matching of every bundle with every driver."""
        pool = [d for d in drivers if d.free_min <= now + self.lookahead_min and d.off_min >= now]
        if not orders or not pool:
            return []
        cut = self.bundles(now, orders, pool, travel, service)
        pickup, to_restaurant = self._pickups(now, cut, pool, travel, service)
        cost = self._costs(now, cut, pool, pickup)
        matched = [
            (int(b), int(d))
            for b, d in zip(*linear_sum_assignment(cost), strict=True)
            if cost[b, d] < INFEASIBLE / 2
        ]
        planned = {b: int(pickup[b, d]) for b, d in matched}
        commits = []
        for b, d in matched:
            if pool[d].free_min > now:
                continue
            later = now + self.interval_min + int(to_restaurant[b, d]) + service.pickup_half
            if max(later, cut[b].latest_ready_min) > pickup[b, d]:
                commits.append((b, pool[d]))
        # Earliest pickups first: a bundle taken along by an earlier one is not sent on its own.
        commits.sort(key=lambda c: (planned[c[0]], c[1].id))
        taken: set[int] = set()
        chosen: list[Assignment] = []
        for b, driver in commits:
            if b not in taken:
                taken.add(b)
                chosen.append(self._join(now, b, driver, cut, planned, taken, travel, service))
        return chosen

    def _join(
        self,
        now: int,
        b: int,
        driver: Driver,
        cut: Sequence[Bundle],
        planned: dict[int, int],
        taken: set[int],
        travel: TravelTime,
        service: Service,
    ) -> Assignment:
        """The route of bundle ``b``, with the other open bundles of its restaurant that ride
        along at little cost (marking them ``taken``); see the module docstring."""
        orders = cut[b].orders
        route = plan_route(driver, orders, now, travel, service)
        own = dict(zip(route.order_ids, route.dropoff_mins, strict=True))
        for other, extra in enumerate(cut):
            if (
                other in taken
                or extra.orders[0].restaurant != orders[0].restaurant
                or len(orders) + len(extra.orders) > min(driver.capacity, self.max_bundle)
                or extra.latest_ready_min > route.pickup_min
            ):
                continue
            joined = sequence([*orders, *extra.orders], travel, service).orders
            trial = plan_route(driver, joined, now, travel, service)
            drop = dict(zip(trial.order_ids, trial.dropoff_mins, strict=True))
            delay = max(drop[o] - t for o, t in own.items())
            if trial.pickup_min > driver.off_min or delay > self.join_delay_min:
                continue
            if other in planned:
                aboard = zip(route.order_ids, route.dropoff_mins, strict=True)
                lost = sum(drop[o] - t for o, t in aboard)
                alone = len(extra.orders) * planned[other] + sum(extra.offsets_min)
                if alone - sum(drop[o.id] for o in extra.orders) <= lost:
                    continue
            orders, route = joined, trial
            taken.add(other)
        return route

    def _pickups(
        self,
        now: int,
        cut: Sequence[Bundle],
        pool: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        driver_xy = np.array([d.xy for d in pool], dtype=np.float64)
        restaurant_xy = np.array([b.orders[0].restaurant_xy for b in cut], dtype=np.float64)
        to_restaurant = travel(driver_xy[None, :, :], restaurant_xy[:, None, :])
        start = np.array([max(now, d.free_min) for d in pool], dtype=np.int64)
        ready = np.array([b.latest_ready_min for b in cut], dtype=np.int64)
        arrive = start[None, :] + to_restaurant
        return np.maximum(ready[:, None], arrive + service.pickup_half), to_restaurant

    def _costs(
        self, now: int, cut: Sequence[Bundle], pool: Sequence[Driver], pickup: NDArray[np.int64]
    ) -> NDArray[np.float64]:
        size = np.array([len(b.orders) for b in cut], dtype=np.float64)
        offsets = np.array([sum(b.offsets_min) for b in cut], dtype=np.float64)
        placed = np.array([sum(o.placed_min for o in b.orders) for b in cut], dtype=np.float64)
        click_to_door = size[:, None] * pickup + (offsets - placed)[:, None]
        waited = size * now - placed
        cost = click_to_door - (self.cover_reward * size + self.wait_weight * waited)[:, None]
        busy_for = np.array([max(0, d.free_min - now) for d in pool], dtype=np.float64)
        cost += self.later_weight * size[:, None] * busy_for[None, :]
        covered = np.array([d.guaranteed_orders for d in pool], dtype=np.float64)
        cost += self.pay_weight * np.maximum(0.0, size[:, None] - covered[None, :])
        off = np.array([d.off_min for d in pool], dtype=np.int64)
        capacity = np.array([d.capacity for d in pool], dtype=np.int64)
        feasible = (pickup <= off[None, :]) & (size[:, None] <= capacity[None, :])
        return np.where(feasible, cost, INFEASIBLE)
