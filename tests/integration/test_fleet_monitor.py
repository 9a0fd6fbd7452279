import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.errors import DependencyUnavailable
from ontheway.fleet import keys
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.monitor import OfflineMonitor
from ontheway.fleet.recorder import OrderEventsRecorder, lost_after_pickup_key
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from tests.helpers import order_for

CAPS = {"bicycle": 1, "scooter": 2, "car": 3}


class Recorder:
    def __init__(self, fail_first: int = 0, picked_up: frozenset[str] = frozenset()) -> None:
        self.recorded: list[tuple[str, str]] = []
        self.fail_first = fail_first
        self.picked_up = picked_up

    async def driver_unavailable(self, order_id: str, driver_id: str) -> bool:
        if self.fail_first:
            self.fail_first -= 1
            raise DependencyUnavailable("the orders shard is down")
        self.recorded.append((order_id, driver_id))
        return order_id not in self.picked_up


@pytest.fixture
async def region(conns: Connections, uid: str) -> AsyncIterator[str]:
    name = f"m_{uid}"
    yield name
    redis = conns.require_redis()
    async for key in redis.scan_iter(match=f"*{{{name}}}*", count=1000):
        await redis.delete(key)


@pytest.fixture
def store(conns: Connections) -> FleetStore:
    return FleetStore(conns.require_redis(), heartbeat_ttl_s=1, max_active_orders=CAPS)


@pytest.fixture
async def driver(conns: Connections, uid: str) -> AsyncIterator[str]:
    name = f"d_{uid}"
    yield name
    await conns.require_redis().delete(keys.home(name))


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
    store: FleetStore, region: str, driver: str
) -> None:
    await expiring_driver(store, region, driver, ["o1", "o2"])
    recorder = Recorder()
    monitor = OfflineMonitor(store, [region], recorder)
    await sweep_until_found(monitor)
    handled = await monitor.sweep_once()
    assert [h.driver_id for h in handled] == [driver]
    assert sorted(recorder.recorded) == [("o1", driver), ("o2", driver)]
    assert await store.active_orders(region, driver) == set()
    assert await monitor.sweep_once() == []


async def test_a_monitor_that_fails_half_way_leaves_the_driver_for_the_next_one(
    store: FleetStore, region: str, driver: str
) -> None:
    await expiring_driver(store, region, driver, ["o1"])
    broken = OfflineMonitor(store, [region], Recorder(fail_first=1))
    await sweep_until_found(broken)
    assert await broken.sweep_once() == []
    restarted = OfflineMonitor(store, [region], Recorder())
    assert [h.driver_id for h in await restarted.sweep_once()] == [driver]
    assert restarted.recorder.recorded == [("o1", driver)]  # type: ignore[attr-defined]


class FailingFor(Recorder):
    """Records every order but ``broken``, which fails as when its shard is down."""

    def __init__(self, broken: str) -> None:
        super().__init__()
        self.broken = broken

    async def driver_unavailable(self, order_id: str, driver_id: str) -> bool:
        if order_id == self.broken:
            raise DependencyUnavailable("the orders shard is down")
        return await super().driver_unavailable(order_id, driver_id)


async def test_a_driver_that_cannot_be_reported_does_not_hold_back_the_others(
    store: FleetStore, region: str, uid: str, conns: Connections
) -> None:
    stuck, other = f"d_{uid}_a", f"d_{uid}_b"
    try:
        await expiring_driver(store, region, stuck, ["o_broken"])
        await expiring_driver(store, region, other, ["o2"])
        monitor = OfflineMonitor(store, [region], FailingFor("o_broken"))
        deadline = time.monotonic() + 10
        while len(await store.sweep_expired([region])) < 2:
            assert time.monotonic() < deadline, "the heartbeats never expired"
            await asyncio.sleep(0.2)
        # Both went pending at once: the stuck driver comes first (by id) in every sweep.
        assert [h.driver_id for h in await monitor.sweep_once()] == [other]
        assert await monitor.sweep_once() == []
        assert monitor.recorder.recorded == [("o2", other)]  # type: ignore[attr-defined]
        assert [e.driver_id for e in await store.sweep_expired([region])] == [stuck]
        assert await store.active_orders(region, stuck) == {"o_broken"}
    finally:
        await conns.require_redis().delete(keys.home(stuck), keys.home(other))


async def test_an_order_the_recorder_keeps_with_its_driver_stays_on_the_driver(
    store: FleetStore, region: str, driver: str
) -> None:
    await expiring_driver(store, region, driver, ["o1", "o2"])
    monitor = OfflineMonitor(store, [region], Recorder(picked_up=frozenset({"o2"})))
    await sweep_until_found(monitor)
    assert [h.driver_id for h in await monitor.sweep_once()] == [driver]
    assert await store.active_orders(region, driver) == {"o2"}
    assert (monitor.reported, monitor.kept) == (1, 1)
    assert await monitor.sweep_once() == []


async def driven_order(
    orders: OrderService, sf: dict[str, Any], uid: str, n: int, *steps: EventType
) -> tuple[str, str]:
    """An order of sf assigned to the seeded driver ``n``, then taken through ``steps``."""
    order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    oid, driver = str(order["order_id"]), sf["drivers"][n]["driver_id"]
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    for step in steps:
        await orders.transition(oid, step, driver)
    return oid, driver


async def test_a_driver_lost_after_pickup_flags_the_order_once_without_searching_again(
    conns: Connections,
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    oid, driver = await driven_order(
        orders, sf, uid, 1, EventType.DRIVER_ARRIVED_RESTAURANT, EventType.ORDER_PICKED_UP
    )
    recorder = OrderEventsRecorder(orders)
    assert await recorder.driver_unavailable(oid, driver) is False
    assert await recorder.driver_unavailable(oid, driver) is False  # the monitor retried
    row = await queries.get(oid)
    assert row["status"] == "picked_up" and row["driver_id"] == driver
    flagged = [e for e in await queries.events(oid) if e["event_type"] == "ORDER_FLAGGED"]
    assert len(flagged) == 1
    assert flagged[0]["data"] == {"reason": "driver_lost_after_pickup", "driver_id": driver}
    redis = conns.require_redis()
    assert await redis.zscore(lost_after_pickup_key("sf"), oid) is not None
    await redis.zrem(lost_after_pickup_key("sf"), oid)


async def test_a_driver_lost_before_pickup_sends_the_order_back_to_searching(
    conns: Connections,
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    oid, driver = await driven_order(orders, sf, uid, 2)
    recorder = OrderEventsRecorder(orders)
    assert await recorder.driver_unavailable(oid, driver) is True
    assert await recorder.driver_unavailable(oid, driver) is True
    assert (await queries.get(oid))["status"] == "searching_driver_again"
    kinds = [e["event_type"] for e in await queries.events(oid)]
    assert kinds.count("DRIVER_UNAVAILABLE") == 1 and "ORDER_FLAGGED" not in kinds
    assert await conns.require_redis().zscore(lost_after_pickup_key("sf"), oid) is None
