-- Notifications (stored per recipient, pushed live) and customers' ratings of deliveries.
-- Both live on the order's shard, next to the order they are about.

-- One row per recipient and event: the id is derived from the event id, the recipient and
-- the kind (and carries the order's region: ntf_<region>_<hex>), so an event handled twice
-- stores one notification.
CREATE TABLE notifications (
    notification_id  text PRIMARY KEY,
    recipient_id     text NOT NULL,
    order_id         text NOT NULL,
    event_id         uuid,
    kind             text NOT NULL,
    title            text NOT NULL,
    body             text NOT NULL,
    data             jsonb NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    read_at          timestamptz
);
CREATE INDEX notifications_recipient_created ON notifications (recipient_id, created_at DESC);
CREATE INDEX notifications_recipient_unread ON notifications (recipient_id, created_at DESC)
    WHERE read_at IS NULL;

-- A customer rates a delivered order once; the driver's rating is the mean of these.
CREATE TABLE ratings (
    order_id     text PRIMARY KEY,
    customer_id  text NOT NULL REFERENCES customers (customer_id),
    driver_id    text NOT NULL REFERENCES drivers (driver_id),
    rating       smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    comment      text CHECK (char_length(comment) <= 500),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ratings_driver ON ratings (driver_id);
