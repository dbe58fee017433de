"""Stage: OCR filtering of real text crops (TADiSR's FTSR recipe).

A crop is kept only when (1) its label is non-empty and of a usable length, (2) it is large enough
for its character count (long edge / #chars), and (3) OCR of the crop AND OCR of its segmented
glyphs alone both agree with the label (normalised edit similarity >= threshold). (3) catches
wrong labels and masks that lost or invented strokes.
"""
from __future__ import annotations

import numpy as np

from models.ocr.textsim import text_similarity
from synth.recipe import CropTextConfig
from synth.types import Rejected

STAGE = "ocr-filter"


def glyphs_only(crop: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The crop's glyph pixels on a flat background of the opposite brightness, so a recogniser
    sees only what the mask says is text."""
    on = mask > 0
    lum = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    fill = 0 if lum[on].mean() > 127 else 255
    out = np.full_like(crop, fill)
    out[on] = crop[on]
    return out


class OCRFilterStage:
    def __init__(self, cfg: CropTextConfig, ocr):
        self.cfg = cfg
        self.ocr = ocr

    def check_label(self, crop: np.ndarray, label: str, item: str = "") -> None:
        n = len(label.replace(" ", ""))
        if n == 0:
            raise Rejected(STAGE, "empty-label", item)
        if not self.cfg.min_chars <= n <= self.cfg.max_chars:
            raise Rejected(STAGE, "label-length", f"{item}: {n} chars")
        ratio = max(crop.shape[:2]) / n
        if ratio < self.cfg.min_edge_per_char:
            raise Rejected(STAGE, "too-small-per-char", f"{item}: {ratio:.1f} px/char < {self.cfg.min_edge_per_char}")

    def process(self, crop: np.ndarray, mask: np.ndarray, label: str, item: str = "") -> dict:
        """Returns the two OCR readings and similarities; raises Rejected when either disagrees."""
        (t_crop, s_crop), (t_glyph, s_glyph) = self.ocr.recognize([crop, glyphs_only(crop, mask)])
        sim_crop = text_similarity(t_crop, label, ignore_case=True, ignore_space=True)
        sim_glyph = text_similarity(t_glyph, label, ignore_case=True, ignore_space=True)
        thr = self.cfg.ocr_min_similarity
        if sim_crop < thr:
            raise Rejected(STAGE, "crop-disagrees", f"{item}: read {t_crop!r} vs label {label!r}")
        if sim_glyph < thr:
            raise Rejected(STAGE, "glyphs-disagree", f"{item}: glyphs read {t_glyph!r} vs label {label!r}")
        return {"ocr_crop": t_crop, "ocr_glyphs": t_glyph, "sim_crop": round(sim_crop, 4),
                "sim_glyphs": round(sim_glyph, 4)}
