"""Offers on real servers: the dispatcher offers, drivers accept or decline, unanswered offers
expire, and PostgreSQL (the order) and Redis (capacity, offers) stay in step."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.dispatch.dispatcher import Dispatcher, NoDriverYet
from ontheway.dispatch.offering import NoOpenOffer, NotYourOffer, OfferExpired, Offers
from ontheway.errors import Conflict, InvalidInput
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.events.worker import WorkerStats, run_worker
from ontheway.fleet import keys
from ontheway.fleet.model import VehicleType
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings
from tests.integration.test_dispatch_dispatcher import (  # noqa: F401 (fixtures)
    bus,
    errors_of,
    fleet,
    make_dispatcher,
    node_at,
    own_consumer,
    place,
    put,
    relay,
    roads,
    take_drivers,
    town,
)

CLOSE = 0.05  # miles (80 m): this module's drivers around the restaurant, nobody else's


@pytest.fixture
def offering(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,  # noqa: F811
    conns: Connections,
    roads: RoadService,  # noqa: F811
    settings: Settings,
) -> Dispatcher:
    """A dispatcher that makes offers (no auto-accept), among drivers within 80 m."""
    return offer_dispatcher(orders, queries, fleet, conns, roads, settings)


def offer_dispatcher(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,  # noqa: F811
    conns: Connections,
    roads: RoadService,  # noqa: F811
    settings: Settings,
    **changes: Any,
) -> Dispatcher:
    """``offering``'s dispatcher, with ``changes`` to its settings."""
    return make_dispatcher(
        orders, queries, fleet, conns, roads, settings,
        dispatch_auto_accept=False, dispatch_radii_mi=(CLOSE,), **changes,
    )  # fmt: skip


@pytest.fixture
async def pair(
    fleet: FleetStore,  # noqa: F811
    town: dict[str, Any],  # noqa: F811
) -> AsyncIterator[tuple[str, str]]:
    """Two drivers with the highest score there is (a perfect record, at the restaurant), so
    that whoever else is about ranks after them; the tie goes to the smaller id. Taken off
    the map afterwards, so that no later test meets them."""
    best, next_ = sorted(take_drivers(town, 2))
    for driver in (best, next_):
        await fleet.register_driver(driver, "sf", VehicleType.CAR, rating=5.0, acceptance_rate=1.0)
        await put(fleet, driver, node_at(town, 0))
    yield best, next_
    await fleet.redis.zrem(keys.locations("sf"), best, next_)


@dataclass(frozen=True)
class Offered:
    """An order just offered to ``best``, whom ``next_`` follows in the ranking."""

    order_id: str
    best: str
    next_: str


@pytest.fixture
async def offered(
    offering: Dispatcher,
    orders: OrderService,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],
    uid: str,
) -> AsyncIterator[Offered]:
    """A new order, dispatched: offered to the best of the pair; cancelled afterwards."""
    oid = await place(orders, town, uid)
    outcome = await offering.dispatch(oid)
    assert outcome.offered and not outcome.assigned and outcome.driver_id == pair[0]
    yield Offered(oid, *pair)
    await cancel(orders, oid)


async def cancel(orders: OrderService, oid: str) -> None:
    """Cancel a test's order if it is still open, so that no dispatcher of another process
    on the shared stack keeps offering it to the drivers of later tests."""
    with contextlib.suppress(Conflict):
        await orders.transition(oid, EventType.ORDER_CANCELLED, "test", data={"reason": "done"})


async def kinds(queries: OrderQueries, oid: str) -> list[str]:
    return [e["event_type"] for e in await queries.events(oid)]


