"""The city around the drivers: customers placing orders, kitchens, and the traffic.

Customers place the region's planned orders (demand.py) at their simulated times through
``POST /api/orders`` with customer tokens (an ``Idempotency-Key`` per order, so a retried
request never orders twice). The restaurant of each placed order confirms it after a short
while with its usual preparation time (its median, to 5 minutes: an estimate, as a real
kitchen gives), and marks it ready when the order's true time has passed, drawn from the real
restaurant it cooks like (``/confirm``, ``/ready``; plan.py); the time it sends is in wall
seconds, as the server counts. The true time is never sent. Traffic thickens and thins with
the rush hours through ``POST /api/ops/traffic``, on a few small areas around the busiest
restaurants (a small change is written in milliseconds; a large one makes FalkorDB rebuild its
index).
"""

from __future__ import annotations

import random

from ontheway.auth import Role
from ontheway.sim.context import SimContext
from ontheway.sim.demand import PlannedOrder, rush_factor
from ontheway.sim.plan import prep_time_s, usual_prep_s
from ontheway.sim.world import RegionWorld

TRAFFIC_EVERY_S = 600.0  # simulated seconds between traffic updates
TRAFFIC_SPOTS = 3
TRAFFIC_RADIUS_M = 150.0
SEARCHING = ("searching_driver", "searching_driver_again")


async def customers(ctx: SimContext, world: RegionWorld) -> None:
    """Place the region's planned orders, each at its simulated time."""
    kitchens = [
        random.Random(f"kitchen:{ctx.seed}:{world.region}:{r.index}") for r in world.restaurants
    ]
    for planned in world.orders:
        await ctx.clock.sleep_until(planned.at_s)
        if ctx.stop.is_set():
            return
        rng = kitchens[planned.restaurant]
        confirm_s = rng.uniform(20, 90)
        prep_s = prep_time_s(rng, world.restaurants[planned.restaurant])
        ctx.spawn(_place(ctx, world, planned, confirm_s, prep_s))


async def _place(
    ctx: SimContext, world: RegionWorld, planned: PlannedOrder, confirm_s: float, prep_s: int
) -> None:
    rid = world.restaurant_ids[planned.restaurant]
    menu = world.items[planned.restaurant]
    lat, lng = planned.dropoff
    body = {
        "restaurant_id": rid,
        "items": [{"item_id": menu[i % len(menu)], "quantity": q} for i, q in planned.items],
        "delivery_location": {"lat": lat, "lng": lng, "address": f"node at {lat:.5f},{lng:.5f}"},
        "tip": f"{planned.tip_cents / 100:.2f}",
    }
    customer = world.customers[planned.customer % len(world.customers)]
    key = f"sim-{ctx.record.run_id}-{world.region}-{planned.seq}"
    resp = await ctx.call("POST", "/api/orders", ctx.token(Role.CUSTOMER, customer), json=body,
                          headers={"Idempotency-Key": key})  # fmt: skip
    if resp.status_code not in (200, 201):
        ctx.record.orders_refused += 1
        ctx.note(f"order {key} refused: {resp.status_code} {resp.text}")
        return
    order_id = resp.json()["order_id"]
    ctx.record.orders.append(order_id)
    usual_s = usual_prep_s(world.restaurants[planned.restaurant])
    await _kitchen(ctx, rid, order_id, confirm_s, usual_s, prep_s)


async def _kitchen(
    ctx: SimContext, rid: str, order_id: str, confirm_s: float, usual_s: int, prep_s: int
) -> None:
    """The restaurant confirms with its usual time (``usual_s``), cooks for the order's true
    time (``prep_s``), and says the food is ready."""
    token = ctx.token(Role.RESTAURANT, rid)
    ready = ctx.ready_event(order_id)
    try:
        await ctx.clock.sleep(confirm_s)
        wall_prep = max(1, round(ctx.clock.wall_s(usual_s)))
        resp = await ctx.call("POST", f"/api/orders/{order_id}/confirm", token,
                              json={"prep_time_s": wall_prep})  # fmt: skip
        if resp.status_code != 200:
            ctx.note(f"{rid} confirm {order_id}: {resp.status_code} {resp.text}")
        await ctx.clock.sleep(prep_s)
        resp = await ctx.call("POST", f"/api/orders/{order_id}/ready", token)
        if resp.status_code != 200:
            ctx.note(f"{rid} ready {order_id}: {resp.status_code} {resp.text}")
    finally:  # a driver waiting at the counter is never left there for good
        ready.set()


def traffic_spots(world: RegionWorld) -> list[tuple[float, float]]:
    """Where traffic thickens: the most popular restaurants' corners."""
    busiest = sorted(world.restaurants, key=lambda r: -r.popularity)[:TRAFFIC_SPOTS]
    return [(r.lat, r.lng) for r in busiest]


async def set_traffic(ctx: SimContext, world: RegionWorld, factor: float) -> bool:
    """One traffic update of the region's spots; False when the API refused it."""
    token = ctx.token(Role.OPS, f"ops_sim_{world.region}", regions=[world.region])
    areas = [
        {"lat": lat, "lng": lng, "radius_m": TRAFFIC_RADIUS_M, "traffic_factor": factor}
        for lat, lng in traffic_spots(world)
    ]
    resp = await ctx.call("POST", "/api/ops/traffic", token,
                          json={"region": world.region, "areas": areas})  # fmt: skip
    if resp.status_code != 200:
        ctx.note(f"traffic {world.region} x{factor}: {resp.status_code} {resp.text}")
        return False
    ctx.record.traffic_changes += 1
    return True


async def traffic(ctx: SimContext, world: RegionWorld) -> None:
    """Follow the rush hours: a new factor every ``TRAFFIC_EVERY_S`` when it changed."""
    last = 0.0
    while not ctx.stop.is_set():
        factor = round(rush_factor(ctx.clock.hour_of_day()), 1)
        if factor != last and await set_traffic(ctx, world, factor):
            last = factor
        await ctx.clock.sleep(TRAFFIC_EVERY_S)


async def close_unserved(ctx: SimContext, world: RegionWorld) -> None:
    """At the end of the run, customers still waiting for a driver give up: their orders
    are cancelled, so that no dispatcher (of this run or another) goes on offering them."""
    token = ctx.token(Role.OPS, f"ops_sim_{world.region}", regions=[world.region])
    resp = await ctx.call("GET", "/api/ops/orders", token, params={"region": world.region})
    if resp.status_code != 200:
        ctx.note(f"active orders of {world.region}: {resp.status_code} {resp.text}")
        return
    ours = set(ctx.record.orders)
    for order in resp.json()["orders"]:
        if order["order_id"] in ours and order["status"] in SEARCHING:
            done = await ctx.call("POST", f"/api/orders/{order['order_id']}/cancel", token,
                                  json={"reason": "simulation ended"})  # fmt: skip
            ctx.record.cancelled_at_end += done.status_code == 200
