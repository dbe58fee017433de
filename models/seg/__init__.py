"""Text segmenters: glyph masks from text crops or scenes (PP-OCR DB + colour clustering; Hi-SAM / SAM-TSS).

Nothing heavy is imported here: engines load when a segmenter is built.
"""
from models.seg.base import (
    DEFAULT_SEGMENTER,
    SEGMENTERS,
    TextSegmenter,
    create_segmenter,
    list_segmenters,
)

__all__ = ["DEFAULT_SEGMENTER", "SEGMENTERS", "TextSegmenter", "create_segmenter", "list_segmenters"]
