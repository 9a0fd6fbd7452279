"""The dispatcher: on ``ORDER_PLACED``, ``DRIVER_UNAVAILABLE``, ``OFFER_DECLINED`` and
``OFFER_EXPIRED``, find the best driver and offer it the order (or assign it directly).

Steps: read the order (nothing to do unless it is searching for a driver); ask the fleet
for available drivers with spare capacity near the restaurant, in rings of
``dispatch_radii_mi`` (2 miles, then 5 when none); time each by road to the restaurant
(``RoadService.matrix``); capacity is filtered by the fleet's search, vehicle types by
``dispatch_vehicle_types``; rank them (``scoring.rank``), leaving out drivers who declined
the order or let its offer expire; offer it to the best through ``Offers.make`` (see
offering.py: capacity reserved, ``DRIVER_OFFERED`` recorded, the offer pushed to the driver's
inbox), falling to the next candidate when one is refused (full, gone offline). The worker
never waits for the answer: an accept assigns, a decline or an expiry is an event that brings
the order back here. An order with an offer pending is not offered again. With
``dispatch_auto_accept`` the best driver is assigned at once (``Assignments.assign``).

Idempotency: the assignment commits on its own (PostgreSQL via ``OrderService``, Redis via
the fleet), so the dispatcher is idempotent by itself: an order that is no longer searching
is "already done", and an assignment refused because the order was taken meanwhile (a 409
from the conditional update) is "already done" too, never a failure. The dispatch consumer
is therefore not transactional: it holds no connection while it runs, and the event's mark
is written by the assignment's own statement when the handler assigns (``MARKED``), else by
the worker after the handler.

No road map: a region without one (or a restaurant off its map) is refused with
``DispatchRefused`` (recorded by the worker, retried, dead-lettered) unless
``dispatch_straight_line_kph`` is set, in which case travel time is the straight-line
distance at that speed. A driver off the map is left out.

No driver: ``dispatch`` raises ``NoDriverYet``; the consumer's handler then puts the order on
the region's open list, and the rounds of ``batching.py`` try it again every
``dispatch_retry_interval_s`` until a driver takes it (or it is cancelled). Once the order has
searched for ``dispatch_flag_after_s`` it is also put on the region's list for operations
(``dispatch:no_driver:{region}``, a sorted set by time).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ontheway.connections import Connections
from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.offering import OfferPending, Offers, OrderLocked
from ontheway.dispatch.scoring import Scored, rank
from ontheway.errors import Conflict, NotFound, OnTheWayError
from ontheway.events.consumers import MARKED, Consumer, Handler, Marked
from ontheway.events.model import Event
from ontheway.fleet.model import Candidate, UnknownDriver, VehicleType
from ontheway.fleet.service import open_store
from ontheway.fleet.store import FleetStore
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import LatLng, load_catalog
from ontheway.roads.errors import NoRoadMap, OutsideRoadMap
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings

if TYPE_CHECKING:
    from ontheway.dispatch.batching import BatchDispatcher

log = logging.getLogger(__name__)

METRES_PER_MILE = 1609.344
ACTOR = "dispatch"
CONSUMER = "dispatch"  # the consumer group
SEARCHING = {Status.SEARCHING_DRIVER.value, Status.SEARCHING_DRIVER_AGAIN.value}


class NoDriverYet(OnTheWayError):
    """No available driver near the restaurant: try again later (the worker retries)."""

    code = "no_driver_yet"
    status = 503


class DispatchRefused(OnTheWayError):
    """The order cannot be dispatched as configured (no road map and no fallback)."""

    code = "dispatch_refused"
    status = 503


def flagged_key(region: str) -> str:
    """Orders of a region that found no driver in time, for operations."""
    return f"dispatch:no_driver:{{{region}}}"


@dataclass(frozen=True)
class Outcome:
    """What one dispatch did: ``assigned`` a driver, ``offered`` the order to one, or found
    the order done already (assigned, or with an offer pending)."""

    order_id: str
    driver_id: str | None
    assigned: bool
    offered: bool = False


class Dispatcher:
    """Finds, ranks and assigns drivers for orders that are searching for one."""

    def __init__(
        self,
        orders: OrderService,
        queries: OrderQueries,
        fleet: FleetStore,
        assignments: Assignments,
        roads: RoadService,
        settings: Settings,
    ) -> None:
        self.orders = orders
        self.queries = queries
        self.fleet = fleet
        self.assignments = assignments
        self.roads = roads
        self.settings = settings
        self.offers = Offers(
            assignments, queries, roads, timeout_s=settings.dispatch_offer_timeout_s,
            refused_ttl_s=settings.dispatch_refusal_memory_s,
        )  # fmt: skip
        # Rounds over the region's open orders (batching.py): with the batched policy they
        # plan every order (events only queue it); with greedy they try again the orders that
        # found no driver. None: ``NoDriverYet`` goes back to the worker (retried by the
        # stream, dead-lettered after its last attempt).
        self.batch: BatchDispatcher | None = None

    async def dispatch(
        self,
        order_id: str,
        placed: dict[str, Any] | None = None,
        handles: tuple[str, str] | None = None,
    ) -> Outcome:
        """Offer the order to the best available driver (or assign it, with auto-accept),
        unless it has a driver or an offer pending already. ``placed``: the order as its
        ``ORDER_PLACED`` event recorded it (``placed_snapshot``), used instead of reading
        the order when drivers auto-accept (see ``placed_snapshot``). ``handles``: the
        stream event being handled, marked by the assignment's own statement when this call
        assigns (``Outcome.assigned``)."""
        auto = self.settings.dispatch_auto_accept
        fresh = placed is None or not auto
        order = await self.queries.get(order_id) if fresh else placed
        assert order is not None
        if order["status"] not in SEARCHING:
            return Outcome(order_id, order["driver_id"], False)
        region = region_of(order_id, "ord")
        restaurant = LatLng(lat=order["restaurant_lat"], lng=order["restaurant_lng"])
        book = self.offers.book
        if not auto and await book.pending(region, order_id):
            return Outcome(order_id, None, False)  # a duplicate event: the offer stands
        refused = set() if auto else await book.refused(region, order_id)
        for choice in await self._ranked(region, restaurant, refused):
            try:
                if auto:
                    row = await self.assignments.assign(order_id, choice.driver_id, ACTOR, handles)
                    return Outcome(order_id, str(row["driver_id"]), True)
                await self.offers.make(order, choice)
                return Outcome(order_id, choice.driver_id, False, offered=True)
            except OfferPending:
                return Outcome(order_id, None, False)
            except OrderLocked:
                raise  # held by someone else for long: the worker tries again later
            except (Conflict, UnknownDriver):
                # Taken meanwhile (another dispatcher won, or cancelled): done. Otherwise this
                # driver was refused (full, offline, moved away) or the lock is held: try the
                # next one.
                now = await self.queries.get(order_id)
                if now["status"] not in SEARCHING:
                    return Outcome(order_id, now["driver_id"], False)
        # Flagged on the order as it is now (the snapshot may be stale: cancelled meanwhile).
        await self.flag_if_late(region, order if fresh else await self.queries.get(order_id))
        raise NoDriverYet(f"no available driver near the restaurant of {order_id}")

    async def _ranked(
        self, region: str, restaurant: LatLng, refused: set[str] | None = None
    ) -> list[Scored]:
        """Candidates best first, without the drivers in ``refused``."""
        refused = refused or set()
        radii = self.settings.dispatch_radii_mi
        pool: dict[str, Candidate] = {}
        limit = self.settings.dispatch_candidates
        for n, radius_mi in enumerate(radii):
            found = await self.fleet.find_available(
                region,
                restaurant.lat,
                restaurant.lng,
                radius_mi * METRES_PER_MILE,
                min(200, limit + len(refused)),
                [VehicleType(v) for v in self.settings.dispatch_vehicle_types] or None,
            )
            for c in found:
                if c.driver_id not in refused:
                    pool.setdefault(c.driver_id, c)
            if not pool:
                continue
            # Only drivers who still hold orders this close: look further too, and at more of
            # them (the nearest ones are these same busy drivers), so that a free driver a
            # little further away is ranked against them (scoring adds their work).
            only_busy = all(c.active_orders for c in pool.values())
            if only_busy and self.settings.dispatch_busy_s_per_order and n < len(radii) - 1:
                limit *= 4
                continue
            timed = await self._travel_times(list(pool.values()), restaurant)
            if timed:
                return rank(timed, self.settings.dispatch_weights)
        return []

    async def _travel_times(self, found: list[Candidate], restaurant: LatLng) -> list[Scored]:
        """Road travel time of each candidate to the restaurant; candidates off the map or
        with no route are left out."""
        origins = [LatLng(lat=c.lat, lng=c.lng) for c in found]
        try:
            # One snapping pass and one graph query for every candidate; a driver off the
            # map gets no time (left out) instead of failing the whole matrix.
            matrix = await self.roads.matrix(origins, [restaurant], skip_off_map=True)
            times = [row[0] for row in matrix]
        except (NoRoadMap, OutsideRoadMap) as exc:
            speed_kph = self.settings.dispatch_straight_line_kph
            if speed_kph is None:
                raise DispatchRefused(
                    f"no road travel times ({exc.message}); set "
                    "ONTHEWAY_DISPATCH_STRAIGHT_LINE_KPH to dispatch by straight-line distance"
                ) from exc
            times = [c.distance_m / (speed_kph / 3.6) for c in found]
        per_order = self.settings.dispatch_busy_s_per_order
        return [
            Scored(
                c.driver_id, t, c.rating, c.acceptance_rate, committed_s=per_order * c.active_orders
            )
            for c, t in zip(found, times, strict=True)
            if t is not None
        ]

    async def flag_if_late(self, region: str, order: dict[str, Any]) -> None:
        """Put the order on the region's list for operations once it has searched for
        ``dispatch_flag_after_s`` (once per order, with ``NO_DRIVER_FOUND``)."""
        waited_s = (datetime.now(UTC) - order["created_at"]).total_seconds()
        if waited_s < self.settings.dispatch_flag_after_s:
            return
        added = await self.fleet.redis.zadd(
            flagged_key(region), {order["order_id"]: time.time()}, nx=True
        )
        if added:
            # Once per order: into its audit trail and, through the outbox, to whoever tells
            # the customer and operations.
            await self.orders.note(
                order["order_id"], EventType.NO_DRIVER_FOUND, ACTOR,
                {"waited_s": round(waited_s, 1), "region": region},
            )  # fmt: skip
            log.warning("order %s found no driver in %.0f s", order["order_id"], waited_s)

    async def handle(self, conn: Any, event: Event, consumer: str = CONSUMER) -> Marked | None:
        """The consumer's handler. The dispatch consumer is not transactional (``conn`` is
        None): what a dispatch does commits on its own and is idempotent, so the worker
        holds no connection while it runs. An assignment writes the event's mark itself
        (``MARKED``: one statement, one commit, instead of the worker's second), as
        ``consumer``'s."""
        region = region_of(event.order_id, "ord")
        if self.batch is not None and self.settings.dispatch_policy == "batched":
            await self.batch.enqueue(region, event.order_id)
            return None
        try:
            outcome = await self.dispatch(
                event.order_id, placed_snapshot(event), (consumer, event.event_id)
            )
            if outcome.assigned:  # by this call, its statement marking the event
                return MARKED
        except NoDriverYet:
            if self.batch is None:
                raise
            # Not a failure of this event: the order waits on the open list, and the rounds
            # try it again until a driver comes (it is never dead-lettered for want of one).
            await self.batch.enqueue(region, event.order_id)
        except NotFound as exc:
            if exc.code != "unknown_order":
                raise
            log.warning("dispatch skips %s: %s", event.order_id, exc.message)
        return None


def placed_snapshot(event: Event) -> dict[str, Any] | None:
    """What dispatch needs of the order (its status, driver, restaurant's point and creation
    time, as ``OrderQueries.get`` names them) from an ``ORDER_PLACED`` event's snapshot; None
    for other events or a snapshot without them.

    With auto-accept the dispatcher trusts it instead of reading the order again: if the
    order changed meanwhile (cancelled), the assignment's conditional update refuses it with
    a 409, the reservation it made is taken back, and the order is read then. Offers read the
    order first: an offer is pushed to a driver before anything is committed."""
    if event.event_type != EventType.ORDER_PLACED.value:
        return None
    view: Any = event.data.get("order")
    try:
        point = view["restaurant_location"]
        return {
            "order_id": event.order_id,
            "status": view["status"],
            "driver_id": view["assigned_driver_id"],
            "restaurant_lat": float(point["lat"]),
            "restaurant_lng": float(point["lng"]),
            "created_at": datetime.fromisoformat(view["created_at"]),
        }
    except (TypeError, KeyError, ValueError):
        return None


def dispatch_consumer(dispatcher: Dispatcher, name: str = CONSUMER) -> Consumer:
    """The ``dispatch`` consumer of the event stream (under another ``name``: a consumer
    group of its own, marking events as its own)."""
    handle = functools.partial(dispatcher.handle, consumer=name)
    handlers: dict[str, Handler] = {
        EventType.ORDER_PLACED.value: handle,
        EventType.DRIVER_UNAVAILABLE.value: handle,
        EventType.OFFER_DECLINED.value: handle,
        EventType.OFFER_EXPIRED.value: handle,
    }
    return Consumer(name, handlers, transactional=False)


def build_dispatcher(conns: Connections, settings: Settings) -> Dispatcher:
    """A dispatcher over the process's connections."""
    catalog = load_catalog(settings.region_catalog)
    shards = ShardAccess(conns, catalog)
    redis = conns.require_redis()
    fleet = open_store(redis, settings)
    orders = OrderService(shards)
    dispatcher = Dispatcher(
        orders,
        OrderQueries(shards),
        fleet,
        Assignments(orders, fleet, redis),
        RoadService(conns.graphs, catalog),
        settings,
    )
    from ontheway.dispatch.batching import BatchDispatcher

    dispatcher.batch = BatchDispatcher(dispatcher)
    return dispatcher
