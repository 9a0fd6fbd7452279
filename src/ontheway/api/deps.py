"""Request dependencies: the application's state and the authenticated caller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ontheway.auth import Principal, Role, decode_token
from ontheway.connections import Connections
from ontheway.errors import Unauthenticated
from ontheway.orders.queries import OrderQueries
from ontheway.orders.restaurants import RestaurantQueries
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.roads.routing import RoadService
from ontheway.settings import Settings


@dataclass
class AppState:
    """What the lifespan builds once and every request shares."""

    settings: Settings
    jwt_key: str
    catalog: Catalog
    conns: Connections
    orders: OrderService = field(init=False)
    order_queries: OrderQueries = field(init=False)
    restaurants: RestaurantQueries = field(init=False)
    roads: RoadService = field(init=False)

    def __post_init__(self) -> None:
        shards = ShardAccess(self.conns, self.catalog)
        # One road service per process (its snapping maps are cached), shared with placement.
        self.roads = RoadService(self.conns.graphs, self.catalog)
        self.orders = OrderService(shards, self.roads)
        self.order_queries = OrderQueries(shards)
        self.restaurants = RestaurantQueries(shards, self.roads)


def app_state(request: Request) -> AppState:
    """The application's state."""
    state: AppState = request.app.state.ontheway
    return state


State = Annotated[AppState, Depends(app_state)]


def current_principal(request: Request, state: State) -> Principal:
    """The caller, from the ``Authorization: Bearer`` header; 401 when missing or bad."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing Authorization header (Bearer token)", code="missing_token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <token>'", code="invalid_token"
        )
    return decode_token(state.jwt_key, token.strip())


Caller = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only callers in one of ``roles`` (403 otherwise)."""

    def check(principal: Caller) -> Principal:
        principal.require_role(*roles)
        return principal

    return check


OpsCaller = Annotated[Principal, Depends(require_roles(Role.OPS))]
