-- What the event consumers keep on each shard.

-- Idempotency: an event handled by a consumer is recorded in the same transaction as its
-- effect, so a second delivery finds it here and has no effect.
CREATE TABLE processed_events (
    consumer      text NOT NULL,
    event_id      uuid NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Failures are recorded, never swallowed: the last error of each event per consumer.
CREATE TABLE consumer_failures (
    consumer    text NOT NULL,
    event_id    uuid NOT NULL,
    order_id    text NOT NULL,
    event_type  text NOT NULL,
    attempts    integer NOT NULL,
    last_error  text NOT NULL,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- payments: what the driver earns from a delivered order and what the platform keeps.
CREATE TABLE driver_payouts (
    order_id      text PRIMARY KEY,
    driver_id     text NOT NULL REFERENCES drivers (driver_id),
    delivery_fee  numeric(10, 2) NOT NULL,
    tip           numeric(10, 2) NOT NULL,
    platform_fee  numeric(10, 2) NOT NULL,
    payout        numeric(10, 2) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- eta: the promise made at placement and what happened, per order (ETA learning's data).
CREATE TABLE order_timings (
    order_id            text PRIMARY KEY,
    region              text NOT NULL,
    restaurant_id       text NOT NULL,
    driver_id           text,
    placed_at           timestamptz NOT NULL,
    promised_delivery   timestamptz,
    confirmed_prep_s    integer,
    assigned_at         timestamptz,
    arrived_at          timestamptz,
    ready_at            timestamptz,
    picked_up_at        timestamptz,
    delivered_at        timestamptz,
    cancelled_at        timestamptz
);

-- analytics: per day, per driver and per restaurant.
CREATE TABLE daily_stats (
    day              date NOT NULL,
    subject_kind     text NOT NULL CHECK (subject_kind IN ('driver', 'restaurant')),
    subject_id       text NOT NULL,
    deliveries       integer NOT NULL DEFAULT 0,
    on_time          integer NOT NULL DEFAULT 0,
    cancellations    integer NOT NULL DEFAULT 0,
    delivery_s_sum   double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, subject_kind, subject_id)
);
