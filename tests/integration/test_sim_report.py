"""The run report read back from the real shards and Redis: a small run made through the
order service, its consumers' marks from a real relay and worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.events.consumers import PAYMENTS
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.events.relay import relay_batch, start_at_end
from ontheway.events.worker import run_worker
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from ontheway.regions import Catalog
from ontheway.sim.record import RunRecord
from ontheway.sim.report import build_report, write_report
from ontheway.sim.summary import Report
from tests.helpers import order_for


@pytest.fixture
async def bus(conns: Connections) -> AsyncIterator[RedisStreamsBus]:
    """A stream of its own, fed by a relay cursor of its own that starts now."""
    name = uuid.uuid4().hex[:10]
    made = RedisStreamsBus(
        conns.require_redis(),
        stream=f"test:report:{name}",
        dead_stream=f"test:reportdead:{name}",
        max_attempts=3,
        claim_idle_s=0.2,
    )
    await start_at_end(conns, "americas", f"test-report-{name}")
    made.cursor = f"test-report-{name}"  # type: ignore[attr-defined]
    yield made
    await conns.require_redis().delete(made.stream, made.dead_stream)


async def small_run(orders: OrderService, sf: dict[str, Any], uid: str) -> RunRecord:
    """Four orders: one delivered, one cancelled, one assigned and one waiting."""
    record = RunRecord(
        f"test{uid}",
        1,
        ["sf"],
        30.0,
        datetime(2026, 1, 5, 11, 0),
        datetime.now(UTC),
        drivers={d["driver_id"]: "sf" for d in sf["drivers"]},
        restaurants={r["restaurant_id"]: "sf" for r in sf["restaurants"]},
    )
    for i in range(4):
        order, _ = await orders.place(f"user_{uid}_{i}", order_for(sf["restaurants"][i]))
        record.orders.append(str(order["order_id"]))
    done, cancelled, assigned, _ = record.orders
    driver, other = sf["drivers"][0]["driver_id"], sf["drivers"][1]["driver_id"]
    await orders.transition(done, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    await orders.transition(done, EventType.DRIVER_ARRIVED_RESTAURANT, driver)
    await orders.note(done, EventType.ORDER_READY, "kitchen", {})
    for step in (EventType.ORDER_PICKED_UP, EventType.ORDER_DELIVERED):
        await orders.transition(done, step, driver)
    await orders.transition(cancelled, EventType.ORDER_CANCELLED, f"user_{uid}_1")
    await orders.transition(assigned, EventType.DRIVER_ASSIGNED, "ops", driver_id=other)
    record.wall_end = datetime.now(UTC)
    return record


async def report_once_handled(
    conns: Connections, catalog: Catalog, bus: RedisStreamsBus, record: RunRecord, name: str
) -> Report:
    """Relay the shard, run a payments worker of our own until it has marked every event of
    the run that it has a handler for (or 30 s pass), and build the report (events it has no
    handler for are acknowledged without a mark)."""
    consumer = replace(PAYMENTS, name=name)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(conns, bus, consumer, stop=stop, poll_s=0.1))
    deadline = time.monotonic() + 30
    try:
        while True:
            while await relay_batch(conns, "americas", bus, bus.cursor) > 0:  # type: ignore[attr-defined]
                pass
            report = await build_report(conns, catalog, record)
            counts = report.figures["events"]
            events = sum(counts.get(kind, 0) for kind in consumer.handlers)
            if events and report.consumers.get(name, {}).get("handled") == events:
                return report
            assert time.monotonic() < deadline, f"{name} handled {report.consumers.get(name)}"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await worker


async def test_the_report_of_a_small_run_counts_checks_and_plots_it(
    conns: Connections,
    catalog: Catalog,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    bus: RedisStreamsBus,
    tmp_path: Path,
) -> None:
    record = await small_run(orders, sf, uid)
    report = await report_once_handled(conns, catalog, bus, record, f"payments_{uid}")
    fig = report.figures
    assert fig["orders"] == {"placed": 4, "delivered": 1, "cancelled": 1, "open": 2, "missing": 0}
    assert fig["click_to_door_min"]["n"] == 1 and fig["click_to_door_min"]["mean"] > 0
    assert fig["assignment_latency_ms"]["n"] == 2
    assert fig["ready_to_pickup_min"]["n"] == 1
    assert fig["eta_error_min"]["n"] == 1
    assert fig["drivers"] == len(sf["drivers"])
    assert fig["events"]["ORDER_PLACED"] == 4 and fig["events"]["ORDER_DELIVERED"] == 1
    assert report.payouts["orders"] == 1
    assert report.consumers[f"payments_{uid}"]["failed"] == 0
    assert report.audit == {"checked": 4, "passed": 4, "failures": []}
    assert report.mixing == {"checked": 4, "problems": []}
    text_path, html_path = write_report(report, tmp_path)
    assert "4 placed, 1 delivered, 1 cancelled, 2 still open" in text_path.read_text()
    assert "4 of 4 orders rebuild" in text_path.read_text()
    assert html_path.read_text().count('src="data:image/png;base64,') == 5
    assert (tmp_path / "report.json").exists()


async def test_a_driver_or_restaurant_of_another_region_is_reported_as_mixed_per_region(
    conns: Connections, catalog: Catalog, orders: OrderService, sf: dict[str, Any], uid: str
) -> None:
    record = await small_run(orders, sf, uid)
    record.drivers[sf["drivers"][1]["driver_id"]] = "nyc"
    record.restaurants[sf["restaurants"][0]["restaurant_id"]] = "la"
    record.orders.append("ord_sf_00000000000000000z")  # never placed
    record.regions = ["sf", "monaco"]
    report = await build_report(conns, catalog, record)
    problems = {(p["order_id"], p["problem"]) for p in report.mixing["problems"]}
    assert problems == {
        (record.orders[2], f"driver {sf['drivers'][1]['driver_id']} is in nyc (run)"),
        (record.orders[0], f"restaurant {sf['restaurants'][0]['restaurant_id']} is in la (run)"),
        ("ord_sf_00000000000000000z", "not on the shard of its region sf"),
    }
    assert report.figures["orders"]["missing"] == 1
    assert report.audit["passed"] == 4
    assert sorted(report.per_region) == ["monaco", "sf"]
    assert report.per_region["sf"]["orders"]["placed"] == 5
    assert report.per_region["monaco"]["orders"]["placed"] == 0
