"""Shared fixtures: the real local stack (started by the project's own code) and its settings."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.orders.queries import OrderQueries
from ontheway.orders.seed import seed_region
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, load_catalog
from ontheway.schema.admin import migrate_shards
from ontheway.settings import Settings, load_settings
from ontheway.stack import LocalStack


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Settings of the local stack, which is brought up (idempotently) first."""
    base = load_settings()
    shards = load_catalog(base.region_catalog).shards()
    LocalStack.from_settings(base, shards).up()
    ready = load_settings()
    asyncio.run(migrate_shards(ready, shards))
    return ready


@pytest.fixture(scope="session")
async def conns(settings: Settings) -> AsyncIterator[Connections]:
    """Open connections to every shard, Redis and FalkorDB."""
    opened = await Connections.open(settings, shards=sorted(settings.shard_dsns))
    yield opened
    await opened.close()


@pytest.fixture
def uid() -> str:
    """A random id so that tests never collide."""
    return uuid.uuid4().hex[:12]


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
