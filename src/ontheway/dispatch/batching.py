"""Rounds over each region's open orders: batched dispatch on the live platform (the ``batched``
policy of ``dispatch/policies``, run every ``dispatch_batch_window_s`` over road travel times,
``dispatch_policy = "batched"``), and, with the ``greedy`` policy, the orders that found no
driver tried again every ``dispatch_retry_interval_s`` (each through ``Dispatcher.dispatch``)
until a driver takes them or they are cancelled.

In this mode the dispatch consumer does not dispatch an order when its event arrives: it puts
the order on its region's open list (``dispatch:open:{region}``, a sorted set by time). Every
window, one round per region (a ``SET NX PX`` round lock, so that any number of dispatch
workers can run side by side and only one plans a region's round):

1. the open orders are read in one query on the region's shard, with when each will be ready:
   now if the restaurant said so (``ORDER_READY``), else the confirmation's preparation time
   (``ORDER_CONFIRMED``), else the restaurant's mean preparation time from placement. Orders
   no longer searching, or with an offer pending, leave the list. An order that a driver has
   declined or let expire goes through the per-order path (``Dispatcher.dispatch``), which
   leaves out the drivers who refused it: a round's matching cannot.
2. the drivers: the available ones with spare capacity near each restaurant (the fleet's
   ring search, ``dispatch_candidates`` per restaurant, the radii of ``dispatch_radii_mi``).
3. travel times by road (``RoadService.matrix``): drivers to restaurants, and each
   restaurant to its orders' drop-offs and between them (for the bundles' drop-off order).
4. ``BatchedPolicy.decide`` in whole seconds: bundles of one restaurant, one minimum-cost
   assignment, and only what must start now is committed; the rest stays open for the next
   round, which may bundle it with orders not placed yet.
5. each committed bundle's orders are offered to its driver (or assigned, with
   ``dispatch_auto_accept``) one by one, through the same code as the per-order path.

``dispatch_batch_time_scale`` exists for the simulator, whose clock runs faster than the
roads: travel, service and bundling times are divided by it so that they compare with
preparation times measured on the server's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ontheway.connections import Connections
from ontheway.dispatch.dispatcher import (
    METRES_PER_MILE,
    SEARCHING,
    Dispatcher,
    dispatch_consumer,
)
from ontheway.dispatch.offering import OfferPending, OrderLocked
from ontheway.dispatch.policies import Assignment, BatchedPolicy, Driver, OpenOrder, Service
from ontheway.dispatch.scoring import Scored
from ontheway.errors import Conflict, OnTheWayError
from ontheway.events.bus import EventBus
from ontheway.events.worker import WorkerStats, run_worker
from ontheway.fleet.model import Candidate, UnknownDriver, VehicleType
from ontheway.orders.ids import created_span_of
from ontheway.regions import LatLng
from ontheway.roads.errors import NoRoadMap, OutsideRoadMap

log = logging.getLogger(__name__)

UNREACHABLE_S = 10**7  # a pair with no route: far beyond any shift, never chosen
PICKUP_SERVICE_S = 120  # parking, walking in, taking the bag (real seconds)
DROPOFF_SERVICE_S = 120
READY_GAP_S = 8 * 60  # a bundle's orders are ready within this of the first (real seconds)
SOON_S = 10 * 60  # orders and drivers counted as "soon" when sizing bundles (real seconds)
JOIN_DELAY_S = 6 * 60  # an order joins a committed bundle if it delays none by more (real s)
MAX_OPEN = 500  # orders planned per round (the oldest)

_OPEN_ORDERS = """
SELECT o.order_id, o.status, o.restaurant_id, o.driver_id, o.created_at,
       ST_Y(o.restaurant_location::geometry) AS restaurant_lat,
       ST_X(o.restaurant_location::geometry) AS restaurant_lng,
       ST_Y(o.customer_location::geometry) AS customer_lat,
       ST_X(o.customer_location::geometry) AS customer_lng,
       r.prep_time_mean_s,
       (SELECT max(e.ts) FROM order_events e
         WHERE e.order_id = o.order_id AND e.order_created_at = o.created_at
           AND e.event_type = 'ORDER_READY') AS ready_at,
       (SELECT e.ts + make_interval(secs => (e.data->>'prep_time_s')::float)
          FROM order_events e
         WHERE e.order_id = o.order_id AND e.order_created_at = o.created_at
           AND e.event_type = 'ORDER_CONFIRMED'
         ORDER BY e.ts DESC LIMIT 1) AS promised_ready_at
