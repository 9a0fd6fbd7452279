"""Faults, end to end: the API, the relay and a dispatch worker as processes, on a Redis of
this module's own (so that it can be restarted), PostgreSQL and FalkorDB of the local stack.

Orders are placed in Minneapolis, at a restaurant moved to a random spot away from the city
centre, with drivers only in the private Redis: other tests' dispatchers find none of our
drivers, and ours finds none of theirs (the relay forwards every shard's events).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ontheway.auth import Role, issue_token
from ontheway.bench.common import free_port
from ontheway.connections import Connections, redis_client
from ontheway.errors import DependencyUnavailable
from ontheway.events.relay import cursor_name, start_at_end
from ontheway.fleet import keys
from ontheway.fleet.model import VehicleType
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.regions import Catalog
from ontheway.seeding import seed_with_fleet
from ontheway.settings import Settings
from tests.helpers import order_for
from tests.integration.test_dispatch_reconcile import PrivateRedis, private_redis  # noqa: F401

REGION = "minneapolis"


@dataclass
class Stack:
    """Our processes and what they serve."""

    base_url: str
    redis: PrivateRedis
    settings: Settings
    town: dict[str, Any]
    logs: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def auth(self, role: Role, sub: str, **kwargs: Any) -> dict[str, str]:
        token = issue_token(self.settings.jwt_key(), role, sub, **kwargs)
        return {"Authorization": f"Bearer {token}"}


def spot_away_from_centre(catalog: Catalog) -> tuple[float, float]:
    """A random point of the region at least 8 km from its centre (seeds cluster there)."""
    region = catalog.get(REGION)
    box, centre = region.bbox, region.center
    while True:
        lat = random.uniform(box.min_lat + 0.02, box.max_lat - 0.02)
        lng = random.uniform(box.min_lng + 0.02, box.max_lng - 0.02)
        dy = (lat - centre.lat) * 111_320
        dx = (lng - centre.lng) * 111_320 * math.cos(math.radians(lat))
        if math.hypot(dx, dy) > 8000:
            return lat, lng


def spawn(env: dict[str, str], logs: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    """``python -m ontheway <args>``, its output in a log file (never a pipe that fills)."""
    with open(logs / f"{name}.log", "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "ontheway", *args],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def wait_healthy(base: str, proc: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (logs / "api.log").read_text()[-3000:]
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not come up")


@pytest.fixture(scope="module")
async def stack(
    private_redis: PrivateRedis,  # noqa: F811
    conns: Connections,
    catalog: Catalog,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """Minneapolis seeded afresh (drivers registered as cars in the private Redis only), and
    the API, the relay and a dispatch worker running against the private Redis."""
    town = await seed_with_fleet(
        conns, catalog, settings, REGION, restaurants=1, customers=4, drivers=6,
        seed=random.randrange(1 << 30),
    )  # fmt: skip
    lat, lng = spot_away_from_centre(catalog)
    restaurant = town["restaurants"][0] | {"lat": lat, "lng": lng}
    async with conns.shard_connection("americas") as conn:
        await conn.execute(
            "UPDATE restaurants SET location = ST_MakePoint(%s, %s)::geography"
            " WHERE restaurant_id = %s",
            (lng, lat, restaurant["restaurant_id"]),
        )
        await conn.commit()
    town["restaurant"] = restaurant
    redis = redis_client(private_redis.url, 5)
    await open_store(redis, settings).register_many(
        [(d["driver_id"], REGION, VehicleType.CAR) for d in town["drivers"]]
    )
    await redis.aclose()
    stream = f"test_faults_{uuid.uuid4().hex[:10]}"
    for shard in conns.shards:
        await start_at_end(conns, shard, cursor_name(stream, shard))
    env = {
        **os.environ,
        "ONTHEWAY_REDIS_URL": private_redis.url,
        "ONTHEWAY_FALKORDB_URL": settings.require_falkordb_url(),
        "ONTHEWAY_EVENT_STREAM": stream,
        "ONTHEWAY_DISPATCH_AUTO_ACCEPT": "true",
        "ONTHEWAY_DISPATCH_STRAIGHT_LINE_KPH": "20",
        "ONTHEWAY_DISPATCH_RADII_MI": "[0.5]",
        "ONTHEWAY_DISPATCH_FLAG_AFTER_S": "100000",  # never flag other tests' orders
        "ONTHEWAY_DISPATCH_RECONCILE_INTERVAL_S": "1",
        "ONTHEWAY_DISPATCH_RECONCILE_GRACE_S": "3",
        "ONTHEWAY_FLEET_HISTORY_ENABLED": "false",
        # Heartbeats outlive the test: a driver goes away only when a test says so.
        "ONTHEWAY_FLEET_HEARTBEAT_TTL_S": "600",
    }
    logs = tmp_path_factory.mktemp("faults")
    port = free_port()
    made = Stack(f"http://127.0.0.1:{port}", private_redis, settings, town, logs)
    api = spawn(env, logs, "api", "serve", "--port", str(port))
    made.procs.append(api)
    try:
        wait_healthy(made.base_url, api, logs)
        made.procs.append(spawn(env, logs, "relay", "relay"))
        made.procs.append(spawn(env, logs, "worker", "worker", "--consumer", "dispatch"))
        yield made
    finally:
        for proc in made.procs:
            proc.terminate()
        for proc in made.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def fleet(stack: Stack) -> AsyncIterator[FleetStore]:
    """The fleet in the private Redis, as the test sees it."""
    redis = redis_client(stack.redis.url, 5)
    yield open_store(redis, stack.settings)
    await redis.aclose()


async def online(stack: Stack, http: httpx.AsyncClient, drivers: list[dict[str, Any]]) -> None:
    """The drivers' apps report positions near the restaurant: they are available."""
    r = stack.town["restaurant"]
    for i, driver in enumerate(drivers):
        fix = {
            "driver_id": driver["driver_id"],
            "lat": r["lat"] + 0.0005 * (i % 3),
            "lng": r["lng"] + 0.0005 * (i // 3),
            "timestamp": time.time(),
        }
        resp = await http.post(
            f"{stack.base_url}/api/driver/location",
            json=fix,
            headers=stack.auth(Role.DRIVER, driver["driver_id"]),
        )
        assert resp.status_code == 202, resp.text


async def place(orders: OrderService, stack: Stack, customer: str) -> str:
    order, _ = await orders.place(customer, order_for(stack.town["restaurant"]))
    return str(order["order_id"])


async def kinds(queries: OrderQueries, oid: str) -> list[str]:
    return [e["event_type"] for e in await queries.events(oid)]


async def carried_in_postgres(queries: OrderQueries, oids: list[str]) -> dict[str, set[str]]:
    """Driver -> the orders PostgreSQL gives it (among ``oids``)."""
    out: dict[str, set[str]] = {}
    for oid in oids:
        row = await queries.get(oid)
        if row["status"] in ("driver_assigned", "driver_at_restaurant", "picked_up"):
            out.setdefault(row["driver_id"], set()).add(oid)
    return out


async def wait_for_status(
    queries: OrderQueries, oid: str, status: str, timeout_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (row := await queries.get(oid))["status"] != status:
        assert time.monotonic() < deadline, f"{oid} is still {row['status']}"
        await asyncio.sleep(0.2)
    return row


async def test_a_driver_vanishing_after_pickup_flags_the_order_which_is_not_reassigned(
    stack: Stack, fleet: FleetStore, orders: OrderService, queries: OrderQueries, uid: str
) -> None:
    driver = stack.town["drivers"][5]["driver_id"]
    as_driver = stack.auth(Role.DRIVER, driver)
    async with httpx.AsyncClient(timeout=10) as http:
        await online(stack, http, [stack.town["drivers"][5]])
        oid = await place(orders, stack, f"user_{uid}")
        assert (await wait_for_status(queries, oid, "driver_assigned"))["driver_id"] == driver
        for step in ("arrived", "picked-up"):
            resp = await http.post(f"{stack.base_url}/api/orders/{oid}/{step}", headers=as_driver)
            assert resp.status_code == 200, resp.text
        # The heartbeat runs out: exactly what a TTL expiry leaves behind.
        await fleet.redis.delete(keys.status(REGION, driver))
        await fleet.redis.zadd(keys.heartbeats(REGION), {driver: 0})
        never_placed = f"ord_{REGION}_{uuid.uuid4().hex[:16]}"
        await fleet.redis.zadd(f"dispatch:no_driver:{{{REGION}}}", {never_placed: time.time()})
        url = f"{stack.base_url}/api/ops/flags"
        ops = stack.auth(Role.OPS, "ops_mn", regions=[REGION])
        deadline = time.monotonic() + 20
        while True:
            resp = await http.get(url, params={"region": REGION}, headers=ops)
            assert resp.status_code == 200, resp.text
            flagged = {f["order_id"]: f for f in resp.json()}
            if oid in flagged:
                break
            assert time.monotonic() < deadline, "the order was never flagged"
            await asyncio.sleep(0.2)
        other_ops = stack.auth(Role.OPS, "ops_sf", regions=["sf"])
        resp = await http.get(url, params={"region": REGION}, headers=other_ops)
        assert resp.status_code == 403
    assert flagged[oid]["reason"] == "driver_lost_after_pickup"
    flagged_at = datetime.fromisoformat(flagged[oid]["flagged_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - flagged_at).total_seconds()) < 60
    assert flagged[oid]["status"] == "picked_up" and flagged[oid]["driver_id"] == driver
    assert flagged[never_placed]["reason"] == "no_driver_found"
    assert flagged[never_placed]["status"] is None
    # Not searched again: still the driver's (it has the food), flagged once.
    row = await queries.get(oid)
    assert row["status"] == "picked_up" and row["driver_id"] == driver
    events = await queries.events(oid)
    flags = [e for e in events if e["event_type"] == EventType.ORDER_FLAGGED.value]
    assert [f["data"] for f in flags] == [
        {"reason": "driver_lost_after_pickup", "driver_id": driver}
    ]
    assert EventType.DRIVER_UNAVAILABLE.value not in await kinds(queries, oid)
    assert (await kinds(queries, oid)).count(EventType.DRIVER_ASSIGNED.value) == 1
    assert oid in await fleet.active_orders(REGION, driver)


async def test_a_redis_restart_during_dispatch_assigns_every_order_exactly_once(
    stack: Stack, fleet: FleetStore, orders: OrderService, queries: OrderQueries, uid: str
) -> None:
    drivers = stack.town["drivers"][:5]
    async with httpx.AsyncClient(timeout=10) as http:
        await online(stack, http, drivers)
    # Left over from a worker that died before committing: a reservation of an order the
    # driver never got (cancelled since). The reconciler in the API must take it back.
    leaked = await place(orders, stack, f"user_{uid}_x")
    await orders.transition(leaked, EventType.ORDER_CANCELLED, f"user_{uid}_x")
    await fleet.add_order(REGION, drivers[0]["driver_id"], leaked)
    # A burst, then Redis goes down (SIGTERM) while it is being dispatched; more orders
    # while it is down; it comes back on the same port with the same AOF; more orders.
    oids = [await place(orders, stack, f"user_{uid}_{i % 4}") for i in range(6)]
    deadline = time.monotonic() + 30
    while not any([(await queries.get(oid))["driver_id"] for oid in oids]):
        assert time.monotonic() < deadline, "the burst was never dispatched"
        await asyncio.sleep(0.01)
    stack.redis.stop()
    for i in range(4):
        oids.append(await place(orders, stack, f"user_{uid}_{i}"))
        await asyncio.sleep(0.3)
    stack.redis.start()
    for i in range(4):
        oids.append(await place(orders, stack, f"user_{uid}_{i}"))
        await asyncio.sleep(0.1)
    # Nothing stuck: every order ends up with a driver, assigned exactly once. An event whose
    # handling Redis cut short comes back after the stream's claim time (30 s), and an order
    # whose lock was left behind waits for the lock's TTL (30 s) too.
    for oid in oids:
        row = await wait_for_status(queries, oid, "driver_assigned", timeout_s=150)
        assert row["driver_id"] in {d["driver_id"] for d in drivers}
        assert (await kinds(queries, oid)).count(EventType.DRIVER_ASSIGNED.value) == 1
    # Nothing counted twice: each driver's reservations are exactly its orders in PostgreSQL
    # (a reservation leaked by the restart is reconciled away).
    expected = await carried_in_postgres(queries, oids)
    deadline = time.monotonic() + 30
    held: dict[str, set[str]] = {}
    while True:
        with contextlib.suppress(DependencyUnavailable):  # our connection from before the restart
            held = {
                d["driver_id"]: await fleet.active_orders(REGION, d["driver_id"]) for d in drivers
            }
        if held and all(held[d] == expected.get(d, set()) for d in held):
            break
        assert time.monotonic() < deadline, f"Redis {held} != PostgreSQL {expected}"
        await asyncio.sleep(0.5)
    assert sum(len(v) for v in expected.values()) == len(oids)
