from models.caption.registry import CAPTIONERS, create_captioner, list_captioners

__all__ = ["CAPTIONERS", "create_captioner", "list_captioners"]
