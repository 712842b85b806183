"""L2GNet and the seed systems: torch-only networks."""
