"""Assigning a driver keeps PostgreSQL (the order) and Redis (the driver's capacity) in step."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.dispatch.assign import Assignments
from ontheway.errors import Conflict
from ontheway.fleet.model import Fix
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.settings import Settings
from tests.helpers import order_for


@pytest.fixture
def fleet(conns: Connections, settings: Settings) -> FleetStore:
    return open_store(conns.require_redis(), settings)


@pytest.fixture
def assignments(orders: OrderService, fleet: FleetStore, conns: Connections) -> Assignments:
    return Assignments(orders, fleet, conns.require_redis())


async def online(fleet: FleetStore, driver: dict[str, Any]) -> None:
    """The driver reports a position: it is available."""
    await fleet.apply_fixes(
        "sf", [Fix(driver["driver_id"], "sf", driver["lat"], driver["lng"], time.time())]
    )


async def place(orders: OrderService, sf: dict[str, Any], customer: str) -> str:
    order, _ = await orders.place(customer, order_for(sf["restaurants"][0]))
    return str(order["order_id"])


async def test_an_assignment_reserves_the_driver_and_delivery_frees_it(
    assignments: Assignments,
    fleet: FleetStore,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    driver = sf["drivers"][0]
    await online(fleet, driver)
    oid = await place(orders, sf, f"user_{uid}")
    row = await assignments.assign(oid, driver["driver_id"], "ops")
    assert row["status"] == "driver_assigned"
    assert oid in await fleet.active_orders("sf", driver["driver_id"])
    for step in (
        EventType.DRIVER_ARRIVED_RESTAURANT,
        EventType.ORDER_PICKED_UP,
        EventType.ORDER_DELIVERED,
    ):
        row = await orders.transition(oid, step, driver["driver_id"])
        await assignments.committed(row)
    assert oid not in await fleet.active_orders("sf", driver["driver_id"])


async def test_a_failed_commit_gives_the_reservation_back(
    assignments: Assignments,
    fleet: FleetStore,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    first, second = sf["drivers"][1], sf["drivers"][2]
    await online(fleet, first)
    await online(fleet, second)
    oid = await place(orders, sf, f"user_{uid}")
    await assignments.assign(oid, first["driver_id"], "ops")
    # PostgreSQL refuses the second assignment (the order is taken) after Redis reserved.
    with pytest.raises(Conflict):
        await assignments.assign(oid, second["driver_id"], "ops")
    assert oid not in await fleet.active_orders("sf", second["driver_id"])
    assert oid in await fleet.active_orders("sf", first["driver_id"])


async def test_an_offline_driver_is_not_assigned_and_nothing_changes(
    assignments: Assignments,
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    fleet: FleetStore,
    sf: dict[str, Any],
    uid: str,
) -> None:
    driver = sf["drivers"][3]["driver_id"]
    await conns.require_redis().delete(f"driver:{{sf}}:{driver}:status")
    oid = await place(orders, sf, f"user_{uid}")
    with pytest.raises(Conflict):
        await assignments.assign(oid, driver, "ops")
    assert (await queries.get(oid))["status"] == "searching_driver"
    assert oid not in await fleet.active_orders("sf", driver)


async def test_two_dispatchers_racing_assign_the_order_once(
    assignments: Assignments,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    racers = sf["drivers"][4:6]
    for driver in racers:
        await online(fleet, driver)
    oid = await place(orders, sf, f"user_{uid}")
    results = await asyncio.gather(
        *(assignments.assign(oid, d["driver_id"], "dispatch") for d in racers),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    holders = [d for d in racers if oid in await fleet.active_orders("sf", d["driver_id"])]
    assert len(holders) == 1
    assert (await queries.get(oid))["driver_id"] == holders[0]["driver_id"]


async def test_a_repeated_assignment_to_the_same_driver_leaves_it_holding_the_order(
    assignments: Assignments,
    fleet: FleetStore,
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    """A dispatch repeated for an order already assigned (a redelivered event) is refused by
    PostgreSQL; the driver's reservation, which is its assignment, is not taken back."""
    driver = sf["drivers"][0]
    await online(fleet, driver)
    oid = await place(orders, sf, f"user_{uid}")
    await assignments.assign(oid, driver["driver_id"], "dispatch")
    with pytest.raises(Conflict):
        await assignments.assign(oid, driver["driver_id"], "dispatch")
    assert oid in await fleet.active_orders("sf", driver["driver_id"])
    assert (await queries.get(oid))["driver_id"] == driver["driver_id"]
    await fleet.remove_order("sf", driver["driver_id"], oid)
