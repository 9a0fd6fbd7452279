-- Rows that matter only for a while are deleted once past their retention (settings
-- ``retention_*_days``; ``schema/retention.py``, run hourly by the API and by
-- ``ontheway db prune``). Block-range indexes on their time columns find the old rows without
-- reading the table: the rows are appended in time order, so each block range holds a short
-- span of times, and the index is a few pages however large the table grows.
CREATE INDEX IF NOT EXISTS processed_events_processed_at ON processed_events
    USING brin (processed_at);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys USING brin (created_at);
CREATE INDEX IF NOT EXISTS notifications_created_at ON notifications USING brin (created_at);
