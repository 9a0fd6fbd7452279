"""Shared fixtures: the real local stack (started by the project's own code) and its settings."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ontheway.connections import Connections
from ontheway.regions import load_catalog
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
