"""The event stream that the settings name: Redis Streams (default) or Kafka."""

from __future__ import annotations

from ontheway.connections import Connections
from ontheway.errors import ConfigurationError
from ontheway.events.bus import EventBus
from ontheway.events.kafka import KafkaBus
from ontheway.events.redis_streams import RedisStreamsBus
from ontheway.settings import Settings


def open_bus(settings: Settings, conns: Connections) -> EventBus:
    """The configured bus; Kafka needs ``ONTHEWAY_KAFKA_BOOTSTRAP_SERVERS``."""
    if settings.bus == "kafka":
        if not settings.kafka_bootstrap_servers:
            raise ConfigurationError(
                "ONTHEWAY_BUS=kafka needs ONTHEWAY_KAFKA_BOOTSTRAP_SERVERS",
                field="kafka_bootstrap_servers",
            )
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            topic=settings.event_stream,
            dead_topic=f"{settings.event_stream}.dead",
            max_attempts=settings.bus_max_attempts,
        )
    return RedisStreamsBus(
        conns.require_redis(),
        stream=f"events:{settings.event_stream}",
        dead_stream=f"events:{settings.event_stream}.dead",
        max_attempts=settings.bus_max_attempts,
        claim_idle_s=settings.bus_claim_idle_s,
    )
