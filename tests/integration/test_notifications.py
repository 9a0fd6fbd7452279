"""The notifications and ratings consumers on the real shards and Redis: who is told what,
one notification per event and recipient, the push after commit, drivers' ratings."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import pytest

from ontheway.auth import Principal, Role
from ontheway.connections import Connections
from ontheway.errors import Conflict
from ontheway.events.bus import Delivery
from ontheway.events.consumers import CONSUMERS, NOTIFICATIONS, RATINGS, Consumer
from ontheway.events.model import Event
from ontheway.events.worker import handle_once
from ontheway.fleet import keys
from ontheway.fleet.model import Fix, VehicleType
from ontheway.fleet.service import open_store
from ontheway.notifications.ratings import RateOrder, rate_order
from ontheway.notifications.store import NotificationQueries
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.settings import Settings
from tests.helpers import order_for

SHARD = "americas"  # San Francisco's


async def events_of(conns: Connections, order_id: str) -> list[Event]:
    """The order's events as the stream carries them, oldest first."""
    async with conns.shard_connection(SHARD) as conn:
        cur = await conn.execute(
            "SELECT event_id, order_id, event_type, ts, data, actor, seq FROM order_events"
            " WHERE order_id = %s ORDER BY seq",
            (order_id,),
        )
        rows = await cur.fetchall()
    return [Event(**{**r, "event_id": str(r["event_id"]), "shard": SHARD}) for r in rows]


async def handle_all(conns: Connections, consumer: Consumer, *order_ids: str) -> list[bool]:
    """Hand every event of the orders to the consumer, as the worker does."""
    fresh = []
    for order_id in order_ids:
        for event in await events_of(conns, order_id):
            fresh.append(await handle_once(conns, consumer, Delivery(event, 1, None)))
    return fresh


async def told(conns: Connections, order_id: str) -> Counter[tuple[str, str]]:
    """(recipient, kind) of every notification stored about the order."""
    async with conns.shard_connection(SHARD) as conn:
        cur = await conn.execute(
            "SELECT recipient_id, kind FROM notifications WHERE order_id = %s", (order_id,)
        )
        return Counter((r["recipient_id"], r["kind"]) for r in await cur.fetchall())


async def new_driver(conns: Connections, settings: Settings, driver_id: str) -> str:
    """A driver of San Francisco of the test's own, in PostgreSQL and the fleet."""
    async with conns.shard_connection(SHARD) as conn:
        await conn.execute(
            "INSERT INTO drivers (driver_id, name, vehicle_type, region) VALUES (%s, %s, 'car',"
            " 'sf')",
            (driver_id, f"Driver {driver_id[-4:]}"),
        )
    await open_store(conns.require_redis(), settings).register_driver(
        driver_id, "sf", VehicleType.CAR, rating=5.0
    )
    return driver_id


@dataclass
class World:
    """What the tests share: the stack, the services, San Francisco and the test's own ids."""

    conns: Connections
    settings: Settings
    orders: OrderService
    shards: ShardAccess
    sf: dict[str, Any]
    uid: str
    notifications: Consumer  # under a group name of the test's own

    @property
    def customer(self) -> str:
        return f"user_{self.uid}"

    @property
    def restaurant(self) -> str:
        return str(self.sf["restaurants"][0]["restaurant_id"])

    async def driver(self, suffix: str = "") -> str:
        return await new_driver(self.conns, self.settings, f"drv_{self.uid}{suffix}")

    async def place(self) -> str:
        order, _ = await self.orders.place(self.customer, order_for(self.sf["restaurants"][0]))
        return str(order["order_id"])

    async def listed(self, recipient: str, unread: bool = False) -> list[dict[str, Any]]:
        found = await NotificationQueries(self.conns, self.shards.catalog).for_recipient(
            recipient, 50, unread
        )
        assert found["unavailable"] == []
        notifications: list[dict[str, Any]] = found["notifications"]
        return notifications


