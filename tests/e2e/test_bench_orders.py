"""``ontheway bench orders`` with small numbers: orders placed through the service and the
HTTP API, then assigned and cancelled, beside pgbench, with nothing failed."""

from __future__ import annotations

from rich.console import Console

from ontheway.bench.common import LoadResult
from ontheway.bench.orders import run
from ontheway.settings import Settings


async def test_bench_orders_places_then_assigns_and_cancels_every_order(
    settings: Settings,
) -> None:
    console = Console(record=True, width=200)
    results = await run(settings, region="sf", clients=2, seconds=1, console=console)
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
    assert "status change: cancel" in console.export_text()
