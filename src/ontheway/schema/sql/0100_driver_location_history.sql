-- Every position a driver reported, for analytics and ETA learning. Partitioned by day (UTC);
-- the fleet's history writer creates yesterday's, today's and tomorrow's partitions, writes
-- with COPY in batches, and drops partitions older than ONTHEWAY_FLEET_HISTORY_RETENTION_DAYS.
CREATE TABLE driver_location_history (
    driver_id    text NOT NULL,
    region       text NOT NULL,
    recorded_at  timestamptz NOT NULL,
    location     geography(Point, 4326) NOT NULL
) PARTITION BY RANGE (recorded_at);

CREATE INDEX driver_location_history_driver_time
    ON driver_location_history (driver_id, recorded_at);
