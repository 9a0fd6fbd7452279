"""Fleet: drivers' live state in Redis (positions, heartbeats, capacity, locks, tracking)."""
