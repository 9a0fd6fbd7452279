"""Replaying one MDRP instance minute by minute with a dispatch policy.

Orders appear at their placement time and couriers come on and go off duty at theirs (a
shift is a published schedule, so a policy may plan with a courier who starts soon). Every
``policy.interval_min`` minutes the policy sees the open orders (placed, not yet assigned:
never a future order) and the couriers who can still pick up, and returns the assignments to
start now. The replay times each assignment itself (``plan_route``: the travel and service
times are deterministic, so the plan is what happens) and refuses an assignment that breaks
a rule: a courier not free, an order not open, a bundle of two restaurants, a pickup after
the end of the shift. A policy also learns how many more orders each courier's guaranteed
pay covers (known from the shift and the orders it has delivered). The day ends when no
courier can pick up any more; orders still open then are undelivered.
"""

from __future__ import annotations

from dataclasses import dataclass

from ontheway.dispatch.policies import Driver, OpenOrder, Point, Policy, plan_route
from ontheway.mdrp.instance import Instance
from ontheway.mdrp.solution import ON_LOCATION, AssignmentLine, Move, OrderLine, Solution


class PolicyError(RuntimeError):
    """A policy returned an assignment that breaks the problem's rules (a bug in the policy)."""


@dataclass
class _Courier:
    xy: Point
    place: str
    free_min: int
    covered: int  # orders its guaranteed pay still covers


def _open_order(instance: Instance, order_id: str) -> OpenOrder:
    order = instance.orders[order_id]
    restaurant_xy = instance.restaurants[order.restaurant]
    return OpenOrder(
        order.id, order.placed_min, order.ready_min, order.restaurant, restaurant_xy, order.xy
    )


def simulate(instance: Instance, policy: Policy, capacity: int = 3) -> Solution:
    """The solution that ``policy`` builds for ``instance``, deciding as the day unfolds."""
    if policy.interval_min < 1:
        raise ValueError(f"{policy.name}: decisions need at least a minute apart")
    travel, service = instance.params.travel(), instance.params.service()
    couriers = instance.couriers
    state = {
        c.id: _Courier(c.xy, ON_LOCATION, c.on_min, instance.params.guaranteed_orders(c))
        for c in couriers.values()
    }
    arrivals = sorted(instance.orders.values(), key=lambda o: (o.placed_min, o.id))
    if not arrivals or not couriers:
        return Solution()
    start = arrivals[0].placed_min
    end = max(c.off_min for c in couriers.values())
    open_orders: dict[str, OpenOrder] = {}
    solution, next_arrival = Solution(), 0
    for now in range(start, end + 1):
        while next_arrival < len(arrivals) and arrivals[next_arrival].placed_min <= now:
            order_id = arrivals[next_arrival].id
            open_orders[order_id] = _open_order(instance, order_id)
            next_arrival += 1
        if (now - start) % policy.interval_min or not open_orders:
            continue
        drivers = [
            Driver(
                c.id,
                state[c.id].xy,
                max(state[c.id].free_min, c.on_min),
                c.off_min,
                capacity,
                state[c.id].covered,
            )
            for c in couriers.values()
            if c.off_min >= now
        ]
        by_id = {d.id: d for d in drivers}
        for proposed in policy.decide(now, list(open_orders.values()), drivers, travel, service):
            driver = by_id.pop(proposed.driver_id, None)
            if driver is None or driver.free_min > now:
                raise PolicyError(f"{policy.name} at {now}: {proposed.driver_id} is not free")
            if not proposed.order_ids or any(o not in open_orders for o in proposed.order_ids):
                raise PolicyError(f"{policy.name} at {now}: {proposed.order_ids} not all open")
            if len(proposed.order_ids) > driver.capacity:
                raise PolicyError(f"{policy.name} at {now}: bundle over {driver.id}'s capacity")
            bundle = [open_orders.pop(o) for o in proposed.order_ids]
            try:
                done = plan_route(driver, bundle, now, travel, service)
            except ValueError as exc:
                raise PolicyError(f"{policy.name} at {now}: {exc}") from None
            if done.pickup_min > driver.off_min:
                raise PolicyError(f"{policy.name} at {now}: pickup after {driver.id}'s shift")
            _record(
                solution,
                state[driver.id],
                now,
                bundle,
                done.dropoff_mins,
                done.pickup_min,
                driver.id,
                service.pickup_half,
                service.dropoff_half,
            )
        if next_arrival == len(arrivals) and not open_orders:
            break
    return solution


def _record(
    solution: Solution,
    courier: _Courier,
    now: int,
    bundle: list[OpenOrder],
    drops: tuple[int, ...],
    pickup: int,
    courier_id: str,
    pickup_half: int,
    dropoff_half: int,
) -> None:
    """Append the assignment, its orders and its moves, and move the courier to the last diner."""
    order_ids = tuple(o.id for o in bundle)
    solution.assignments.append(AssignmentLine(now, pickup, courier_id, order_ids))
    depart = max(now, courier.free_min)
    solution.moves.append(Move(courier_id, depart, courier.place, bundle[0].restaurant))
    place, leave = bundle[0].restaurant, pickup + pickup_half
    for order, drop in zip(bundle, drops, strict=True):
        solution.moves.append(Move(courier_id, leave, place, order.id))
        solution.orders.append(
            OrderLine(order.id, order.placed_min, order.ready_min, pickup, drop, courier_id)
        )
        place, leave = order.id, drop + dropoff_half
    courier.xy, courier.place, courier.free_min = bundle[-1].dropoff_xy, place, leave
    courier.covered -= len(bundle)
