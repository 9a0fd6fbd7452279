"""Orders (API.md): placing, reading, the audit trail, the lifecycle, and the lists."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from ontheway.api.deps import Caller, OpsCaller, State
from ontheway.api.routes.fleet import FleetDep
from ontheway.auth import Role
from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.offering import Offers
from ontheway.errors import Forbidden, InvalidInput, NotFound, OnTheWayError
from ontheway.eta.log import history as eta_history
from ontheway.orders import access
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import (
    AssignDriver,
    CancelOrder,
    ChangeOrder,
    ConfirmOrder,
    PlaceOrder,
    order_view,
)
from ontheway.orders.queries import event_view

log = logging.getLogger(__name__)

router = APIRouter(tags=["orders"])
Key = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[\x21-\x7e]+$")
]


@router.post("/api/orders", status_code=201)
async def place_order(
    state: State, caller: Caller, body: PlaceOrder, idempotency_key: Key = None
) -> JSONResponse:
    """Place an order (customer); a retry with the same Idempotency-Key returns it again."""
    caller.require_role(Role.CUSTOMER)
    order, created = await state.orders.place(caller.sub, body, idempotency_key)
    return JSONResponse(
        order,
        status_code=201 if created else 200,
        headers=None if created else {"Idempotent-Replayed": "true"},
    )


@router.get("/api/orders/{order_id}")
async def get_order(
    state: State, caller: Caller, order_id: str, at: Annotated[datetime | None, Query()] = None
) -> dict[str, Any]:
    """The order; with ``at``, its state at that moment rebuilt from its events."""
    row = await state.order_queries.get(order_id)
    access.require_view(caller, row)
    if at is None:
        return order_view(row)
    if at.tzinfo is None:
        raise InvalidInput("`at` needs a time zone (e.g. ...Z)", field="at")
    rebuilt = await state.order_queries.state_at(order_id, at)
    if rebuilt is None:
        raise NotFound(f"order {order_id} did not exist yet at {at.isoformat()}", field="at")
    return rebuilt


@router.get("/api/orders/{order_id}/eta")
async def order_eta(state: State, caller: Caller, order_id: str) -> dict[str, Any]:
    """The promise made at placement, the latest estimate with its 10-90 % window and every
    estimate made so far (at placement, assignment, pickup, after re-routes), oldest first."""
    row = await state.order_queries.get(order_id)
    access.require_view(caller, row)
    async with state.order_queries.shards.connection(row["region"]) as conn:
        estimates = await eta_history(conn, order_id)
    return {
        "order_id": order_id,
        "status": row["status"],
        "promised_delivery": estimates[0]["estimated_delivery"] if estimates else None,
        "latest": estimates[-1] if estimates else None,
        "estimates": estimates,
    }


@router.get("/api/orders/{order_id}/events")
async def order_events(state: State, caller: Caller, order_id: str) -> list[dict[str, Any]]:
    """The audit trail, oldest first."""
    access.require_view(caller, await state.order_queries.get(order_id))
    return [event_view(e) for e in await state.order_queries.events(order_id)]


@router.patch("/api/orders/{order_id}")
async def change_order(
    state: State,
    caller: Caller,
    order_id: str,
    body: ChangeOrder,
) -> dict[str, Any]:
    """Change the items or the address before pickup (its customer); stock, totals and the
    payment follow in the same transaction."""
    caller.require_role(Role.CUSTOMER)
    access.require_view(caller, await state.order_queries.get(order_id))
    return order_view(await state.orders.change(order_id, caller.sub, body))


def assignments(state: State, fleet: FleetDep) -> Assignments:
    """Assignments over this process's orders service and fleet."""
    return Assignments(state.orders, fleet.store, state.conns.require_redis())


AssignmentsDep = Annotated[Assignments, Depends(assignments)]


@router.post("/api/orders/{order_id}/cancel")
async def cancel_order(
    request: Request,
    state: State,
    caller: Caller,
    order_id: str,
    after: AssignmentsDep,
    body: Annotated[CancelOrder | None, Body()] = None,
) -> dict[str, Any]:
    """Cancel before pickup (its customer or ops); stock goes back, the payment is voided."""
    access.require_customer_or_ops(caller, await state.order_queries.get(order_id))
    reason = body.reason if body else ""
    row = await state.orders.transition(
        order_id,
        EventType.ORDER_CANCELLED,
        caller.sub,
        data={"reason": reason, "by": caller.role.value},
    )
    await after.committed(row)
    offers: Offers | None = getattr(request.app.state, "offers", None)
    if offers is not None:
        try:
            await offers.withdraw(order_id)
        except OnTheWayError as exc:  # the sweeper releases the driver at the deadline
            log.warning("offer of cancelled %s not withdrawn: %s", order_id, exc.message)
    return order_view(row)


