"""Offers to drivers: making them, accepting, declining, and expiring the unanswered ones.

How PostgreSQL (the order) and Redis (the driver's capacity, the offer) stay consistent,
with no transaction spanning both:

1. Offer (the dispatcher, under the order's assignment lock): re-read the order (still
   searching?), check it has no offer pending, reserve the driver's capacity
   (``FleetStore.add_order``), record ``DRIVER_OFFERED`` in PostgreSQL, then store the offer
   with its deadline in Redis and push it to the driver's inbox. A failure before the offer
   is stored takes the reservation back and fails the event, which the worker retries.
2. Answer: one script claims the open offer (only its driver, only before the deadline,
   only once; see offers.py). The claim stays in ``offers:claimed`` until the answer is
   recorded, then the offer is deleted.
   - accept: commit ``DRIVER_ASSIGNED`` (a conditional update: only from searching). If the
     commit fails, the reservation is released, the driver is left out of this order and
     ``OFFER_EXPIRED`` is recorded, so the dispatcher offers the order to the next driver.
   - decline: release the reservation, record ``OFFER_DECLINED``.
   - expiry: the sweeper (every second, in each API process) claims offers past their
     deadline (``ZREM`` decides which process wins), releases and records ``OFFER_EXPIRED``.
3. Crashes: a claim whose answer was not recorded within the lease (30 s) is claimed again
   by the sweeper, which reads the order in PostgreSQL: assigned to that driver means the
   accept committed (only the offer is deleted); anything else means it did not, and the
   claim is resolved as an expiry. Recording is at least once; a repeated ``OFFER_*`` event
   only makes the dispatcher look again, which finds the order offered or assigned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.offers import REFUSED_TTL_S, Answer, Claim, OfferBook
from ontheway.dispatch.scoring import Scored
from ontheway.errors import Conflict, Forbidden, NotFound, OnTheWayError
from ontheway.fleet.model import UnknownDriver
from ontheway.fleet.store import AssignmentLock
from ontheway.fleet.tracking import publish_inbox
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.queries import OrderQueries
from ontheway.regions import LatLng
from ontheway.roads.errors import SamePoint
from ontheway.roads.routing import RoadService

log = logging.getLogger(__name__)

ACTOR = "dispatch"
LOCK_TRIES, LOCK_WAIT_S = 20, 0.05
SEARCHING = {Status.SEARCHING_DRIVER.value, Status.SEARCHING_DRIVER_AGAIN.value}
_RECORDED = {
    "declining": EventType.OFFER_DECLINED,
    "expiring": EventType.OFFER_EXPIRED,
    "accepting": EventType.OFFER_EXPIRED,
}


class OfferPending(Conflict):
    """The order has an offer open (or being answered): it is not offered again."""

    code = "offer_pending"


class OrderLocked(Conflict):
    """Someone else holds the order's assignment lock for longer than a moment."""

    code = "assignment_in_progress"


class OfferExpired(Conflict):
    """The driver's offer expired or was answered already."""

    code = "offer_expired"


class NoOpenOffer(Conflict):
    """There is no open offer for this driver."""

    code = "no_open_offer"


class NotYourOffer(Forbidden):
    """The order is offered to another driver."""

    code = "not_your_offer"


async def route_message(
    roads: RoadService, row: dict[str, Any], driver_at: tuple[float, float] | None
) -> dict[str, Any] | None:
    """The driver's ``{"type": "route"}`` message: from where it is, via the restaurant, to
    the customer; None when there is no route (no road map, a point off it)."""
    restaurant = LatLng(lat=row["restaurant_lat"], lng=row["restaurant_lng"])
    customer = LatLng(lat=row["customer_lat"], lng=row["customer_lng"])
    stops = [restaurant, customer]
    if driver_at is not None:
        stops.insert(0, LatLng(lat=driver_at[0], lng=driver_at[1]))
    try:
        try:
            route = await roads.route(stops)
        except SamePoint:  # the driver is at the restaurant already
            route = await roads.route([restaurant, customer])
    except OnTheWayError as exc:
        log.info("no route for the driver of %s: %s", row["order_id"], exc.message)
        return None
    return {"type": "route", "order_id": row["order_id"], "route": route.to_dict()}


