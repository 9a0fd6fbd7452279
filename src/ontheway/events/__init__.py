"""Events: the transactional outbox relay and the event stream (Redis Streams, Kafka)."""
