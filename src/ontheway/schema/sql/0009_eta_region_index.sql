-- The ETA's facts: a region's recent times to assign a driver.
CREATE INDEX IF NOT EXISTS order_timings_region ON order_timings (region, placed_at);
