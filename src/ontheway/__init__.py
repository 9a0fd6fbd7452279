"""ontheway: a food-delivery dispatch platform on PostgreSQL, Redis and FalkorDB."""

__version__ = "0.1.0"
