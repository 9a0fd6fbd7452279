"""The report's figures on hand-made orders: no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ontheway.cli import app
from ontheway.orders.models import order_view
from ontheway.sim import figures as f
from ontheway.sim.record import RunRecord
from ontheway.sim.report import write_report
from ontheway.sim.summary import Report, group_figures, mixing_problems, render_text

T0 = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def row(order_id: str = "ord_sf_0000000000", **over: Any) -> dict[str, Any]:
    base = {
        "order_id": order_id, "region": "sf", "customer_id": "user_1",
        "restaurant_id": "rest_sf_0000000000", "driver_id": None, "items": [],
        "subtotal": Decimal("10.00"), "delivery_fee": Decimal("2.00"), "tip": Decimal(0),
        "total": Decimal("12.00"),
        "status": "searching_driver", "delivery_address": "", "customer_lat": 37.7,
        "customer_lng": -122.4, "restaurant_lat": 37.71, "restaurant_lng": -122.41,
        "created_at": T0, "estimated_delivery": at(30), "pickup_time": None,
        "delivered_at": None, "distance_m": 1000.0, "payment_status": "authorized",
    }  # fmt: skip
    return {**base, **over}


def ev(kind: str, seconds: float, **data: Any) -> dict[str, Any]:
    return {"event_type": kind, "ts": at(seconds), "data": data}


def placed(order_id: str = "ord_sf_0000000000") -> dict[str, Any]:
    return ev("ORDER_PLACED", 0, order=order_view(row(order_id)))


def assigned(seconds: float, driver: str) -> dict[str, Any]:
    return ev("DRIVER_ASSIGNED", seconds, changes={"assigned_driver_id": driver})


def delivered_order(driver: str = "drv_1", wall_s: float = 60) -> f.OrderFacts:
    """Placed at 0, offered at 1, assigned at 1.5, ready at 20, picked up at 30."""
    events = [
        placed(),
        ev("DRIVER_OFFERED", 1, driver_id=driver),
        assigned(1.5, driver),
        ev("DRIVER_ARRIVED_RESTAURANT", 10, changes={}),
        ev("ORDER_READY", 20),
        ev("ORDER_PICKED_UP", 30, changes={"pickup_time": at(30).isoformat()}),
        ev("ORDER_DELIVERED", wall_s, changes={}),
    ]
    return f.OrderFacts("ord_sf_0000000000", "sf", row(status="delivered"), events)


def test_percentiles_interpolate_between_ranks_and_are_none_when_empty() -> None:
    assert f.percentile([4, 1, 3, 2], 50) == 2.5
    assert f.percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    assert f.percentile([7], 99) == 7
    assert f.percentile([], 50) is None
    assert f.stats([])["mean"] is None


def test_simulated_durations_are_scaled_and_system_latencies_are_not() -> None:
    order = delivered_order(wall_s=60)
    assert f.click_to_door_min([order], speed=30) == [pytest.approx(30.0)]
    assert f.ready_to_pickup_min([order], speed=30) == [pytest.approx(5.0)]
    assert f.assignment_latency_ms([order]) == [pytest.approx(1500.0)]
    assert f.offer_to_accept_ms([order]) == [pytest.approx(500.0)]


def test_eta_error_scales_the_promise_and_the_actual_alike() -> None:
    # Promised 30 wall s (30 sim min at x60) after placement; delivered after 40 wall s at x60
    # = 40 sim min.
    late = delivered_order(wall_s=40)
    assert f.eta_error_min([late], speed=60) == [pytest.approx(10.0)]
    # Delivered after 20 wall s at x60 = 20 sim min: 10 min early.
    early = delivered_order(wall_s=20)
    assert f.eta_error_min([early], speed=60) == [pytest.approx(-10.0)]


def test_the_window_holds_a_delivery_between_its_earliest_and_latest_edges() -> None:
    def order(wall_s: float, window: dict[str, str] | None) -> f.OrderFacts:
        first = ev("ORDER_PLACED", 0, order=order_view(row()), eta=window)
        return f.OrderFacts("a", "sf", None, [first, ev("ORDER_DELIVERED", wall_s)])

    window = {"earliest": at(25).isoformat(), "latest": at(35).isoformat()}
    inside, late, early = order(30, window), order(36, window), order(24, window)
    assert f.eta_in_window([inside, late, early, order(30, None)]) == [1.0, 0.0, 0.0]


def test_a_driver_carrying_two_orders_at_once_counts_the_overlap_once() -> None:
    one = f.OrderFacts("a", "sf", None, [placed(), assigned(0, "d"), ev("ORDER_DELIVERED", 10)])
    two = f.OrderFacts("b", "sf", None, [placed(), assigned(5, "d"), ev("ORDER_DELIVERED", 15)])
    shares = f.utilisation([one, two], ["d", "idle"], at(0), at(20))
    assert shares == {"d": pytest.approx(0.75), "idle": 0.0}


def test_a_driver_lost_before_pickup_stops_carrying_and_an_open_order_runs_to_the_end() -> None:
    events = [placed(), assigned(0, "d"), ev("DRIVER_UNAVAILABLE", 4), assigned(6, "e")]
    lost = f.OrderFacts("a", "sf", None, events)
    held = f.carrying_intervals([lost], at(10))
    assert held == {"d": [(at(0), at(4))], "e": [(at(6), at(10))]}
    assert f.busy_share(held["e"], at(0), at(20)) == pytest.approx(0.2)


def test_an_empty_run_gives_empty_figures_a_text_and_plots(tmp_path: Path) -> None:
    figures, series = group_figures([], [], (at(0), at(60)), 30)
    assert figures["orders"] == {
        "placed": 0,
        "delivered": 0,
        "cancelled": 0,
        "open": 0,
        "missing": 0,
    }
    assert figures["click_to_door_min"]["n"] == 0
    report = Report(
        "r1",
        30,
        ["sf"],
        figures,
        {},
        {},
        {"orders": 0, "total": "0"},
        f.audit([]),
        {"checked": 0, "problems": []},
        [],
        series,
    )
    assert "0 placed" in render_text(report)
    text_path, html_path = write_report(report, tmp_path)
    assert text_path.read_text() == render_text(report)
    assert html_path.read_text().count("data:image/png;base64,") == 5
    assert (tmp_path / "report.json").exists()


def test_the_audit_names_an_order_whose_row_differs_from_its_events() -> None:
    good = delivered_order()
    good.row = row(status="delivered", driver_id="drv_1", pickup_time=at(30), delivered_at=at(60))
    good.events[-1]["data"]["changes"] = {"delivered_at": at(60).isoformat().replace("+00:00", "Z")}
    good.events[-2]["data"]["changes"]["pickup_time"] = at(30).isoformat().replace("+00:00", "Z")
    bad = f.OrderFacts(
        "ord_sf_1111111111",
        "sf",
        row("ord_sf_1111111111", status="cancelled"),
        [placed("ord_sf_1111111111")],
    )
    result = f.audit([good, bad])
    assert result["checked"] == 2 and result["passed"] == 1
    assert result["failures"] == [{"order_id": "ord_sf_1111111111", "problem": "differs in status"}]


def test_a_driver_or_copy_of_another_region_is_reported_as_mixed() -> None:
    record = RunRecord("r1", 1, ["sf", "monaco"], 30, T0, T0, drivers={"drv_1": "monaco"})
    order = delivered_order("drv_1")
    missing = f.OrderFacts("ord_sf_2222222222", "sf", None)
    problems = mixing_problems(
        [order, missing], record, {}, {"drv_1": "sf"}, {"ord_sf_0000000000": ["europe"]}
    )
    assert {p["problem"] for p in problems} == {
        "driver drv_1 is in monaco (run)",
        "also on shard europe",
        "not on the shard of its region sf",
    }
    record.drivers["drv_1"] = "sf"
    assert mixing_problems([order], record, {"drv_1": "sf"}, {"drv_1": "sf"}, {}) == []


def test_orders_are_counted_per_simulated_hour_from_the_simulated_start() -> None:
    sim_start = datetime(2026, 1, 5, 11, 30)
    order = delivered_order(wall_s=90)  # placed at 11:30, delivered 45 sim min later
    rows = f.hourly([order], sim_start, T0, speed=30)
    assert rows == [
        {"hour": "11:00", "placed": 1, "delivered": 0},
        {"hour": "12:00", "placed": 0, "delivered": 1},
    ]


def test_the_sim_report_command_refuses_a_missing_or_invalid_run_record(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["sim", "report", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no run record" in " ".join(missing.output.split())
    (tmp_path / "run.json").write_text('{"run_id": "r1"}')
    invalid = runner.invoke(app, ["sim", "report", str(tmp_path)])
    assert invalid.exit_code == 2
    assert "is not a run record" in " ".join(invalid.output.split())  # rich wraps long paths
