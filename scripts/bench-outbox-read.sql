-- The relay's read of the next events, joined to its cursor table (as before 7 Dec 2026)
-- and with the cursor as a row subquery (as now), on 700,000 events in two monthly
-- partitions, in a throwaway database. Run against the local stack's cluster:
--   psql postgresql://postgres@127.0.0.1:55432/postgres -f scripts/bench-outbox-read.sql
-- and compare the "Execution Time" lines of each pair.
DROP DATABASE IF EXISTS ontheway_outbox_read;
CREATE DATABASE ontheway_outbox_read;
\c ontheway_outbox_read
CREATE TABLE order_events (event_id uuid, order_id text, event_type text,
    ts timestamptz NOT NULL, data jsonb, actor text, seq bigserial, txid xid8 NOT NULL)
    PARTITION BY RANGE (ts);
CREATE TABLE order_events_m1 PARTITION OF order_events
    FOR VALUES FROM ('2026-11-01') TO ('2026-12-01');
CREATE TABLE order_events_m2 PARTITION OF order_events
    FOR VALUES FROM ('2026-12-01') TO ('2027-01-01');
CREATE INDEX ON order_events (txid, seq);
CREATE TABLE outbox_cursor (stream text PRIMARY KEY, last_txid xid8 NOT NULL DEFAULT '0',
    last_seq bigint NOT NULL DEFAULT 0);
-- Old events, all published: the cursor stands after the last of them.
INSERT INTO order_events (event_id, order_id, event_type, ts, data, actor, txid)
    SELECT gen_random_uuid(), 'ord_' || g, 'ORDER_PLACED',
           '2026-11-15'::timestamptz + g * interval '1 second', '{}', 'x', g::text::xid8
    FROM generate_series(1, 700000) g;
INSERT INTO outbox_cursor VALUES ('relay', '700000', 0);
ANALYZE;
\echo before: joined to the cursor table
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT e.event_id, e.seq FROM order_events e, outbox_cursor c
WHERE c.stream = 'relay' AND (e.txid, e.seq) > (c.last_txid, c.last_seq)
  AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid, e.seq LIMIT 100;
\echo now: the cursor as a row subquery
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT e.event_id, e.seq FROM order_events e
WHERE (e.txid, e.seq) > (SELECT c.last_txid, c.last_seq FROM outbox_cursor c
                         WHERE c.stream = 'relay')
  AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid, e.seq LIMIT 100;
\echo held back, before: EXISTS
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT EXISTS (SELECT 1 FROM order_events e WHERE (e.txid, e.seq) >
    (SELECT c.last_txid, c.last_seq FROM outbox_cursor c WHERE c.stream = 'relay')) AS held;
\echo held back, now: the first event past the cursor
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF)
SELECT e.seq FROM order_events e WHERE (e.txid, e.seq) >
    (SELECT c.last_txid, c.last_seq FROM outbox_cursor c WHERE c.stream = 'relay')
ORDER BY e.txid, e.seq LIMIT 1;
\c postgres
DROP DATABASE ontheway_outbox_read;
