"""A run's figures gathered into one report, its "data never mixes" check and its text.
Pure: no I/O (the reads are in ``ontheway.sim.report``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ontheway.errors import NotFound
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType
from ontheway.sim import figures as f
from ontheway.sim.record import RunRecord


@dataclass
class Report:
    """Everything the report shows: figures overall and per region, checks, plot data."""

    run_id: str
    speed: float
    regions: list[str]
    figures: dict[str, Any]
    per_region: dict[str, dict[str, Any]]
    consumers: dict[str, dict[str, int]]
    payouts: dict[str, Any]
    audit: dict[str, Any]
    mixing: dict[str, Any]
    hourly: list[dict[str, Any]]
    series: dict[str, list[float]] = field(default_factory=dict)
    simulator: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (without the raw series of the plots)."""
        return {k: v for k, v in self.__dict__.items() if k != "series"}


def group_figures(
    orders: Sequence[f.OrderFacts],
    drivers: Sequence[str],
    duty: tuple[datetime, datetime],
    speed: float,
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The figures of a group of orders (a region or the whole run) and the series behind
    the plots; ``duty`` is the drivers' time on duty (wall)."""
    events = f.event_counts(orders)
    eta = f.eta_error_min(orders, speed)
    busy = f.utilisation(orders, drivers, *duty)
    series = {
        "click_to_door_min": f.click_to_door_min(orders, speed),
        "assignment_latency_ms": f.assignment_latency_ms(orders),
        "offer_to_accept_ms": f.offer_to_accept_ms(orders),
        "ready_to_pickup_min": f.ready_to_pickup_min(orders, speed),
        "utilisation": list(busy.values()),
        "eta_error_min": eta,
    }
    flagged = {
        o.order_id for o in orders for e in o.events if e["event_type"] == EventType.ORDER_FLAGGED
    }
    figures: dict[str, Any] = {
        "orders": f.status_counts(orders),
        **{name: f.stats(values) for name, values in series.items() if name != "eta_error_min"},
        "eta_error_min": f.stats(eta),
        "eta_abs_error_min": f.stats([abs(v) for v in eta]),
        "eta_in_window": f.stats(f.eta_in_window(orders)),
        "drivers": len(busy),
        "reassignments": events.get(EventType.DRIVER_UNAVAILABLE.value, 0),
        "offers": events.get(EventType.DRIVER_OFFERED.value, 0),
        "offers_declined": events.get(EventType.OFFER_DECLINED.value, 0),
        "offers_expired": events.get(EventType.OFFER_EXPIRED.value, 0),
        "orders_flagged": len(flagged),
        "no_driver_found": events.get(EventType.NO_DRIVER_FOUND.value, 0),
        "events": events,
    }
    return figures, series


def mixing_problems(
    orders: Sequence[f.OrderFacts],
    record: RunRecord,
    db_regions: dict[str, str],
    homes: dict[str, str],
    elsewhere: dict[str, list[str]],
) -> list[dict[str, str]]:
    """Every way the run's data crossed regions: an order missing from its region's shard or
    also on another, a row of another region, a restaurant or driver (offered or assigned)
    that the run, its shard or Redis places in another region."""
    problems: list[dict[str, str]] = []

    def flag(order_id: str, problem: str) -> None:
        problems.append({"order_id": order_id, "problem": problem})

    for o in orders:
        for shard in elsewhere.get(o.order_id, []):
            flag(o.order_id, f"also on shard {shard}")
        if o.row is None:
            flag(o.order_id, f"not on the shard of its region {o.region}")
            continue
        if o.row["region"] != o.region:
            flag(o.order_id, f"its row says region {o.row['region']}, its id {o.region}")
        rest = str(o.row["restaurant_id"])
        claims = {"run": record.restaurants.get(rest), "shard": db_regions.get(rest)}
        try:
            claims["id"] = region_of(rest, "rest")
        except NotFound:
            claims["id"] = None
        for source, region in claims.items():
            if region is not None and region != o.region:
                flag(o.order_id, f"restaurant {rest} is in {region} ({source})")
        for driver in sorted(_drivers(o)):
            sources = {"run": record.drivers, "shard": db_regions, "redis": homes}
            for source, known in sources.items():
                region = known.get(driver)
                if region is not None and region != o.region:
                    flag(o.order_id, f"driver {driver} is in {region} ({source})")
    return problems


def _drivers(o: f.OrderFacts) -> set[str]:
    """The drivers offered or assigned the order."""
    out = set()
    for e in o.events:
        if e["event_type"] == EventType.DRIVER_OFFERED.value and e["data"].get("driver_id"):
            out.add(str(e["data"]["driver_id"]))
        driver = e["data"].get("changes", {}).get("assigned_driver_id")
        if e["event_type"] == EventType.DRIVER_ASSIGNED.value and driver:
            out.add(str(driver))
    return out


def drivers_of(orders: Sequence[f.OrderFacts]) -> set[str]:
    """Every driver offered or assigned one of the orders."""
    return set().union(*(_drivers(o) for o in orders)) if orders else set()


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _line(name: str, s: dict[str, Any], unit: str, keys: Sequence[str], digits: int = 1) -> str:
    parts = ", ".join(f"{k} {_num(s[k], digits)}" for k in keys)
    return f"  {name}: {parts} {unit} (n={s['n']})"


def figures_text(fig: dict[str, Any]) -> list[str]:
    """The lines of one group's figures."""
    c = fig["orders"]
    return [
        f"  orders: {c['placed']} placed, {c['delivered']} delivered, {c['cancelled']} "
        f"cancelled, {c['open']} still open"
        + (f", {c['missing']} MISSING" if c["missing"] else ""),
        _line("click to door", fig["click_to_door_min"], "sim min", ("mean", "p90")),
        _line("assignment latency", fig["assignment_latency_ms"], "wall ms", ("p50", "p99")),
        _line("offer to accept", fig["offer_to_accept_ms"], "wall ms", ("p50", "p99")),
        _line("ready to pickup", fig["ready_to_pickup_min"], "sim min", ("mean", "p90")),
        _line("ETA error (late +)", fig["eta_error_min"], "sim min", ("mean", "p90")),
        _line("ETA abs error", fig["eta_abs_error_min"], "sim min", ("mean", "p90")),
        _line("ETA window held it", fig["eta_in_window"], "share", ("mean",), 2),
        _line("driver utilisation", fig["utilisation"], "share", ("mean", "p50", "p90"), 2),
        f"  reassignments {fig['reassignments']}, offers {fig['offers']} (declined "
        f"{fig['offers_declined']}, expired {fig['offers_expired']}), flagged orders "
        f"{fig['orders_flagged']}, no driver found {fig['no_driver_found']}",
    ]


def render_text(report: Report) -> str:
    """The report's text summary."""
    lines = [f"run {report.run_id} ({', '.join(report.regions)}, x{report.speed:g})"]
    lines += figures_text(report.figures)
    for region, fig in report.per_region.items():
        lines += [f"region {region}:", *figures_text(fig)]
    events = sum(report.figures["events"].values())
    lines.append(f"events of the run's orders: {events}; handled per consumer (of its kinds):")
    lines += [
        f"  {name}: {c['handled']}" + (f" ({c['failed']} failed)" if c["failed"] else "")
        for name, c in report.consumers.items()
    ]
    own = {k: v for k, v in report.simulator.items() if k not in ("speed", "fix_interval_s")}
    if own:
        lines.append("simulator's own counts: " + ", ".join(f"{k} {v}" for k, v in own.items()))
    lines.append(f"driver payouts: {report.payouts['orders']} orders, {report.payouts['total']}")
    a = report.audit
    lines.append(f"audit: {a['passed']} of {a['checked']} orders rebuild from their events")
    lines += [f"  FAILED {x['order_id']}: {x['problem']}" for x in a["failures"][:20]]
    m = report.mixing
    lines.append(
        f"regions: {m['checked']} orders checked, "
        + ("data never mixes" if not m["problems"] else f"{len(m['problems'])} MIXED")
    )
    lines += [f"  MIXED {x['order_id']}: {x['problem']}" for x in m["problems"][:20]]
    return "\n".join(lines) + "\n"
