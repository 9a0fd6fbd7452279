-- ETA learning: every estimate of an order's delivery, with the facts it was made from.
-- The first (stage 'placement') is the promise; later ones are made at assignment, at pickup
-- and after each re-route. Seconds are world seconds (``time_scale`` times the wall clock's:
-- 1 on a real platform, the simulator's speed in a simulation).
CREATE TABLE eta_estimates (
    order_id            text NOT NULL,
    event_id            uuid NOT NULL,
    stage               text NOT NULL,
    made_at             timestamptz NOT NULL,
    time_scale          double precision NOT NULL DEFAULT 1,
    baseline_s          double precision NOT NULL,
    predicted_s         double precision NOT NULL,
    low_s               double precision NOT NULL,
    high_s              double precision NOT NULL,
    estimated_delivery  timestamptz NOT NULL,
    method              text NOT NULL,
    model_version       text,
    features            jsonb NOT NULL,
    PRIMARY KEY (order_id, event_id)
);
CREATE INDEX eta_estimates_made_at ON eta_estimates (made_at);

ALTER TABLE order_timings ADD COLUMN IF NOT EXISTS time_scale double precision NOT NULL DEFAULT 1;
-- The facts a new estimate reads: a restaurant's recent kitchen times and queue, a driver's
-- recent pace.
CREATE INDEX IF NOT EXISTS order_timings_restaurant ON order_timings (restaurant_id, placed_at);
CREATE INDEX IF NOT EXISTS order_timings_driver ON order_timings (driver_id, delivered_at);
