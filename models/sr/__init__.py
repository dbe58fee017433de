"""SR models behind one interface: ``create_sr(name, **options)``, ``list_sr(pattern)``."""
from models.sr.registry import SR_MODELS, create_sr, list_sr

__all__ = ["SR_MODELS", "create_sr", "list_sr"]