async def test_the_best_driver_is_offered_the_order_and_accepting_assigns_it(
    offering: Dispatcher,
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    offered: Offered,
) -> None:
    oid, best, other = offered.order_id, offered.best, offered.next_
    assert (await queries.get(oid))["status"] == "searching_driver"
    assert oid in await fleet.active_orders("sf", best)  # capacity reserved
    [offer] = [o for o in await offering.offers.open_for(best) if o["order_id"] == oid]
    assert offer["type"] == "offer" and offer["expires_at"] > time.time()
    assert offer["restaurant"]["restaurant_id"] == town["restaurant"]["restaurant_id"]
    # A duplicate event does not offer the order again.
    again = await offering.dispatch(oid)
    assert not again.offered and (await kinds(queries, oid)).count("DRIVER_OFFERED") == 1
    with pytest.raises(NotYourOffer):
        await offering.offers.accept(oid, other)
    row = await offering.offers.accept(oid, best)
    assert row["status"] == "driver_assigned" and row["driver_id"] == best
    assert await fleet.active_orders("sf", best) >= {oid}
    assert oid not in await fleet.active_orders("sf", other)
    assert all(o["order_id"] != oid for o in await offering.offers.open_for(best))
    with pytest.raises(NoOpenOffer):
        await offering.offers.accept(oid, best)
    events = await queries.events(oid)
    recorded = next(e for e in events if e["event_type"] == "DRIVER_OFFERED")
    assert recorded["data"]["driver_id"] == best


async def test_a_declined_order_goes_to_the_next_driver_and_never_back(
    offering: Dispatcher,
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    offered: Offered,
) -> None:
    oid, best, next_ = offered.order_id, offered.best, offered.next_
    await offering.offers.decline(oid, best)
    assert oid not in await fleet.active_orders("sf", best)
    assert "OFFER_DECLINED" in await kinds(queries, oid)
    assert (await offering.dispatch(oid)).driver_id == next_
    await offering.offers.decline(oid, next_)
    # Both declined: neither, still the best scored, is asked again (someone else may be,
    # when another process's drivers stand near: the stack is shared).
    with contextlib.suppress(NoDriverYet):
        assert (await offering.dispatch(oid)).driver_id not in (best, next_)
    with pytest.raises(OfferExpired):
        await offering.offers.accept(oid, best)
    row = await queries.get(oid)
    assert row["status"] == "searching_driver" and row["driver_id"] is None
    offered_to = [
        e["data"]["driver_id"]
        for e in await queries.events(oid)
        if e["event_type"] == "DRIVER_OFFERED"
    ]
    assert offered_to[:2] == [best, next_] and best not in offered_to[2:]


async def test_drivers_who_declined_are_asked_again_once_their_refusal_is_forgotten(
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,  # noqa: F811
    conns: Connections,
    roads: RoadService,  # noqa: F811
    settings: Settings,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],
    uid: str,
) -> None:
    forgetful = offer_dispatcher(
        orders, queries, fleet, conns, roads, settings, dispatch_refusal_memory_s=1
    )
    best, next_ = pair
    oid = await place(orders, town, uid)
    try:
        assert (await forgetful.dispatch(oid)).driver_id == best
        await forgetful.offers.decline(oid, best)
        assert (await forgetful.dispatch(oid)).driver_id == next_
        await forgetful.offers.decline(oid, next_)
        # Every driver nearby declined; a second after the last refusal, it is forgotten and
        # the best of them is asked again (the order does not wait forever).
        await asyncio.sleep(2.2)
        assert (await forgetful.dispatch(oid)).driver_id == best
    finally:
        await cancel(orders, oid)


async def expire(offers: Offers, queries: OrderQueries, oid: str, count: int = 1) -> None:
    """Sweep until the order has ``count`` OFFER_EXPIRED events (any API process running
    the sweeper may be the one that records it)."""
    deadline = time.monotonic() + 15
    while (await kinds(queries, oid)).count("OFFER_EXPIRED") < count:
        assert time.monotonic() < deadline, "the offer did not expire"
        await offers.sweep_once(["sf"])
        await asyncio.sleep(0.1)


async def test_an_unanswered_offer_expires_and_goes_to_the_next_candidate(
    offering: Dispatcher,
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],
    uid: str,
) -> None:
    offering.offers.timeout_s = 0.5
    best, next_ = pair
    oid = await place(orders, town, uid)
    assert (await offering.dispatch(oid)).driver_id == best
    await expire(offering.offers, queries, oid)
    assert oid not in await fleet.active_orders("sf", best)
    with pytest.raises(OfferExpired):
        await offering.offers.accept(oid, best)
    row = await queries.get(oid)
    assert row["status"] == "searching_driver" and row["driver_id"] is None
    assert (await offering.dispatch(oid)).driver_id == next_
    offering.offers.timeout_s = 30
    row = await offering.offers.accept(oid, next_)
    assert row["driver_id"] == next_


