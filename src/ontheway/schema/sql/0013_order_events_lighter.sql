-- Every change of an order writes an event, so each index of order_events and each byte of
-- its data is paid at every change.
--
-- The index on seq alone (0001) has had no reader since the relay reads by (txid, seq)
-- (0002, order_events_txid_seq): it is dropped.
DROP INDEX IF EXISTS order_events_seq;

-- An event's data (an ORDER_PLACED carries the order and its estimate, about 3 kB) is
-- compressed when stored; lz4 costs a fraction of PostgreSQL's default pglz, which showed as
-- 2.5 % of the server's CPU under `ontheway bench orders` (perf). Only where the server was
-- built with lz4 (default_toast_compression accepts it); new partitions take the parent's.
DO $$
DECLARE
    part regclass;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE order_events ALTER COLUMN data SET COMPRESSION lz4;
        FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                    WHERE inhparent = 'order_events'::regclass LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN data SET COMPRESSION lz4', part);
        END LOOP;
    END IF;
END
$$;
