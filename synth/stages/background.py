"""Stage: text-free HR background crops.

Draws an image from the weighted background sources, rejects it when it is unreadable, grey,
transparent, smaller than the crop, or when OCR finds text anywhere in it, then takes a random
(optionally downscaled, flipped) ``hr_size`` crop. Verdicts are cached per source image: the
decision is a function of the image alone, so every worker reaches the same one.

With a verdicts file (``backgrounds.verdicts``, written by ``synth prefilter``, read by
``synth.prefilter``) no background is ever OCR'd: each image's size and OCR readings come from the
file and :func:`decide` applies the recipe's thresholds to them — the same function and the same
readings (:func:`ocr_texts`) the stage would otherwise compute, so the samples are byte-identical.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.cache import LRU
from synth.imageio import decode_image
from synth.recipe import BackgroundConfig
from synth.types import Rejected

STAGE = "background"


class BackgroundStage:
    def __init__(self, cfg: BackgroundConfig, sources: list[tuple[float, object]], ocr=None,
                 cache_images: int = 16, verdicts=None):
        """``verdicts``: a ``synth.prefilter.Verdicts`` (checked against the sources, the OCR resize
        policy and ``ocr``'s identity in :meth:`setup`), or None to OCR each new image here."""
        if not sources:
            raise ValueError("BackgroundStage needs at least one source")
        if verdicts is not None and ocr is None:
            raise ValueError("BackgroundStage with verdicts needs the OCR engine (its identity is checked)")
        self.cfg = cfg
        self.sources = [s for _, s in sources]
        w = np.array([w for w, _ in sources], dtype=np.float64)
        self.weights = w / w.sum()
        self.ocr = ocr
        self._verdicts: dict[str, Rejected | None] = {}
        self._images = LRU(cache_images)  # decoded source images, the most recently used
        self.verdicts = verdicts

    def setup(self) -> None:
        for s in self.sources:
            len(s)  # list folders / open LMDBs now, so errors surface before the first sample
        if self.verdicts is not None:
            self.verdicts.check(self.cfg, self.sources, self.ocr.identity())

    def _load(self, src, i: int, item: str) -> np.ndarray:
        img = self._images.get(item)
        if img is None:
            img = decode_image(src.load(i), stage=STAGE, what=item, allow_gray=False)
            self._images[item] = img
        return img

    def _check(self, img: np.ndarray, item: str) -> None:
        h, w = img.shape[:2]
        texts = []
        # an image too small to crop is rejected before (and without) OCR
        if min(h, w) >= self.cfg.hr_size and self.cfg.ocr_reject and self.ocr is not None:
            texts = ocr_texts(self.ocr, img, max_side=self.cfg.max_side_for_ocr, min_side=self.cfg.min_side_for_ocr)
        rejected = decide(item, w, h, texts, hr_size=self.cfg.hr_size, min_score=self.cfg.ocr_min_score)
        if rejected is not None:
            raise rejected

    def _from_verdicts(self, item: str) -> bool:
        """Decide ``item`` from its row; True when the image may be used, False when the row says it
        was unreadable (then loading it raises the decoder's own rejection, exactly as without a
        verdicts file); raises Rejected for too-small / has-text without decoding the image."""
        row = self.verdicts.rows[item]
        if row["verdict"] == "unreadable":
            return False
        texts = row["texts"] if self.cfg.ocr_reject else []
        rejected = decide(item, row["width"], row["height"], texts, hr_size=self.cfg.hr_size,
                          min_score=self.cfg.ocr_min_score)
        if rejected is not None:
            raise rejected
        return True

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
            if verdict == "unknown" and self.verdicts is not None and self._from_verdicts(item):
                verdict = "from-file"
            img = self._load(src, i, item)
            if verdict == "unknown":
                if self.verdicts is not None:
                    # the file says this image does not decode, yet it does: it changed since
                    raise self.verdicts.stale(item)
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


def ocr_texts(ocr, img: np.ndarray, *, max_side: int, min_side: int) -> list[tuple[str, float]]:
    """Every detection with a letter or digit that ``ocr.readtext`` makes on ``img`` (RGB HxWx3
    uint8) resized for OCR, as ``(text, score)`` in the engine's reading order, score in [0, 1]
    (whatever the score: thresholds are applied by :func:`decide`). The one copy of the background
    text check, shared by :class:`BackgroundStage` and ``synth prefilter``.

    Resize policy: the long side is brought down to ``max_side`` (INTER_AREA), and a long side
    below ``min_side`` is enlarged to it, at most 2× (INTER_CUBIC), so small text — name tags,
    badges — is found (PP-OCR misses ~8 px glyphs)."""
    h, w = img.shape[:2]
    long = max(h, w)
    s = min(1.0, max_side / long)
    if long < min_side:
        s = min(2.0, min_side / long)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=interp) if s != 1 else img
    # a detection counts as text when it has a letter or digit: PP-OCR also "reads" rows of
    # symbols (the stars on a uniform as '★★★'), which are not text an SR model must keep
    return [(ln.text, ln.score) for ln in ocr.readtext(small) if any(ch.isalnum() for ch in ln.text)]


def decide(item: str, width: int, height: int, texts, *, hr_size: int, min_score: float) -> Rejected | None:
    """The background verdict from an image's size and its :func:`ocr_texts` (``[(text, score)]``;
    empty when text is not checked): a ``Rejected`` ("too-small" when its short side is below
    ``hr_size``, else "has-text" when a reading scores at least ``min_score``) or None (usable)."""
    if min(height, width) < hr_size:
        return Rejected(STAGE, "too-small", f"{item}: {width}x{height} < {hr_size}x{hr_size}")
    found = [t for t, score in texts if score >= min_score]
    if found:
        return Rejected(STAGE, "has-text", f"{item}: OCR read {found[:3]}")
    return None
