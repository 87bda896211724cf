"""Ratings as DataFrames: validation and bad rows (``validate``, ``quarantine``),
duplicates, splits, ID indexing, synthetic data, and the one preparation pipeline of every
entry point (``prepare``)."""
