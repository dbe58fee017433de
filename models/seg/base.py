"""The text segmenter interface and the segmenter registry.

A text segmenter turns an RGB ``HxWx3 uint8`` image (a text crop or a whole scene) into a glyph
mask: ``HxW uint8`` with glyph (stroke) pixels 255 and everything else 0.
"""
from __future__ import annotations

import numpy as np

from models.registry import Registry


class TextSegmenter:
    """Base class of the text segmenters; subclasses implement :meth:`segment`."""

    name: str = "segmenter"

    def segment(self, image: np.ndarray) -> np.ndarray:
        """RGB ``HxWx3 uint8`` image -> ``HxW uint8`` mask in {0, 255}, glyph pixels 255."""
        raise NotImplementedError

    def identity(self) -> dict:
        """What this segmenter's masks depend on, as plain data (the key of every cache of masks, e.g.
        synth's harvested crops): name, class, public scalar settings, the sha256 of every ``*_path``
        file it loaded (weights, by content) and the identity of an OCR engine it holds
        (ppocr-db-glyph detects with one)."""
        from pathlib import Path

        from models.files import file_digest

        out: dict = {"name": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}"}
        for k, v in sorted(vars(self).items()):
            if k.startswith("_"):
                continue
            if callable(getattr(v, "identity", None)):
                out[k] = v.identity()
            elif k.endswith("_path") and isinstance(v, (str, bytes)) or hasattr(v, "__fspath__"):
                p = Path(v)
                if p.is_file():
                    out[k.removesuffix("_path") + "_sha256"] = file_digest(p)
            elif isinstance(v, (str, int, float, bool, type(None))):
                out[k] = v
            elif isinstance(v, (tuple, list)) and all(isinstance(x, (str, int, float, bool)) for x in v):
                out[k] = list(v)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


SEGMENTERS = Registry("text segmenter", {
    "ppocr-db-glyph": "models.seg.ppocr_db:PPOCRDBGlyphSegmenter",
    "hi-sam": "models.seg.hisam:HiSAMSegmenter",
    "hi-sam-tiny": "models.seg.hisam:HiSAMTinySegmenter",
    "sam-ts": "models.seg.hisam:SAMTSSegmenter",
    "sam-ts-tiny": "models.seg.hisam:SAMTSTinySegmenter",
})

DEFAULT_SEGMENTER = "ppocr-db-glyph"


def create_segmenter(name: str = DEFAULT_SEGMENTER, **kwargs) -> TextSegmenter:
    """Build the text segmenter registered as ``name`` with its constructor keyword arguments."""
    return SEGMENTERS.create(name, **kwargs)


def list_segmenters(pattern: str | None = None) -> list[str]:
    """Registered segmenter names, optionally filtered by a glob ``pattern``."""
    return SEGMENTERS.names(pattern)
