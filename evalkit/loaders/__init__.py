"""Benchmark loaders, one file per published layout (see base.py and datasets.yaml)."""
