"""Runs synth and evalkit stages at scale; the only package that imports Ray."""
