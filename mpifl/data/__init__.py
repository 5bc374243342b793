"""Data sources, splits and partitions; pure functions of (config, rank)."""
