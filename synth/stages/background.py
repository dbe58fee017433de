"""Stage: text-free HR background crops.

Draws an image from the weighted background sources, rejects it when it is unreadable, grey,
transparent, smaller than the crop, or when OCR finds text anywhere in it, then takes a random
(optionally downscaled, flipped) ``hr_size`` crop. Verdicts are cached per source image: the
decision is a function of the image alone, so every worker reaches the same one.
"""
from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from synth.imageio import decode_image
from synth.recipe import BackgroundConfig
from synth.types import Rejected

STAGE = "background"


class BackgroundStage:
    def __init__(self, cfg: BackgroundConfig, sources: list[tuple[float, object]], ocr=None,
                 cache_images: int = 16):
        if not sources:
            raise ValueError("BackgroundStage needs at least one source")
        self.cfg = cfg
        self.sources = [s for _, s in sources]
        w = np.array([w for w, _ in sources], dtype=np.float64)
        self.weights = w / w.sum()
        self.ocr = ocr
        self._verdicts: dict[str, Rejected | None] = {}
        self._images: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_images = cache_images

    def setup(self) -> None:
        for s in self.sources:
            len(s)  # list folders / open LMDBs now, so errors surface before the first sample

    def _load(self, src, i: int, item: str) -> np.ndarray:
        if item in self._images:
            self._images.move_to_end(item)
            return self._images[item]
        img = decode_image(src.load(i), stage=STAGE, what=item, allow_gray=False)
        self._images[item] = img
        if len(self._images) > self._cache_images:
            self._images.popitem(last=False)
        return img

    def _check(self, img: np.ndarray, item: str) -> None:
        hr = self.cfg.hr_size
        h, w = img.shape[:2]
        if min(h, w) < hr:
            raise Rejected(STAGE, "too-small", f"{item}: {w}x{h} < {hr}x{hr}")
        if self.cfg.ocr_reject and self.ocr is not None:
            long = max(h, w)
            s = min(1.0, self.cfg.max_side_for_ocr / long)
            if long < self.cfg.min_side_for_ocr:
                s = min(2.0, self.cfg.min_side_for_ocr / long)
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
            small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=interp) if s != 1 else img
            # a detection counts as text when it has a letter or digit: PP-OCR also "reads" rows of
            # symbols (the stars on a uniform as '★★★'), which are not text an SR model must keep
            found = [ln.text for ln in self.ocr.readtext(small)
                     if ln.score >= self.cfg.ocr_min_score and any(ch.isalnum() for ch in ln.text)]
            if found:
                raise Rejected(STAGE, "has-text", f"{item}: OCR read {found[:3]}")

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """One HR crop (hr_size² RGB uint8) and the facts of how it was cut; raises Rejected."""
        k = int(rng.choice(len(self.sources), p=self.weights))
        src = self.sources[k]
        i = int(rng.integers(len(src)))
        item = src.item_id(i)
        verdict = self._verdicts.get(item, "unknown")
        if isinstance(verdict, Rejected):
            raise verdict
        try:
            img = self._load(src, i, item)
            if verdict == "unknown":
                self._check(img, item)
        except Rejected as r:
            self._verdicts[item] = r
            raise
        self._verdicts[item] = None
        hr = self.cfg.hr_size
        h, w = img.shape[:2]
        lo, hi = self.cfg.scale_range
        s = float(rng.uniform(lo, hi))
        s = max(s, hr / min(h, w))  # never below the crop size
        if s < 1.0:
            img = cv2.resize(img, (max(hr, round(w * s)), max(hr, round(h * s))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        y = int(rng.integers(h - hr + 1))
        x = int(rng.integers(w - hr + 1))
        crop = img[y:y + hr, x:x + hr]
        flip = bool(self.cfg.flip and rng.random() < 0.5)
        if flip:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop), {"id": item, "scale": round(min(s, 1.0), 6), "x": x, "y": y, "flip": flip}
