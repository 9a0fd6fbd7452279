"""Consumers over the real stream and shards: one effect per event, failures recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.events.bus import Delivery
from ontheway.events.consumers import ANALYTICS, ETA, PAYMENTS, Consumer
from ontheway.events.model import Event
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.events.relay import relay_batch, start_at_end
from ontheway.events.worker import WorkerStats, handle_once, run_worker, work_batch
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from tests.helpers import order_for


@pytest.fixture
async def bus(conns: Connections) -> AsyncIterator[RedisStreamsBus]:
    """A stream of its own, fed by a relay cursor of its own."""
    name = uuid.uuid4().hex[:10]
    made = RedisStreamsBus(
        conns.require_redis(),
        stream=f"test:work:{name}",
        dead_stream=f"test:workdead:{name}",
        max_attempts=3,
        claim_idle_s=0.2,
    )
    await start_at_end(conns, "americas", f"test-{name}")
    made.cursor = f"test-{name}"  # type: ignore[attr-defined]
    yield made
    await conns.require_redis().delete(made.stream, made.dead_stream)


async def relay(conns: Connections, bus: RedisStreamsBus) -> None:
    while await relay_batch(conns, "americas", bus, bus.cursor) > 0:  # type: ignore[attr-defined]
        pass


async def relay_until(
    conns: Connections, bus: RedisStreamsBus, order_id: str, event_type: str
) -> list[Event]:
    """Relay until the order's event is on the stream (another run's open transaction on
    the shard may hold it back a while); returns every event on the stream."""
    for _ in range(200):
        await relay(conns, bus)
        entries = await bus.client.xrange(bus.stream)
        events = [Event.from_json(fields[b"event"]) for _, fields in entries]
        if any(e.order_id == order_id and e.event_type == event_type for e in events):
            return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event_type} of {order_id} was never relayed")


async def work(
    conns: Connections, bus: RedisStreamsBus, consumer: Consumer, until: Any, workers: int = 1
) -> list[WorkerStats]:
    """Run workers until ``until(stats)`` holds (or 20 s pass)."""
    stop = asyncio.Event()
    stats = [WorkerStats() for _ in range(workers)]
    tasks = [
        asyncio.create_task(run_worker(conns, bus, consumer, stop=stop, poll_s=0.1, stats=s))
        for s in stats
    ]
    for _ in range(200):
        if until(stats):
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    return stats


async def deliver(orders: OrderService, sf: dict[str, Any], customer: str) -> str:
    order, _ = await orders.place(customer, order_for(sf["restaurants"][0], tip="3.00"))
    oid, driver = order["order_id"], sf["drivers"][0]["driver_id"]
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    for step in (
        EventType.DRIVER_ARRIVED_RESTAURANT,
        EventType.ORDER_PICKED_UP,
        EventType.ORDER_DELIVERED,
    ):
        await orders.transition(oid, step, driver)
    return str(oid)


async def test_a_delivered_order_pays_the_driver_and_feeds_eta_and_analytics(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    bus: RedisStreamsBus,
) -> None:
    oid = await deliver(orders, sf, f"user_{uid}")
    await relay(conns, bus)
    for consumer in (PAYMENTS, ETA, ANALYTICS):
        mine = replace(consumer, name=f"{consumer.name}-{uid}")
        await work(conns, bus, mine, lambda s: sum(x.handled for x in s) >= 5)
    async with conns.shard_connection("americas") as conn:
        payout = await (
            await conn.execute("SELECT * FROM driver_payouts WHERE order_id = %s", (oid,))
        ).fetchone()
        timing = await (
            await conn.execute("SELECT * FROM order_timings WHERE order_id = %s", (oid,))
        ).fetchone()
        order = await (
            await conn.execute("SELECT delivery_fee, tip FROM orders WHERE order_id = %s", (oid,))
        ).fetchone()
    assert payout is not None and order is not None and timing is not None
    assert payout["payout"] == (order["delivery_fee"] * Decimal("0.8") + order["tip"]).quantize(
        Decimal("0.01")
    )
    assert payout["driver_id"] == sf["drivers"][0]["driver_id"]
    assert timing["promised_delivery"] is not None
    assert (
        timing["placed_at"]
        < timing["assigned_at"]
        < timing["picked_up_at"]
        < (timing["delivered_at"])
    )


async def test_the_same_event_delivered_twice_has_one_effect(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    bus: RedisStreamsBus,
) -> None:
    oid = await deliver(orders, sf, f"user_{uid}")
    events = await relay_until(conns, bus, oid, "ORDER_DELIVERED")
    await bus.publish([e for e in events if e.order_id == oid])  # every event once more
    stats = await work(
        conns,
        bus,
        replace(PAYMENTS, name=f"payments-{uid}"),
        lambda s: sum(x.handled + x.duplicates for x in s) >= 2 * len(events),
        workers=2,
    )
    # Only ORDER_DELIVERED has a payments handler: the other events are acked untouched.
    assert sum(s.duplicates for s in stats) >= 1
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM driver_payouts WHERE order_id = %s", (oid,)
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 1


async def test_two_workers_of_one_group_handle_each_event_once(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    bus: RedisStreamsBus,
) -> None:
    for _ in range(4):
        await deliver(orders, sf, f"user_{uid}")
    await relay(conns, bus)
    total = len(await bus.client.xrange(bus.stream))
    stats = await work(
        conns,
        bus,
        replace(ETA, name=f"eta-{uid}"),
        lambda s: sum(x.handled for x in s) >= total,
        workers=2,
    )
    assert sum(s.handled for s in stats) == total
    assert sum(s.duplicates for s in stats) == 0


async def test_a_failing_handler_is_recorded_retried_and_dead_lettered(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    bus: RedisStreamsBus,
) -> None:
    oid = await deliver(orders, sf, f"user_{uid}")
    await relay_until(conns, bus, oid, "DRIVER_ASSIGNED")

    async def explode(conn: Any, event: Event) -> None:
        if event.order_id == oid:  # other runs' orders on the shard may be relayed too
            raise RuntimeError("cannot handle this")

    broken = Consumer(f"broken-{uid}", {EventType.DRIVER_ASSIGNED.value: explode})
    stats = await work(conns, bus, broken, lambda s: sum(x.failed for x in s) >= 3)
    assert sum(s.failed for s in stats) == 3
    dead = await bus.dead_letters()
    assert [(e.order_id, e.event_type) for e, _ in dead] == [(oid, "DRIVER_ASSIGNED")]
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT attempts, last_error FROM consumer_failures WHERE consumer = %s", (broken.name,)
        )
        failure = await cur.fetchone()
    assert failure is not None and failure["attempts"] == 3
    assert "cannot handle this" in failure["last_error"]


def _event(uid: str, event_type: str = "ORDER_DELIVERED") -> Event:
    return Event(
        event_id=str(uuid.uuid4()), order_id=f"ord_sf_{uid}", event_type=event_type,
        ts=datetime.now(UTC), data={}, actor="test", shard="americas", seq=1,
    )  # fmt: skip


async def _deliveries_counted(conns: Connections, subject: str) -> int | None:
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT deliveries FROM daily_stats WHERE subject_kind = 'driver' AND subject_id = %s",
            (subject,),
        )
        row = await cur.fetchone()
    return None if row is None else int(row["deliveries"])


async def test_a_duplicate_delivered_concurrently_has_one_effect(
    conns: Connections, uid: str
) -> None:
    subject = f"drv_dup_{uid}"
    both_in = asyncio.Barrier(2)
    calls: list[str] = []
    pushed: list[str] = []

    async def count(conn: Any, event: Event) -> Any:
        calls.append(event.event_id)
        if len(calls) <= 2:  # both deliveries are inside their handlers before either marks
            await both_in.wait()
        await conn.execute(
            "INSERT INTO daily_stats AS s (day, subject_kind, subject_id, deliveries)"
            " VALUES (%s, 'driver', %s, 1) ON CONFLICT (day, subject_kind, subject_id)"
            " DO UPDATE SET deliveries = s.deliveries + 1",
            (date.today(), subject),
        )

        async def push(_: Connections) -> None:
            pushed.append(event.event_id)

        return push

    consumer = Consumer(f"dup-{uid}", {"ORDER_DELIVERED": count})
    delivery = Delivery(_event(uid), 1, None)
    try:
        async with asyncio.timeout(30):
            fresh = await asyncio.gather(
                handle_once(conns, consumer, delivery), handle_once(conns, consumer, delivery)
            )
        assert sorted(fresh) == [False, True]
        assert await _deliveries_counted(conns, subject) == 1
        assert pushed == [delivery.event.event_id]  # the after-commit push ran once
        async with asyncio.timeout(30):  # a later one too
            assert await handle_once(conns, consumer, delivery) is False
        assert len(calls) == 3
        assert await _deliveries_counted(conns, subject) == 1
    finally:
        async with conns.shard_connection("americas") as conn:
            await conn.execute("DELETE FROM daily_stats WHERE subject_id = %s", (subject,))
            await conn.commit()


async def test_a_duplicate_tripping_over_the_first_effect_is_a_duplicate(
    conns: Connections, uid: str
) -> None:
    subject = f"drv_uniq_{uid}"

    async def insert(conn: Any, event: Event) -> None:
        await conn.execute(  # no ON CONFLICT: a second insert raises a unique violation
            "INSERT INTO daily_stats (day, subject_kind, subject_id, deliveries)"
            " VALUES (%s, 'driver', %s, 1)",
            (date.today(), subject),
        )

    consumer = Consumer(f"uniq-{uid}", {"ORDER_DELIVERED": insert})
    delivery = Delivery(_event(uid), 1, None)
    try:
        assert await handle_once(conns, consumer, delivery) is True
        assert await handle_once(conns, consumer, delivery) is False
        other = Delivery(_event(uid), 1, None)  # a different event: a real failure
        with pytest.raises(Exception, match="duplicate key"):
            await handle_once(conns, consumer, other)
    finally:
        async with conns.shard_connection("americas") as conn:
            await conn.execute("DELETE FROM daily_stats WHERE subject_id = %s", (subject,))
            await conn.commit()


async def test_an_event_without_a_handler_is_not_marked(conns: Connections, uid: str) -> None:
    consumer = Consumer(f"none-{uid}", {"ORDER_DELIVERED": pay_nothing})
    event = _event(uid, "ORDER_CONFIRMED")
    assert await handle_once(conns, consumer, Delivery(event, 1, None)) is True
    async with conns.shard_connection("americas") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM processed_events WHERE consumer = %s", (consumer.name,)
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0


async def pay_nothing(conn: Any, event: Event) -> None:
    """A handler with no effect (the consumer needs one for some type)."""


async def test_a_batch_handles_orders_side_by_side_each_in_turn_and_acks_what_it_handled(
    conns: Connections, uid: str, bus: RedisStreamsBus
) -> None:
    """Three orders' first events meet at a barrier: handled one after another they never
    would. An order's second event waits for its first; a failure holds back that order's
    later events only; the events handled are acknowledged, the others stay pending."""
    a, b, c = (f"{uid}_{x}" for x in "abc")
    events = [_event(a), _event(b), _event(a), _event(c), _event(b)]
    await bus.publish(events)
    sub = await bus.subscribe(f"batch-{uid}", "w1")
    deliveries = await sub.fetch(10, 1.0)
    assert [d.event.event_id for d in deliveries] == [e.event_id for e in events]
    firsts = {events[0].event_id, events[1].event_id, events[3].event_id}
    met = asyncio.Barrier(3)
    seen: list[str] = []

    async def handler(conn: Any, event: Event) -> None:
        if event.event_id in firsts:
            async with asyncio.timeout(5):
                await met.wait()
        seen.append(event.event_id)
        if event.order_id == f"ord_sf_{b}":
            raise RuntimeError("b cannot be handled")

    consumer = Consumer(f"batch-{uid}", {"ORDER_DELIVERED": handler}, transactional=False)
    stats = WorkerStats()
    await work_batch(conns, consumer, sub, deliveries, stats)
    assert (stats.handled, stats.failed, stats.skipped) == (3, 1, 1)
    assert seen.index(events[0].event_id) < seen.index(events[2].event_id)
    assert events[4].event_id not in seen  # b's second waits for its first
    pending = await bus.client.xpending_range(bus.stream, f"batch-{uid}", "-", "+", 10)
    assert sorted(p["message_id"] for p in pending) == sorted(deliveries[i].token for i in (1, 4))
