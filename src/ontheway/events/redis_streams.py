"""The event stream on Redis Streams: one stream, consumer groups, pending entries taken over
(``XPENDING`` + ``XCLAIM``) from a consumer that failed or crashed, with a backoff that doubles
at each delivery, a dead-letter stream, and approximate trimming."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from ontheway.connections import dependency_errors
from ontheway.events.bus import DEAD_LETTER, TOPIC, Delivery, Publishable
from ontheway.events.model import Event

# A pending entry comes back after claim_idle_s, then 2x, 4x... that (up to 64x).
MAX_BACKOFF_DOUBLINGS = 6


@dataclass
class RedisStreamsBus:
    """Events on the stream ``events:order_events`` of one Redis."""

    client: aioredis.Redis
    max_attempts: int = 5
    claim_idle_s: float = 30.0
    maxlen: int = 1_000_000
    stream: str = f"events:{TOPIC}"
    dead_stream: str = f"events:{DEAD_LETTER}"

    async def publish(self, events: Sequence[Publishable]) -> None:
        """XADD each event, in order, in one pipeline; old entries are trimmed (about)."""
        if not events:
            return
        with dependency_errors("Redis (event stream)"):
            async with self.client.pipeline(transaction=False) as pipe:
                for event in events:
                    pipe.xadd(
                        self.stream,
                        {"event": event.to_json()},
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                await pipe.execute()

    async def subscribe(self, group: str, consumer: str) -> RedisSubscription:
        """Join ``group`` (created at the start of the stream if new) as ``consumer``."""
        with dependency_errors("Redis (event stream)"):
            try:
                await self.client.xgroup_create(self.stream, group, id="0", mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        return RedisSubscription(self, group, consumer)

    async def dead_letters(self, limit: int = 100) -> list[tuple[Event, str]]:
        """Events given up on, oldest first, with the error of their last attempt."""
        with dependency_errors("Redis (event stream)"):
            entries: Any = await self.client.xrange(self.dead_stream, count=limit)
        return [
            (Event.from_json(fields[b"event"]), fields[b"error"].decode()) for _, fields in entries
        ]

    async def close(self) -> None:
        """The client belongs to the caller; nothing to release here."""


@dataclass
class RedisSubscription:
    """One consumer of a consumer group on the stream."""

    bus: RedisStreamsBus
    group: str
    consumer: str
    _failures_key: str = field(init=False)
    _next_due_check: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._failures_key = f"events:failures:{self.group}"

    async def fetch(
        self, max_events: int, timeout_s: float, ack: Sequence[Delivery] = ()
    ) -> list[Delivery]:
        """First the pending entries whose backoff is over (failed, or held by a crashed
        consumer), then new events; ``ack`` is acknowledged first, in the same round trip as
        the read of new events.

        Pending entries come back no sooner than ``claim_idle_s`` after a delivery, so they
        are looked for at most every half of it while none is due: two round trips fewer
        per batch of new events (which, never delivered before, have no failures to read)."""
        client, stream = self.bus.client, self.bus.stream
        with dependency_errors("Redis (event stream)"):
            claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
            if time.monotonic() >= self._next_due_check:
                await self.ack(ack)
                ack = ()
                claimed = await self._due(max_events)
                if not claimed:
                    self._next_due_check = time.monotonic() + self.bus.claim_idle_s / 2
            if claimed:
                ids = [entry_id for entry_id, _ in claimed]
                failures = await client.hmget(self._failures_key, ids)
                return [
                    Delivery(Event.from_json(fields[b"event"]), int(failed or 0) + 1, entry_id)
                    for (entry_id, fields), failed in zip(claimed, failures, strict=True)
                ]
            async with client.pipeline(transaction=False) as pipe:
                self._queue_ack(pipe, ack)
                pipe.xreadgroup(
                    self.group, self.consumer, {stream: ">"}, count=max_events,
                    block=max(1, int(timeout_s * 1000)),
                )  # fmt: skip
                read: Any = (await pipe.execute())[-1]
        entries = read[0][1] if read else []
        return [Delivery(Event.from_json(f[b"event"]), 1, entry_id) for entry_id, f in entries]

    async def _due(self, count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Claim pending entries idle for ``claim_idle_s`` times 2^(deliveries - 1): retries
        back off. ``XCLAIM``'s own idle check makes a race with another consumer harmless."""
        client, stream = self.bus.client, self.bus.stream
        base_ms = int(self.bus.claim_idle_s * 1000)
        pending: Any = await client.xpending_range(
            stream, self.group, min="-", max="+", count=count * 4, idle=base_ms
        )
        due = [
            p["message_id"]
            for p in pending
            if p["time_since_delivered"]
            >= base_ms * 2 ** min(p["times_delivered"] - 1, MAX_BACKOFF_DOUBLINGS)
        ][:count]
        if not due:
            return []
        claimed: Any = await client.xclaim(
            stream, self.group, self.consumer, min_idle_time=base_ms, message_ids=due
        )
        return [e for e in claimed if e is not None and e[1] is not None]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK the entries (and forget their failures)."""
        if not deliveries:
            return
        with dependency_errors("Redis (event stream)"):
            async with self.bus.client.pipeline(transaction=False) as pipe:
                self._queue_ack(pipe, deliveries)
                await pipe.execute()

    def _queue_ack(self, pipe: Any, deliveries: Sequence[Delivery]) -> None:
        """XACK, and HDEL of the failures of those delivered before (a first delivery has
        none: ``fail`` counts them, and a failed delivery is not acknowledged)."""
        if deliveries:
            pipe.xack(self.bus.stream, self.group, *(d.token for d in deliveries))
        if retried := [d.token for d in deliveries if d.attempt > 1]:
            pipe.hdel(self._failures_key, *retried)

    async def fail(self, delivery: Delivery, error: str) -> None:
        """Count the failure; the entry stays pending and comes back after its backoff
        (``claim_idle_s``, doubling), or goes to the dead-letter stream once ``max_attempts``
        is reached."""
        client = self.bus.client
        with dependency_errors("Redis (event stream)"):
            failed = await client.hincrby(self._failures_key, delivery.token, 1)
            if failed >= self.bus.max_attempts:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.xadd(self.bus.dead_stream, {
                        "event": delivery.event.to_json(), "group": self.group,
                        "error": error[:2000], "attempts": str(failed),
                    })  # fmt: skip
                    pipe.xack(self.bus.stream, self.group, delivery.token)
                    pipe.hdel(self._failures_key, delivery.token)
                    await pipe.execute()

    async def close(self) -> None:
        """Nothing to release: pending entries stay in the group for others to claim."""
