"""Running a consumer: fetch, handle each event once, retry with backoff, record failures.

An event's effect and the row that marks it handled are written in one transaction on the
event's shard, the mark last, so a redelivered event (at-least-once) has one effect: a
duplicate finds the mark taken and rolls its effect back. A handler's effects outside that
transaction (the dispatcher's) must be idempotent by themselves; a consumer made only of such
handlers is not transactional (``Consumer.transactional``): no transaction is held across
its handler, and the mark follows it (or came with the handler's effect, when it returns
``MARKED``). Events the consumer has no handler for are
acknowledged without touching PostgreSQL. A failing handler is recorded in
``consumer_failures`` and the event handed back to the stream, which delivers it again and
dead-letters it after the last attempt; the failure is also logged. Later events of the same
order wait until the failed one is handled, to keep each order's order; the events of
different orders in one batch are handled side by side, and acknowledged together. A handler
may return a callback that runs once its transaction has committed (a live push of what it
stored); it runs for the first delivery only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Any

from ontheway.connections import Connections
from ontheway.errors import DependencyUnavailable
from ontheway.events.bus import Delivery, EventBus, Subscription
from ontheway.events.consumers import Consumer, Marked

log = logging.getLogger(__name__)


@dataclass
class WorkerStats:
    """What one worker did, for tests and logs."""

    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


_MARK = (
    "INSERT INTO processed_events (consumer, event_id) VALUES (%s, %s)"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
_MARKED = "SELECT 1 FROM processed_events WHERE consumer = %s AND event_id = %s"
_MARK_ALONE = (
    "INSERT INTO processed_events (consumer, event_id)"
    " SELECT %s, %s FROM (SELECT set_config('synchronous_commit', 'off', true)) s"
    " ON CONFLICT DO NOTHING RETURNING event_id"
)
"""The mark of a consumer that is not transactional, committed alone with no disk flush of
its own: what the handler did committed durably on its own, and a mark lost in a crash only
means a redelivery, which the handler finds done."""


CONCURRENCY = 8
"""Orders a worker handles side by side within a batch (each order's events in turn)."""


class _Duplicate(Exception):
    """Rolls back a transaction whose event turned out to be handled already."""


async def handle_once(conns: Connections, consumer: Consumer, delivery: Delivery) -> bool:
    """Apply the consumer's handler unless this event was handled before; returns False
    for a duplicate. An event the consumer has no handler for is not looked up at all."""
    event = delivery.event
    handler = consumer.handlers.get(event.event_type)
    if handler is None:
        return True
    if not consumer.transactional:
        after_commit = await handler(None, event)
        if isinstance(after_commit, Marked):
            return True  # its mark committed with its effect
        async with conns.shard_connection(event.shard) as conn:
            cur = await conn.execute(_MARK_ALONE, (consumer.name, event.event_id))
            fresh = await cur.fetchone() is not None
        if fresh and after_commit is not None:
            await after_commit(conns)
        return fresh
    after_commit = None
    async with conns.shard_connection(event.shard) as conn:
        try:
            async with conn.transaction():
                # The handler first, the mark last: the transaction takes a transaction id
                # only when it writes, so a long handler that writes nothing here (the
                # dispatcher) does not hold back the relay's snapshot meanwhile. A duplicate
                # running at the same time waits on the mark's unique key until the first
                # commits, then finds it and rolls its own effect back.
                after_commit = await handler(conn, event)
                cur = await conn.execute(_MARK, (consumer.name, event.event_id))
                if await cur.fetchone() is None:
                    raise _Duplicate
        except _Duplicate:
            return False
        except DependencyUnavailable:
            raise
        except Exception:
            # A duplicate's handler may trip over the first delivery's effect (a unique key):
            # then it is a duplicate, not a failure.
            if await _marked(conn, consumer, event.event_id):
                return False
            raise
    if after_commit is not None and not isinstance(after_commit, Marked):
        # What must not happen unless the effect is committed (e.g. a live push of what was
        # stored); its failure is a handler failure, but a redelivery is then a duplicate.
        await after_commit(conns)
    return True


async def _marked(conn: Any, consumer: Consumer, event_id: str) -> bool:
    try:
        cur = await conn.execute(_MARKED, (consumer.name, event_id))
        found = await cur.fetchone() is not None
        await conn.rollback()
    except Exception:
        return False  # the original error is the one to report
    return found


async def record_failure(
    conns: Connections, consumer: Consumer, delivery: Delivery, error: str
) -> None:
    """Keep the failure where operators can see it."""
    event = delivery.event
    async with conns.shard_connection(event.shard) as conn:
        await conn.execute(
            "INSERT INTO consumer_failures (consumer, event_id, order_id, event_type, attempts,"
            " last_error) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (consumer, event_id)"
            " DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error,"
            " failed_at = now()",
            (consumer.name, event.event_id, event.order_id, event.event_type,
             delivery.attempt, error[:2000]),
        )  # fmt: skip
        await conn.commit()


async def work_batch(
    conns: Connections,
    consumer: Consumer,
    sub: Subscription,
    deliveries: list[Delivery],
    stats: WorkerStats,
    *,
    concurrency: int = CONCURRENCY,
    ack_later: list[Delivery] | None = None,
) -> None:
    """Handle a batch: each order's events in turn, different orders side by side (up to
    ``concurrency`` at once); after a failure, that order's later events wait. The events
    handled are acknowledged together once the batch is done, or, given ``ack_later``, added
    to it for the next fetch to acknowledge in its round trip (a crash before that means
    redeliveries, which find them handled). A dependency that is down stops the batch: what
    was handled is acknowledged then, what was not is left for a later fetch, and the error
    is raised."""
    chains: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        chains.setdefault(delivery.event.order_id, []).append(delivery)
    gate = asyncio.Semaphore(concurrency)
    done: list[Delivery] = []
    down: list[DependencyUnavailable] = []

    async def chain(items: list[Delivery]) -> None:
        async with gate:
            for index, delivery in enumerate(items):
                if down:
                    return
                try:
                    fresh = await handle_once(conns, consumer, delivery)
                except DependencyUnavailable as exc:
                    down.append(exc)
                    return
                except Exception as exc:
                    stats.skipped += len(items) - index - 1
                    try:
                        await _failed(conns, consumer, sub, delivery, exc, stats)
                    except DependencyUnavailable as dependency:
                        down.append(dependency)
                    return
                stats.handled += fresh
                stats.duplicates += not fresh
                done.append(delivery)

    await asyncio.gather(*(chain(items) for items in chains.values()))
    if ack_later is None or down:
        await sub.ack(done)
    else:
        ack_later.extend(done)
    if down:
        raise down[0]


async def _failed(
    conns: Connections,
    consumer: Consumer,
    sub: Subscription,
    delivery: Delivery,
    exc: Exception,
    stats: WorkerStats,
) -> None:
    """Log and record a handler's failure; the stream delivers the event again later."""
    error = f"{type(exc).__name__}: {exc}"
    log.error(
        "%s failed on %s (attempt %d): %s",
        consumer.name,
        delivery.event.event_id,
        delivery.attempt,
        error,
    )
    stats.failed += 1
    stats.errors.append(error)
    await record_failure(conns, consumer, delivery, error)
    await sub.fail(delivery, error)


async def run_worker(
    conns: Connections,
    bus: EventBus,
    consumer: Consumer,
    *,
    stop: asyncio.Event,
    batch: int = 100,
    poll_s: float = 1.0,
    stats: WorkerStats | None = None,
    concurrency: int = CONCURRENCY,
) -> WorkerStats:
    """Consume until ``stop`` is set; a dependency that is down is waited out with
    exponential backoff (up to 30 s). Returns what was done."""
    stats = stats or WorkerStats()
    name = f"{consumer.name}-{socket.gethostname()}-{os.getpid()}-{id(stats) % 10_000}"
    sub = await bus.subscribe(consumer.name, name)
    backoff = 0.5
    handled: list[Delivery] = []  # acknowledged by the next fetch
    try:
        while not stop.is_set():
            try:
                deliveries = await sub.fetch(batch, poll_s, ack=handled)
                handled = []
                await work_batch(
                    conns, consumer, sub, deliveries, stats,
                    concurrency=concurrency, ack_later=handled,
                )  # fmt: skip
                backoff = 0.5
            except DependencyUnavailable as exc:
                log.warning("%s waits %.1f s: %s", consumer.name, backoff, exc)
                try:
                    await asyncio.wait_for(stop.wait(), backoff)
                except TimeoutError:
                    backoff = min(30.0, backoff * 2)
    finally:
        try:
            await sub.ack(handled)
        except DependencyUnavailable as exc:
            log.warning("%s leaves %d events unacknowledged: %s", consumer.name, len(handled), exc)
        await sub.close()
    return stats
