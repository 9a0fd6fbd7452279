-- A driver's rating is the mean of its last ratings (notifications/ratings.py,
-- RECENT_RATINGS), as platforms rate drivers on recent work; read from this index alone, it
-- costs the same whatever the driver's history (the mean of every rating read them all).
-- Its prefix serves what ratings_driver served.
CREATE INDEX IF NOT EXISTS ratings_driver_recent ON ratings (driver_id, created_at DESC)
    INCLUDE (rating);
DROP INDEX IF EXISTS ratings_driver;
