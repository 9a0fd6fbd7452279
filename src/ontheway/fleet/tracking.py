"""Live messages from Redis pub/sub to sockets: an order's tracking and each user's inbox.

The ingest script publishes each position of a driver holding orders on each order's channel
(``order:<order_id>:driver_location``, see keys.py); ``publish_status`` and ``publish_eta`` put
the order's status changes and estimates on the same channel. A process holds one Redis
subscription (``ChannelHub``) whatever the number of sockets: it subscribes to a channel when
its first socket arrives and unsubscribes when the last one leaves. The same hub carries each
user's inbox (``inbox:<user id>``, see keys.py): offers, route updates and notifications,
pushed with ``publish_inbox`` to whichever socket that user has open. A socket that cannot keep
up loses its oldest messages, not the others' (positions are superseded every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis

from ontheway import tasks
from ontheway.connections import dependency_errors
from ontheway.fleet import keys

log = logging.getLogger(__name__)

QUEUE_SIZE = 64


def status_message(order_id: str, status: str) -> tuple[str, str]:
    """The (channel, message) that tells the order's trackers its new status."""
    return keys.tracking_channel(order_id), json.dumps({"type": "status", "status": status})


async def publish_status(redis: aioredis.Redis, order_id: str, status: str) -> None:
    """Tell the order's trackers its new status (call after the change is committed)."""
    with dependency_errors("Redis"):
        await redis.publish(*status_message(order_id, status))


async def publish_eta(
    redis: aioredis.Redis,
    order_id: str,
    estimated_delivery: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Tell the order's trackers its new delivery estimate (RFC 3339, UTC), with ``extra``
    facts of it (its window ``earliest`` / ``latest``, ``stage``, ``method``)."""
    message = {"type": "eta", "estimated_delivery": estimated_delivery, **(extra or {})}
    await _publish(redis, order_id, message)


async def publish_inbox(redis: aioredis.Redis, recipient: str, message: dict[str, Any]) -> int:
    """Push a message (with a ``type``) to the recipient's open sockets; returns how many
    processes had one open (0: nobody listening, the message is not kept)."""
    with dependency_errors("Redis"):
        listeners: int = await redis.publish(keys.inbox_channel(recipient), json.dumps(message))
    return listeners


async def _publish(redis: aioredis.Redis, order_id: str, message: dict[str, Any]) -> None:
    with dependency_errors("Redis"):
        await redis.publish(keys.tracking_channel(order_id), json.dumps(message))


class ChannelHub:
    """One pub/sub connection per process, fanned out to every socket that follows a channel."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._pubsub = redis.pubsub(ignore_subscribe_messages=True)
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def follow(self, channel: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of the channel's messages for as long as the context lasts."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        async with self._lock:
            if channel not in self._queues:
                with dependency_errors("Redis"):
                    await self._pubsub.subscribe(channel)
                self._queues[channel] = set()
            self._queues[channel].add(queue)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="fleet-tracking")
        try:
            yield queue
        finally:
            async with self._lock:
                followers = self._queues.get(channel, set())
                followers.discard(queue)
                if not followers:
                    self._queues.pop(channel, None)
                    with dependency_errors("Redis"):
                        await self._pubsub.unsubscribe(channel)

    def followed(self) -> int:
        """How many channels this process is subscribed to."""
        return len(self._queues)

    async def _read(self) -> None:
        while True:
            try:
                with dependency_errors("Redis"):
                    message = await self._pubsub.get_message(timeout=1.0)
            except Exception:  # a broken subscription is retried, never silently dropped
                log.exception("tracking subscription failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else str(channel)
            try:
                payload = json.loads(message["data"])
            except ValueError:
                log.warning("ignoring a malformed message on %s", channel)
                continue
            for queue in self._queues.get(channel, ()):
                if queue.full():
                    queue.get_nowait()  # drop the oldest: a newer position supersedes it
                queue.put_nowait(payload)

    async def aclose(self) -> None:
        """Stop reading and close the subscription."""
        if self._reader is not None:
            await tasks.stop([self._reader])
            self._reader = None
        await self._pubsub.aclose()
