"""A driver's app: a socket to ``/ws/driver``, offers answered, orders driven and handed over.

The app logs in with a driver token, reports its position (the run's shared tick loop sends
the fixes: see runner.py), answers offers after a short think (accepting with the driver's own
probability, sometimes letting one expire), and works through its accepted orders one after
the other: drive to the restaurant along the road (the route pushed at acceptance, else
``GET /api/route``), ``/arrived``, wait for the food, ``/picked-up``, drive to the customer,
``/delivered``. Sometimes it vanishes mid-delivery: the socket closes and fixes stop, so only
the server's offline monitor can notice; it comes back later and finishes what it still holds.

What the platform cannot see varies (plan.py): each leg takes the route's duration times the
driver's own pace and the trip's traffic; the wait for the food, once ready, depends on the
restaurant's parking (the driver knows the restaurant by its location: ``SimContext``), and
the hand-over at the door varies from seconds to minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from itertools import pairwise
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from ontheway.auth import Role
from ontheway.sim.context import SimContext
from ontheway.sim.motion import Trip, distance_m, split_legs
from ontheway.sim.plan import (
    DriverPlan,
    handover_s,
    leg_duration_s,
    offer_decision,
    pickup_wait_s,
    vanish_decision,
)

Point = tuple[float, float]
REFRESH_S = 900.0  # simulated seconds an idle app waits before refreshing its orders
UNKNOWN_PARKING_S = 75.0  # at a restaurant not of the run (placed by hand, say)


class Vanish(Exception):
    """The driver drops off the network (``mid`` = holding an order)."""

    def __init__(self, mid: bool) -> None:
        super().__init__("vanished")
        self.mid = mid


class DriverAgent:
    """One simulated driver and its app."""

    def __init__(self, ctx: SimContext, region: str, driver_id: str, plan: DriverPlan) -> None:
        self.ctx, self.region, self.driver_id, self.plan = ctx, region, driver_id, plan
        self.offer_rng = random.Random(f"offers:{ctx.seed}:{region}:{plan.index}")
        self.trip_rng = random.Random(f"trips:{ctx.seed}:{region}:{plan.index}")
        self.pos: Point = (plan.lat, plan.lng)
        self.trip: Trip | None = None
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.jobs: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.routes: dict[str, dict[str, Any]] = {}
        self.handled: set[str] = set()  # orders taken up since the app (re)connected
        self.token = ctx.token(Role.DRIVER, driver_id)
        # Spread over 0.5-1.5 x REFRESH_S by the driver's index (no draw: the seeded RNGs stay
        # as they were), so that thousands of idle apps do not refresh in the same second.
        self.refresh_s = REFRESH_S * (0.5 + (plan.index * 0.618034) % 1.0)

    # -- position ------------------------------------------------------------------------

    def position(self, now_s: float) -> Point:
        """Where the driver is at simulated time ``now_s``."""
        return self.trip.position(now_s) if self.trip is not None else self.pos

    def fix(self, now_s: float) -> dict[str, Any] | None:
        """The location to report now, or None when offline (the app's socket is closed)."""
        if self.ws is None:
            return None
        lat, lng = self.position(now_s)
        return {"driver_id": self.driver_id, "lat": round(lat, 7), "lng": round(lng, 7),
                "timestamp": time.time()}  # fmt: skip

    async def send_fix(self, now_s: float) -> bool:
        """Report the position on the app's own socket; False when offline or it failed."""
        location, ws = self.fix(now_s), self.ws
        if location is None or ws is None:
            return False
        try:
            await ws.send(json.dumps(location))
        except WebSocketException:
            return False
        return True

    # -- the app's life ------------------------------------------------------------------

    async def run(self) -> None:
        """Online, work, maybe vanish and come back, until the run stops."""
        ctx = self.ctx
        while not ctx.stop.is_set():
            if self.ws is None:
                await self.go_online()
            try:
                await self._work()
                return
            except Vanish as gone:
                ctx.record.drivers_went_offline += 1
                ctx.record.offline_mid_delivery += gone.mid
                ctx.record.vanished.append(
                    {"driver_id": self.driver_id, "at": round(time.time(), 3), "mid": gone.mid}
                )
            finally:
                if self.reader is not None:
                    self.reader.cancel()
                if not ctx.stop.is_set():  # at the run's end the app stays online: see close
                    await self._disconnect()
            await ctx.clock.sleep(self.trip_rng.uniform(10, 30) * 60)
            await self._resume()

    async def go_online(self) -> None:
        """Open the app's socket (the driver token logs it in) and report where it is."""
        self.ws = await connect(
            self.ctx.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None, proxy=None, open_timeout=60,
        )  # fmt: skip
        await self.send_fix(self.ctx.clock.elapsed_sim_s())
        self.reader = asyncio.create_task(self._read(self.ws))

    async def close(self) -> None:
        """Close the app's socket (at the end of the run, once the backend has stopped)."""
        await self._disconnect()

    async def _disconnect(self) -> None:
        ws, self.ws = self.ws, None
        if ws is not None:
            with contextlib.suppress(WebSocketException, OSError):
                await ws.close()

    async def _resume(self) -> None:
        """Back online: take up the orders still assigned (the others were reassigned)."""
        self.jobs = asyncio.Queue()
        self.handled.clear()
        await self._refresh()

    async def _refresh(self) -> None:
        """What the app shows after a refresh: orders assigned to us that we do not know of
        (assigned by ops or an auto-accepting dispatcher, or held while we were away)."""
        resp = await self.ctx.call("GET", "/api/driver/orders", self.token,
                                   params={"region": self.region})  # fmt: skip
        if resp.status_code == 200:
            for order in resp.json():
                mine = order.get("assigned_driver_id") == self.driver_id
                if mine and order["order_id"] not in self.handled:
                    self.jobs.put_nowait(order)

    async def _read(self, ws: ClientConnection) -> None:
        with contextlib.suppress(WebSocketException):
            async for text in ws:
                message = json.loads(text)
                kind = message.get("type")
                if kind == "offer":
                    self._on_offer(message)
                elif kind == "accepted":
                    self.ctx.record.offers_accepted += 1
                    self.jobs.put_nowait(message["order"])
                elif kind == "declined":
                    self.ctx.record.offers_declined += 1
                elif kind == "route":
                    self.routes[message["order_id"]] = message["route"]
                elif kind == "error" and "order_id" in message:
                    self.ctx.record.offers_late += 1

    def _on_offer(self, offer: dict[str, Any]) -> None:
        answer, think_s = offer_decision(self.offer_rng, self.plan)
        if answer is None:
            self.ctx.record.offers_missed += 1
            return
        self.ctx.spawn(self._answer(offer["order_id"], answer, think_s))

    async def _answer(self, order_id: str, answer: str, think_s: float) -> None:
        await self.ctx.clock.sleep(think_s)
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(WebSocketException):
                await ws.send(json.dumps({"type": answer, "order_id": order_id}))

    # -- deliveries ----------------------------------------------------------------------

    async def _work(self) -> None:
        while not self.ctx.stop.is_set():
            try:
                wait_s = self.ctx.clock.wall_s(self.refresh_s)
                order = await asyncio.wait_for(self.jobs.get(), wait_s)
            except TimeoutError:
                await self._refresh()
                continue
            if order["order_id"] in self.handled:
                continue
            self.handled.add(order["order_id"])
            try:
                await self._deliver(order)
            except RuntimeError as exc:  # the API kept failing: give this order up
                self.ctx.note(f"{self.driver_id} gave up {order['order_id']}: {exc}")
            if self.jobs.empty() and self.trip_rng.random() < self.plan.break_p:
                raise Vanish(mid=False)

    async def _deliver(self, order: dict[str, Any]) -> None:
        """Take one order from its current status to delivered (stop at a refusal)."""
        order_id, status = order["order_id"], order["status"]
        rest = (order["restaurant_location"]["lat"], order["restaurant_location"]["lng"])
        dest = (order["customer_location"]["lat"], order["customer_location"]["lng"])
        rng = self.trip_rng
        vanish_leg, vanish_at = vanish_decision(rng, self.plan)
        clock = self.ctx.clock
        onward: tuple[list[Point], float] | None = None
        if status == "driver_assigned":
            legs = await self._legs(order_id, [rest, dest])
            onward = legs[1] if len(legs) > 1 else None
            await self._drive(legs[0], vanish_at if vanish_leg == 0 else None)
            if not await self._step(order_id, "arrived"):
                return
            status = "driver_at_restaurant"
        along: list[dict[str, Any]] = []
        if status == "driver_at_restaurant":
            # Other orders of this restaurant given to us meanwhile (a batched dispatcher
            # bundles them): picked up together, delivered one after the other.
            along = await self._same_restaurant(rest)
            for oid in [order_id, *(o["order_id"] for o in along)]:
                if oid in self.ctx.ready:  # one of the run's: its kitchen will say when
                    await self.ctx.ready[oid].wait()
            kitchen = self.ctx.restaurant_at(*rest)
            await clock.sleep(pickup_wait_s(rng, kitchen) if kitchen else UNKNOWN_PARKING_S)
            if not await self._step(order_id, "picked-up"):
                return
            along = [o for o in along if await self._step(o["order_id"], "picked-up")]
            status = "picked_up"
        if status == "picked_up":
            if along:
                onward = None  # the pushed route was for this order alone, from the restaurant
            leg = onward or (await self._legs(order_id, [dest]))[-1]
            await self._drive(leg, vanish_at if vanish_leg == 1 else None)
            await clock.sleep(handover_s(rng))
            if await self._step(order_id, "delivered"):
                self.ctx.record.deliveries += 1
        for other in along:
            await self._deliver(other | {"status": "picked_up"})

    async def _same_restaurant(self, rest: Point) -> list[dict[str, Any]]:
        """Take from the queue the orders assigned to us at the restaurant ``rest`` and tell
        the server we are there for each (the others stay queued, in their order)."""
        queued = [self.jobs.get_nowait() for _ in range(self.jobs.qsize())]
        same: list[dict[str, Any]] = []
        for order in queued:
            at = order["restaurant_location"]
            if (
                (at["lat"], at["lng"]) == rest
                and order["status"] == "driver_assigned"
                and order["order_id"] not in self.handled
                and await self._step(order["order_id"], "arrived")
            ):
                self.handled.add(order["order_id"])
                same.append(order)
            else:
                self.jobs.put_nowait(order)
        return same

    async def _step(self, order_id: str, step: str) -> bool:
        resp = await self.ctx.call("POST", f"/api/orders/{order_id}/{step}", self.token)
        if resp.status_code != 200:  # reassigned while we were away, or cancelled
            self.ctx.note(f"{self.driver_id} {step} {order_id}: {resp.status_code} {resp.text}")
        return resp.status_code == 200

    async def _legs(self, order_id: str, stops: list[Point]) -> list[tuple[list[Point], float]]:
        """Polylines and durations from here through ``stops``: the pushed route when it
        starts where we are, else a fresh ``GET /api/route``."""
        here = self.position(self.ctx.clock.elapsed_sim_s())
        if len(stops) > 1 and distance_m(here, stops[0]) < 2:  # there already: no leg to drive
            return [([here], 0.0), *(await self._legs(order_id, stops[1:]))]
        pushed = self.routes.pop(order_id, None)
        if pushed and len(stops) == 2 and pushed.get("geometry"):
            first = pushed["geometry"][0]
            if distance_m(here, (first[0], first[1])) < 30 and len(pushed["legs"]) == 2:
                return split_legs(pushed)
        points = [here, *stops]
        params: list[tuple[str, str]] = [("from", f"{here[0]},{here[1]}")]
        params += [("via", f"{p[0]},{p[1]}") for p in stops[:-1]]
        params.append(("to", f"{stops[-1][0]},{stops[-1][1]}"))
        resp = await self.ctx.call("GET", "/api/route", self.token, params=params)
        if resp.status_code == 200:
            return split_legs(resp.json())
        # At the stop already (same point), or off the map: a straight line at 20 km/h.
        return [([a, b], distance_m(a, b) / 5.5) for a, b in pairwise(points)]

    async def _drive(self, leg: tuple[list[Point], float], vanish_at: float | None) -> None:
        """Along the leg's points, at this driver's pace in this trip's traffic."""
        points, route_s = leg
        duration_s = leg_duration_s(self.trip_rng, self.plan, route_s)
        clock = self.ctx.clock
        self.trip = Trip(points, clock.elapsed_sim_s(), duration_s)
        try:
            if vanish_at is not None:
                await clock.sleep(duration_s * vanish_at)
                raise Vanish(mid=True)
            await clock.sleep_until(self.trip.end_s)
        finally:
            self.pos = self.trip.position(clock.elapsed_sim_s())
            self.trip = None
