"""Offers at the edges: several sweepers, answers cut short between Redis and PostgreSQL
(completed by the sweeper once their lease runs out), an accept off the road map, and
dispatchers racing for one order."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, cast

import pytest

from ontheway.connections import Connections
from ontheway.dispatch import offers as offers_module
from ontheway.dispatch.dispatcher import Dispatcher
from ontheway.dispatch.offering import OfferExpired, Offers
from ontheway.dispatch.offers import Answer
from ontheway.dispatch.scoring import Scored
from ontheway.errors import DependencyUnavailable
from ontheway.fleet import keys
from ontheway.fleet.store import FleetStore
from ontheway.orders.lifecycle import EventType
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.regions import LatLng
from tests.helpers import order_for
from tests.integration.test_dispatch_dispatcher import (  # noqa: F401 (fixtures)
    fleet,
    place,
    put,
    roads,
    take_drivers,
    town,
)
from tests.integration.test_dispatch_offers import (  # noqa: F401 (fixtures)
    Offered,
    cancel,
    kinds,
    offered,
    offering,
    pair,
)


def other_process(offering: Dispatcher, lease_s: float = 30.0) -> Offers:  # noqa: F811
    """The offers of another process (claims lapse after ``lease_s``)."""
    offers = offering.offers
    return Offers(offers.assignments, offers.queries, offers.roads, timeout_s=30, lease_s=lease_s)


async def sweep_until(offers: Offers, queries: OrderQueries, oid: str, kind: str) -> None:
    deadline = time.monotonic() + 15
    while kind not in await kinds(queries, oid):
        assert time.monotonic() < deadline, f"no {kind}"
        await offers.sweep_once(["sf"])
        await asyncio.sleep(0.1)


async def test_several_sweepers_expire_an_offer_once(
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],  # noqa: F811
    uid: str,
) -> None:
    offering.offers.timeout_s = 0.3
    oid = await place(orders, town, uid)
    await offering.dispatch(oid)
    sweepers = [offering.offers, other_process(offering), other_process(offering)]
    deadline = time.monotonic() + 15
    while "OFFER_EXPIRED" not in await kinds(queries, oid):
        assert time.monotonic() < deadline, "the offer did not expire"
        await asyncio.gather(*(s.sweep_once(["sf"]) for s in sweepers))
    await asyncio.gather(*(s.sweep_once(["sf"]) for s in sweepers))
    assert (await kinds(queries, oid)).count("OFFER_EXPIRED") == 1
    assert oid not in await fleet.active_orders("sf", pair[0])


class _NoteFailsFor:
    """The orders' service, except that recording an event of ``order_id`` fails as when
    PostgreSQL is down."""

    def __init__(self, orders: OrderService, order_id: str) -> None:
        self.orders, self.order_id = orders, order_id

    async def note(self, order_id: str, *args: Any, **kwargs: Any) -> Any:
        if order_id == self.order_id:
            raise DependencyUnavailable("PostgreSQL is unavailable: (test)")
        return await self.orders.note(order_id, *args, **kwargs)


async def test_a_claim_that_fails_does_not_hold_back_the_others_of_its_sweep(
    offering: Dispatcher,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],  # noqa: F811
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    oids = [await place(orders, town, f"{uid}{i}") for i in range(2)]
    for oid in oids:
        assert (await offering.dispatch(oid)).offered
    failing, other = oids
    sweeper = other_process(offering)  # a claim lapses after 30 s
    sweeper.orders = cast(OrderService, _NoteFailsFor(orders, failing))
    # This sweeper's clock runs 60 s ahead: both offers are due for it alone (not for the
    # sweeper of a server of the tests, which could otherwise take them first).
    monkeypatch.setattr(offers_module, "_now", lambda: time.time() + 60)
    assert await sweeper.sweep_once(["sf"]) >= 1
    assert "OFFER_EXPIRED" in await kinds(queries, other)
    assert "OFFER_EXPIRED" not in await kinds(queries, failing)
    assert await offering.offers.book.pending("sf", failing)  # claimed, left to its lease
    monkeypatch.setattr(offers_module, "_now", lambda: time.time() + 95)  # the lease is over
    await sweep_until(other_process(offering), queries, failing, "OFFER_EXPIRED")
    for oid in oids:
        await cancel(orders, oid)


async def test_an_accept_that_died_before_committing_is_expired_by_the_sweeper(
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best = offered.order_id, offered.best
    # The accepting process claimed the offer, then died before PostgreSQL heard of it.
    assert await offering.offers.book.answer("sf", oid, best, "accepting") is Answer.CLAIMED
    await sweep_until(other_process(offering, lease_s=0.2), queries, oid, "OFFER_EXPIRED")
    assert oid not in await fleet.active_orders("sf", best)
    assert not await offering.offers.book.pending("sf", oid)
    assert best in await offering.offers.book.refused("sf", oid)
    outcome = await offering.dispatch(oid)
    assert outcome.driver_id == offered.next_, await ranking(offering, oid)


async def ranking(dispatcher: Dispatcher, oid: str) -> list[Scored]:
    """For a failure's message: the candidates for the order as they rank now."""
    order = await dispatcher.queries.get(oid)
    at = LatLng(lat=order["restaurant_lat"], lng=order["restaurant_lng"])
    return await dispatcher._ranked("sf", at)


