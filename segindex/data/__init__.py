"""Static reference data (category lists) used by the backends; plain Python, no heavy imports."""
