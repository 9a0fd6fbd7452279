import asyncio
import json
import math
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.errors import Conflict
from ontheway.fleet import keys
from ontheway.fleet.model import DriverStatus, Fix, Outcome, VehicleType
from ontheway.fleet.store import FleetStore

CAPS = {"bicycle": 1, "scooter": 2, "car": 3}
CENTER = (37.7749, -122.4194)


async def purge(conns: Connections, region: str, drivers: list[str]) -> None:
    redis = conns.require_redis()
    async for key in redis.scan_iter(match=f"*{{{region}}}*", count=1000):
        await redis.delete(key)
    if drivers:
        await redis.delete(*(keys.home(d) for d in drivers))


@pytest.fixture
async def region(conns: Connections, uid: str) -> AsyncIterator[str]:
    name = f"t_{uid}"
    yield name
    await purge(conns, name, [])


def make_store(
    conns: Connections, ttl_s: int = 60, areas: dict[str, float] | None = None
) -> FleetStore:
    return FleetStore(
        conns.require_redis(),
        heartbeat_ttl_s=ttl_s,
        max_active_orders=CAPS,
        region_areas_m2=areas,
    )


def offset(metres_north: float) -> tuple[float, float]:
    return CENTER[0] + metres_north / 111_195.0, CENTER[1]


async def report(store: FleetStore, region: str, driver: str, metres: float) -> None:
    """A fix of ``driver`` taken now, ``metres`` north of the centre: stored."""
    lat, lng = offset(metres)
    assert await store.apply_fixes(region, [Fix(driver, region, lat, lng, time.time())]) == [
        Outcome.APPLIED
    ]


async def put(
    store: FleetStore, region: str, driver: str, metres: float, vehicle: VehicleType
) -> None:
    await store.register_driver(driver, region, vehicle)
    await report(store, region, driver, metres)


async def cleanup_homes(conns: Connections, drivers: list[str]) -> None:
    await conns.require_redis().delete(*(keys.home(d) for d in drivers))


