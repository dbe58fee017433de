"""``FixedLR``: give an HR-only benchmark one fixed, cached LR per image.

Protocol: GLYPH-SR's ×4 / ×8 evaluation on HR-only text sets — synthesise the LR once, with a
named degradation preset and a seed, so every method is scored on the same LR bytes. The LR comes
from ``synth.degrade.degrade`` (preset from ``synth.degrade.get_preset``; ``bicubic`` by default,
OpenCV INTER_CUBIC) with a generator per image, ``np.random.default_rng([seed, crc32(key)])``, so
an image's LR depends only on (preset, scale, seed, key), never on order or on the other images.

HR whose height or width is not a multiple of the scale is cropped at the bottom/right to the
largest multiple (``meta["hr_crop"] = {"from": [H, W], "to": [H', W']}``; mask cropped alike;
text polygons are left in place — they are in the same pixel frame).

Cache: ``<cache_dir>/<dataset>/<preset>-x<scale>-seed<seed>/<key>.png`` (+ ``<key>.json``, the
sampled degradation parameters), written atomically (temporary file + ``os.replace``) and reused
when present. ``cache_dir`` defaults to ``$TEXTSR_CACHE/fixed-lr`` (``~/.cache/textsr``).
``info()`` returns ``{"preset", "scale", "seed"}`` for summary.json.
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError, Loader
from models.cache import cache_dir
from models.files import atomic_write


def default_cache_dir() -> Path:
    return cache_dir("fixed-lr")


class FixedLR(Loader):
    has_lr = True

    def __init__(self, loader: Loader, scale: int, preset: str = "bicubic", seed: int = 0,
                 cache_dir: str | os.PathLike | None = None):
        from synth.degrade import get_preset
        from synth.degrade.pipeline import SUPPORTED_SCALES

        if loader.has_lr:
            raise ValueError(f"FixedLR wraps HR-only loaders; {type(loader).__name__} ({loader.entry.name!r}) "
                             "already has real LR images — score those instead")
        if int(scale) not in SUPPORTED_SCALES:
            raise ValueError(f"FixedLR: scale {scale} not supported; expected one of {SUPPORTED_SCALES}")
        super().__init__(loader.entry, split=loader.split, scale=int(scale), skip_bad=loader.skip_bad)
        self.inner = loader
        self.skipped = loader.skipped  # one count for the wrapper and what it wraps
        self.has_texts = loader.has_texts
        self.preset, self.seed = preset, int(seed)
        self.cfg = get_preset(preset)
        self.cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.dir = self.cache / loader.entry.name / f"{preset}-x{self.scale}-seed{self.seed}"

    def info(self) -> dict:
        return {"preset": self.preset, "scale": self.scale, "seed": self.seed}

    def keys(self) -> list[str]:
        return self.inner.keys()

    def lr_path(self, key: str) -> Path:
        return self.dir / f"{key}.png"

    def item(self, key: str) -> BenchItem:
        from synth.degrade import degrade

        it = self.inner.item(key)
        hr, s = it.hr, self.scale
        h, w = hr.shape[:2]
        h2, w2 = h - h % s, w - w % s
        if h2 == 0 or w2 == 0:
            raise AnnotationError(it.hr_path or key, None, f"HR {w}x{h} is smaller than the scale {s}")
        meta = dict(it.meta)
        mask = it.mask
        if (h2, w2) != (h, w):
            hr = np.ascontiguousarray(hr[:h2, :w2])
            mask = None if mask is None else np.ascontiguousarray(mask[:h2, :w2])
            meta["hr_crop"] = {"from": [h, w], "to": [h2, w2]}
        path = self.lr_path(key)
        lr = _read_cached(path, (h2 // s, w2 // s))
        if lr is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode("utf-8"))])
            lr, params = degrade(hr, s, self.cfg, rng)
            ok, buf = cv2.imencode(".png", lr[:, :, ::-1])
            if not ok:
                raise RuntimeError(f"cannot encode the LR of {key!r} as PNG")
            atomic_write(path, buf.tobytes())
            atomic_write(path.with_suffix(".json"), json.dumps(params))
        meta.update({"lr_path": str(path), "lr_preset": self.preset, "lr_seed": self.seed, "scale": s})
        return BenchItem(key=key, hr=hr, lr=lr, mask=mask, texts=it.texts, sr_path=it.sr_path, hr_path=it.hr_path,
                         meta=meta)



def _read_cached(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The cached LR if present and of the expected size; None means (re)make it."""
    if not path.is_file():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.shape[:2] != size:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])
