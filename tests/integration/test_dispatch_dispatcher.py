"""The dispatcher on real servers: road travel times on the San Francisco map, the fleet in
Redis, assignments in PostgreSQL, and the dispatch consumer on a stream of its own."""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ontheway.connections import Connections, GraphStore
from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.batching import BatchDispatcher, RoundResult, open_key
from ontheway.dispatch.dispatcher import (
    Dispatcher,
    NoDriverYet,
    dispatch_consumer,
    flagged_key,
    placed_snapshot,
)
from ontheway.events import worker as worker_module
from ontheway.events.bus import Delivery
from ontheway.events.consumers import Consumer
from ontheway.events.model import Event
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.events.relay import relay_batch, start_at_end
from ontheway.events.worker import WorkerStats, handle_once, run_worker
from ontheway.fleet import keys
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.ids import new_id
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.regions import Catalog, LatLng
from ontheway.roads.importer import import_osm
from ontheway.roads.network import RoadNetwork
from ontheway.roads.routing import RoadService
from ontheway.roads.store import graph_exists, graph_name
from ontheway.seeding import seed_with_fleet
from ontheway.settings import Settings
from tests.helpers import order_for

SF_MAP = Path(__file__).parents[1] / "data" / "osm" / "san-francisco-downtown-drive.osm.bz2"


@pytest.fixture(scope="module")
async def roads(settings: Settings, catalog: Catalog) -> AsyncIterator[RoadService]:
    """Routing over ``roads:{sf}``, imported from the downtown extract only if absent."""
    store = GraphStore(settings.require_falkordb_url(), settings.dependency_timeout_s)
    db = await store.db()
    if not await graph_exists(db, graph_name("sf")):
        await import_osm(db, "sf", SF_MAP)
    yield RoadService(store, catalog)
    await db.connection.connection_pool.disconnect()
    await store.aclose()


@pytest.fixture(scope="module")
async def town(
    conns: Connections, catalog: Catalog, settings: Settings, roads: RoadService
) -> AsyncIterator[dict[str, Any]]:
    """San Francisco seeded afresh; its first restaurant is moved onto the downtown map
    (the seed spreads restaurants over the whole city, the extract covers downtown). At
    the module's end its drivers are taken off the map: the next module's town may stand
    on the same node, and a driver left there would outrank the drivers of its tests."""
    seeded = await seed_with_fleet(
        conns, catalog, settings, "sf", restaurants=2, customers=4, drivers=22,
        seed=random.randrange(1 << 30),
    )  # fmt: skip
    network = await roads.network("sf")
    # A random node near the middle of the map, so that runs do not share one spot.
    lats, lngs = network.graph.lat[network.routable], network.graph.lng[network.routable]
    middle = (np.abs(lats - np.median(lats)) < 0.008) & (np.abs(lngs - np.median(lngs)) < 0.008)
    pick = random.choice(np.flatnonzero(middle).tolist())
    node = network.snap(float(lats[pick]), float(lngs[pick]))
    assert node is not None
    # Beside a node, not on it: drivers stand on nodes (see the no-driver test).
    spot = next(
        (node.lat + d, node.lng)
        for d in (0.0001, -0.0001, 0.00015, -0.00015)
        if (s := network.snap(node.lat + d, node.lng)) is not None and 3 <= s.distance_m <= 30
    )
    restaurant = seeded["restaurants"][0] | {"lat": spot[0], "lng": spot[1]}
    async with conns.shard_connection("americas") as conn:
        await conn.execute(
            "UPDATE restaurants SET location = ST_MakePoint(%s, %s)::geography"
            " WHERE restaurant_id = %s",
            (spot[1], spot[0], restaurant["restaurant_id"]),
        )
        await conn.commit()
    seeded["restaurant"] = restaurant
    seeded["network"] = network
    # Every driver of this module drives a car (capacity 3), whatever the seed drew.
    await open_store(conns.require_redis(), settings).register_many(
        [(d["driver_id"], "sf", VehicleType.CAR) for d in seeded["drivers"]]
    )
    seeded["spare"] = list(seeded["drivers"])
    yield seeded
    await conns.require_redis().zrem(
        keys.locations("sf"), *(d["driver_id"] for d in seeded["drivers"])
    )


