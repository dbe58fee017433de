"""Stage: upscale real text crops whose text is too small, with a registered SR model
(bicubic by default; any name from ``models.sr`` with an ``upscale_image``)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from models.sr import create_sr
from synth.recipe import UpscaleConfig

_INTERPOLATORS = ("bicubic", "lanczos", "nearest")


class UpscaleStage:
    def __init__(self, cfg: UpscaleConfig):
        self.cfg = cfg
        self._models: dict[int, object] = {}

    def _model(self, scale: int):
        """Interpolators are built at the integer scale needed; learned models have their own
        fixed scale (one instance, on the CPU: synth workers have no GPU to assume)."""
        key = scale if self.cfg.model in _INTERPOLATORS else 0
        if key not in self._models:
            self._models[key] = (create_sr(self.cfg.model, scale=scale) if key
                                 else create_sr(self.cfg.model, device="cpu"))
        return self._models[key]

    def process(self, crop: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Returns (crop, mask, factor); factor 1.0 when the crop was tall enough already."""
        h, w = crop.shape[:2]
        if h >= self.cfg.min_height:
            return crop, mask, 1.0
        factor = self.cfg.min_height / h
        size = (max(1, round(w * factor)), self.cfg.min_height)
        model = self._model(max(2, math.ceil(factor)))
        up = model.upscale_image(crop)
        if up.shape[:2] != (size[1], size[0]):
            up = cv2.resize(up, size, interpolation=cv2.INTER_AREA)
        m = cv2.resize(mask, size, interpolation=cv2.INTER_LINEAR)
        return up, np.where(m >= 128, 255, 0).astype(np.uint8), round(factor, 4)
