"""The ground floor: SR models, OCR engines, text segmenters, weights resolver, registries."""
from models.sr.registry import create_sr, list_sr

__all__ = ["create_sr", "list_sr"]
