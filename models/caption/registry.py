"""Image captioners (scene captions for the GLYPH-SR corpus and prompts). Lazy registry."""
from __future__ import annotations

from models.registry import Registry

CAPTIONERS = Registry("captioner")
CAPTIONERS.register("blip-base", "models.caption.blip:build")
CAPTIONERS.register("blip-large", "models.caption.blip:build")


def create_captioner(name: str, weights=None, device=None, **options):
    """Build captioner ``name``: ``.name`` and ``caption(rgb uint8 HxWx3) -> str``. ``weights``: a
    local model folder; otherwise the weights resolver looks for the official one (and raises
    WeightsMissingError naming it and how to fetch it)."""
    return CAPTIONERS.get(name)(name, weights=weights, device=device, **options)


def list_captioners(pattern: str | None = None) -> list[str]:
    return CAPTIONERS.names(pattern)