FROM orders o JOIN restaurants r ON r.restaurant_id = o.restaurant_id
WHERE o.order_id = ANY(%s) AND o.created_at BETWEEN %s AND %s
"""


def open_key(region: str) -> str:
    """Orders of a region waiting for the next batch round (a sorted set by time)."""
    return f"dispatch:open:{{{region}}}"


def round_key(region: str) -> str:
    """The lock of a region's round: one dispatch worker plans it."""
    return f"dispatch:round:{{{region}}}"


@dataclass(frozen=True)
class RoundResult:
    """What one round did: orders planned, committed (offered or assigned), left open."""

    region: str
    planned: int
    committed: int
    open: int
    bundles: int


class TableTravel:
    """Travel seconds from a table: a point is ``(index, 0)`` into the table's rows/columns.

    The policy works on points and asks travel for arrays of them; here every point it sees
    is a place of this round (a driver, a restaurant, a drop-off) named by its index.
    """

    def __init__(self, table: NDArray[np.int64]):
        self.table = table

    def __call__(self, origins: NDArray[np.float64], destinations: NDArray[np.float64]) -> Any:
        """Seconds, broadcast over the leading axes (as ``TravelTime``)."""
        a = np.asarray(origins, dtype=np.float64)[..., 0].astype(np.int64)
        b = np.asarray(destinations, dtype=np.float64)[..., 0].astype(np.int64)
        a, b = np.broadcast_arrays(a, b)
        return self.table[a, b]


def live_policy(window_s: float, time_scale: float) -> BatchedPolicy:
    """The batched policy in whole seconds of the server's clock."""
    return BatchedPolicy(
        interval_min=max(1, round(window_s)),
        ready_gap_min=max(1, round(READY_GAP_S / time_scale)),
        join_delay_min=max(1, round(JOIN_DELAY_S / time_scale)),
        lookahead_min=0,  # the live fleet knows the drivers free now, not those soon free
        soon_min=max(1, round(SOON_S / time_scale)),
        cover_reward=float(UNREACHABLE_S),
        pay_weight=0.0,  # no guaranteed pay to weigh on the live platform
    )


