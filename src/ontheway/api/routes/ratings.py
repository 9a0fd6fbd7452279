"""Ratings: the customer of a delivered order rates it, once; those who may see the order
may see its rating."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ontheway.api.deps import Caller, State
from ontheway.notifications.ratings import RateOrder, rate_order, rating_of
from ontheway.orders import access

router = APIRouter(tags=["ratings"])


@router.post("/api/orders/{order_id}/rating", status_code=201)
async def rate(state: State, caller: Caller, order_id: str, body: RateOrder) -> dict[str, Any]:
    """Rate a delivered order from 1 to 5 with an optional comment (its customer, once):
    403 for anyone else, 409 before delivery or when rated already."""
    return await rate_order(state.order_queries.shards, caller, order_id, body)


@router.get("/api/orders/{order_id}/rating")
async def rating(state: State, caller: Caller, order_id: str) -> dict[str, Any]:
    """The order's rating (its customer, restaurant, driver, or ops); 404 when not rated."""
    access.require_view(caller, await state.order_queries.get(order_id))
    return await rating_of(state.order_queries.shards, order_id)
