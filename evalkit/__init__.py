"""Scoring SR models and output folders on text-rich benchmarks (see issue #4)."""
