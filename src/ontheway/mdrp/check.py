"""Feasibility of a solution: every condition of the research evaluator, and ours besides.

The evaluator's: each order in at most one assignment; no assignment before its orders are
placed; no pickup after the courier's off time; pickup at or after every ready time of the
bundle; drop-offs in the bundle's sequence, a drop-off service apart; moves continuous (each
leaves where the last arrived, no earlier than it arrived); the courier at the restaurant at
pickup and at the diner at drop-off. Ours: known ids; the orders file agreeing with the
instance and with the assignments (same courier, same pickup, every assigned order delivered
and every delivered order assigned); a bundle from one restaurant; each courier's moves in one
block, the first from its on-location (``0``) no earlier than its on time; half the service
before and after each pickup and drop-off; a courier leaving for a pickup no earlier than the
assignment; the restaurant visited before the bundle's diners, in sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ontheway.dispatch.policies import minutes
from ontheway.mdrp.instance import Instance
from ontheway.mdrp.solution import ASSIGNMENTS, COURIERS, ON_LOCATION, ORDERS, Move, Solution


@dataclass(frozen=True)
class _Visit:
    place: str
    arrive_min: int
    leave_min: float  # infinity after the last move
    depart_to_min: int  # when the courier left for this place
    index: int


def check_solution(instance: Instance, solution: Solution) -> list[str]:
    """Every violation, as ``file:line: what``; an empty list means feasible."""
    problems: list[str] = []
    visits = _walk(instance, solution.moves, problems)
    _check_assignments(instance, solution, visits, problems)
    return problems


def _walk(instance: Instance, moves: list[Move], problems: list[str]) -> dict[str, list[_Visit]]:
    """Each courier's visits, checking blocks, continuity and times on the way."""
    travel = instance.params.travel()
    points = {**instance.restaurants, **{o.id: o.xy for o in instance.orders.values()}}
    visits: dict[str, list[_Visit]] = {}
    place, clock, last = "", 0, ""
    for move in moves:
        where = f"{COURIERS}:{move.line}"
        courier = instance.couriers.get(move.courier)
        if courier is None:
            problems.append(f"{where}: unknown courier {move.courier}")
            continue
        if move.courier != last:
            if move.courier in visits:
                problems.append(f"{where}: moves of {move.courier} are not in one block")
            visits.setdefault(move.courier, [])
            place, clock, last = ON_LOCATION, courier.on_min, move.courier
        if move.destination not in points:
            problems.append(f"{where}: unknown destination {move.destination}")
            continue
        if move.origin != place:
            problems.append(f"{where}: leaves {move.origin} but the courier is at {place}")
        if move.depart_min < clock:
            problems.append(f"{where}: leaves at {move.depart_min}, before arriving ({clock})")
        origin_xy = courier.xy if place == ON_LOCATION else points[place]
        arrive = move.depart_min + minutes(travel, origin_xy, points[move.destination])
        own = visits[move.courier]
        if own:
            own[-1] = _Visit(
                own[-1].place,
                own[-1].arrive_min,
                move.depart_min,
                own[-1].depart_to_min,
                own[-1].index,
            )
        own.append(_Visit(move.destination, arrive, math.inf, move.depart_min, len(own)))
        place, clock = move.destination, arrive
    return visits


def _check_assignments(
    instance: Instance, solution: Solution, visits: dict[str, list[_Visit]], problems: list[str]
) -> None:
    params = instance.params
    pickup_half = params.service().pickup_half
    dropoff_half = params.service().dropoff_half
    delivered = {}
    for line in solution.orders:
        where = f"{ORDERS}:{line.line}"
        order = instance.orders.get(line.order)
        if order is None:
            problems.append(f"{where}: unknown order {line.order}")
        elif line.order in delivered:
            problems.append(f"{where}: order {line.order} listed twice")
        elif (line.placed_min, line.ready_min) != (order.placed_min, order.ready_min):
            problems.append(f"{where}: placement or ready time differ from the instance")
        else:
            delivered[line.order] = line
    assigned: set[str] = set()
    for a in solution.assignments:
        where = f"{ASSIGNMENTS}:{a.line}"
        courier = instance.couriers.get(a.courier)
        orders = [instance.orders.get(o) for o in a.orders]
        if courier is None or any(o is None for o in orders):
            problems.append(f"{where}: unknown courier or order")
            continue
        bundle = [o for o in orders if o is not None]
        for order in bundle:
            if order.id in assigned:
                problems.append(f"{where}: order {order.id} is in more than one assignment")
            assigned.add(order.id)
            if a.assigned_min < order.placed_min:
                problems.append(
                    f"{where}: assigned at {a.assigned_min}, before {order.id} is placed"
                )
            if a.pickup_min < order.ready_min:
                problems.append(f"{where}: picked up at {a.pickup_min}, before {order.id} is ready")
        if a.pickup_min > courier.off_min:
            problems.append(f"{where}: picked up after {courier.id}'s off time {courier.off_min}")
        restaurants = {o.restaurant for o in bundle}
        if len(restaurants) != 1:
            problems.append(f"{where}: a bundle from {len(restaurants)} restaurants")
            continue
        own = visits.get(courier.id, [])
        stop = next(
            (
                v
                for v in own
                if v.place == bundle[0].restaurant
                and v.arrive_min + pickup_half <= a.pickup_min
                and a.pickup_min + pickup_half <= v.leave_min
            ),
            None,
        )
        if stop is None:
            problems.append(f"{where}: {courier.id} is not at {bundle[0].restaurant} for pickup")
            continue
        if stop.depart_to_min < a.assigned_min:
            problems.append(f"{where}: {courier.id} leaves for it before the assignment")
        last_index, last_drop = stop.index, -math.inf
        for order in bundle:
            row = delivered.get(order.id)
            if row is None:
                problems.append(f"{where}: order {order.id} is assigned but not delivered")
                continue
            there = f"{ORDERS}:{row.line}"
            if row.courier != courier.id or row.pickup_min != a.pickup_min:
                problems.append(f"{there}: courier or pickup time differ from its assignment")
            if row.dropoff_min < last_drop + params.dropoff_service_min:
                problems.append(f"{there}: drop-off out of the bundle's sequence")
            stop_o = next((v for v in own if v.place == order.id and v.index > last_index), None)
            if stop_o is None or not (
                stop_o.arrive_min + dropoff_half <= row.dropoff_min
                and row.dropoff_min + dropoff_half <= stop_o.leave_min
            ):
                problems.append(f"{there}: {courier.id} is not at {order.id}'s diner at drop-off")
            else:
                last_index = stop_o.index
            last_drop = row.dropoff_min
    for order_id, line in delivered.items():
        if order_id not in assigned:
            problems.append(f"{ORDERS}:{line.line}: order {order_id} delivered but not assigned")
