"""Drivers answering offers: accept, decline, and the open offers of a reconnecting app.

The same answers arrive on ``WS /ws/driver`` (fleet.py); both go through ``Offers`` (see
``ontheway.dispatch.offering`` for the protocol and how PostgreSQL and Redis stay in step).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from ontheway.api.deps import AppState, Caller
from ontheway.auth import Principal, Role
from ontheway.dispatch.assign import Assignments
from ontheway.dispatch.offering import Offers
from ontheway.errors import InvalidInput, OnTheWayError
from ontheway.fleet.service import Fleet
from ontheway.orders.models import order_view

router = APIRouter(tags=["offers"])


def open_offers(state: AppState, fleet: Fleet) -> Offers:
    """The process's offers, over its orders service, fleet and roads (built by the lifespan)."""
    assignments = Assignments(state.orders, fleet.store, state.conns.require_redis())
    return Offers(
        assignments,
        state.order_queries,
        state.roads,
        timeout_s=state.settings.dispatch_offer_timeout_s,
        refused_ttl_s=state.settings.dispatch_refusal_memory_s,
    )


def offers_of(request: Request) -> Offers:
    """The process's offers (opened by the lifespan)."""
    offers: Offers = request.app.state.offers
    return offers


OffersDep = Annotated[Offers, Depends(offers_of)]


async def answer(offers: Offers, caller: Principal, order_id: str, kind: str) -> dict[str, Any]:
    """Accept or decline the caller's offer; the reply of the HTTP route and the socket."""
    caller.require_role(Role.DRIVER)
    if kind == "accept":
        return order_view(await offers.accept(order_id, caller.sub))
    await offers.decline(order_id, caller.sub)
    return {"order_id": order_id, "declined": True}


async def socket_answer(
    offers: Offers, caller: Principal, kind: str, order_id: object
) -> dict[str, Any]:
    """The reply on ``/ws/driver`` to ``{"type": "accept"|"decline", "order_id"}``: accepted
    (with the order), declined, or the error."""
    if not isinstance(order_id, str):
        problem = InvalidInput("order_id must be a string", field="order_id")
        return {"type": "error", "error": problem.to_body()["error"]}
    try:
        reply = await answer(offers, caller, order_id, kind)
    except OnTheWayError as exc:
        return {"type": "error", "order_id": order_id, "error": exc.to_body()["error"]}
    if kind == "accept":
        return {"type": "accepted", "order_id": order_id, "order": reply}
    return {"type": "declined", "order_id": order_id}


@router.post("/api/orders/{order_id}/accept")
async def accept(caller: Caller, order_id: str, offers: OffersDep) -> dict[str, Any]:
    """The offered driver takes the order: now driver_assigned (409 once the offer is gone)."""
    return await answer(offers, caller, order_id, "accept")


@router.post("/api/orders/{order_id}/decline")
async def decline(caller: Caller, order_id: str, offers: OffersDep) -> dict[str, Any]:
    """The offered driver turns the order down; the next driver gets the offer."""
    return await answer(offers, caller, order_id, "decline")


@router.get("/api/driver/offers")
async def open_offers_of_driver(caller: Caller, offers: OffersDep) -> list[dict[str, Any]]:
    """The calling driver's open offers (the messages sent to its socket), soonest first."""
    caller.require_role(Role.DRIVER)
    return await offers.open_for(caller.sub)