class BatchDispatcher:
    """Rounds over a region's open orders: the batched policy's plan, or greedy's retries of
    orders that found no driver (see the module docstring)."""

    def __init__(self, dispatcher: Dispatcher):
        self.dispatcher = dispatcher
        self.settings = dispatcher.settings
        self.redis = dispatcher.fleet.redis
        self.scale = scale = self.settings.dispatch_batch_time_scale
        self.policy = live_policy(self.settings.dispatch_batch_window_s, scale)
        self.greedy = self.settings.dispatch_policy == "greedy"
        self.interval_s = (
            self.settings.dispatch_retry_interval_s
            if self.greedy
            else self.settings.dispatch_batch_window_s
        )
        self.service = Service(
            max(1, round(PICKUP_SERVICE_S / scale)), max(1, round(DROPOFF_SERVICE_S / scale))
        )

    async def enqueue(self, region: str, order_id: str) -> None:
        """Put an order on its region's open list (once: a duplicate keeps its place)."""
        await self.redis.zadd(open_key(region), {order_id: time.time()}, nx=True)

    async def run(self, regions: Sequence[str], stop: asyncio.Event) -> None:
        """A round per region every window until ``stop``; a failed round is logged and the
        next one tries again (nothing is lost: the orders stay on the open list)."""
        window_s = self.interval_s
        while not stop.is_set():
            started = time.monotonic()
            for region in regions:
                try:
                    await self.round(region)
                except OnTheWayError as exc:
                    log.warning("batch round of %s failed: %s", region, exc.message)
                except Exception:
                    log.exception("batch round of %s failed", region)
            left = window_s - (time.monotonic() - started)
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), left)

    async def round(self, region: str) -> RoundResult | None:
        """One round for ``region``; None when another worker holds this round."""
        window_ms = max(1, int(self.interval_s * 1000))
        token = secrets.token_hex(8)
        if not await self.redis.set(round_key(region), token, nx=True, px=window_ms):
            return None
        ids = [
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await self.redis.zrange(open_key(region), 0, MAX_OPEN - 1)
        ]
        if not ids:
            return RoundResult(region, 0, 0, 0, 0)
        rows = await self._rows(region, ids)
        orders = await self._plannable(region, ids, rows)
        committed, bundles = 0, 0
        # One by one (as on their first try, flagged there when late): every order with the
        # greedy policy; with batched, those whose restaurant or address is off the road map
        # (the per-order path refuses them or times them in a straight line), so that one
        # such order does not stop the round for the others.
        alone = orders if self.greedy else await self._off_map(region, orders)
        for row in alone:
            committed += await self._one_by_one(region, row["order_id"])
        if self.greedy:
            left = await self.redis.zcard(open_key(region))
            return RoundResult(region, len(orders), committed, int(left), 0)
        apart = {row["order_id"] for row in alone}
        orders = [row for row in orders if row["order_id"] not in apart]
        if orders:
            chosen = await self._decide(region, orders)
            bundles = len(chosen)
            for assignment in chosen:
                committed += await self._commit(region, assignment, rows)
        left = await self.redis.zcard(open_key(region))
        now = time.time()
        for row in orders:
            # Still open although its food is ready: no driver took it (an order the policy
            # holds back on purpose, its kitchen still cooking, is not "no driver found").
            if self._ready_ts(row) > now:
                continue
            if await self.redis.zscore(open_key(region), row["order_id"]) is not None:
                await self.dispatcher.flag_if_late(region, row)
        return RoundResult(region, len(orders), committed, int(left), bundles)

    async def _off_map(self, region: str, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The orders whose restaurant or address no road of the region's map reaches (all of
        them when the region has no map)."""
        try:
            network = await self.dispatcher.roads.network(region)
        except NoRoadMap:
            return orders
        return [
            row
            for row in orders
            if network.snap(row["restaurant_lat"], row["restaurant_lng"]) is None
            or network.snap(row["customer_lat"], row["customer_lng"]) is None
        ]

    async def _rows(self, region: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        async with self.dispatcher.queries.shards.connection(region) as conn:
            cur = await conn.execute(_OPEN_ORDERS, (ids, *created_span_of(ids)))
            return {row["order_id"]: row for row in await cur.fetchall()}

    async def _plannable(
        self, region: str, ids: list[str], rows: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The open orders this round plans; the others leave the list (done, offered) or
        go through the per-order path (refused by a driver before)."""
        book = self.dispatcher.offers.book
        plannable: list[dict[str, Any]] = []
        for order_id in ids:
            row = rows.get(order_id)
            if row is None or row["status"] not in SEARCHING:
                await self.redis.zrem(open_key(region), order_id)
                continue
            if not self.settings.dispatch_auto_accept:
                if await book.pending(region, order_id):
                    await self.redis.zrem(open_key(region), order_id)
                    continue
                if await book.refused(region, order_id):
                    await self._one_by_one(region, order_id)
                    continue
            plannable.append(row)
        return plannable

    async def _one_by_one(self, region: str, order_id: str) -> int:
        """``Dispatcher.dispatch`` for one order; 1 when it left the list (offered, assigned,
        or found done)."""
        try:
            outcome = await self.dispatcher.dispatch(order_id)
        except OnTheWayError as exc:  # no driver yet, locked: the next round tries again
            log.info("dispatch: %s stays open (%s)", order_id, exc.message)
            return 0
        if outcome.assigned or outcome.offered or outcome.driver_id is not None:
            await self.redis.zrem(open_key(region), order_id)
            return 1
        return 0

    async def drivers(self, region: str, orders: list[dict[str, Any]]) -> list[Candidate]:
        """Available drivers near the orders' restaurants, each once."""
        types = [VehicleType(v) for v in self.settings.dispatch_vehicle_types] or None
        found: dict[str, Candidate] = {}
        places = {(r["restaurant_lat"], r["restaurant_lng"]) for r in orders}
        for lat, lng in sorted(places):
            for radius_mi in self.settings.dispatch_radii_mi:
                near = await self.dispatcher.fleet.find_available(
                    region, lat, lng, radius_mi * METRES_PER_MILE,
                    self.settings.dispatch_candidates, types,
                )  # fmt: skip
                for c in near:
                    found.setdefault(c.driver_id, c)
                if near:
                    break
        return list(found.values())

    async def _decide(self, region: str, rows: list[dict[str, Any]]) -> list[Assignment]:
        drivers = await self.drivers(region, rows)
        if not drivers:
            return []
        restaurants = sorted({(r["restaurant_lat"], r["restaurant_lng"]) for r in rows})
        places: list[tuple[float, float]] = [(c.lat, c.lng) for c in drivers]
        r_index = {p: len(places) + i for i, p in enumerate(restaurants)}
        places += restaurants
        d_index = {r["order_id"]: len(places) + i for i, r in enumerate(rows)}
        places += [(r["customer_lat"], r["customer_lng"]) for r in rows]
        table = np.full((len(places), len(places)), UNREACHABLE_S, dtype=np.int64)
        np.fill_diagonal(table, 0)
        try:
            await self._fill(table, drivers, restaurants, r_index, rows, d_index, places)
        except (NoRoadMap, OutsideRoadMap) as exc:
            log.warning("batch round of %s: no road travel times (%s)", region, exc.message)
            return []
        now = time.time()
        caps = self.settings.fleet_max_active_orders
        pool = [
            Driver(c.driver_id, (float(i), 0.0), 0, UNREACHABLE_S,
                   capacity=max(0, caps[c.vehicle_type.value] - c.active_orders))
            for i, c in enumerate(drivers)
        ]  # fmt: skip
        orders = [
            OpenOrder(
                r["order_id"],
                round(r["created_at"].timestamp() - now),
                round(self._ready_ts(r) - now),
                r["restaurant_id"],
                (float(r_index[(r["restaurant_lat"], r["restaurant_lng"])]), 0.0),
                (float(d_index[r["order_id"]]), 0.0),
            )
            for r in rows
        ]
        return self.policy.decide(0, orders, pool, TableTravel(table), self.service)

    async def _fill(
        self,
        table: NDArray[np.int64],
        drivers: list[Candidate],
        restaurants: list[tuple[float, float]],
        r_index: dict[tuple[float, float], int],
        rows: list[dict[str, Any]],
        d_index: dict[str, int],
        places: list[tuple[float, float]],
    ) -> None:
        """Road seconds (scaled) into ``table``: drivers to restaurants, then each restaurant
        to its drop-offs and between them."""
        roads = self.dispatcher.roads

        def point(p: tuple[float, float]) -> LatLng:
            return LatLng(lat=p[0], lng=p[1])

        def put(rows_at: list[int], cols_at: list[int], times: list[list[float | None]]) -> None:
            for i, row in zip(rows_at, times, strict=True):
                for j, t in zip(cols_at, row, strict=True):
                    if t is not None and i != j:
                        table[i, j] = max(1, round(t / self.scale))

        to_restaurants = await roads.matrix(
            [point(p) for p in places[: len(drivers)]],
            [point(p) for p in restaurants],
            skip_off_map=True,
        )
        put(list(range(len(drivers))), [r_index[p] for p in restaurants], to_restaurants)
        for place in restaurants:
            drops = [d_index[r["order_id"]] for r in rows
                     if (r["restaurant_lat"], r["restaurant_lng"]) == place]  # fmt: skip
            times = await roads.matrix(
                [point(places[i]) for i in [r_index[place], *drops]],
                [point(places[i]) for i in drops],
            )
            put([r_index[place], *drops], drops, times)

    def _ready_ts(self, row: dict[str, Any]) -> float:
        if row["ready_at"] is not None:
            return float(row["ready_at"].timestamp())
        if row["promised_ready_at"] is not None:
            return float(row["promised_ready_at"].timestamp())
        return float(row["created_at"].timestamp()) + float(row["prep_time_mean_s"])

    async def _commit(
        self, region: str, assignment: Assignment, rows: dict[str, dict[str, Any]]
    ) -> int:
        """Offer (or assign) each order of the bundle to its driver; returns how many went."""
        d = self.dispatcher
        done = 0
        travel_s = float((assignment.arrive_min - assignment.depart_min) * self.scale)
        for order_id in assignment.order_ids:
            try:
                if self.settings.dispatch_auto_accept:
                    await d.assignments.assign(order_id, assignment.driver_id, "dispatch")
                else:
                    choice = Scored(assignment.driver_id, travel_s, None, None)
                    await d.offers.make(rows[order_id], choice)
            except OfferPending:
                pass  # offered meanwhile: its answer brings it back if declined
            except (OrderLocked, Conflict, UnknownDriver) as exc:
                # Locked, taken or cancelled meanwhile, or the driver is full or gone: the
                # next round sees the order again (or drops it when it is done).
                log.info("batch: %s not given to %s (%s)", order_id, assignment.driver_id,
                         exc.message)  # fmt: skip
                continue
            await self.redis.zrem(open_key(region), order_id)
            done += 1
        return done


async def run_dispatch(
    conns: Connections,
    bus: EventBus,
    dispatcher: Dispatcher,
    regions: Sequence[str],
    *,
    stop: asyncio.Event,
    batch: int = 100,
) -> WorkerStats:
    """The dispatch consumer with its rounds beside it (for ``regions``) until ``stop``."""
    rounds = None
    if dispatcher.batch is not None:
        rounds = asyncio.create_task(dispatcher.batch.run(regions, stop))
    try:
        consumer = dispatch_consumer(dispatcher)
        return await run_worker(conns, bus, consumer, stop=stop, batch=batch)
    finally:
        stop.set()
        if rounds is not None:
            await rounds
