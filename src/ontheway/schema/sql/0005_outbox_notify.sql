-- Wakes the outbox relay as soon as events commit, instead of at its next poll: NOTIFY is
-- delivered when the writing transaction commits (never when it rolls back), and the
-- notifications of one transaction are merged into one. The relay LISTENs on "outbox".
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER order_events_notify AFTER INSERT ON order_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
