"""Metrics: plain maths functions plus accumulating ``Metric`` objects (see base.py)."""