class Offers:
    """Offers of orders to drivers and their answers (see the module docstring)."""

    def __init__(
        self,
        assignments: Assignments,
        queries: OrderQueries,
        roads: RoadService,
        *,
        timeout_s: float,
        lease_s: float = 30.0,
        refused_ttl_s: int = REFUSED_TTL_S,
    ) -> None:
        self.assignments = assignments
        self.orders = assignments.orders
        self.fleet = assignments.fleet
        self.redis = assignments.redis
        self.queries = queries
        self.roads = roads
        self.timeout_s = timeout_s
        self.book = OfferBook(assignments.redis, lease_s=lease_s, refused_ttl_s=refused_ttl_s)

    async def make(self, order: dict[str, Any], choice: Scored) -> dict[str, Any]:
        """Offer the order to ``choice``; returns the offer message. ``OfferPending`` when
        it has an offer already, ``Conflict``/``UnknownDriver`` when the driver is refused."""
        order_id, driver_id = order["order_id"], choice.driver_id
        region = region_of(order_id, "ord")
        lock = await self._lock(region, order_id)
        try:
            if await self.book.pending(region, order_id):
                raise OfferPending(f"order {order_id} has an offer pending", field="order_id")
            current = await self.queries.get(order_id)
            if current["status"] not in SEARCHING:
                raise Conflict(f"order {order_id} is {current['status']}", field="status")
            message = {
                "type": "offer",
                "order_id": order_id,
                "restaurant": {
                    "restaurant_id": order["restaurant_id"],
                    "lat": order["restaurant_lat"],
                    "lng": order["restaurant_lng"],
                },
                "dropoff": {"lat": order["customer_lat"], "lng": order["customer_lng"]},
                "travel_time_s": round(choice.travel_time_s, 1),
                "committed_s": round(choice.committed_s, 1),
                "expires_at": round(time.time() + self.timeout_s, 3),
            }
            await self.fleet.add_order(region, driver_id, order_id)
            try:
                await self.orders.note(
                    order_id, EventType.DRIVER_OFFERED, ACTOR,
                    {"driver_id": driver_id, "expires_at": message["expires_at"]},
                )  # fmt: skip
                if not await self.book.open(region, order_id, driver_id, message):
                    raise OfferPending(f"order {order_id} has an offer pending")
            except BaseException:
                await self.fleet.remove_order(region, driver_id, order_id)
                raise
        finally:
            await self.fleet.release_lock(lock)
        await publish_inbox(self.redis, driver_id, message)
        return message

    async def _lock(self, region: str, order_id: str) -> AssignmentLock:
        """The order's assignment lock, waiting a moment for a racing holder (it holds it
        for milliseconds); ``OrderLocked`` after that, and the event is retried later."""
        for _ in range(LOCK_TRIES):
            lock = await self.fleet.acquire_lock(region, order_id)
            if lock is not None:
                return lock
            await asyncio.sleep(LOCK_WAIT_S)
        raise OrderLocked(f"order {order_id} is being assigned right now", field="order_id")

    async def accept(self, order_id: str, driver_id: str) -> dict[str, Any]:
        """The driver takes its offer: the order is assigned to it (PostgreSQL), trackers
        and the driver are told; a failed commit releases the driver and re-dispatches."""
        region = region_of(order_id, "ord")
        await self._claim(region, order_id, driver_id, "accepting")
        try:
            row = await self.orders.transition(
                order_id, EventType.DRIVER_ASSIGNED, driver_id, driver_id=driver_id
            )
        except BaseException:
            try:
                await self.resolve(Claim(region, order_id, driver_id, "accepting"))
            except Exception:  # the sweeper resolves the claim when its lease runs out
                log.exception("offer of %s to %s left to the sweeper", order_id, driver_id)
            raise
        await self.book.finish(region, order_id, driver_id)
        await self.assignments.committed(row)
        try:
            found = await route_message(
                self.roads, row, await self.fleet.position(region, driver_id)
            )
            if found is not None:
                await publish_inbox(self.redis, driver_id, found)
        except OnTheWayError as exc:
            log.warning("route of %s not sent to %s: %s", order_id, driver_id, exc.message)
        return row

    async def decline(self, order_id: str, driver_id: str) -> None:
        """The driver turns its offer down: released, recorded, offered to the next one."""
        region = region_of(order_id, "ord")
        await self._claim(region, order_id, driver_id, "declining")
        await self.resolve(Claim(region, order_id, driver_id, "declining"))

    async def withdraw(self, order_id: str) -> str | None:
        """An order cancelled while offered: release the offered driver now rather than at
        the offer's deadline, and tell it. Returns that driver (None: no open offer)."""
        region = region_of(order_id, "ord")
        driver_id = await self.book.offered_to(region, order_id)
        if driver_id is None:
            return None
        try:
            await self._claim(region, order_id, driver_id, "declining")
        except (NoOpenOffer, OfferExpired, NotYourOffer):
            return None  # answered or expired meanwhile: whoever claimed it resolves it
        with contextlib.suppress(UnknownDriver):
            await self.fleet.remove_order(region, driver_id, order_id)
        await self.book.finish(region, order_id, driver_id)
        await publish_inbox(
            self.redis, driver_id, {"type": "offer_withdrawn", "order_id": order_id}
        )
        return driver_id

    async def _claim(self, region: str, order_id: str, driver_id: str, state: str) -> None:
        found = await self.book.answer(region, order_id, driver_id, state)
        if found is Answer.OTHER:
            raise NotYourOffer(f"order {order_id} is not offered to you", field="order_id")
        if found is Answer.REFUSED:
            raise OfferExpired(f"your offer of {order_id} has expired", field="order_id")
        if found is Answer.NONE:
            raise NoOpenOffer(f"no open offer of {order_id} for you", field="order_id")

    async def open_for(self, driver_id: str) -> list[dict[str, Any]]:
        """The driver's open offers (empty for a driver the fleet does not know)."""
        home = await self.fleet.home(driver_id)
        return [] if home is None else await self.book.open_for(home.region, driver_id)

    async def resolve(self, claim: Claim) -> None:
        """Record a claimed answer that is not an accept committed: release the driver,
        record OFFER_DECLINED/OFFER_EXPIRED (the dispatcher offers again), forget it."""
        region, order_id, driver_id = claim.region, claim.order_id, claim.driver_id
        data: dict[str, Any] = {"driver_id": driver_id}
        if claim.state == "accepting":
            try:
                order = await self.queries.get(order_id)
            except NotFound:
                order = {"driver_id": None, "status": Status.CANCELLED.value}
            if order["driver_id"] == driver_id and order["status"] not in SEARCHING:
                await self.book.finish(region, order_id, driver_id)  # the accept committed
                return
            await self.book.refuse(region, order_id, driver_id)
            data["reason"] = "assignment_failed"
        # A driver gone from the region holds nothing here; an order cancelled or delivered
        # meanwhile needs nobody any more.
        with contextlib.suppress(UnknownDriver):
            await self.fleet.remove_order(region, driver_id, order_id)
        with contextlib.suppress(Conflict, NotFound):
            await self.orders.note(order_id, _RECORDED[claim.state], ACTOR, data)
        await self.book.finish(region, order_id, driver_id)

    async def sweep_once(self, regions: Sequence[str]) -> int:
        """Expire the offers past their deadline (and finish stale claims); returns how
        many were resolved. Any number of processes may sweep at once. A claim that fails
        is logged and left to its lease (it is claimed again when the lease runs out); the
        claims after it are still resolved, not held back for a lease."""
        done = 0
        for claim in await self.book.claim_due(regions):
            try:
                await self.resolve(claim)
            except OnTheWayError as exc:
                log.warning(
                    "offer of %s to %s not resolved (again in %.0f s): %s",
                    claim.order_id, claim.driver_id, self.book.lease_s, exc.message,
                )  # fmt: skip
                continue
            done += 1
        return done

    async def run_sweeper(self, regions: Sequence[str], interval_s: float = 1.0) -> None:
        """Sweep forever; a failure is logged and the claim retried once its lease ends."""
        while True:
            try:
                await self.sweep_once(regions)
            except OnTheWayError as exc:
                log.warning("offer sweeper: %s (retrying)", exc.message)
            except Exception:
                log.exception("offer sweeper failed (retrying)")
            await asyncio.sleep(interval_s)
