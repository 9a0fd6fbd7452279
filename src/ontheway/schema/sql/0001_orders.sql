-- Orders, payments, menus, inventory, drivers' profiles and the audit trail of one shard.
-- Orders, payments and order_events are partitioned by month on the order's creation time,
-- so that a month can be detached for archival as a whole (events and payments first: they
-- reference the order).

CREATE EXTENSION IF NOT EXISTS postgis;

CREATE TABLE customers (
    customer_id  text PRIMARY KEY,
    name         text,
    email        text,
    phone        text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE restaurants (
    restaurant_id      text PRIMARY KEY,
    name               text NOT NULL,
    region             text NOT NULL,
    address            text,
    location           geography(Point, 4326) NOT NULL,
    delivery_radius_m  integer NOT NULL CHECK (delivery_radius_m > 0),
    prep_time_mean_s   integer NOT NULL CHECK (prep_time_mean_s > 0),
    prep_time_sd_s     integer NOT NULL CHECK (prep_time_sd_s >= 0),
    is_open            boolean NOT NULL DEFAULT true,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX restaurants_location_gist ON restaurants USING gist (location);
CREATE INDEX restaurants_region ON restaurants (region);

CREATE TABLE menu_items (
    item_id        text PRIMARY KEY,
    restaurant_id  text NOT NULL REFERENCES restaurants (restaurant_id),
    name           text NOT NULL,
    price          numeric(10, 2) NOT NULL CHECK (price >= 0),
    available      boolean NOT NULL DEFAULT true
);
CREATE INDEX menu_items_restaurant ON menu_items (restaurant_id);

CREATE TABLE inventory (
    item_id     text PRIMARY KEY REFERENCES menu_items (item_id),
    quantity    integer NOT NULL CHECK (quantity >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE drivers (
    driver_id            text PRIMARY KEY,
    name                 text NOT NULL,
    vehicle_type         text NOT NULL CHECK (vehicle_type IN ('bicycle', 'scooter', 'car')),
    rating               numeric(3, 2) NOT NULL DEFAULT 5.00 CHECK (rating BETWEEN 1 AND 5),
    acceptance_rate      numeric(4, 3) NOT NULL DEFAULT 1.000
                         CHECK (acceptance_rate BETWEEN 0 AND 1),
    region               text NOT NULL,
    status               text NOT NULL DEFAULT 'offline'
                         CHECK (status IN ('available', 'busy', 'offline')),
    current_location     geography(Point, 4326),
    location_updated_at  timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drivers_region_status ON drivers (region, status);

CREATE TABLE orders (
    order_id             text NOT NULL,
    region               text NOT NULL,
    customer_id          text NOT NULL REFERENCES customers (customer_id),
    restaurant_id        text NOT NULL REFERENCES restaurants (restaurant_id),
    driver_id            text REFERENCES drivers (driver_id),
    customer_location    geography(Point, 4326) NOT NULL,
    delivery_address     text,
    restaurant_location  geography(Point, 4326) NOT NULL,
    items                jsonb NOT NULL,
    subtotal             numeric(10, 2) NOT NULL CHECK (subtotal >= 0),
    delivery_fee         numeric(10, 2) NOT NULL CHECK (delivery_fee >= 0),
    tip                  numeric(10, 2) NOT NULL CHECK (tip >= 0),
    total                numeric(10, 2) NOT NULL CHECK (total >= 0),
    status               text NOT NULL CHECK (status IN (
                             'searching_driver', 'driver_assigned', 'driver_at_restaurant',
                             'picked_up', 'delivered', 'cancelled', 'searching_driver_again')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    pickup_time          timestamptz,
    estimated_delivery   timestamptz,
    delivered_at         timestamptz,
    distance_m           double precision,
    PRIMARY KEY (order_id, created_at)
) PARTITION BY RANGE (created_at);
CREATE INDEX orders_customer_created ON orders (customer_id, created_at DESC);
CREATE INDEX orders_driver_status ON orders (driver_id, status);
CREATE INDEX orders_restaurant_status ON orders (restaurant_id, status);
CREATE INDEX orders_status_created ON orders (status, created_at);
CREATE INDEX orders_customer_location_gist ON orders USING gist (customer_location);

CREATE TABLE payments (
    payment_id        text NOT NULL,
    order_id          text NOT NULL,
    order_created_at  timestamptz NOT NULL,
    customer_id       text NOT NULL REFERENCES customers (customer_id),
    amount            numeric(10, 2) NOT NULL CHECK (amount >= 0),
    currency          text NOT NULL DEFAULT 'USD',
    status            text NOT NULL CHECK (status IN ('authorized', 'captured', 'voided',
                                                      'refunded')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payment_id, order_created_at),
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders (order_id, created_at)
) PARTITION BY RANGE (order_created_at);
CREATE INDEX payments_order ON payments (order_id);

-- The audit trail and the transactional outbox: one row per change, written in the same
-- transaction as the change. seq orders the events of a shard.
CREATE TABLE order_events (
    event_id          uuid NOT NULL,
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    order_id          text NOT NULL,
    order_created_at  timestamptz NOT NULL,
    event_type        text NOT NULL,
    ts                timestamptz NOT NULL DEFAULT clock_timestamp(),
    data              jsonb NOT NULL DEFAULT '{}',
    actor             text NOT NULL,
    PRIMARY KEY (event_id, order_created_at),
    FOREIGN KEY (order_id, order_created_at) REFERENCES orders (order_id, created_at)
) PARTITION BY RANGE (order_created_at);
CREATE INDEX order_events_order ON order_events (order_id, ts);
CREATE INDEX order_events_seq ON order_events (seq);

-- A retried POST /api/orders with the same key returns the first order.
CREATE TABLE idempotency_keys (
    customer_id   text NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    order_id      text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, key)
);
