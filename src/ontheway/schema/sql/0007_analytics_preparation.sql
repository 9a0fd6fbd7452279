-- analytics: restaurants' preparation times (placement to food ready), per day.
ALTER TABLE daily_stats
    ADD COLUMN IF NOT EXISTS prepared integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS prep_s_sum double precision NOT NULL DEFAULT 0;
