"""The SR model registry (lazy: listing imports nothing heavy)."""
from __future__ import annotations

from models.registry import Registry

SR_MODELS = Registry("SR model", {
    "bicubic": "models.sr.classical:Bicubic",
    "lanczos": "models.sr.classical:Lanczos",
    "nearest": "models.sr.classical:Nearest",
})


def create_sr(name: str, **options):
    return SR_MODELS.create(name, **options)


def list_sr(pattern: str | None = None) -> list[str]:
    return SR_MODELS.names(pattern)
