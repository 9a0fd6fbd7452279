"""The reconciler of leaked reservations, against a Redis server of this module's own (it
scans every driver's active orders: the shared Redis holds other tests' drivers)."""

from __future__ import annotations

import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from ontheway.bench.common import free_port
from ontheway.connections import redis_client
from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.offers import OfferBook
from ontheway.dispatch.reconcile import Reconciler
from ontheway.fleet import keys
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.settings import Settings
from ontheway.stack.process import port_open
from ontheway.stack.redis import find_binaries
from tests.helpers import order_for


@dataclass
class PrivateRedis:
    """A redis-server of the test's own (the stack's binary, AOF on), restartable on the
    same port and data directory."""

    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server, _ = find_binaries()
        self.proc = subprocess.Popen(
            [str(server), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--logfile", str(self.folder / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            assert self.proc.poll() is None, (self.folder / "redis.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the private redis-server did not listen"
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (the AOF is flushed) and wait for the exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    """A Redis server of this module's own, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="ontheway-redis-") as folder:
        made = PrivateRedis(free_port(), Path(folder))
        made.start()
        try:
            yield made
        finally:
            made.stop()


@pytest.fixture
async def own_redis(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(private_redis.url, 5)
    yield client
    await client.aclose()


@pytest.fixture
def fleet(own_redis: aioredis.Redis, settings: Settings) -> FleetStore:
    return open_store(own_redis, settings)


def reconciler(fleet: FleetStore, shards: ShardAccess, grace_s: float) -> Reconciler:
    return Reconciler(fleet, shards, ["sf"], grace_s=grace_s, interval_s=0.1)


async def online_driver(fleet: FleetStore, sf: dict[str, Any], n: int) -> str:
    """A seeded driver of sf, registered (as a car: room for 3) and online in the private
    Redis."""
    driver = sf["drivers"][n]
    await fleet.register_driver(driver["driver_id"], "sf", VehicleType.CAR)
    await fleet.apply_fixes(
        "sf", [Fix(driver["driver_id"], "sf", driver["lat"], driver["lng"], time.time())]
    )
    return str(driver["driver_id"])


async def placed(orders: OrderService, sf: dict[str, Any], uid: str) -> str:
    order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    return str(order["order_id"])


async def test_a_leaked_reservation_is_removed_once_older_than_the_grace_period(
    fleet: FleetStore, shards: ShardAccess, orders: OrderService,
    sf: dict[str, Any], uid: str,
) -> None:  # fmt: skip
    driver = await online_driver(fleet, sf, 0)
    oid = await placed(orders, sf, uid)
    # The process died after reserving the driver and before committing in PostgreSQL.
    await fleet.add_order("sf", driver, oid)
    fixer = reconciler(fleet, shards, grace_s=0.5)
    assert await fixer.reconcile_once() == []  # young: it could be in flight
    assert oid in await fleet.active_orders("sf", driver)
    deadline = time.monotonic() + 10
    while oid in await fleet.active_orders("sf", driver):
        assert time.monotonic() < deadline, "the leaked reservation was never removed"
        await fixer.reconcile_once()
    assert fixer.stats.removed == 1
    # The driver's capacity is whole again: it is available with no orders.
    assert await fleet.add_order("sf", driver, oid) == 1
    await fleet.remove_order("sf", driver, oid)


async def test_a_real_assignment_is_kept(
    fleet: FleetStore, own_redis: aioredis.Redis, shards: ShardAccess,
    orders: OrderService, sf: dict[str, Any], uid: str,
) -> None:  # fmt: skip
    driver = await online_driver(fleet, sf, 1)
    assigned, picked = await placed(orders, sf, uid), await placed(orders, sf, uid + "p")
    assignments = Assignments(orders, fleet, own_redis)
    await assignments.assign(assigned, driver, "ops")
    await assignments.assign(picked, driver, "ops")
    await orders.transition(picked, EventType.DRIVER_ARRIVED_RESTAURANT, driver)
    await orders.transition(picked, EventType.ORDER_PICKED_UP, driver)
    fixer = reconciler(fleet, shards, grace_s=0)
    assert await fixer.reconcile_once() == []
    assert {assigned, picked} <= await fleet.active_orders("sf", driver)
    # Delivered but still counted (the fleet was not told): that one goes.
    row = await orders.transition(picked, EventType.ORDER_DELIVERED, driver)
    assert row["status"] == "delivered"
    assert await fixer.reconcile_once() == [("sf", driver, picked)]
    assert await fleet.active_orders("sf", driver) == {assigned}
    await fleet.remove_order("sf", driver, assigned)


async def test_a_reservation_in_flight_is_kept(
    fleet: FleetStore, own_redis: aioredis.Redis, shards: ShardAccess,
    orders: OrderService, sf: dict[str, Any], uid: str,
) -> None:  # fmt: skip
    driver = await online_driver(fleet, sf, 2)
    locked, offered = await placed(orders, sf, uid), await placed(orders, sf, uid + "o")
    # One is being assigned (its lock is held), one is offered to the driver.
    lock = await fleet.acquire_lock("sf", locked)
    assert lock is not None
    await fleet.add_order("sf", driver, locked)
    await fleet.add_order("sf", driver, offered)
    message = {"type": "offer", "order_id": offered, "expires_at": time.time() + 30}
    book = OfferBook(own_redis)
    assert await book.open("sf", offered, driver, message)
    fixer = reconciler(fleet, shards, grace_s=0)
    assert await fixer.reconcile_once() == []
    assert await fleet.active_orders("sf", driver) == {locked, offered}
    # The worker holding the lock died; the offer was withdrawn without the release.
    await fleet.release_lock(lock)
    await book.finish("sf", offered, driver)
    assert sorted(await fixer.reconcile_once()) == sorted(
        [("sf", driver, locked), ("sf", driver, offered)]
    )
    assert await fleet.active_orders("sf", driver) == set()


async def test_sets_made_before_the_index_are_indexed_once_then_no_key_is_scanned(
    fleet: FleetStore, own_redis: aioredis.Redis, shards: ShardAccess,
    orders: OrderService, sf: dict[str, Any], uid: str,
) -> None:  # fmt: skip
    driver = await online_driver(fleet, sf, 3)
    oid = await placed(orders, sf, uid)
    # A reservation written before the index existed: the set alone, not in the index.
    await own_redis.sadd(keys.active_orders("sf", driver), oid)
    await own_redis.hset(keys.profile("sf", driver), "orders", 1)
    assert driver not in await fleet.carrying("sf")
    fixer = reconciler(fleet, shards, grace_s=0)
    assert await fixer.reconcile_once() == [("sf", driver, oid)]
    assert await fleet.active_orders("sf", driver) == set()
    assert driver not in await fleet.carrying("sf")  # held nothing more: out of the index
    scans = (await own_redis.info("commandstats")).get("cmdstat_scan", {}).get("calls", 0)
    await fleet.add_order("sf", driver, oid)  # through the scripts: indexed
    assert driver in await fleet.carrying("sf")
    fixer.grace_s = 3600  # found a suspect again, kept for now
    assert await fixer.reconcile_once() == []
    assert fixer.stats.checked == 2
    after = (await own_redis.info("commandstats")).get("cmdstat_scan", {}).get("calls", 0)
    assert after == scans  # the second pass read the index only
    await fleet.remove_order("sf", driver, oid)
    assert driver not in await fleet.carrying("sf")


async def test_a_driver_emptied_outside_the_scripts_leaves_the_index(
    fleet: FleetStore, own_redis: aioredis.Redis, shards: ShardAccess, sf: dict[str, Any]
) -> None:
    driver = await online_driver(fleet, sf, 4)
    await fleet.add_order("sf", driver, "ord_x")
    await own_redis.delete(keys.active_orders("sf", driver))  # as the no-profile path does
    fixer = reconciler(fleet, shards, grace_s=0)
    await fixer.reconcile_once()
    assert driver not in await fleet.carrying("sf")
