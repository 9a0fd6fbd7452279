"""The figures of a simulation run's report, from plain rows. Pure: no I/O.

Each order comes as its row (``ORDER_SELECT``) and its events (oldest first). Durations are
of two kinds: system latencies (placement to assignment, offer to acceptance) stay in wall
milliseconds; durations the simulated city lives through (click to door, waiting at the
restaurant, the ETA's error) are wall seconds times the run's speed, in simulated minutes.
The server's promise at placement is on the wall clock too (the backend runs with
``ONTHEWAY_TIME_SCALE`` = the speed): it is scaled like the rest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ontheway.orders.audit import STATE_FIELDS, rebuild
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import order_view

Interval = tuple[datetime, datetime]


@dataclass
class OrderFacts:
    """One order of the run: its region (from its id), row (None if missing) and events."""

    order_id: str
    region: str
    row: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between the closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """Count, mean, p50, p90 and p99 of ``values`` (None for an empty list)."""
    return {
        "n": len(values),
        "mean": sum(values) / len(values) if values else None,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
    }


def _first(events: Iterable[dict[str, Any]], kind: EventType) -> datetime | None:
    return next((e["ts"] for e in events if e["event_type"] == kind.value), None)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else (end - start).total_seconds()


def status_counts(orders: Sequence[OrderFacts]) -> dict[str, int]:
    """Orders placed, delivered, cancelled, still open, and missing from their shard."""
    statuses = Counter(o.row["status"] for o in orders if o.row is not None)
    found = sum(statuses.values())
    return {
        "placed": len(orders),
        "delivered": statuses["delivered"],
        "cancelled": statuses["cancelled"],
        "open": found - statuses["delivered"] - statuses["cancelled"],
        "missing": len(orders) - found,
    }


def _between(o: OrderFacts, first: EventType, then: EventType) -> float | None:
    """Wall seconds from the first ``first`` event to the first ``then`` (None if absent)."""
    return _seconds(_first(o.events, first), _first(o.events, then))


def click_to_door_min(orders: Sequence[OrderFacts], speed: float) -> list[float]:
    """Placement to delivery of each delivered order, in simulated minutes."""
    walls = (_between(o, EventType.ORDER_PLACED, EventType.ORDER_DELIVERED) for o in orders)
    return [w * speed / 60 for w in walls if w is not None]


def assignment_latency_ms(orders: Sequence[OrderFacts]) -> list[float]:
    """ORDER_PLACED to the first DRIVER_ASSIGNED, in wall milliseconds (system latency)."""
    walls = (_between(o, EventType.ORDER_PLACED, EventType.DRIVER_ASSIGNED) for o in orders)
    return [w * 1000 for w in walls if w is not None]


def offer_to_accept_ms(orders: Sequence[OrderFacts]) -> list[float]:
    """Each DRIVER_ASSIGNED after an offer to the same driver: the offer's age, wall ms."""
    out = []
    for o in orders:
        offered: dict[str, datetime] = {}
        for e in o.events:
            if e["event_type"] == EventType.DRIVER_OFFERED.value:
                offered[str(e["data"].get("driver_id"))] = e["ts"]
            elif e["event_type"] == EventType.DRIVER_ASSIGNED.value:
                driver = str(e["data"].get("changes", {}).get("assigned_driver_id"))
                if driver in offered:
                    out.append((e["ts"] - offered.pop(driver)).total_seconds() * 1000)
    return out


def ready_to_pickup_min(orders: Sequence[OrderFacts], speed: float) -> list[float]:
    """ORDER_READY to ORDER_PICKED_UP, in simulated minutes (negative: picked up early)."""
    walls = (_between(o, EventType.ORDER_READY, EventType.ORDER_PICKED_UP) for o in orders)
    return [w * speed / 60 for w in walls if w is not None]


def eta_error_min(orders: Sequence[OrderFacts], speed: float) -> list[float]:
    """Actual minus promised delivery time, both from placement, in simulated minutes
    (positive: late). The promise is ORDER_PLACED's ``estimated_delivery``; both are wall
    times, times ``speed``."""
    out = []
    for o in orders:
        placed = next((e for e in o.events if e["event_type"] == EventType.ORDER_PLACED), None)
        delivered = _first(o.events, EventType.ORDER_DELIVERED)
        if placed is None or delivered is None:
            continue
        snapshot = placed["data"].get("order", {})
        promised = _time(snapshot.get("estimated_delivery"))
        created = _time(snapshot.get("created_at")) or placed["ts"]
        if promised is None:
            continue
        actual_s = (delivered - placed["ts"]).total_seconds() * speed
        promised_s = (promised - created).total_seconds() * speed
        out.append((actual_s - promised_s) / 60)
    return out


