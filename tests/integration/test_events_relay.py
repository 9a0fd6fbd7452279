"""The outbox relay against the real shard and the Redis stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.events.model import Event
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.events.relay import (
    APPLICATION_NAME,
    MOVE_CURSOR,
    NEXT_EVENTS,
    _ShardRelay,
    cursor_name,
    relay_batch,
    relay_lag,
    run_relay,
    start_at_end,
)
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from tests.helpers import order_for


@pytest.fixture
async def stream(conns: Connections) -> AsyncIterator[tuple[RedisStreamsBus, str]]:
    """A stream of its own and a relay cursor of its own, starting now."""
    name = uuid.uuid4().hex[:10]
    bus = RedisStreamsBus(conns.require_redis(), stream=f"test:relay:{name}")
    await start_at_end(conns, "americas", f"test-{name}")
    yield bus, f"test-{name}"
    await conns.require_redis().delete(bus.stream)


async def published(bus: RedisStreamsBus) -> list[Event]:
    entries = await bus.client.xrange(bus.stream)
    return [Event.from_json(fields[b"event"]) for _, fields in entries]


async def relay_all(conns: Connections, bus: Any, cursor: str) -> int:
    total = 0
    while (n := await relay_batch(conns, "americas", bus, cursor, limit=50)) > 0:
        total += n
    return total


async def test_the_relay_publishes_each_orders_events_in_order_and_resumes_from_its_cursor(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream: tuple[RedisStreamsBus, str],
) -> None:
    bus, cursor = stream
    ids = []
    for _ in range(3):
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        ids.append(order["order_id"])
    await orders.transition(ids[0], EventType.ORDER_CANCELLED, f"user_{uid}")
    before = await relay_lag(conns, "americas", cursor)
    assert before is not None and before.events >= 4 and before.seconds > 0
    assert await relay_all(conns, bus, cursor) >= 4
    # Other writers may add events meanwhile; ours at least are no longer behind.
    after = await relay_lag(conns, "americas", cursor)
    assert after is not None and after.events < before.events
    # A cursor no relay has made: no lag to tell (and nothing read to tell it).
    assert await relay_lag(conns, "americas", f"{cursor}-never-started") is None
    mine = [e for e in await published(bus) if e.order_id in ids]
    assert [e.event_type for e in mine if e.order_id == ids[0]] == [
        "ORDER_PLACED",
        "ORDER_CANCELLED",
    ]
    assert {e.order_id for e in mine} == set(ids)
    await relay_all(conns, bus, cursor)  # a second pass publishes nothing of ours again
    assert len([e for e in await published(bus) if e.order_id in ids]) == len(mine)


async def test_an_event_that_commits_late_is_not_skipped(
    conns: Connections,
    shards: ShardAccess,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream: tuple[RedisStreamsBus, str],
) -> None:
    bus, cursor = stream
    slow_order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][1]))
    await relay_all(conns, bus, cursor)
    # A slow transaction writes an event and stays open while a fast one commits after it.
    async with shards.connection("sf") as slow, slow.transaction():
        await slow.execute(
            "INSERT INTO order_events (event_id, order_id, order_created_at, event_type, actor)"
            " SELECT %s, order_id, created_at, 'ORDER_READY', 'slow' FROM orders"
            " WHERE order_id = %s",
            (uuid.uuid4(), slow_order["order_id"]),
        )
        fast, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][1]))
        await relay_all(conns, bus, cursor)
        seen = {e.order_id for e in await published(bus)}
        assert fast["order_id"] not in seen  # held back: an older transaction is open
    # (the slow transaction commits here)
    await relay_all(conns, bus, cursor)
    late = [
        e for e in await published(bus) if e.order_id in (slow_order["order_id"], fast["order_id"])
    ]
    assert [e.event_type for e in late if e.order_id == slow_order["order_id"]] == [
        "ORDER_PLACED",
        "ORDER_READY",
    ]
    assert fast["order_id"] in {e.order_id for e in late}


class CrashAfterPublish:
    """A relay destination that takes the events and then dies before the cursor moves."""

    def __init__(self, bus: RedisStreamsBus):
        self.bus = bus

    async def publish(self, events: Sequence[Event]) -> None:
        await self.bus.publish(events)
        raise RuntimeError("relay killed mid-batch")


async def test_a_relay_killed_mid_batch_loses_nothing_and_keeps_each_orders_order(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream: tuple[RedisStreamsBus, str],
) -> None:
    bus, cursor = stream
    ids = []
    for _ in range(3):
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][2]))
        await orders.transition(order["order_id"], EventType.ORDER_CANCELLED, f"user_{uid}")
        ids.append(order["order_id"])
    with pytest.raises(RuntimeError):
        await relay_batch(conns, "americas", CrashAfterPublish(bus), cursor)  # type: ignore[arg-type]
    await relay_all(conns, bus, cursor)
    mine = [e for e in await published(bus) if e.order_id in ids]
    assert {e.order_id for e in mine} == set(ids)
    for order_id in ids:
        kinds = [e.event_type for e in mine if e.order_id == order_id]
        first_seen = list(dict.fromkeys(kinds))
        assert first_seen == ["ORDER_PLACED", "ORDER_CANCELLED"]
    assert len(mine) > len({e.event_id for e in mine})  # the batch went out twice


@pytest.fixture
async def running_relay(conns: Connections) -> AsyncIterator[RedisStreamsBus]:
    """``run_relay`` on a stream of its own, polling only once a minute: anything it
    publishes sooner came from a notification or from its held-back retries."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    for shard in conns.shards:
        await start_at_end(conns, shard, cursor_name(name, shard))
    bus = RedisStreamsBus(conns.require_redis(), stream=f"test:relay:{name}")
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(conns, bus, name, idle_s=60, stop=stop))
    yield bus
    stop.set()
    await asyncio.wait_for(task, 10)
    await conns.require_redis().delete(bus.stream)


