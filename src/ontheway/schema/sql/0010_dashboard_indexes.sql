-- The dashboard's figures of a region (api/live.py, every second per watched region): its
-- orders since midnight and its assignments of the last 15 minutes. Without these, both
-- read every order of the shard's current month, a cost that grows through the month; with
-- them, the region's day (tested by EXPLAIN in tests/integration/test_orders_queries.py).
CREATE INDEX IF NOT EXISTS orders_region_created ON orders (region, created_at);
CREATE INDEX IF NOT EXISTS order_events_assigned_ts ON order_events (ts)
    WHERE event_type = 'DRIVER_ASSIGNED';
