"""The event stream on Kafka (``aiokafka``): topic ``order_events`` keyed by order id (so one
order's events stay in order on one partition), consumer groups with manual commits, and a
dead-letter topic. Failure counts live in the consumer's memory: after a crash an event gets
``max_attempts`` fresh attempts."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ontheway.errors import DependencyUnavailable
from ontheway.events.bus import DEAD_LETTER, TOPIC, Delivery, Publishable
from ontheway.events.model import Event


@dataclass
class KafkaBus:
    """Events on a Kafka cluster."""

    bootstrap_servers: str
    max_attempts: int = 5
    topic: str = TOPIC
    dead_topic: str = DEAD_LETTER
    session_timeout_ms: int = 10_000
    _producer: AIOKafkaProducer | None = field(default=None, init=False)

    async def _producer_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise DependencyUnavailable(f"Kafka is unavailable: {exc}") from exc
            self._producer = producer
        return self._producer

    async def publish(self, events: Sequence[Publishable]) -> None:
        """Send every event keyed by its order id; returns when all are acknowledged."""
        if not events:
            return
        producer = await self._producer_started()
        try:
            sent = [
                await producer.send(self.topic, e.to_json().encode(), key=e.order_id.encode())
                for e in events
            ]
            await asyncio.gather(*sent)
        except KafkaError as exc:
            raise DependencyUnavailable(f"Kafka did not take the events: {exc}") from exc

    async def subscribe(self, group: str, consumer: str) -> KafkaSubscription:
        """Join ``group``; a new group starts at the beginning of the topic."""
        kafka_consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap_servers, group_id=group,
            client_id=consumer, enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(100, self.session_timeout_ms // 4),
        )  # fmt: skip
        try:
            await kafka_consumer.start()
        except KafkaError as exc:
            await kafka_consumer.stop()
            raise DependencyUnavailable(f"Kafka is unavailable: {exc}") from exc
        return KafkaSubscription(self, kafka_consumer)

    async def dead_letters(self, limit: int = 100) -> list[tuple[Event, str]]:
        """Read the dead-letter topic from its start (no group, nothing committed)."""
        reader = AIOKafkaConsumer(
            self.dead_topic,
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            batch = await reader.getmany(timeout_ms=2000, max_records=limit)
        finally:
            await reader.stop()
        out = []
        for records in batch.values():
            for record in records:
                error = dict(record.headers or []).get("error", b"").decode()
                out.append((Event.from_json(record.value), error))
        return out

    async def close(self) -> None:
        """Flush and stop the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


@dataclass
class KafkaSubscription:
    """One member of a consumer group."""

    bus: KafkaBus
    consumer: AIOKafkaConsumer
    _failures: dict[tuple[TopicPartition, int], int] = field(default_factory=dict)
    _rewound: dict[TopicPartition, int] = field(default_factory=dict)

    async def fetch(
        self, max_events: int, timeout_s: float, ack: Sequence[Delivery] = ()
    ) -> list[Delivery]:
        """The next records of this member's partitions (``ack`` committed first)."""
        if ack:
            await self.ack(ack)
        self._rewound.clear()
        try:
            batch = await self.consumer.getmany(
                timeout_ms=int(timeout_s * 1000), max_records=max_events
            )
        except KafkaError as exc:
            raise DependencyUnavailable(f"Kafka is unavailable: {exc}") from exc
        return [
            Delivery(Event.from_json(record.value),
                     self._failures.get((tp, record.offset), 0) + 1, (tp, record.offset))
            for tp, records in batch.items() for record in records
        ]  # fmt: skip

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Commit past the acked records; records behind a failed one in the same partition
        are not committed (they come again after the failed one)."""
        offsets: dict[TopicPartition, int] = {}
        for delivery in deliveries:
            tp, offset = delivery.token
            if tp in self._rewound and offset >= self._rewound[tp]:
                continue
            self._failures.pop((tp, offset), None)
            offsets[tp] = max(offsets.get(tp, 0), offset + 1)
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except KafkaError as exc:
                raise DependencyUnavailable(f"Kafka refused the commit: {exc}") from exc

    async def fail(self, delivery: Delivery, error: str) -> None:
        """Rewind to the record for another attempt, or dead-letter it after the last one."""
        tp, offset = delivery.token
        failed = self._failures.get((tp, offset), 0) + 1
        if failed >= self.bus.max_attempts:
            producer = await self.bus._producer_started()
            await producer.send_and_wait(
                self.bus.dead_topic, delivery.event.to_json().encode(),
                key=delivery.event.order_id.encode(),
                headers=[("error", error[:2000].encode())],
            )  # fmt: skip
            self._failures.pop((tp, offset), None)
            await self.consumer.commit({tp: offset + 1})
            return
        self._failures[(tp, offset)] = failed
        self._rewound[tp] = min(offset, self._rewound.get(tp, offset))
        self.consumer.seek(tp, self._rewound[tp])

    async def close(self) -> None:
        """Leave the group (uncommitted records go to the remaining members)."""
        await self.consumer.stop()
