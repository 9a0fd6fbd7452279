"""Roads: OpenStreetMap road graphs in FalkorDB, CCH routing, traffic, delivery zones."""
