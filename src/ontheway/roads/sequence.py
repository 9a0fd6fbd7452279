"""The order of a driver's stops: pickups before their own drop-offs, fastest first. Pure.

Input is a travel-time matrix in seconds (from ``RoadService.many_to_many``): row and column 0
are the driver's position, 1..n the stops; ``None`` where no road joins two points. A drop-off
whose pickup is not among the stops is an order already on board. Each stop may add a service
time (parking, handing over) before the driver leaves it.

Two objectives: ``finish`` (the time the last stop is done: the driver is free soonest) and
``deliveries`` (the sum of the drop-offs' arrival times: customers wait least in all). Up to
``EXACT_MAX`` stops the answer is exact, by dynamic programming over subsets of visited stops
(Held-Karp with the precedence rule: 2^n x n states, about 3,000 for 8 stops); beyond, a
heuristic: cheapest feasible insertion, then moving single stops while that helps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ontheway.errors import InvalidInput
from ontheway.roads.errors import Unreachable

EXACT_MAX = 8
Objective = Literal["finish", "deliveries"]


@dataclass(frozen=True)
class Stop:
    """A pickup or a drop-off of one order."""

    order_id: str
    kind: Literal["pickup", "dropoff"]
    service_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """Stops in visiting order (indices into the input) and the arrival time at each, in
    seconds from now; ``finish_s`` when the last stop is done."""

    order: list[int]
    arrival_s: list[float]
    finish_s: float
    exact: bool


def check_stops(stops: Sequence[Stop]) -> None:
    """Refuse an order with two pickups or two drop-offs, or a pickup without its drop-off
    (``InvalidInput`` naming the stop)."""
    seen: set[tuple[str, str]] = set()
    for i, stop in enumerate(stops):
        if (stop.order_id, stop.kind) in seen:
            raise InvalidInput(
                f"order {stop.order_id!r} has two {stop.kind}s", field=f"stops.{i}.kind"
            )
        seen.add((stop.order_id, stop.kind))
    for i, stop in enumerate(stops):
        if stop.kind == "pickup" and (stop.order_id, "dropoff") not in seen:
            raise InvalidInput(
                f"order {stop.order_id!r} is picked up but never dropped off",
                field=f"stops.{i}.order_id",
            )


def _pickup_of(stops: Sequence[Stop]) -> list[int | None]:
    """For each stop, the index of the pickup that must come before it (None if none)."""
    pickups = {s.order_id: i for i, s in enumerate(stops) if s.kind == "pickup"}
    return [pickups.get(s.order_id) if s.kind == "dropoff" else None for s in stops]


def _leg(matrix: Sequence[Sequence[float | None]], a: int, b: int) -> float:
    value = matrix[a][b]
    return math.inf if value is None else float(value)


def evaluate(
    matrix: Sequence[Sequence[float | None]], stops: Sequence[Stop], order: Sequence[int]
) -> tuple[list[float], float]:
    """Arrival times along ``order`` and the finish time (inf when a leg has no road)."""
    now, at, arrivals = 0.0, 0, []
    for i in order:
        now += _leg(matrix, at, i + 1)
        arrivals.append(now)
        now += stops[i].service_s
        at = i + 1
    return arrivals, now


def cost(
    matrix: Sequence[Sequence[float | None]],
    stops: Sequence[Stop],
    order: Sequence[int],
    objective: Objective,
) -> float:
    """The objective's value for a visiting order."""
    arrivals, finish = evaluate(matrix, stops, order)
    if objective == "finish":
        return finish
    return sum(t for t, i in zip(arrivals, order, strict=True) if stops[i].kind == "dropoff")


def feasible(stops: Sequence[Stop], order: Sequence[int]) -> bool:
    """Whether every drop-off comes after its own pickup."""
    before = _pickup_of(stops)
    seen: set[int] = set()
    for i in order:
        p = before[i]
        if p is not None and p not in seen:
            return False
        seen.add(i)
    return True


