"""The PostgreSQL schema of every shard: versioned SQL migrations and monthly partitions."""
