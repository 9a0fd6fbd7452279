"""Orders: placement, lifecycle and audit trail on the PostgreSQL shards (see DESIGN.md)."""
