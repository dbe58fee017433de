"""Synth stages: plain classes with ``setup()`` and a processing method; none imports Ray."""