async def _driver_step(
    state: State, caller: Caller, order_id: str, event: EventType, after: Assignments
) -> dict[str, Any]:
    access.require_assigned_driver(caller, await state.order_queries.get(order_id))
    row = await state.orders.transition(order_id, event, caller.sub, expect_driver=caller.sub)
    await after.committed(row)
    return order_view(row)


@router.post("/api/orders/{order_id}/arrived")
async def driver_arrived(
    state: State, caller: Caller, order_id: str, after: AssignmentsDep
) -> dict[str, Any]:
    """The assigned driver is at the restaurant."""
    return await _driver_step(state, caller, order_id, EventType.DRIVER_ARRIVED_RESTAURANT, after)


@router.post("/api/orders/{order_id}/picked-up")
async def picked_up(
    state: State, caller: Caller, order_id: str, after: AssignmentsDep
) -> dict[str, Any]:
    """The assigned driver has the food."""
    return await _driver_step(state, caller, order_id, EventType.ORDER_PICKED_UP, after)


@router.post("/api/orders/{order_id}/delivered")
async def delivered(
    state: State, caller: Caller, order_id: str, after: AssignmentsDep
) -> dict[str, Any]:
    """The assigned driver handed the food over; the payment is captured."""
    return await _driver_step(state, caller, order_id, EventType.ORDER_DELIVERED, after)


@router.post("/api/orders/{order_id}/confirm")
async def confirm(
    state: State,
    caller: Caller,
    order_id: str,
    body: ConfirmOrder,
) -> dict[str, str]:
    """The restaurant accepts the order with its preparation estimate."""
    access.require_own_restaurant(caller, await state.order_queries.get(order_id))
    await state.orders.note(
        order_id, EventType.ORDER_CONFIRMED, caller.sub, {"prep_time_s": body.prep_time_s}
    )
    return {"order_id": order_id, "event": EventType.ORDER_CONFIRMED.value}


@router.post("/api/orders/{order_id}/ready")
async def ready(state: State, caller: Caller, order_id: str) -> dict[str, str]:
    """The restaurant says the food is ready."""
    access.require_own_restaurant(caller, await state.order_queries.get(order_id))
    await state.orders.note(order_id, EventType.ORDER_READY, caller.sub, {})
    return {"order_id": order_id, "event": EventType.ORDER_READY.value}


@router.post("/api/ops/orders/{order_id}/assign")
async def assign(
    state: State,
    caller: OpsCaller,
    order_id: str,
    body: AssignDriver,
    assigning: AssignmentsDep,
) -> dict[str, Any]:
    """Assign a driver by hand (ops of the order's region): the driver's capacity is
    reserved in the fleet, then the assignment committed."""
    access.require_view(caller, await state.order_queries.get(order_id))
    return order_view(await assigning.assign(order_id, body.driver_id, caller.sub))


@router.get("/api/customers/{customer_id}/orders/summary")
async def customer_summary(
    state: State,
    caller: Caller,
    customer_id: str,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> JSONResponse:
    """Per day: orders, delivered, cancelled, average value and delivery time. An ops caller
    limited to some regions sees only those regions' orders. When a shard is down, the days
    come from the others and ``Unavailable-Regions`` names the regions left out (503 when no
    shard answers)."""
    if not (
        caller.role is Role.OPS or (caller.role is Role.CUSTOMER and caller.sub == customer_id)
    ):
        raise Forbidden("only the customer itself or ops may see this summary")
    regions = caller.regions if caller.role is Role.OPS else None
    days_view, unavailable = await state.order_queries.customer_summary(customer_id, days, regions)
    headers = {"Unavailable-Regions": ",".join(unavailable)} if unavailable else None
    return JSONResponse(days_view, headers=headers)


@router.get("/api/restaurant/orders")
async def restaurant_orders(
    state: State,
    caller: Caller,
    status: Annotated[str, Query(pattern="^active$")] = "active",
) -> list[dict[str, Any]]:
    """The calling restaurant's active orders."""
    caller.require_role(Role.RESTAURANT)
    return await state.order_queries.restaurant_active(caller.sub)


@router.get("/api/driver/orders")
async def driver_orders(
    state: State,
    caller: Caller,
    region: Annotated[str, Query(max_length=40)],
    status: Annotated[str, Query(pattern="^active$")] = "active",
) -> list[dict[str, Any]]:
    """The calling driver's active orders in its region."""
    caller.require_role(Role.DRIVER)
    state.catalog.get(region)
    return await state.order_queries.driver_active(caller.sub, region)


@router.get("/api/ops/orders")
async def ops_orders(
    state: State,
    caller: OpsCaller,
    region: Annotated[list[str] | None, Query()] = None,
    status: Annotated[str, Query(pattern="^active$")] = "active",
) -> dict[str, Any]:
    """Active orders of the caller's regions (or those asked for), over every shard; the
    regions of a shard that is down are listed under ``unavailable``."""
    regions = region or sorted(caller.regions or [r.region for r in state.catalog])
    for name in regions:
        state.catalog.get(name)
        caller.require_region(name)
    return await state.order_queries.active_in_regions(regions)
