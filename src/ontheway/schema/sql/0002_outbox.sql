-- The transactional outbox: order_events rows are published by the relay in the order of
-- the transactions that wrote them. Each row records its writer's transaction id; the relay
-- only reads rows of transactions older than every running one (pg_snapshot_xmin), so a row
-- that commits late can never fall behind its cursor.
ALTER TABLE order_events ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX order_events_txid_seq ON order_events (txid, seq);

CREATE TABLE outbox_cursor (
    stream      text PRIMARY KEY,
    last_txid   xid8 NOT NULL DEFAULT '0',
    last_seq    bigint NOT NULL DEFAULT 0,
    published   bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
