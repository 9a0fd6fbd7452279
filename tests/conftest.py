"""Shared fixtures: the real local stack (started by the project's own code) and its settings."""

from __future__ import annotations

import asyncio
import io
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog, load_catalog
from ontheway.schema.admin import migrate_shards
from ontheway.seeding import seed_with_fleet
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
async def sf(conns: Connections, catalog: Catalog, settings: Settings) -> dict[str, Any]:
    """A freshly seeded San Francisco (new ids each session), its drivers known to the fleet."""
    return await seed_with_fleet(
        conns,
        catalog,
        settings,
        "sf",
        restaurants=6,
        customers=10,
        drivers=6,
        seed=random.randrange(1 << 30),
    )


# Each task that a test left running, with the test that started it.
_LEFT_BY: dict[asyncio.Task[Any], str] = {}


@pytest.fixture(autouse=True)
async def _tasks_left_behind(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Notes each task that a test started and left running after its teardown."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    for task in asyncio.all_tasks() - before - {asyncio.current_task()}:
        if not task.done():
            _LEFT_BY.setdefault(task, request.node.nodeid)


@pytest.fixture(scope="session", autouse=True)
async def no_task_outlives_the_tests(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After the whole run, no task that a test started is still running: one that is
    would keep working on the shared stack behind later tests' backs, and one that ignores
    cancellation hangs the event loop's close. Each is shown with its stack (even a hang
    shows them first), then cancelled."""
    yield
    left = {t: n for t, n in _LEFT_BY.items() if not t.done()}
    if not left:
        return
    out = io.StringIO()
    for task, nodeid in left.items():
        print(f"\ntask left by {nodeid}: {task!r}", file=out)
        task.print_stack(file=out)
        task.cancel()
    _, pending = await asyncio.wait(left, timeout=10)
    for task in pending:
        print(f"\ntask still running 10 s after its cancellation: {task!r}", file=out)
        task.print_stack(file=out)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(out.getvalue(), flush=True)
    pytest.fail(f"{len(left)} task(s) outlived the tests that started them (shown above)")


@pytest.fixture(scope="session", autouse=True)
def every_order_rebuilds_to_its_row(settings: Settings) -> Iterator[None]:
    """After the whole run: for every order the tests created, the state rebuilt from its
    events alone equals the row (the audit trail is complete)."""
    started = datetime.now(UTC)
    yield
    asyncio.run(_audit_orders_since(settings, started))


async def _audit_orders_since(settings: Settings, started: datetime) -> None:
    from ontheway.orders.audit import STATE_FIELDS, rebuild
    from ontheway.orders.models import order_view
    from ontheway.orders.store import ORDER_SELECT

    catalog = load_catalog(settings.region_catalog)
    conns = await Connections.open(settings, shards=catalog.shards(), pool_max=2)
    mismatches = []
    checked = 0
    try:
        shards = ShardAccess(conns, catalog)
        queries = OrderQueries(shards)
        for region in {catalog.shard_for(r.region): r.region for r in catalog}.values():
            async with shards.connection(region) as conn:
                cur = await conn.execute(ORDER_SELECT + " WHERE o.created_at >= %s", (started,))
                rows = await cur.fetchall()
            for row in rows:
                rebuilt = rebuild(await queries.events(row["order_id"]))
                view = order_view(row)
                checked += 1
                if rebuilt is None or any(rebuilt[k] != view[k] for k in STATE_FIELDS):
                    mismatches.append(row["order_id"])
    finally:
        await conns.close()
    assert not mismatches, f"{len(mismatches)} of {checked} orders differ from their events"
