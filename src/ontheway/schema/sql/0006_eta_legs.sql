-- ETA learning: how the promise at placement was made (road or straight line) and its parts,
-- and the latest estimate announced by a re-route (ROUTE_UPDATED).
ALTER TABLE order_timings
    ADD COLUMN IF NOT EXISTS eta_method text,
    ADD COLUMN IF NOT EXISTS eta_legs jsonb,
    ADD COLUMN IF NOT EXISTS latest_estimate timestamptz;