def plan_stops(
    matrix: Sequence[Sequence[float | None]],
    stops: Sequence[Stop],
    objective: Objective = "finish",
) -> Plan:
    """The best visiting order of ``stops`` (see the module docstring); ``Unreachable`` when
    no order reaches them all."""
    if not stops:
        return Plan([], [], 0.0, exact=True)
    check_stops(stops)
    if len(matrix) != len(stops) + 1 or any(len(row) != len(stops) + 1 for row in matrix):
        raise ValueError("the matrix must be (stops + 1) x (stops + 1), the driver first")
    exact = len(stops) <= EXACT_MAX
    order = _exact(matrix, stops, objective) if exact else _heuristic(matrix, stops, objective)
    arrivals, finish = evaluate(matrix, stops, order)
    if not math.isfinite(finish):
        raise Unreachable("no road joins some of the stops", field="stops")
    return Plan(order, arrivals, finish, exact)


def _exact(
    matrix: Sequence[Sequence[float | None]], stops: Sequence[Stop], objective: Objective
) -> list[int]:
    n = len(stops)
    before = _pickup_of(stops)
    drops = [s.kind == "dropoff" for s in stops]
    need = [0 if p is None else 1 << p for p in before]
    full = (1 << n) - 1
    # best[mask][last]: the least cost of visiting ``mask`` ending at ``last``. With the
    # "deliveries" objective a leg (and the service before it) is paid once for every drop-off
    # still ahead, since each of them arrives that much later.
    best = [[math.inf] * n for _ in range(1 << n)]
    prev = [[-1] * n for _ in range(1 << n)]

    def weight(mask: int, leg: float) -> float:
        if objective == "finish":
            return leg
        ahead = sum(1 for j in range(n) if drops[j] and not mask >> j & 1)
        return leg * ahead

    for j in range(n):
        if need[j] == 0:
            best[1 << j][j] = weight(0, _leg(matrix, 0, j + 1))
    for mask in range(1, full + 1):
        for last in range(n):
            here = best[mask][last]
            if here == math.inf or not mask >> last & 1:
                continue
            for j in range(n):
                if mask >> j & 1 or need[j] & ~mask:
                    continue
                step = stops[last].service_s + _leg(matrix, last + 1, j + 1)
                value = here + weight(mask, step)
                nxt = mask | 1 << j
                if value < best[nxt][j]:
                    best[nxt][j], prev[nxt][j] = value, last
    # With "finish", the last stop's own service time counts too.
    tail = [stops[j].service_s if objective == "finish" else 0.0 for j in range(n)]
    last = min(range(n), key=lambda j: best[full][j] + tail[j])
    if best[full][last] == math.inf:
        raise Unreachable("no road joins some of the stops", field="stops")
    order, mask = [], full
    while last != -1:
        order.append(last)
        last, mask = prev[mask][last], mask & ~(1 << last)
    return order[::-1]


def _heuristic(
    matrix: Sequence[Sequence[float | None]], stops: Sequence[Stop], objective: Objective
) -> list[int]:
    before = _pickup_of(stops)
    # Pickups first in the list, so that every drop-off finds its pickup already placed.
    pending = sorted(range(len(stops)), key=lambda i: before[i] is not None)
    order: list[int] = []
    for i in pending:
        order = _cheapest_insertion(matrix, stops, order, i, objective)
    improved = True
    while improved:
        improved = False
        current = cost(matrix, stops, order, objective)
        for i in list(order):
            rest = [j for j in order if j != i]
            candidate = _cheapest_insertion(matrix, stops, rest, i, objective)
            if cost(matrix, stops, candidate, objective) < current - 1e-9:
                order, improved = candidate, True
                break
    return order


def _cheapest_insertion(
    matrix: Sequence[Sequence[float | None]],
    stops: Sequence[Stop],
    order: list[int],
    stop: int,
    objective: Objective,
) -> list[int]:
    options = ([*order[:k], stop, *order[k:]] for k in range(len(order) + 1))
    valid = [o for o in options if feasible(stops, o)] or [[*order, stop]]
    return min(valid, key=lambda o: cost(matrix, stops, o, objective))