async def test_two_accepts_racing_assign_the_order_once(
    offering: Dispatcher, queries: OrderQueries, offered: Offered
) -> None:
    oid, best = offered.order_id, offered.best
    results = await asyncio.gather(
        *(offering.offers.accept(oid, best) for _ in range(3)), return_exceptions=True
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
    assert (await kinds(queries, oid)).count("DRIVER_ASSIGNED") == 1
    assert (await queries.get(oid))["driver_id"] == best


@pytest.fixture
async def ghost(fleet: FleetStore, town: dict[str, Any], uid: str) -> AsyncIterator[str]:  # noqa: F811
    """A driver the fleet knows (Redis) but PostgreSQL does not: assigning it fails there
    (foreign key), a real failing commit. Best scored, at the restaurant."""
    driver = f"drv_ghost{uid}"
    await fleet.register_driver(driver, "sf", VehicleType.CAR, rating=5.0, acceptance_rate=1.0)
    await put(fleet, driver, node_at(town, 0))
    yield driver
    redis = fleet.redis
    await redis.zrem(keys.locations("sf"), driver)
    await redis.zrem(keys.heartbeats("sf"), driver)
    await redis.delete(
        keys.status("sf", driver), keys.profile("sf", driver),
        keys.active_orders("sf", driver), keys.home(driver),
    )  # fmt: skip


async def test_a_failed_commit_releases_the_driver_and_the_order_is_offered_again(
    offering: Dispatcher,
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],
    ghost: str,
    uid: str,
) -> None:
    hidden, real = pair
    await fleet.redis.zrem(keys.locations("sf"), hidden)  # the ghost is the best one here
    oid = await place(orders, town, uid)
    assert (await offering.dispatch(oid)).driver_id == ghost
    with pytest.raises(InvalidInput):
        await offering.offers.accept(oid, ghost)
    assert oid not in await fleet.active_orders("sf", ghost)
    row = await queries.get(oid)
    assert row["status"] == "searching_driver" and row["driver_id"] is None
    expired = [e for e in await queries.events(oid) if e["event_type"] == "OFFER_EXPIRED"]
    assert [e["data"]["reason"] for e in expired] == ["assignment_failed"]
    assert (await offering.dispatch(oid)).driver_id == real
    assert (await offering.offers.accept(oid, real))["driver_id"] == real


async def test_the_dispatch_worker_offers_the_next_driver_after_a_decline(
    offering: Dispatcher,
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    conns: Connections,
    bus: RedisStreamsBus,  # noqa: F811
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],
    uid: str,
) -> None:
    best, next_ = pair
    oid = await place(orders, town, uid)
    stop = asyncio.Event()
    stats = WorkerStats()
    worker = asyncio.create_task(
        run_worker(conns, bus, own_consumer(offering, uid), stop=stop, poll_s=0.1, stats=stats)
    )

    async def offered_to() -> list[str]:
        events = await queries.events(oid)
        return [e["data"]["driver_id"] for e in events if e["event_type"] == "DRIVER_OFFERED"]

    async def wait_for(drivers: list[str]) -> None:
        deadline = time.monotonic() + 60  # the relay waits behind others' transactions
        while await offered_to() != drivers:
            assert time.monotonic() < deadline, f"offered to {await offered_to()}"
            await relay(conns, bus)
            await asyncio.sleep(0.1)

    try:
        await wait_for([best])  # ORDER_PLACED -> an offer
        await offering.offers.decline(oid, best)
        await wait_for([best, next_])  # OFFER_DECLINED -> the next driver
        await offering.offers.accept(oid, next_)
    finally:
        stop.set()
        await worker
    assert not errors_of([stats], [oid])
    assert (await queries.get(oid))["driver_id"] == next_
