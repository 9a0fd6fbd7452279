"""``ontheway simulate``: a short real run through the whole backend, and its bad input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.regions import load_catalog
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings
from ontheway.sim.command import MAP_FILES, regions_without_map
from ontheway.sim.plan import Behaviour
from ontheway.sim.record import RunRecord
from ontheway.sim.world import WorldSize, plan_world, routable_nodes

SEED = 7
ARGS = ("--region", "monaco", "--drivers", "12", "--orders-per-hour", "25", "--duration", "40m",
        "--speed", "100", "--start", "11:30", "--accept", "0.6", "--offline", "0.3",
        "--seed", str(SEED))  # fmt: skip


def run_cli(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ontheway", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250"},
    )


@pytest.fixture(scope="module")
def monaco_map(settings: Settings) -> None:
    """Monaco's road map (a region other tests seldom load, so no other dispatcher's
    drivers are nearby), imported when missing."""
    if asyncio.run(regions_without_map(settings, ["monaco"])):
        result = run_cli("roads", "import", "--region", "monaco", str(MAP_FILES["monaco"]))
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def run(monaco_map: None, tmp_path_factory: pytest.TempPathFactory) -> RunRecord:
    """One short run: 10 drivers in Monaco, 30 simulated minutes at x80."""
    out = tmp_path_factory.mktemp("sim")
    result = run_cli("simulate", *ARGS, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dashboard: http://127.0.0.1:" in result.stdout and "#token=" in result.stdout
    assert (out / "backend.log").exists()
    return RunRecord.load(out / "run.json")


async def _events(conns: Connections, orders: list[str]) -> list[dict[str, Any]]:
    async with conns.shard_connection("europe") as conn:
        cur = await conn.execute(
            "SELECT order_id, event_type, data, ts FROM order_events"
            " WHERE order_id = ANY(%s) ORDER BY ts, seq",
            (orders,),
        )
        rows: list[dict[str, Any]] = await cur.fetchall()
        return rows


async def test_orders_are_placed_and_delivered_through_the_api(
    run: RunRecord, conns: Connections
) -> None:
    events = await _events(conns, run.orders)
    kinds = Counter(e["event_type"] for e in events)
    assert run.orders and kinds["ORDER_PLACED"] == len(run.orders)
    assert kinds["ORDER_CONFIRMED"] >= 1 and kinds["ORDER_READY"] >= 1
    assert kinds["ORDER_DELIVERED"] >= 1
    # (Another backend on a shared stack may assign some directly, without an offer.)
    assert kinds["DRIVER_OFFERED"] >= 1
    assert kinds["DRIVER_ASSIGNED"] >= kinds["ORDER_PICKED_UP"] >= kinds["ORDER_DELIVERED"]


async def test_offers_are_declined_and_vanished_drivers_orders_reassigned(
    run: RunRecord, conns: Connections
) -> None:
    events = await _events(conns, run.orders)
    assert run.offers_declined >= 1
    assert any(e["event_type"] == "OFFER_DECLINED" for e in events)
    assert run.drivers_went_offline >= 1 and run.offline_mid_delivery >= 1
    vanished = {v["driver_id"] for v in run.vanished}
    lost = {e["order_id"]: e["ts"] for e in events if e["event_type"] == "DRIVER_UNAVAILABLE"
            and e["data"].get("driver_id") in vanished}  # fmt: skip
    reassigned = {
        e["order_id"]
        for e in events
        if e["event_type"] == "DRIVER_ASSIGNED" and e["order_id"] in lost
        and e["ts"] > lost[e["order_id"]]
    }  # fmt: skip
    assert reassigned, "no order of a vanished driver went to another driver"


async def test_no_order_is_left_searching_and_no_driver_on_the_map_after_the_run(
    run: RunRecord, conns: Connections
) -> None:
    async with conns.shard_connection("europe") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM orders WHERE order_id = ANY(%s)"
            " AND status IN ('searching_driver', 'searching_driver_again')",
            (run.orders,),
        )
        assert (await cur.fetchone())["n"] == 0
    on_map = await conns.require_redis().zmscore("drivers:heartbeats:{monaco}", list(run.drivers))
    assert on_map == [None] * len(run.drivers)


async def test_every_driver_and_restaurant_of_the_run_is_in_its_region(
    run: RunRecord, conns: Connections
) -> None:
    assert set(run.drivers.values()) == {"monaco"} and len(run.drivers) == 12
    assert set(run.restaurants.values()) == {"monaco"}
    async with conns.shard_connection("europe") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM drivers WHERE driver_id = ANY(%s) AND region = 'monaco'",
            (list(run.drivers),),
        )
        assert (await cur.fetchone())["n"] == 12


async def test_the_same_seed_generates_the_orders_that_were_placed(
    run: RunRecord, conns: Connections, settings: Settings
) -> None:
    roads = RoadService(conns.graphs, load_catalog(settings.region_catalog))
    lat, lng = await routable_nodes(roads, "monaco")
    size = WorldSize(12, 5, 36, 25, 11.5, 2400)
    planned = plan_world(SEED, "monaco", lat, lng, size, Behaviour(0.6, offline=0.3)).orders
    again = plan_world(SEED, "monaco", lat, lng, size, Behaviour()).orders
    assert planned == again and run.planned_orders == len(planned)
    async with conns.shard_connection("europe") as conn:
        cur = await conn.execute(
            "SELECT ST_Y(customer_location::geometry) AS lat,"
            " ST_X(customer_location::geometry) AS lng FROM orders WHERE order_id = ANY(%s)",
            (run.orders,),
        )
        placed = Counter((r["lat"], r["lng"]) for r in await cur.fetchall())
    # Every placed order is a planned one; only those in flight when the run ended are not.
    assert not placed - Counter(o.dropoff for o in planned)
    assert len(run.orders) + run.orders_refused >= len(planned) - 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--region", "atlantis"), "atlantis"),
        (("--drivers", "0"), "--drivers"),
        (("--orders-per-hour", "-5"), "--orders-per-hour"),
        (("--duration", "48h", "--speed", "1"), "wall"),
        (("--duration", "forever"), "forever"),
        (("--start", "25:00"), "25:00"),
        (("--api", "http://127.0.0.1:9"), "no API answers"),
        (("--drain", "soon"), "'soon' is not a duration"),
    ],
)
def test_bad_input_is_one_message_and_exit_code_2(
    settings: Settings, args: tuple[str, ...], needle: str
) -> None:
    base = {"--region": "sf", "--drivers": "5", "--orders-per-hour": "10"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = run_cli("simulate", *[part for pair in base.items() for part in pair], timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr


def test_a_region_without_a_map_names_the_import_command(settings: Settings) -> None:
    catalog = load_catalog(settings.region_catalog)
    candidates = [r.region for r in catalog if r.region not in MAP_FILES][:20]
    missing = asyncio.run(regions_without_map(settings, candidates))
    assert missing, "every region has a map"
    region = missing[0]
    result = run_cli("simulate", "--region", region, "--drivers", "5", "--orders-per-hour", "10")
    assert result.returncode == 2
    assert f"ontheway roads import --region {region}" in result.stderr


def test_two_regions_run_side_by_side_and_their_data_never_mixes(
    monaco_map: None, settings: Settings, tmp_path: Any
) -> None:
    if asyncio.run(regions_without_map(settings, ["sf"])):
        imported = run_cli("roads", "import", "--region", "sf", str(MAP_FILES["sf"]))
        assert imported.returncode == 0, imported.stderr
    result = run_cli(
        "simulate", "--region", "sf,monaco", "--drivers", "6", "--orders-per-hour", "40",
        "--duration", "15m", "--speed", "100", "--start", "12:00", "--seed", "3",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    record = RunRecord.load(tmp_path / "run.json")
    assert Counter(record.drivers.values()) == {"sf": 6, "monaco": 6}
    assert set(record.restaurants.values()) == {"sf", "monaco"}
    regions = Counter(order_id.split("_")[1] for order_id in record.orders)
    assert regions["sf"] > 0 and regions["monaco"] > 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["mixing"]["checked"] == len(record.orders) and report["mixing"]["problems"] == []
    assert set(report["per_region"]) == {"sf", "monaco"}
    assert report["audit"]["passed"] == report["audit"]["checked"] == len(record.orders)


def test_the_two_dispatch_policies_run_on_the_same_seed_and_are_compared(
    monaco_map: None, tmp_path: Any
) -> None:
    result = run_cli(
        "simulate", "--region", "monaco", "--drivers", "6", "--orders-per-hour", "30",
        "--duration", "20m", "--speed", "100", "--start", "12:00", "--seed", "11",
        "--policy", "greedy", "--policy", "batched", "--batch-window", "60", "--drain", "100m",
        "--out", str(tmp_path),
    timeout=420)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    greedy = RunRecord.load(tmp_path / "greedy" / "run.json")
    batched = RunRecord.load(tmp_path / "batched" / "run.json")
    assert greedy.backend_env["ONTHEWAY_DISPATCH_POLICY"] == "greedy"
    assert batched.backend_env["ONTHEWAY_DISPATCH_POLICY"] == "batched"
    # The same seed: the same city and demand, only the dispatcher differs.
    assert greedy.planned_orders == batched.planned_orders > 0
    assert greedy.run_id != batched.run_id
    # The drain served what was left (a batched dispatcher holds orders until their food is
    # nearly ready, so without it more of them would still be waiting at the end; a Grubhub
    # kitchen can take up to 90 minutes, so the drain outlasts the last order's by 100). An
    # order every one of the six drivers declined can stay searching: at most one or two.
    assert batched.cancelled_at_end + greedy.cancelled_at_end <= 2
    assert "drain" in result.stdout or "every order of the run is settled" in result.stdout
    reports = {
        p: json.loads((tmp_path / p / "report.json").read_text()) for p in ("greedy", "batched")
    }
    for report in reports.values():
        assert report["audit"]["passed"] == report["audit"]["checked"] > 0
    # The batched dispatcher assigned and delivered orders through its rounds.
    assert reports["batched"]["figures"]["orders"]["delivered"] > 0
    assert reports["batched"]["consumers"]["dispatch"]["handled"] > 0
    text = (tmp_path / "compare.txt").read_text()
    assert f"greedy ({greedy.run_id})" in text and f"batched ({batched.run_id})" in text
    delivered = [str(reports[p]["figures"]["orders"]["delivered"]) for p in ("greedy", "batched")]
    assert next(line for line in text.splitlines() if line.startswith("delivered")).split()[1:] == (
        delivered
    )
    assert "<table>" in (tmp_path / "compare.html").read_text()
    assert "comparison:" in result.stdout


def test_an_unknown_dispatch_policy_is_refused() -> None:
    result = run_cli("simulate", "--region", "monaco", "--drivers", "5", "--orders-per-hour",
                     "10", "--policy", "fastest", timeout=60)  # fmt: skip
    assert result.returncode == 2 and "'fastest' is not one of greedy, batched" in result.stderr