def eta_in_window(orders: Sequence[OrderFacts]) -> list[float]:
    """Per delivered order whose promise came with a window (ORDER_PLACED's ``eta``): 1.0 when
    it was delivered between the window's ``earliest`` and ``latest``, else 0.0."""
    out = []
    for o in orders:
        placed = next((e for e in o.events if e["event_type"] == EventType.ORDER_PLACED), None)
        delivered = _first(o.events, EventType.ORDER_DELIVERED)
        window = (placed["data"].get("eta") or {}) if placed is not None else {}
        earliest, latest = _time(window.get("earliest")), _time(window.get("latest"))
        if delivered is None or earliest is None or latest is None:
            continue
        out.append(1.0 if earliest <= delivered <= latest else 0.0)
    return out


def carrying_intervals(orders: Sequence[OrderFacts], end: datetime) -> dict[str, list[Interval]]:
    """Per driver, when it held an order: from DRIVER_ASSIGNED to delivery, cancellation or
    DRIVER_UNAVAILABLE (or ``end`` when still held)."""
    out: dict[str, list[Interval]] = {}
    closing = {EventType.ORDER_DELIVERED, EventType.ORDER_CANCELLED, EventType.DRIVER_UNAVAILABLE}
    for o in orders:
        holder: tuple[str, datetime] | None = None
        for e in o.events:
            kind = e["event_type"]
            if kind == EventType.DRIVER_ASSIGNED.value:
                holder = (str(e["data"].get("changes", {}).get("assigned_driver_id")), e["ts"])
            elif holder is not None and kind in closing:
                out.setdefault(holder[0], []).append((holder[1], e["ts"]))
                holder = None
        if holder is not None and holder[1] < end:
            out.setdefault(holder[0], []).append((holder[1], end))
    return out


def busy_share(intervals: Sequence[Interval], start: datetime, end: datetime) -> float:
    """The share of [start, end] covered by at least one of ``intervals`` (0 when empty)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return 0.0
    covered, reach = 0.0, start
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, end)
        if b > a:
            covered += (b - a).total_seconds()
            reach = b
    return covered / span


def utilisation(
    orders: Sequence[OrderFacts], drivers: Iterable[str], start: datetime, end: datetime
) -> dict[str, float]:
    """Each driver's share of the run (its time on duty) spent carrying at least one order."""
    held = carrying_intervals(orders, end)
    return {d: busy_share(held.get(d, []), start, end) for d in sorted(set(drivers))}


def event_counts(orders: Sequence[OrderFacts]) -> dict[str, int]:
    """How many events of each type the run's orders have."""
    return dict(sorted(Counter(e["event_type"] for o in orders for e in o.events).items()))


def audit(orders: Sequence[OrderFacts]) -> dict[str, Any]:
    """Whether each order's events rebuild its row: counts and the failures (with fields)."""
    failures = []
    for o in orders:
        if o.row is None:
            continue
        view = order_view(o.row)
        try:
            rebuilt = rebuild(o.events)
        except ValueError as exc:  # an illegal move or an event before placing
            failures.append({"order_id": o.order_id, "problem": str(exc)})
            continue
        wrong = [k for k in STATE_FIELDS if rebuilt is None or rebuilt.get(k) != view[k]]
        if wrong:
            failures.append({"order_id": o.order_id, "problem": "differs in " + ", ".join(wrong)})
    checked = sum(o.row is not None for o in orders)
    return {"checked": checked, "passed": checked - len(failures), "failures": failures}


def hourly(
    orders: Sequence[OrderFacts], sim_start: datetime, wall_start: datetime, speed: float
) -> list[dict[str, Any]]:
    """Orders placed and delivered per simulated hour (labelled by the hour's local start)."""
    buckets: dict[int, Counter[str]] = {}
    base = sim_start.replace(minute=0, second=0, microsecond=0)
    for o in orders:
        for kind, name in (
            (EventType.ORDER_PLACED, "placed"),
            (EventType.ORDER_DELIVERED, "delivered"),
        ):
            ts = _first(o.events, kind)
            if ts is not None:
                sim_s = (sim_start - base).total_seconds() + (
                    ts - wall_start
                ).total_seconds() * speed
                buckets.setdefault(int(sim_s // 3600), Counter())[name] += 1
    return [
        {
            "hour": f"{(base.hour + h) % 24:02d}:00",
            "placed": c["placed"],
            "delivered": c["delivered"],
        }
        for h, c in sorted(buckets.items())
    ]


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
