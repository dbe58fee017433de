"""Stage: GLYPH-SR text guidance — positions, verbalised prompts, LR OCR, and scene captions.

GLYPH-SR conditions its Text-ControlNet on OCR strings with verbalised positions plus a global
caption. Positions, reading order and the phrase format are ``models.ocr.verbalise`` (the one
definition ``glyph-sr`` also uses at inference). Here: the OCR strings are what the recipe's OCR
engine reads in the LR, bicubic-upsampled back to the HR size (the SR input size, as at
inference), with lines below ``ocr_min_score`` left out of the prompt.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.ocr.verbalise import describe, grid_position, read_prompt

__all__ = ["describe", "grid_position", "metadata_caption", "read_lr"]


def read_lr(ocr, lr: np.ndarray, hr_shape: tuple[int, int], min_score: float) -> dict:
    """OCR of an LR image upsampled (bicubic) to ``hr_shape``; polygons in HR pixels.
    -> {"lines": [...all lines, reading order, with score and position], "prompt": str (lines with
    score >= min_score)}."""
    h, w = hr_shape
    return read_prompt(ocr, cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC), min_score)


def metadata_caption(bg_info: dict, sources) -> tuple[str, str]:
    """A scene caption from what the background sources know about the image -> (caption, how).
    Sources may implement ``describe(item_id) -> str | None`` (scikit-image's image descriptions,
    descriptive file names); without one, a generic caption marked "metadata-generic"."""
    for src in sources:
        text = src.describe(bg_info["id"]) if hasattr(src, "describe") else None
        if text:
            return text, "metadata"
    return "A photograph.", "metadata-generic"