async def published_soon(bus: RedisStreamsBus, order_id: str, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if any(e.order_id == order_id for e in await published(bus)):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_the_running_relay_wakes_on_a_commit_instead_of_its_next_poll(
    orders: OrderService, sf: dict[str, Any], uid: str, running_relay: RedisStreamsBus
) -> None:
    await asyncio.sleep(0.2)  # past its first passes: now it waits for a notification
    order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    assert await published_soon(running_relay, order["order_id"])


async def test_an_event_held_back_by_an_older_transaction_goes_out_soon_after_it_ends(
    shards: ShardAccess,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    running_relay: RedisStreamsBus,
) -> None:
    await asyncio.sleep(0.2)
    async with shards.connection("sf") as older, older.transaction():
        await older.execute("SELECT pg_current_xact_id()")  # a transaction id, no event
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        await asyncio.sleep(0.3)
        seen = {e.order_id for e in await published(running_relay)}
        assert order["order_id"] not in seen
    # (the older transaction commits here, which sends no notification)
    assert await published_soon(running_relay, order["order_id"])


async def test_the_relay_reads_from_its_cursor_by_the_index_not_every_event_before_it(
    conns: Connections, stream: tuple[RedisStreamsBus, str]
) -> None:
    _, cursor = stream
    async with conns.shard_connection("americas") as conn, conn.transaction():
        # The test shard is small enough for a sequential scan to win; forbid it to see the
        # plan of a large one.
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute("EXPLAIN " + NEXT_EVENTS, (cursor, 100))
        plan = "\n".join(row["QUERY PLAN"] for row in await cur.fetchall())
    # The cursor bounds the index scan (where it starts), instead of filtering every event
    # below the snapshot's xmin after reading it.
    assert "Index Cond: (ROW(txid, seq) > ROW($0, $1))" in plan.replace("((ROW", "(ROW"), plan
    assert "Filter: (ROW(" not in plan, plan


async def test_one_relay_of_a_cursor_works_the_others_stand_by_and_take_over(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream: tuple[RedisStreamsBus, str],
) -> None:
    bus, cursor = stream
    first, second = _ShardRelay(conns, "americas", cursor), _ShardRelay(conns, "americas", cursor)
    try:
        one, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        assert (await first.relay(bus, 500))[0] >= 1
        two, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        # The first holds the cursor's lock for as long as its connection lives.
        assert await second.relay(bus, 500) == (0, False)
        assert not second.leading
        # A pooled single batch (as the tests and tools use) stands by as well.
        assert await relay_batch(conns, "americas", bus, cursor) == 0
        assert two["order_id"] not in {e.order_id for e in await published(bus)}
        await first.close()  # its connection gone, the lock goes with it
        for _ in range(100):  # (once its server process has ended)
            if (await second.relay(bus, 500))[0] >= 1:
                break
            await asyncio.sleep(0.02)
        assert second.leading
        seen = [e.order_id for e in await published(bus)]
        assert seen.count(one["order_id"]) == 1 and seen.count(two["order_id"]) == 1
    finally:
        await first.close()
        await second.close()


async def test_the_running_relay_reconnects_when_its_connection_is_killed(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    running_relay: RedisStreamsBus,
) -> None:
    """Its connection (and the cursor's lock with it) killed by the server, the relay
    connects again and goes on publishing."""
    first, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    assert await published_soon(running_relay, first["order_id"])
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity"
            " WHERE application_name = %s AND datname = current_database()",
            (APPLICATION_NAME,),
        )
        killed = await cur.fetchone()
    assert killed is not None and killed["n"] >= 1
    second, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    assert await published_soon(running_relay, second["order_id"], seconds=10)


async def test_the_running_relays_cursor_follows_what_it_published_without_waiting_for_a_poll(
    conns: Connections, orders: OrderService, sf: dict[str, Any], uid: str,
    running_relay: RedisStreamsBus,
) -> None:  # fmt: skip
    """The move past a batch rides on the pass after it (a few milliseconds later, not the
    once-a-minute poll): the lag reads nothing left behind."""
    order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
    assert await published_soon(running_relay, order["order_id"])
    cursor = cursor_name(running_relay.stream.removeprefix("test:relay:"), "americas")
    for _ in range(100):
        lag = await relay_lag(conns, "americas", cursor)
        if lag is not None and lag.events == 0:
            break
        await asyncio.sleep(0.02)
    assert lag is not None and lag.events == 0, lag


async def test_a_cursor_never_moves_backwards(
    conns: Connections, stream: tuple[RedisStreamsBus, str]
) -> None:
    """A relay that lost the cursor's lock with a move still to write (its connection gone,
    another relay ahead since) cannot take the cursor back."""
    _, cursor = stream
    read = (
        "SELECT last_txid::text AS txid, last_seq, published FROM outbox_cursor WHERE stream = %s"
    )
    async with conns.shard_connection("americas") as conn:
        before = await (await conn.execute(read, (cursor,))).fetchone()
        assert before is not None and int(before["txid"]) > 1
        await conn.execute(MOVE_CURSOR, ("1", 0, 5, cursor, "1", 0))
        after = await (await conn.execute(read, (cursor,))).fetchone()
        await conn.commit()
    assert after == before