@pytest.fixture
def world(
    conns: Connections,
    settings: Settings,
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> World:
    mine = replace(NOTIFICATIONS, name=f"notifications-{uid}")
    return World(conns, settings, orders, shards, sf, uid, mine)


async def delivered(world: World, driver: str) -> str:
    """An order placed, assigned to ``driver``, re-estimated, picked up and delivered."""
    oid, orders = await world.place(), world.orders
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    await orders.note(
        oid, EventType.ROUTE_UPDATED, "eta", {"estimated_delivery": "2030-01-01T12:30:00Z"}
    )
    for step in (
        EventType.DRIVER_ARRIVED_RESTAURANT,
        EventType.ORDER_PICKED_UP,
        EventType.ORDER_DELIVERED,
    ):
        await orders.transition(oid, step, driver)
    return oid


async def test_the_consumers_are_registered_for_the_worker_command() -> None:
    assert CONSUMERS["notifications"] is NOTIFICATIONS
    assert CONSUMERS["ratings"] is RATINGS


async def test_each_step_of_a_delivery_notifies_the_right_people_and_nobody_else(
    world: World,
) -> None:
    customer, driver = world.customer, await world.driver()
    oid = await delivered(world, driver)
    await handle_all(world.conns, world.notifications, oid)
    assert await told(world.conns, oid) == Counter({
        (world.restaurant, "new_order"): 1,
        (customer, "driver_assigned"): 1,
        (driver, "order_assigned"): 1,
        (customer, "eta_updated"): 1,
        (customer, "picked_up"): 1,
        (customer, "delivered"): 1,
    })  # fmt: skip
    mine = await world.listed(customer)
    assert [n["kind"] for n in mine] == ["delivered", "picked_up", "eta_updated", "driver_assigned"]
    assert "Driver" in mine[-1]["body"] and mine[-1]["data"]["driver_id"] == driver
    assert "12:30 UTC" in mine[2]["body"]
    assert await world.listed(f"{customer}x") == []


async def test_a_lost_driver_is_replaced_by_a_new_driver_and_a_cancellation_tells_everyone(
    world: World,
) -> None:
    customer, orders = world.customer, world.orders
    first, second = await world.driver("a"), await world.driver("b")
    oid = await world.place()
    await orders.note(oid, EventType.NO_DRIVER_FOUND, "dispatch", {"waited_s": 120})
    await orders.note(oid, EventType.DRIVER_OFFERED, "dispatch", {"driver_id": first})
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, first, driver_id=first)
    await orders.transition(oid, EventType.DRIVER_UNAVAILABLE, "fleet")
    await orders.note(oid, EventType.ORDER_FLAGGED, "ops", {"reason": "test"})
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=second)
    await orders.transition(oid, EventType.ORDER_CANCELLED, customer, data={"by": "customer"})
    await handle_all(world.conns, world.notifications, oid)
    assert await told(world.conns, oid) == Counter({
        (world.restaurant, "new_order"): 1,
        (customer, "no_driver_found"): 1,
        (first, "offer"): 1,
        (customer, "driver_assigned"): 1,
        (first, "order_assigned"): 1,
        (customer, "finding_new_driver"): 1,
        (customer, "new_driver"): 1,
        (second, "order_assigned"): 1,
        (customer, "order_cancelled"): 1,
        (world.restaurant, "order_cancelled"): 1,
        (second, "order_cancelled"): 1,
    })  # fmt: skip
    assert {n["kind"] for n in await world.listed(first)} == {"offer", "order_assigned"}


async def test_an_event_handled_twice_gives_one_notification(world: World) -> None:
    conns, mine = world.conns, world.notifications
    customer, driver, oid = world.customer, await world.driver(), await world.place()
    await world.orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    _placed, assigned = await events_of(conns, oid)
    delivery = Delivery(assigned, 1, None)
    assert await handle_once(conns, mine, delivery) is True
    assert await handle_once(conns, mine, delivery) is False
    # Even a second group (or a lost processed_events row) stores it once: ids are derived.
    again = replace(mine, name=f"{mine.name}-again")
    assert await handle_once(conns, again, delivery) is True
    assert await told(conns, oid) == Counter(
        {(customer, "driver_assigned"): 1, (driver, "order_assigned"): 1}
    )


async def test_new_notifications_are_pushed_to_the_recipients_inbox_once_committed(
    world: World,
) -> None:
    pubsub = world.conns.require_redis().pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.inbox_channel(world.customer))
    try:
        oid = await world.place()
        await world.orders.note(oid, EventType.NO_DRIVER_FOUND, "dispatch", {})
        await handle_all(world.conns, world.notifications, oid)
        deadline = time.monotonic() + 10
        message = None
        while message is None and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=1.0)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert message is not None, "nothing was pushed"
    pushed = json.loads(message["data"])
    (stored,) = await world.listed(world.customer, unread=True)
    assert pushed == {"type": "notification", **stored}
    assert pushed["kind"] == "no_driver_found" and pushed["order_id"] == oid


async def test_a_rated_delivery_sets_the_drivers_mean_rating_in_postgres_and_redis(
    world: World,
) -> None:
    conns, customer, driver = world.conns, world.customer, await world.driver()
    ratings = replace(RATINGS, name=f"ratings-{world.uid}")
    first, second = await delivered(world, driver), await delivered(world, driver)
    caller = Principal(sub=customer, role=Role.CUSTOMER)
    await rate_order(world.shards, caller, first, RateOrder(rating=5))
    await rate_order(world.shards, caller, second, RateOrder(rating=2, comment="cold"))
    with pytest.raises(Conflict):
        await rate_order(world.shards, caller, second, RateOrder(rating=4))
    assert all(await handle_all(conns, ratings, first, second))
    async with conns.shard_connection(SHARD) as conn:
        cur = await conn.execute("SELECT rating FROM drivers WHERE driver_id = %s", (driver,))
        row = await cur.fetchone()
    assert row is not None and row["rating"] == Decimal("3.50")
    redis = conns.require_redis()
    assert await redis.hget(keys.profile("sf", driver), "rating") in (b"3.5", "3.5")
    # What dispatch scoring sees: the candidate's rating.
    store = open_store(redis, world.settings)
    spot = world.sf["restaurants"][0]
    await store.apply_fixes("sf", [Fix(driver, "sf", spot["lat"], spot["lng"], time.time())])
    near = await store.find_available("sf", spot["lat"], spot["lng"], 100, 200)
    assert [c.rating for c in near if c.driver_id == driver] == [3.5]
    for oid in (first, second):
        assert (await told(conns, oid))[(customer, "rate_order")] == 1
