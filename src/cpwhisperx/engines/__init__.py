"""Engines behind small interfaces; each imports its heavy library only when created."""
