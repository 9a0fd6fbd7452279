"""Fixtures for the orders tests: the service over the real shards and a seeded region."""

from __future__ import annotations

import random
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.orders.models import PlaceOrder
from ontheway.orders.queries import OrderQueries
from ontheway.orders.seed import seed_region
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, load_catalog
from ontheway.settings import Settings


@pytest.fixture(scope="session")
def catalog(settings: Settings) -> Catalog:
    return load_catalog(settings.region_catalog)


@pytest.fixture(scope="session")
def shards(conns: Connections, catalog: Catalog) -> ShardAccess:
    return ShardAccess(conns, catalog)


@pytest.fixture(scope="session")
def orders(shards: ShardAccess) -> OrderService:
    return OrderService(shards)


@pytest.fixture(scope="session")
def queries(shards: ShardAccess) -> OrderQueries:
    return OrderQueries(shards)


@pytest.fixture(scope="session")
async def sf(shards: ShardAccess, catalog: Catalog) -> dict[str, Any]:
    """A freshly seeded San Francisco (new ids each session)."""
    result = await seed_region(
        shards,
        catalog.get("sf"),
        restaurants=6,
        customers=10,
        drivers=6,
        seed=random.randrange(1 << 30),
    )
    return result.to_json()


def order_for(
    restaurant: dict[str, Any], quantity: int = 1, tip: str = "2.00", **overrides: Any
) -> PlaceOrder:
    """A valid order of the first two items, delivered 300 m north of the restaurant."""
    body: dict[str, Any] = {
        "restaurant_id": restaurant["restaurant_id"],
        "items": [
            {"item_id": item["item_id"], "quantity": quantity} for item in restaurant["items"][:2]
        ],
        "delivery_location": {
            "lat": restaurant["lat"] + 0.0027,
            "lng": restaurant["lng"],
            "address": "1 Test St",
        },
        "tip": tip,
    }
    body.update(overrides)
    return PlaceOrder.model_validate(body)