async def test_a_fix_lands_in_its_region_and_refreshes_the_heartbeat(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    redis = conns.require_redis()
    assert await store.position(region, driver) == pytest.approx(CENTER, abs=1e-5)
    assert await store.status(region, driver) is DriverStatus.AVAILABLE
    assert 0 < await redis.ttl(keys.status(region, driver)) <= 60
    await cleanup_homes(conns, [driver])


async def test_a_fix_older_than_the_last_stored_is_ignored(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    await store.register_driver(driver, region, VehicleType.CAR)
    now = time.time()
    newer = Fix(driver, region, 37.78, -122.41, now)
    older = Fix(driver, region, 37.70, -122.41, now - 10)
    assert await store.apply_fixes(region, [newer, older]) == [Outcome.APPLIED, Outcome.STALE]
    assert await store.position(region, driver) == pytest.approx((37.78, -122.41), abs=1e-5)
    await cleanup_homes(conns, [driver])


async def test_fixes_of_one_driver_in_one_batch_keep_the_newest_whatever_their_order(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    await store.register_driver(driver, region, VehicleType.CAR)
    now = time.time()
    first, second, late = (
        Fix(driver, region, 37.70, -122.41, now - 2),
        Fix(driver, region, 37.72, -122.41, now - 1),
        Fix(driver, region, 37.71, -122.41, now - 1.5),
    )
    outcomes = await store.apply_fixes(region, [first, second, late])
    assert outcomes == [Outcome.APPLIED, Outcome.APPLIED, Outcome.STALE]
    assert await store.position(region, driver) == pytest.approx((37.72, -122.41), abs=1e-5)
    stored = await store.last_fix(driver)
    assert stored is not None and stored.timestamp == pytest.approx(now - 1, abs=1e-3)
    assert await conns.require_redis().get(keys.fixes_applied(region)) == b"2"
    await cleanup_homes(conns, [driver])


async def test_each_fix_renews_the_heartbeat_but_its_deadline_is_rewritten_only_when_due(
    conns: Connections, region: str, uid: str
) -> None:
    """The status key's TTL is renewed by every fix; the sweep's deadline only once less than
    two thirds of the TTL remain of it (it never runs later than the status key)."""
    store = make_store(conns, ttl_s=60)
    driver = f"d_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    redis = conns.require_redis()
    first = await redis.zscore(keys.heartbeats(region), driver)
    await redis.expire(keys.status(region, driver), 5)
    await report(store, region, driver, 0)
    assert await redis.ttl(keys.status(region, driver)) > 55  # renewed
    assert await redis.zscore(keys.heartbeats(region), driver) == first  # not yet due
    await redis.zadd(keys.heartbeats(region), {driver: time.time() + 30})  # due now
    await report(store, region, driver, 0)
    assert await redis.zscore(keys.heartbeats(region), driver) > time.time() + 55
    # A deadline that passes while the status key lives keeps the driver on the map.
    await redis.zadd(keys.heartbeats(region), {driver: 0})
    assert await store.sweep_expired([region]) == []
    assert await store.position(region, driver) is not None
    assert await redis.zscore(keys.heartbeats(region), driver) > time.time() + 55
    await cleanup_homes(conns, [driver])


async def test_a_driver_whose_status_key_is_gone_gets_it_back_from_its_profile(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    await put(store, region, driver, 0, VehicleType.SCOOTER)
    await store.add_order(region, driver, "o1")
    await store.add_order(region, driver, "o2")  # at capacity: busy
    redis = conns.require_redis()
    await redis.delete(keys.status(region, driver))  # as if its heartbeat had expired
    await report(store, region, driver, 5)
    assert await store.status(region, driver) is DriverStatus.BUSY
    await store.remove_order(region, driver, "o1")
    assert await store.status(region, driver) is DriverStatus.AVAILABLE
    await store.remove_order(region, driver, "o2")
    await store.set_status(region, driver, DriverStatus.OFFLINE)
    await report(store, region, driver, 5)
    assert await store.status(region, driver) is DriverStatus.OFFLINE  # stays offline
    await cleanup_homes(conns, [driver])


async def test_only_drivers_holding_orders_publish_their_positions_to_them(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver, idle = f"d_{uid}", f"i_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    await put(store, region, idle, 10, VehicleType.CAR)
    redis = conns.require_redis()
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.tracking_channel("o1"), keys.tracking_channel("o2"))

    async def heard() -> list[tuple[str, str]]:
        found, until = [], time.monotonic() + 0.5
        while (left := until - time.monotonic()) > 0:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
            if msg is not None:
                found.append((msg["channel"].decode(), json.loads(msg["data"])["driver_id"]))
        return found

    async def report_both() -> None:
        fixes = [Fix(d, region, *offset(5), time.time()) for d in (driver, idle)]
        assert await store.apply_fixes(region, fixes) == [Outcome.APPLIED] * 2

    await store.add_order(region, driver, "o1")
    await store.add_order(region, driver, "o2")
    assert await store.carrying(region) == {driver}
    await report_both()
    assert sorted(await heard()) == [("order:o1:driver_location", driver),
                                     ("order:o2:driver_location", driver)]  # fmt: skip
    await store.remove_order(region, driver, "o1")
    await report_both()
    assert await heard() == [("order:o2:driver_location", driver)]
    await store.remove_order(region, driver, "o2")
    assert await store.carrying(region) == set()
    await report_both()
    assert await heard() == []
    await redis.sadd(keys.carrying(region), idle)  # a stale entry of the index: no orders
    await report_both()
    assert await heard() == []
    await pubsub.aclose()
    await cleanup_homes(conns, [driver, idle])


async def test_fixes_are_stored_after_redis_forgot_the_ingest_script(
    conns: Connections, region: str, uid: str
) -> None:
    """The ingest call is packed by hiredis and sent on a pooled connection of its own: a
    server that lost its scripts (restarted, flushed) is given the script again."""
    store = make_store(conns)
    driver = f"d_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    await conns.require_redis().script_flush()
    await report(store, region, driver, 30)
    assert await store.position(region, driver) == pytest.approx(offset(30), abs=1e-5)
    await cleanup_homes(conns, [driver])


async def test_a_fix_for_a_driver_registered_elsewhere_is_not_applied_here(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    fix = Fix(f"nobody_{uid}", region, 37.78, -122.41, time.time())
    assert await store.apply_fixes(region, [fix]) == [Outcome.NOT_HERE]


async def test_an_expired_heartbeat_means_offline_and_never_a_candidate(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns, ttl_s=1)
    driver = f"d_{uid}"
    await put(store, region, driver, 10, VehicleType.CAR)
    assert [c.driver_id for c in await store.find_available(region, *CENTER, 1000, 5)] == [driver]
    deadline = time.monotonic() + 10
    while await store.status(region, driver) is not DriverStatus.OFFLINE:
        assert time.monotonic() < deadline, "the heartbeat never expired"
        await asyncio.sleep(0.2)
    assert await store.find_available(region, *CENTER, 1000, 5) == []
    await cleanup_homes(conns, [driver])


async def test_a_driver_at_capacity_is_busy_until_an_order_is_removed(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    bike, car = f"bike_{uid}", f"car_{uid}"
    await put(store, region, bike, 10, VehicleType.BICYCLE)
    await put(store, region, car, 20, VehicleType.CAR)
    assert await store.add_order(region, bike, "o1") == 1
    assert await store.status(region, bike) is DriverStatus.BUSY
    with pytest.raises(Conflict):
        await store.add_order(region, bike, "o2")
    assert await store.add_order(region, car, "o3") == 1
    assert await store.add_order(region, car, "o4") == 2
    assert await store.status(region, car) is DriverStatus.AVAILABLE
    found = await store.find_available(region, *CENTER, 1000, 5)
    assert [(c.driver_id, c.active_orders) for c in found] == [(car, 2)]
    assert await store.remove_order(region, bike, "o1") == 0
    assert await store.status(region, bike) is DriverStatus.AVAILABLE
    assert [c.driver_id for c in await store.find_available(region, *CENTER, 1000, 5)] == [
        bike,
        car,
    ]
    await cleanup_homes(conns, [bike, car])


async def test_a_driver_holding_orders_cannot_go_offline(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    await store.add_order(region, driver, "o1")
    with pytest.raises(Conflict):
        await store.set_status(region, driver, DriverStatus.OFFLINE)
    await store.remove_order(region, driver, "o1")
    assert await store.set_status(region, driver, DriverStatus.OFFLINE) is DriverStatus.OFFLINE
    lat, lng = offset(5)
    await store.apply_fixes(region, [Fix(driver, region, lat, lng, time.time() + 1)])
    assert await store.status(region, driver) is DriverStatus.OFFLINE
    assert await store.set_status(region, driver, DriverStatus.AVAILABLE) is DriverStatus.AVAILABLE
    await cleanup_homes(conns, [driver])


async def test_only_one_of_many_racers_takes_an_assignment_lock(
    conns: Connections, region: str
) -> None:
    store = make_store(conns)
    locks = await asyncio.gather(*(store.acquire_lock(region, "ord_1") for _ in range(20)))
    held = [lock for lock in locks if lock is not None]
    assert len(held) == 1
    ttl = await conns.require_redis().ttl(held[0].key)
    assert 0 < ttl <= 30


async def test_a_lock_is_released_only_by_its_owner(conns: Connections, region: str) -> None:
    store = make_store(conns)
    lock = await store.acquire_lock(region, "ord_2")
    assert lock is not None
    impostor = type(lock)(lock.key, "not-the-token")
    assert not await store.release_lock(impostor)
    assert await store.acquire_lock(region, "ord_2") is None
    assert await store.release_lock(lock)
    assert await store.acquire_lock(region, "ord_2") is not None


async def test_the_lock_and_the_reservation_are_taken_together_or_not_at_all(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    redis = conns.require_redis()
    bike, car = f"bike_{uid}", f"car_{uid}"
    await put(store, region, bike, 10, VehicleType.BICYCLE)
    await put(store, region, car, 20, VehicleType.CAR)
    taken = await store.lock_and_add_order(region, bike, "ord_a")
    assert taken is not None
    lock, added = taken
    assert added and await redis.get(lock.key) == lock.token.encode()
    assert 0 < await redis.ttl(lock.key) <= 30
    assert await store.active_orders(region, bike) == {"ord_a"}
    # Someone holds the order's lock: nothing changes for the driver asked for.
    assert await store.lock_and_add_order(region, car, "ord_a") is None
    assert await store.active_orders(region, car) == set()
    # A refused driver (a full bicycle) raises, and the lock it took is let go.
    with pytest.raises(Conflict, match="capacity"):
        await store.lock_and_add_order(region, bike, "ord_b")
    assert await redis.exists(keys.assignment_lock(region, "ord_b")) == 0
    assert await store.active_orders(region, bike) == {"ord_a"}
    # Let go with a message published in the same round trip.
    pubsub = redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(f"chan_{uid}")
    try:
        assert await store.release_lock(lock, publish=[(f"chan_{uid}", "hello")])
        message = None
        for _ in range(50):
            message = await pubsub.get_message(timeout=0.1)
            if message is not None:
                break
        assert message is not None and message["data"] == b"hello"
    finally:
        await pubsub.aclose()
    assert await redis.exists(lock.key) == 0
    # The order again for the driver holding it: locked, but nothing added.
    again = await store.lock_and_add_order(region, bike, "ord_a")
    assert again is not None and not again[1]
    assert await store.active_orders(region, bike) == {"ord_a"}
    await cleanup_homes(conns, [bike, car])


async def test_nearest_available_drivers_come_nearest_first_in_one_round_trip(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    drivers = []
    # 60 busy bicycles close by force the search past its first ring and first count.
    for i in range(60):
        name = f"busy{i}_{uid}"
        await put(store, region, name, 50 + i, VehicleType.BICYCLE)
        await store.add_order(region, name, f"o{i}")
        drivers.append(name)
    for i, metres in enumerate([2900, 700, 1500, 2500]):
        name = f"free{i}_{uid}"
        await put(store, region, name, metres, VehicleType.CAR if i % 2 else VehicleType.SCOOTER)
        drivers.append(name)
    # Every command the store sends, by redis-py's client or packed on a pooled connection.
    calls: list[Any] = []
    original, packed = store.redis.execute_command, store._send_packed

    async def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await original(*args, **kwargs)

    async def counting_packed(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return await packed(*args, **kwargs)

    store.redis.execute_command = counting  # type: ignore[method-assign]
    store._send_packed = counting_packed  # type: ignore[method-assign]
    try:
        found = await store.find_available(region, *CENTER, 3218.688, 3)
    finally:
        store.redis.execute_command = original  # type: ignore[method-assign]
        store._send_packed = packed  # type: ignore[method-assign]
    assert len(calls) == 1
    assert [c.driver_id for c in found] == [f"free1_{uid}", f"free2_{uid}", f"free3_{uid}"]
    assert [round(c.distance_m, -1) for c in found] == [700, 1500, 2500]
    scooters = await store.find_available(
        region, *CENTER, 3218.688, 10, vehicle_types=[VehicleType.SCOOTER]
    )
    assert [c.driver_id for c in scooters] == [f"free2_{uid}", f"free0_{uid}"]
    await cleanup_homes(conns, drivers)


async def test_moving_a_driver_takes_its_state_out_of_the_old_region(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns)
    driver = f"d_{uid}"
    other = f"{region}_b"
    await put(store, region, driver, 0, VehicleType.CAR)
    await store.add_order(region, driver, "o1")
    home = await store.move_driver(driver, other)
    assert home.region == other
    assert await store.position(region, driver) is None
    assert await store.active_orders(other, driver) == {"o1"}
    assert await store.carrying(other) == {driver}  # the index of drivers holding orders
    assert await store.carrying(region) == set()
    assert not await conns.require_redis().exists(keys.profile(region, driver))
    assert not await conns.require_redis().hexists(keys.last_fix(region), driver)
    # The last fix's time moved too: an older fix is still stale in the new region.
    stamp = await conns.require_redis().hget(keys.last_fix(other), driver)
    assert stamp is not None
    older = Fix(driver, other, 37.70, -122.41, float(stamp) - 1)
    assert await store.apply_fixes(other, [older]) == [Outcome.STALE]
    await purge(conns, other, [driver])


async def test_an_expired_driver_holding_orders_stays_pending_until_acknowledged(
    conns: Connections, region: str, uid: str
) -> None:
    store = make_store(conns, ttl_s=1)
    driver, idle = f"d_{uid}", f"idle_{uid}"
    await put(store, region, driver, 0, VehicleType.CAR)
    await put(store, region, idle, 5, VehicleType.CAR)
    await store.add_order(region, driver, "o1")
    deadline = time.monotonic() + 10
    pending = await store.sweep_expired([region])
    while not pending:
        assert time.monotonic() < deadline, "the sweep never saw the expiry"
        await asyncio.sleep(0.2)
        pending = await store.sweep_expired([region])
    assert [(p.driver_id, p.order_ids) for p in pending] == [(driver, ("o1",))]
    # A monitor that restarts before acknowledging sees the driver again.
    assert [p.driver_id for p in await store.sweep_expired([region])] == [driver]
    assert await store.position(region, driver) is None
    assert await store.position(region, idle) is None
    await store.ack_unavailable(pending[0])
    assert await store.sweep_expired([region]) == []
    await cleanup_homes(conns, [driver, idle])


EARTH_RADIUS_M = 6372797.560856  # Redis's own, for its GEO distances


def redis_distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    u = math.sin((p2 - p1) / 2)
    v = math.sin(math.radians(lng2 - lng1) / 2)
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(u * u + math.cos(p1) * math.cos(p2) * v * v))


@pytest.mark.parametrize("area_m2", [None, 40_000.0, 4e9])
async def test_the_ring_search_equals_a_brute_force_over_thousands_of_drivers(
    conns: Connections, region: str, uid: str, area_m2: float | None
) -> None:
    """Also when the region's area says drivers stand far denser (rings from a few metres) or
    far sparser (the planned rings only) than they do here: the rings decide what is scanned
    at once, never the answer."""
    # Heartbeats that outlast the test on a slow host (it makes thousands of calls): an
    # expiry meanwhile would take drivers out of the search, not of the brute force.
    store = make_store(conns, ttl_s=3600, areas=None if area_m2 is None else {region: area_m2})
    rng = random.Random(uid)
    vehicles = list(VehicleType)
    drivers = [(f"bf{i}_{uid}", region, vehicles[i % 3]) for i in range(3000)]
    await store.register_many(drivers)
    now = time.time()
    # Dense in the middle (hundreds in the first rings), sparse farther out.
    fixes = [
        Fix(d, region, *offset_by(rng.gauss(0, 800), rng.gauss(0, 800)), now) for d, _, _ in drivers
    ]
    for start in range(0, len(fixes), 500):
        await store.apply_fixes(region, fixes[start : start + 500])
    unavailable: set[str] = set()
    for d, _, vehicle in rng.sample(drivers, 900):
        if rng.random() < 0.5:
            await store.set_status(region, d, DriverStatus.OFFLINE)
            unavailable.add(d)
        else:
            for n in range(CAPS[vehicle.value]):  # full: busy
                await store.add_order(region, d, f"o{n}_{d}")
            unavailable.add(d)
    for d, _, _ in rng.sample(drivers, 200):  # one order short of full, or a bicycle full
        if d not in unavailable and await store.add_order(region, d, f"x_{d}") >= CAPS.get(
            store_vehicle(drivers, d), 1
        ):
            unavailable.add(d)
    ids = [d for d, _, _ in drivers]
    stored = await conns.require_redis().geopos(keys.locations(region), *ids)
    where = {d: (float(p[1]), float(p[0])) for d, p in zip(ids, stored, strict=True)}
    kind = {d: v for d, _, v in drivers}
    for _ in range(12):
        lat, lng = offset_by(rng.gauss(0, 600), rng.gauss(0, 600))
        radius = rng.choice([150.0, 600.0, 1500.0, 3218.688])
        limit = rng.choice([1, 10, 25])
        types = rng.choice([None, [VehicleType.CAR], [VehicleType.BICYCLE, VehicleType.SCOOTER]])
        dist = {d: redis_distance_m(lat, lng, *where[d]) for d in ids}
        while any(abs(x - radius) <= 0.01 for x in dist.values()):
            radius += 0.05  # a driver on the circle's edge: rounding would decide, not the code
        expected = sorted(
            (d for d in ids if d not in unavailable and dist[d] <= radius
             and (types is None or kind[d] in types)),
            key=dist.__getitem__,
        )[:limit]  # fmt: skip
        found = await store.find_available(region, lat, lng, radius, limit, types)
        assert [c.driver_id for c in found] == expected
        assert all(abs(c.distance_m - dist[c.driver_id]) < 0.01 for c in found)
    await cleanup_homes(conns, ids)


def offset_by(north_m: float, east_m: float) -> tuple[float, float]:
    return (
        CENTER[0] + north_m / 111_195.0,
        CENTER[1] + east_m / (111_195.0 * math.cos(math.radians(CENTER[0]))),
    )


def store_vehicle(drivers: list[tuple[str, str, VehicleType]], driver_id: str) -> str:
    return next(v.value for d, _, v in drivers if d == driver_id)
