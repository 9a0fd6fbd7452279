"""``ontheway bench orders`` with small numbers: orders placed through the service and the
HTTP API, then assigned and cancelled, beside pgbench, with nothing failed, in a shard and
region of its own that are gone afterwards (no order left in a served region)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from rich.console import Console

from ontheway.bench.common import LoadResult
from ontheway.bench.orders import run
from ontheway.settings import Settings

SF_MAP = Path(__file__).parents[1] / "data" / "osm" / "san-francisco-downtown-drive.osm.bz2"


def bench_leftovers(settings: Settings) -> tuple[int, int]:
    """Orders of the benchmark's customers on the shared shard, and benchmark databases."""
    dsn = settings.dsn_for("americas")
    admin = psycopg.conninfo.make_conninfo(dsn, user="postgres", dbname="postgres")
    with psycopg.connect(dsn) as conn, psycopg.connect(admin) as server:
        orders = conn.execute("SELECT count(*) FROM orders WHERE customer_id LIKE 'user_bench_%'")
        databases = server.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'ontheway_benchd_%'"
        )
        return orders.fetchone()[0], databases.fetchone()[0]  # type: ignore[index]


async def test_bench_orders_places_then_assigns_and_cancels_every_order(
    settings: Settings,
) -> None:
    before = bench_leftovers(settings)
    console = Console(record=True, width=200)
    results = await run(
        settings, map_file=SF_MAP, clients=2, seconds=1, console=console, history=300
    )
    placed, assign, cancel = results["service"], results["assign"], results["cancel"]
    assert isinstance(placed, LoadResult) and isinstance(assign, LoadResult)
    assert isinstance(cancel, LoadResult)
    assert placed.done > 0 and placed.failed == 0
    # Every order placed through the service (up to 2,000) is assigned, then cancelled.
    assert assign.done == cancel.done == min(placed.done, 2000)
    assert assign.failed == cancel.failed == 0
    assert 0 < assign.percentile(50) <= assign.percentile(99)
    pgbench = results["pgbench_tps"]
    assert isinstance(pgbench, float) and pgbench > 0
    text = console.export_text()
    assert "status change: cancel" in text
    # The CPU each placement cost this process and the PostgreSQL servers, from /proc.
    cpu = re.search(r"CPU per order placed .*: this process ([\d.]+), postgres ([\d.]+)", text)
    assert cpu is not None and float(cpu[1]) > 0 and float(cpu[2]) > 0
    assert bench_leftovers(settings) == before


async def test_bench_orders_can_place_from_several_processes(settings: Settings) -> None:
    """The service layer's placements from two processes of their own (as an API runs one per
    core): their results merged, every order then assigned and cancelled, their CPU counted."""
    before = bench_leftovers(settings)
    console = Console(record=True, width=200)
    results = await run(
        settings, map_file=SF_MAP, clients=2, seconds=1, console=console, processes=2
    )
    placed, cancel = results["service"], results["cancel"]
    assert isinstance(placed, LoadResult) and isinstance(cancel, LoadResult)
    assert placed.done > 0 and placed.failed == 0
    assert cancel.done == min(placed.done, 2000) and cancel.failed == 0
    text = console.export_text()
    assert "service (2 processes)" in text
    cpu = re.search(r"CPU per order placed .*postgres ([\d.]+).*placing processes ([\d.]+)", text)
    assert cpu is not None and float(cpu[1]) > 0 and float(cpu[2]) > 0, text
    assert bench_leftovers(settings) == before


def test_a_benchmark_stopped_by_sigterm_removes_its_world(settings: Settings) -> None:
    before = bench_leftovers(settings)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ontheway", "bench", "orders", "--clients", "2", "--seconds", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while bench_leftovers(settings)[1] == before[1]:  # its shard database exists
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(3)  # into the building of its world or the run itself
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
    assert bench_leftovers(settings) == before
