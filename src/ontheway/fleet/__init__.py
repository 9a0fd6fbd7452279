"""Fleet: drivers' live state in Redis — positions, heartbeats, capacity, locks, search.

Pure modules (no client library): ``model`` (fixes, statuses, validation), ``ratelimit``,
``search`` (ring planning), ``locate`` (point → region), ``keys``, ``scripts`` (Lua text).
Adapters and services: ``store`` (Redis), ``ingest`` (batched writes), ``tracking`` (pub/sub
to sockets), ``monitor`` (drivers going offline holding orders), ``history`` (PostgreSQL slow
path), ``recorder`` (DRIVER_UNAVAILABLE, or ORDER_FLAGGED after pickup, through the orders
service), ``service`` (wiring).
"""
