"""Reproducible performance comparisons; each prints a table with ratios to a reference."""