def node_at(town: dict[str, Any], distance_m: float) -> tuple[float, float]:
    """A routable node about ``distance_m`` from the restaurant (crow's distance)."""
    network: RoadNetwork = town["network"]
    r = town["restaurant"]
    lat, lng = network.graph.lat[network.routable], network.graph.lng[network.routable]
    dy = (lat - r["lat"]) * 111_320
    dx = (lng - r["lng"]) * 111_320 * math.cos(math.radians(r["lat"]))
    best = int(abs((dx**2 + dy**2) ** 0.5 - distance_m).argmin())
    return float(lat[best]), float(lng[best])


def take_drivers(town: dict[str, Any], n: int) -> list[str]:
    """Cars no other test of this module uses."""
    taken, town["spare"] = town["spare"][:n], town["spare"][n:]
    assert len(taken) == n
    return [d["driver_id"] for d in taken]


async def put(fleet: FleetStore, driver_id: str, at: tuple[float, float]) -> None:
    await fleet.apply_fixes("sf", [Fix(driver_id, "sf", at[0], at[1], time.time())])


async def perfect_cars(
    fleet: FleetStore, town: dict[str, Any], *spots: tuple[float, float]
) -> list[str]:
    """Cars with a perfect record, one at each spot."""
    drivers = take_drivers(town, len(spots))
    for driver, at in zip(drivers, spots, strict=True):
        await fleet.register_driver(driver, "sf", VehicleType.CAR, rating=5.0, acceptance_rate=1.0)
        await put(fleet, driver, at)
    return drivers


def make_dispatcher(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    **changes: Any,
) -> Dispatcher:
    return Dispatcher(
        orders,
        queries,
        fleet,
        Assignments(orders, fleet, conns.require_redis()),
        roads,
        # These tests are about choosing and assigning: drivers take what they are given
        # (offers and answers: test_dispatch_offers.py).
        settings.model_copy(update={"dispatch_auto_accept": True, **changes}),
    )


@pytest.fixture
def fleet(conns: Connections, settings: Settings) -> FleetStore:
    return open_store(conns.require_redis(), settings)


@pytest.fixture
def dispatcher(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
) -> Dispatcher:
    return make_dispatcher(orders, queries, fleet, conns, roads, settings)


async def place(orders: OrderService, town: dict[str, Any], uid: str) -> str:
    order, _ = await orders.place(f"user_{uid}", order_for(town["restaurant"]))
    return str(order["order_id"])


async def assigned_events(queries: OrderQueries, oid: str) -> int:
    events = await queries.events(oid)
    return sum(e["event_type"] == EventType.DRIVER_ASSIGNED.value for e in events)


