"""The dispatch worker as a process: ``ontheway worker --consumer dispatch``."""

from __future__ import annotations

import asyncio
from typing import Any

from ontheway.fleet.store import FleetStore
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from tests.e2e.test_events_api import start, stop, stream_env  # noqa: F401 (a fixture)
from tests.integration.test_dispatch_dispatcher import (  # noqa: F401 (fixtures)
    fleet,
    node_at,
    place,
    put,
    roads,
    take_drivers,
    town,
)


async def test_the_dispatch_worker_assigns_a_placed_order_and_stops_on_sigterm(
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    uid: str,
    stream_env: dict[str, str],  # noqa: F811
) -> None:
    (driver,) = take_drivers(town, 1)
    await put(fleet, driver, node_at(town, 0))
    relay = await start(stream_env, "relay")
    auto = {**stream_env, "ONTHEWAY_DISPATCH_AUTO_ACCEPT": "true"}  # no app to answer offers
    worker = await start(auto, "worker", "--consumer", "dispatch")
    try:
        oid = await place(orders, town, uid)
        row: dict[str, Any] = {}
        for _ in range(300):
            row = await queries.get(oid)
            if row["status"] == "driver_assigned":
                break
            await asyncio.sleep(0.1)
        assert row["status"] == "driver_assigned", "the dispatch worker did not assign"
    finally:
        codes = await stop(worker, relay)
    out = (await worker.stdout.read()).decode() if worker.stdout else ""
    assert codes == [0, 0]
    assert "dispatch:" in out and "handled" in out
