"""Stage: glyph masks for real text crops, from a registered text segmenter (models.seg)."""
from __future__ import annotations

import numpy as np

from synth.types import Rejected

STAGE = "segment"


class SegmentStage:
    def __init__(self, segmenter, min_mask_fraction: float = 0.02, max_mask_fraction: float = 0.7):
        self.segmenter = segmenter
        self.min_fraction = min_mask_fraction
        self.max_fraction = max_mask_fraction

    def process(self, crop: np.ndarray, item: str = "") -> np.ndarray:
        """RGB uint8 crop -> HxW uint8 {0,255} glyph mask; Rejected when (almost) nothing or
        (almost) everything is called text — both mean the segmentation failed."""
        mask = self.segmenter.segment(crop)
        frac = float((mask > 0).mean())
        if frac < self.min_fraction:
            raise Rejected(STAGE, "mask-empty", f"{item}: {frac:.3f} of pixels")
        if frac > self.max_fraction:
            raise Rejected(STAGE, "mask-full", f"{item}: {frac:.3f} of pixels")
        return mask