async def test_an_order_is_assigned_to_the_best_scored_driver_nearby(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    # Perfect record and no trip to make: the highest score there is, whoever else is about.
    near, _far = await perfect_cars(fleet, town, node_at(town, 0), node_at(town, 1200))
    oid = await place(orders, town, uid)
    outcome = await dispatcher.dispatch(oid)
    assert outcome.assigned and outcome.driver_id == near
    assert (await queries.get(oid))["driver_id"] == near
    assert oid in await fleet.active_orders("sf", near)


async def placed_event(queries: OrderQueries, oid: str) -> Event:
    """The order's ``ORDER_PLACED`` as the stream delivers it."""
    (row,) = [e for e in await queries.events(oid) if e["event_type"] == "ORDER_PLACED"]
    return Event(
        str(row["event_id"]), oid, row["event_type"], row["ts"], row["data"], row["actor"],
        "americas", 1,
    )  # fmt: skip


async def test_the_placed_snapshot_is_the_order_as_read_and_a_stale_one_assigns_nothing(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    await perfect_cars(fleet, town, node_at(town, 0))
    oid = await place(orders, town, uid)
    snapshot = placed_snapshot(await placed_event(queries, oid))
    assert snapshot is not None
    row = await queries.get(oid)
    assert snapshot == {k: row[k] for k in snapshot}
    # Cancelled before the dispatcher handles its ORDER_PLACED: the snapshot still says it
    # searches. The assignment's conditional update refuses it and the reservation goes.
    await orders.transition(oid, EventType.ORDER_CANCELLED, f"user_{uid}")
    outcome = await dispatcher.dispatch(oid, snapshot)
    assert not outcome.assigned and outcome.driver_id is None
    for driver in town["drivers"]:
        assert oid not in await fleet.active_orders("sf", driver["driver_id"])
    assert await assigned_events(queries, oid) == 0
    assert (await queries.get(oid))["status"] == "cancelled"
    assert await fleet.redis.exists(keys.assignment_lock("sf", oid)) == 0


async def test_a_driver_gone_unavailable_is_replaced_by_another(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    first, second = take_drivers(town, 2)
    await put(fleet, first, node_at(town, 0))
    await put(fleet, second, node_at(town, 800))
    oid = await place(orders, town, uid)
    # Drivers of earlier tests may stand on the same node: whoever wins, it goes away.
    first = str((await dispatcher.dispatch(oid)).driver_id)
    # The driver vanishes: the fleet lets go of it and the order searches again.
    await fleet.remove_order("sf", first, oid)
    await conns_delete_status(fleet, first)
    await orders.transition(oid, EventType.DRIVER_UNAVAILABLE, "fleet")
    outcome = await dispatcher.dispatch(oid)
    assert outcome.assigned and outcome.driver_id not in (None, first)
    row = await queries.get(oid)
    assert row["status"] == "driver_assigned" and row["driver_id"] == outcome.driver_id


async def conns_delete_status(fleet: FleetStore, driver_id: str) -> None:
    """The heartbeat expires: the driver is offline."""
    await fleet.redis.delete(f"driver:{{sf}}:{driver_id}:status")


async def test_with_no_driver_in_reach_the_order_is_retried_then_flagged(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    town: dict[str, Any],
    uid: str,
) -> None:
    oid = await place(orders, town, uid)
    # Drivers of other tests stand on the restaurant's node, at least 3 m away: none in 1.6 m.
    nobody = {"dispatch_radii_mi": (0.001,)}
    patient = make_dispatcher(orders, queries, fleet, conns, roads, settings, **nobody)
    with pytest.raises(NoDriverYet):
        await patient.dispatch(oid)
    assert await fleet.redis.zscore(flagged_key("sf"), oid) is None
    late = make_dispatcher(
        orders, queries, fleet, conns, roads, settings, dispatch_flag_after_s=0.001, **nobody
    )
    with pytest.raises(NoDriverYet):
        await late.dispatch(oid)
    assert await fleet.redis.zscore(flagged_key("sf"), oid) is not None
    assert (await queries.get(oid))["status"] == "searching_driver"
    kinds = [e["event_type"] for e in await queries.events(oid)]
    assert kinds.count("NO_DRIVER_FOUND") == 1
    # A driver turns up: the next attempt assigns.
    (driver,) = take_drivers(town, 1)
    await put(fleet, driver, node_at(town, 0))
    assert (
        await make_dispatcher(orders, queries, fleet, conns, roads, settings).dispatch(oid)
    ).assigned
    await fleet.redis.zrem(flagged_key("sf"), oid)


async def test_the_same_order_dispatched_twice_is_assigned_once(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    for driver in take_drivers(town, 2):
        await put(fleet, driver, node_at(town, 100))
    oid = await place(orders, town, uid)
    first, again = await dispatcher.dispatch(oid), await dispatcher.dispatch(oid)
    assert first.assigned and not again.assigned and again.driver_id == first.driver_id
    assert await assigned_events(queries, oid) == 1


async def test_an_order_locked_by_a_killed_worker_is_assigned_once_the_lock_expires(
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    town: dict[str, Any],
    uid: str,
) -> None:
    fleet = open_store(conns.require_redis(), settings.model_copy(update={"fleet_lock_ttl_s": 1}))
    (driver,) = take_drivers(town, 1)
    await put(fleet, driver, node_at(town, 0))
    oid = await place(orders, town, uid)
    # The killed worker took the lock and reserved the driver, then died before committing.
    assert await fleet.acquire_lock("sf", oid) is not None
    dispatcher = make_dispatcher(orders, queries, fleet, conns, roads, settings)
    with pytest.raises(NoDriverYet):
        await dispatcher.dispatch(oid)
    for _ in range(50):
        await asyncio.sleep(0.1)
        try:
            outcome = await dispatcher.dispatch(oid)
        except NoDriverYet:
            continue
        break
    assert outcome.assigned and outcome.driver_id is not None
    assert await assigned_events(queries, oid) == 1


@pytest.fixture
async def bus(conns: Connections) -> AsyncIterator[RedisStreamsBus]:
    """A stream of its own, fed by a relay cursor of its own."""
    name = uuid.uuid4().hex[:10]
    made = RedisStreamsBus(
        conns.require_redis(),
        stream=f"test:dispatch:{name}",
        dead_stream=f"test:dispatchdead:{name}",
        max_attempts=50,
        claim_idle_s=0.2,
    )
    await start_at_end(conns, "americas", f"test-{name}")
    made.cursor = f"test-{name}"  # type: ignore[attr-defined]
    yield made
    await conns.require_redis().delete(made.stream, made.dead_stream)


async def relay(conns: Connections, bus: RedisStreamsBus) -> None:
    """Publish what the shard's outbox holds for the test's stream. Called again and again:
    the relay holds back events behind older running transactions (other processes on the
    shared stack keep some open), so one call may publish nothing yet."""
    await relay_batch(conns, "americas", bus, bus.cursor)  # type: ignore[attr-defined]


def own_consumer(dispatcher: Dispatcher, uid: str) -> Consumer:
    """The dispatch consumer under a name of the test's own: events are marked handled per
    consumer name, and other processes on the shared stack run a "dispatch" consumer too
    (their relays publish this test's orders to their streams as well)."""
    return dispatch_consumer(dispatcher, f"dispatch_test_{uid}")


def errors_of(stats: list[WorkerStats], order_ids: list[str]) -> list[str]:
    """The failures about these orders (the test's stream carries the shard's other orders
    too, placed meanwhile by other tests)."""
    return [e for s in stats for e in s.errors if any(oid in e for oid in order_ids)]


async def test_two_dispatch_workers_assign_every_order_exactly_once(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    bus: RedisStreamsBus,
    town: dict[str, Any],
    uid: str,
) -> None:
    drivers = take_drivers(town, 4)
    for i, driver in enumerate(drivers):
        await put(fleet, driver, node_at(town, 50 * i))
    oids = [await place(orders, town, f"{uid}_{i}") for i in range(6)]
    consumer = own_consumer(dispatcher, uid)
    stop = asyncio.Event()
    stats = [WorkerStats(), WorkerStats()]
    tasks = [
        asyncio.create_task(run_worker(conns, bus, consumer, stop=stop, poll_s=0.1, stats=s))
        for s in stats
    ]
    for _ in range(200):
        rows = [await queries.get(oid) for oid in oids]
        if all(row["status"] == "driver_assigned" for row in rows):
            break
        await relay(conns, bus)
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    assert all(s.handled > 0 for s in stats) or sum(s.handled for s in stats) >= len(oids)
    assert not errors_of(stats, oids)
    rows = {oid: await queries.get(oid) for oid in oids}
    # Once the four are busy, a free driver elsewhere in San Francisco may win (scoring
    # counts held orders): every driver that could hold one is looked at.
    holders: dict[str, list[str]] = {oid: [] for oid in oids}
    candidates = {d["driver_id"] for d in town["drivers"]} | {r["driver_id"] for r in rows.values()}
    for driver in candidates:
        for oid in await fleet.active_orders("sf", driver):
            if oid in holders:
                holders[oid].append(driver)
    for oid in oids:
        row = rows[oid]
        assert row["status"] == "driver_assigned"
        assert holders[oid] == [row["driver_id"]]
        assert await assigned_events(queries, oid) == 1


async def test_only_the_configured_vehicle_types_are_dispatched(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    town: dict[str, Any],
    uid: str,
) -> None:
    (car,) = take_drivers(town, 1)
    await put(fleet, car, node_at(town, 0))
    oid = await place(orders, town, uid)
    close = {"dispatch_radii_mi": (0.05,)}  # 80 m: this module's drivers, nobody else's
    bikes = make_dispatcher(
        orders, queries, fleet, conns, roads, settings, dispatch_vehicle_types=("bicycle",), **close
    )
    with pytest.raises(NoDriverYet):
        await bikes.dispatch(oid)
    cars = make_dispatcher(
        orders, queries, fleet, conns, roads, settings, dispatch_vehicle_types=("car",), **close
    )
    assert (await cars.dispatch(oid)).assigned


async def test_an_order_without_driver_waits_on_the_open_list_and_goes_when_one_comes(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    bus: RedisStreamsBus,
    town: dict[str, Any],
    uid: str,
) -> None:
    await fleet.redis.delete(open_key("sf"))  # what other runs left on the shared stack
    oid = await place(orders, town, uid)
    lonely = make_dispatcher(
        orders, queries, fleet, conns, roads, settings,
        dispatch_radii_mi=(0.001,), dispatch_flag_after_s=0.5, dispatch_retry_interval_s=0.1,
    )  # fmt: skip
    lonely.batch = BatchDispatcher(lonely)
    stop = asyncio.Event()
    stats = WorkerStats()
    task = asyncio.create_task(
        run_worker(conns, bus, own_consumer(lonely, uid), stop=stop, poll_s=0.1, stats=stats)
    )
    rounds = asyncio.create_task(lonely.batch.run(["sf"], stop))
    for _ in range(200):
        flagged = await fleet.redis.zscore(flagged_key("sf"), oid) is not None
        if flagged:
            break
        await relay(conns, bus)
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a few more rounds, still without a driver
    stop.set()
    await asyncio.gather(task, rounds)
    # Flagged for operations, waiting on the open list; the event itself did not fail (it
    # is never dead-lettered for want of a driver).
    assert await fleet.redis.zscore(flagged_key("sf"), oid) is not None
    assert await fleet.redis.zscore(open_key("sf"), oid) is not None
    assert errors_of([stats], [oid]) == []
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM consumer_failures WHERE consumer = %s AND order_id = %s",
            (f"dispatch_test_{uid}", oid),
        )
        assert (await cur.fetchone())["n"] == 0
    assert (await queries.get(oid))["status"] == "searching_driver"
    # A driver comes: the next round gives it the order.
    (car,) = take_drivers(town, 1)
    await put(fleet, car, node_at(town, 100))
    served = BatchDispatcher(
        make_dispatcher(orders, queries, fleet, conns, roads, settings,
                        dispatch_retry_interval_s=0.1)
    )  # fmt: skip
    result = await next_round(served)
    assert result.committed >= 1
    assert (await queries.get(oid))["status"] == "driver_assigned"
    assert await fleet.redis.zscore(open_key("sf"), oid) is None
    await fleet.redis.zrem(flagged_key("sf"), oid)


def off_map_spot(town: dict[str, Any]) -> tuple[float, float]:
    """A point within 2 miles of the restaurant but farther than snapping reaches from roads."""
    network: RoadNetwork = town["network"]
    r = town["restaurant"]
    for distance_m in range(800, 3000, 100):
        for bearing in range(0, 360, 15):
            lat = r["lat"] + distance_m * math.cos(math.radians(bearing)) / 111_320
            lng = r["lng"] + distance_m * math.sin(math.radians(bearing)) / (
                111_320 * math.cos(math.radians(r["lat"]))
            )
            if network.snap(lat, lng) is None:
                return lat, lng
    raise AssertionError("the map covers everything within 2 miles")


async def test_a_driver_off_the_road_map_is_left_out_not_fatal(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    on_map, off_map = await perfect_cars(fleet, town, node_at(town, 0), off_map_spot(town))
    oid = await place(orders, town, uid)
    # Without a straight-line fallback an off-map origin used to fail the whole matrix.
    assert dispatcher.settings.dispatch_straight_line_kph is None
    outcome = await dispatcher.dispatch(oid)
    assert outcome.assigned and outcome.driver_id == on_map
    assert oid not in await fleet.active_orders("sf", off_map)


# -- the batched policy (batching.py) ----------------------------------------------------------


def batcher(dispatcher: Dispatcher, **changes: Any) -> BatchDispatcher:
    """A batch dispatcher choosing among scooters within 600 m only (capacity 2), so that
    the test's own scooter is the one driver about, whatever the other tests left near the
    restaurant (each test takes its scooter off the map at the end)."""
    settings = dispatcher.settings.model_copy(
        update={"dispatch_policy": "batched", "dispatch_batch_window_s": 0.2,
                "dispatch_vehicle_types": ("scooter",), "dispatch_radii_mi": (0.37,), **changes}
    )  # fmt: skip
    d = Dispatcher(
        dispatcher.orders, dispatcher.queries, dispatcher.fleet, dispatcher.assignments,
        dispatcher.roads, settings,
    )  # fmt: skip
    return BatchDispatcher(d)


@asynccontextmanager
async def a_scooter(
    fleet: FleetStore, town: dict[str, Any], distance_m: float
) -> AsyncIterator[str]:
    (driver,) = take_drivers(town, 1)
    await fleet.register_driver(driver, "sf", VehicleType.SCOOTER, rating=5.0, acceptance_rate=1.0)
    await put(fleet, driver, node_at(town, distance_m))
    try:
        yield driver
    finally:  # off the map: no later search finds it (it may hold orders: it stays busy)
        await fleet.redis.zrem(keys.locations("sf"), driver)


async def next_round(batch: BatchDispatcher) -> RoundResult:
    """The next round of sf once the last one's lock has expired."""
    for _ in range(50):
        result = await batch.round("sf")
        if result is not None:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError("the round lock never came free")


async def test_a_batched_round_bundles_ready_orders_of_a_restaurant_onto_one_short_fleet(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
    conns: Connections,
) -> None:
    await fleet.redis.delete(open_key("sf"))  # what other runs left on the shared stack
    batch = batcher(dispatcher)
    placed = [await place(orders, town, f"{uid}_{n}") for n in range(2)]
    for oid in placed:
        await orders.note(oid, EventType.ORDER_READY, "restaurant", {})
        await batch.enqueue("sf", oid)
    # And one whose restaurant no road reaches: it must not stop the round for the others.
    stray = await place(orders, town, f"{uid}_stray")
    lat, lng = off_map_spot(town)
    async with conns.shard_connection("americas") as conn:
        await conn.execute(
            "UPDATE orders SET restaurant_location = ST_MakePoint(%s, %s)::geography"
            " WHERE order_id = %s",
            (lng, lat, stray),
        )
        await conn.commit()
    await batch.enqueue("sf", stray)
    r = town["restaurant"]
    near = [{"restaurant_lat": r["lat"], "restaurant_lng": r["lng"]}]
    # Drivers that earlier tests left about (their heartbeats last a minute) leave the map.
    for left in await batch.drivers("sf", near):
        await fleet.redis.zrem(keys.locations("sf"), left.driver_id)
    async with a_scooter(fleet, town, 300) as scooter:
        pool = await batch.drivers("sf", near)
        assert [c.driver_id for c in pool] == [scooter], pool  # no one else's scooter about
        result = await next_round(batch)
    # Two orders ready and one driver: one bundle of both, assigned in this round; the stray
    # order went the per-order way (refused without a road map there) and stays open.
    assert (result.planned, result.bundles, result.committed, result.open) == (2, 1, 2, 1)
    assert await fleet.redis.zscore(open_key("sf"), stray) is not None
    assert (await queries.get(stray))["status"] == "searching_driver"
    await orders.transition(stray, EventType.ORDER_CANCELLED, f"user_{uid}_stray")
    for oid in placed:
        row = await queries.get(oid)
        assert (row["status"], row["driver_id"]) == ("driver_assigned", scooter)
    assert set(await fleet.active_orders("sf", scooter)) == set(placed)


async def test_a_batched_round_keeps_an_order_that_is_not_ready_for_a_later_round(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],
    uid: str,
) -> None:
    await fleet.redis.delete(open_key("sf"))
    batch = batcher(dispatcher, dispatch_flag_after_s=0.01)
    oid = await place(orders, town, uid)
    # Twenty minutes to cook, a few minutes' drive: leaving now would only mean waiting.
    await orders.note(oid, EventType.ORDER_CONFIRMED, "restaurant", {"prep_time_s": 1200})
    await batch.enqueue("sf", oid)
    async with a_scooter(fleet, town, 250) as scooter:
        result = await next_round(batch)
        assert (result.planned, result.committed, result.open) == (1, 0, 1)
        assert (await queries.get(oid))["status"] == "searching_driver"
        # Held back on purpose, not for want of a driver: not flagged for operations.
        assert await fleet.redis.zscore(flagged_key("sf"), oid) is None
        await orders.note(oid, EventType.ORDER_READY, "restaurant", {})
        result = await next_round(batch)
    assert (result.committed, result.open) == (1, 0)
    assert (await queries.get(oid))["driver_id"] == scooter


async def test_a_batched_round_drops_orders_no_longer_searching(
    dispatcher: Dispatcher,
    orders: OrderService,
    fleet: FleetStore,
    town: dict[str, Any],
    uid: str,
) -> None:
    await fleet.redis.delete(open_key("sf"))
    batch = batcher(dispatcher)
    oid = await place(orders, town, uid)
    await orders.transition(oid, EventType.ORDER_CANCELLED, f"user_{uid}")
    await batch.enqueue("sf", oid)
    result = await next_round(batch)
    assert (result.planned, result.open) == (0, 0)
    assert await fleet.redis.zscore(open_key("sf"), oid) is None


async def test_a_free_driver_further_away_outranks_one_next_door_with_a_delivery_to_make(
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    roads: RoadService,
    settings: Settings,
    town: dict[str, Any],
    uid: str,
) -> None:
    # The inner ring (5 m) holds only the busy driver, at the restaurant's door (other tests
    # put drivers on nodes, the restaurant stands beside one): the outer ring is searched too.
    # (Other tests' drivers may be about in San Francisco: the two are compared, not the
    # whole ranking, out of every candidate.)
    r = town["restaurant"]
    door = (r["lat"], r["lng"])
    busy, free = await perfect_cars(fleet, town, door, node_at(town, 1500))
    held = f"ord_sf_held{uid}"
    await fleet.add_order("sf", busy, held)
    at = LatLng(lat=r["lat"], lng=r["lng"])
    rings = {"dispatch_radii_mi": (0.003, 5.0), "dispatch_candidates": 200}
    try:
        picky = make_dispatcher(orders, queries, fleet, conns, roads, settings, **rings)
        ranked = {s.driver_id: s for s in await picky._ranked("sf", at)}
        order = list(ranked)
        assert ranked[busy].committed_s == 600 and ranked[free].committed_s == 0
        # 1.5 km by road is less than the ten minutes the busy driver's delivery counts for.
        assert ranked[free].reach_s < ranked[busy].reach_s
        assert order.index(free) < order.index(busy)
        # Counting held orders as no work at all, the busy driver is judged by its drive.
        blind = make_dispatcher(
            orders, queries, fleet, conns, roads, settings, **rings, dispatch_busy_s_per_order=0
        )
        again = {s.driver_id: s for s in await blind._ranked("sf", at)}
        assert busy in again and again[busy].committed_s == 0
    finally:
        await fleet.remove_order("sf", busy, held)


async def test_an_event_for_an_order_the_shard_does_not_have_is_skipped_and_marked_once(
    dispatcher: Dispatcher, conns: Connections, uid: str
) -> None:
    """The dispatch consumer is not transactional: an order that does not exist is logged and
    skipped, and the event is marked handled once, its mark committed alone with no flush of
    its own (which leaves the pool's connection as it was)."""
    event = Event(
        str(uuid.uuid4()), new_id("ord", "sf"), "ORDER_PLACED", datetime.now(UTC), {},
        "test", "americas", 0,
    )  # fmt: skip
    consumer = own_consumer(dispatcher, uid)
    assert not consumer.transactional
    assert await handle_once(conns, consumer, Delivery(event, 1, None)) is True
    assert await handle_once(conns, consumer, Delivery(event, 2, None)) is False  # duplicate
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM processed_events WHERE consumer = %s AND event_id = %s",
            (consumer.name, event.event_id),
        )
        assert await cur.fetchone() == {"n": 1}
        cur = await conn.execute("SHOW synchronous_commit")
        assert await cur.fetchone() == {"synchronous_commit": "on"}


async def test_an_assignment_marks_the_event_it_handles_in_its_own_statement(
    dispatcher: Dispatcher,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    town: dict[str, Any],
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The assignment's statement writes the ORDER_PLACED's mark with DRIVER_ASSIGNED: the
    worker writes none of its own, and a redelivery is a duplicate with no second effect."""
    await perfect_cars(fleet, town, node_at(town, 0))
    oid = await place(orders, town, uid)
    event = await placed_event(queries, oid)
    consumer = own_consumer(dispatcher, uid)

    async def mark_count() -> int:
        async with conns.shard_connection("americas") as conn:
            cur = await conn.execute(
                "SELECT count(*) AS n FROM processed_events WHERE consumer = %s AND event_id = %s",
                (consumer.name, event.event_id),
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    mark_alone = worker_module._MARK_ALONE
    monkeypatch.setattr(worker_module, "_MARK_ALONE", "SELECT 1/0")  # the worker's own mark
    assert await handle_once(conns, consumer, Delivery(event, 1, None)) is True
    monkeypatch.setattr(worker_module, "_MARK_ALONE", mark_alone)
    assert (await queries.get(oid))["status"] == "driver_assigned"
    assert await mark_count() == 1
    assert await assigned_events(queries, oid) == 1
    # Redelivered: the order is taken, the worker's own mark finds the first one.
    assert await handle_once(conns, consumer, Delivery(event, 2, None)) is False
    assert await mark_count() == 1 and await assigned_events(queries, oid) == 1
