import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ontheway.connections import Connections
from ontheway.errors import DependencyUnavailable
from ontheway.fleet import keys
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.monitor import OfflineMonitor
from ontheway.fleet.store import FleetStore

CAPS = {"bicycle": 1, "scooter": 2, "car": 3}


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.recorded: list[tuple[str, str]] = []
        self.fail_first = fail_first

    async def driver_unavailable(self, order_id: str, driver_id: str) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise DependencyUnavailable("the orders shard is down")
        self.recorded.append((order_id, driver_id))


@pytest.fixture
async def region(conns: Connections, uid: str) -> AsyncIterator[str]:
    name = f"m_{uid}"
    yield name
    redis = conns.require_redis()
    async for key in redis.scan_iter(match=f"*{{{name}}}*", count=1000):
        await redis.delete(key)


async def expiring_driver(store: FleetStore, region: str, driver: str, orders: list[str]) -> None:
    await store.register_driver(driver, region, VehicleType.CAR)
    await store.apply_fixes(region, [Fix(driver, region, 37.77, -122.41, time.time())])
    for order in orders:
        await store.add_order(region, driver, order)


async def sweep_until_found(monitor: OfflineMonitor) -> None:
    deadline = time.monotonic() + 10
    while not await monitor.store.sweep_expired(monitor.regions):
        assert time.monotonic() < deadline, "the heartbeat never expired"
        await asyncio.sleep(0.2)


async def test_every_order_of_an_expired_driver_is_reported_once(
    conns: Connections, region: str, uid: str
) -> None:
    store = FleetStore(conns.require_redis(), heartbeat_ttl_s=1, max_active_orders=CAPS)
    driver = f"d_{uid}"
    await expiring_driver(store, region, driver, ["o1", "o2"])
    recorder = Recorder()
    monitor = OfflineMonitor(store, [region], recorder)
    await sweep_until_found(monitor)
    handled = await monitor.sweep_once()
    assert [h.driver_id for h in handled] == [driver]
    assert sorted(recorder.recorded) == [("o1", driver), ("o2", driver)]
    assert await store.active_orders(region, driver) == set()
    assert await monitor.sweep_once() == []
    await conns.require_redis().delete(keys.home(driver))


async def test_a_monitor_that_fails_half_way_leaves_the_driver_for_the_next_one(
    conns: Connections, region: str, uid: str
) -> None:
    store = FleetStore(conns.require_redis(), heartbeat_ttl_s=1, max_active_orders=CAPS)
    driver = f"d_{uid}"
    await expiring_driver(store, region, driver, ["o1"])
    broken = OfflineMonitor(store, [region], Recorder(fail_first=1))
    await sweep_until_found(broken)
    with pytest.raises(DependencyUnavailable):
        await broken.sweep_once()
    restarted = OfflineMonitor(store, [region], Recorder())
    assert [h.driver_id for h in await restarted.sweep_once()] == [driver]
    assert restarted.recorder.recorded == [("o1", driver)]  # type: ignore[attr-defined]
    await conns.require_redis().delete(keys.home(driver))