async def test_an_accept_that_died_after_committing_keeps_its_driver(
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best = offered.order_id, offered.best
    # Claimed and committed, then the process died before deleting the offer.
    assert await offering.offers.book.answer("sf", oid, best, "accepting") is Answer.CLAIMED
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, best, driver_id=best)
    sweeper = other_process(offering, lease_s=0.2)
    deadline = time.monotonic() + 15
    while await offering.offers.book.pending("sf", oid):
        assert time.monotonic() < deadline, "the claim was not finished"
        await sweeper.sweep_once(["sf"])
        await asyncio.sleep(0.1)
    assert oid in await fleet.active_orders("sf", best)
    assert "OFFER_EXPIRED" not in await kinds(queries, oid)
    assert (await queries.get(oid))["driver_id"] == best


async def test_an_accept_off_the_road_map_assigns_without_a_route_message(
    offering: Dispatcher,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    fleet: FleetStore,  # noqa: F811
    conns: Connections,
    town: dict[str, Any],  # noqa: F811
    uid: str,
) -> None:
    # Golden Gate Park: in San Francisco, off the downtown map the tests import.
    park = town["restaurants"][1] | {"lat": 37.7694, "lng": -122.4862}
    async with conns.shard_connection("americas") as conn:
        await conn.execute(
            "UPDATE restaurants SET location = ST_MakePoint(%s, %s)::geography"
            " WHERE restaurant_id = %s",
            (park["lng"], park["lat"], park["restaurant_id"]),
        )
        await conn.commit()
    (driver,) = take_drivers(town, 1)
    await put(fleet, driver, (park["lat"], park["lng"]))
    order, _ = await orders.place(f"user_{uid}", order_for(park))
    oid = order["order_id"]
    # The ranking leaves drivers off the map out: offer it by hand; the accept is the point.
    await offering.offers.make(await queries.get(oid), Scored(driver, 60.0, None, None))
    redis = conns.require_redis()
    async with redis.pubsub() as inbox:
        await inbox.subscribe(keys.inbox_channel(driver))
        row = await offering.offers.accept(oid, driver)
        await redis.publish(keys.inbox_channel(driver), json.dumps({"type": "sentinel"}))
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while not seen or seen[-1] != "sentinel":  # messages arrive in the order published
            assert time.monotonic() < deadline, "the sentinel did not arrive"
            message = await inbox.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                seen.append(json.loads(message["data"])["type"])
    assert row["status"] == "driver_assigned" and row["driver_id"] == driver
    assert "route" not in seen
    await redis.zrem(keys.locations("sf"), driver)


async def test_two_dispatchers_racing_offer_the_order_once(
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    orders: OrderService,
    queries: OrderQueries,
    town: dict[str, Any],  # noqa: F811
    pair: tuple[str, str],  # noqa: F811
    uid: str,
) -> None:
    oid = await place(orders, town, uid)
    outcomes = await asyncio.gather(*(offering.dispatch(oid) for _ in range(3)))
    assert sum(o.offered for o in outcomes) == 1
    assert (await kinds(queries, oid)).count("DRIVER_OFFERED") == 1
    holders = [d for d in pair if oid in await fleet.active_orders("sf", d)]
    assert holders == [pair[0]]


async def test_a_driver_released_by_the_offline_monitor_cannot_accept_its_offer(
    offering: Dispatcher,  # noqa: F811
    fleet: FleetStore,  # noqa: F811
    queries: OrderQueries,
    offered: Offered,  # noqa: F811
) -> None:
    oid, best = offered.order_id, offered.best
    # The heartbeat expired: the monitor took the order off the driver (its reservation).
    await fleet.remove_order("sf", best, oid)
    with pytest.raises(OfferExpired):
        await offering.offers.accept(oid, best)
    row = await queries.get(oid)
    assert row["status"] == "searching_driver" and row["driver_id"] is None
    assert oid not in await fleet.active_orders("sf", best)
