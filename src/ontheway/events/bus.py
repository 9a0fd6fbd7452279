"""The event stream behind one small interface, with two real backends: Redis Streams (the
default) and Kafka. Both give consumer groups, at-least-once delivery, redelivery of what a
crashed consumer held, and a dead-letter stream after ``max_attempts`` failures.

Consumers must be idempotent by event id: every backend may deliver an event twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ontheway.events.model import Event

TOPIC = "order_events"
DEAD_LETTER = "order_events.dead"


@dataclass(frozen=True)
class Delivery:
    """An event handed to a consumer; ``attempt`` counts deliveries, 1 the first time."""

    event: Event
    attempt: int
    token: Any  # the backend's handle: a stream entry id, or (partition, offset)


class Subscription(Protocol):
    """One consumer's view of a consumer group."""

    async def fetch(
        self, max_events: int, timeout_s: float, ack: Sequence[Delivery] = ()
    ) -> list[Delivery]:
        """Events for this consumer, oldest first (waits up to ``timeout_s`` for one), after
        acknowledging ``ack`` as ``ack`` does (a worker's last batch: in the same round trip
        where the backend allows)."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Mark events handled: the group will not deliver them again."""
        ...

    async def fail(self, delivery: Delivery, error: str) -> None:
        """Give an event back for a later attempt; after the last one it is dead-lettered."""
        ...

    async def close(self) -> None:
        """Leave the group; what was fetched and not acked goes to another consumer."""
        ...


class Publishable(Protocol):
    """What a bus publishes: an ``Event``, or an ``EncodedEvent`` (the relay's)."""

    @property
    def order_id(self) -> str: ...

    def to_json(self) -> str: ...


class EventBus(Protocol):
    """Publish events and subscribe consumer groups."""

    async def publish(self, events: Sequence[Publishable]) -> None:
        """Publish in the given order; returns once the stream holds them durably."""
        ...

    async def subscribe(self, group: str, consumer: str) -> Subscription:
        """Join ``group`` as ``consumer``."""
        ...

    async def dead_letters(self, limit: int = 100) -> list[tuple[Event, str]]:
        """Events given up on, with the last error."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
