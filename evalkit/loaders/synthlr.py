"""``FixedLR``: give an HR-only benchmark one fixed, cached LR per image.

Protocol: GLYPH-SR's ×4 / ×8 evaluation on HR-only text sets — synthesise the LR once, with a
named degradation preset and a seed, so every method is scored on the same LR bytes. The LR comes
from ``synth.degrade.degrade`` (preset from ``synth.degrade.get_preset``; ``matlab-bicubic`` by
default, MATLAB's antialiased bicubic ``imresize`` as the SR papers make their LR) with a generator
per image, ``np.random.default_rng([seed, crc32(key)])``, so an image's LR depends only on (HR,
preset, scale, seed, key), never on order or on the other images.

HR whose height or width is not a multiple of the scale is cropped at the bottom/right to the
largest multiple (``meta["hr_crop"] = {"from": [H, W], "to": [H', W']}``; mask cropped alike;
text polygons are left in place — they are in the same pixel frame).

Cache, keyed by what the LR was computed from (``models.cache.cache_key``): the HR's content (the
sha256 of its file, ``models.files.file_digest``; the sha256 of the decoded pixels when the loader
reads it from no file of its own, e.g. an LMDB), its decoded shape, the dataset root, format and
split, the key, the preset's full definition (``DegradeConfig.to_dict()``, overrides included),
the scale, the seed and the code versions (``FIXED_LR_VERSION`` here, ``DEGRADE_VERSION`` of
synth.degrade). An HR edited in place, another root, a changed preset field or new code therefore
never meets an old entry. Layout, under ``cache_dir`` (default ``$TEXTSR_CACHE/fixed-lr``)::

    <dataset>/<preset>-x<scale>-seed<seed>/<key>.<entry>.png    the LR (RGB PNG)
    <dataset>/<preset>-x<scale>-seed<seed>/<key>.<entry>.json   what it was made from + sampled params
    <dataset>/<preset>-x<scale>-seed<seed>/index/<key>.json     the index: the entry last made or used for <key>

Every file is written atomically (``models.files.atomic_write``), the JSON before the PNG, so a
PNG present is a whole entry. Entries are never rewritten: a hit only reads. ``info()`` returns
``{"preset", "scale", "seed", "preset_hash", "preset_definition", "code_version"}`` for
summary.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError, Loader
from models.cache import cache_dir, cache_key
from models.files import atomic_write, file_digest

# The version of how FixedLR turns an HR item into its LR (cropping, seeding, what is read back).
# Bump it whenever the same inputs would give other LR bytes. 1: entries keyed by (preset name,
# scale, seed, key) only — an HR edited in place kept its old LR; 2: content-keyed entries.
FIXED_LR_VERSION = 2


def default_cache_dir() -> Path:
    return cache_dir("fixed-lr")


class FixedLR(Loader):
    """Wrap an HR-only loader; ``item(key)`` adds ``lr`` (HxWx3 uint8 RGB, (H/scale)x(W/scale))
    made once by ``preset`` (with ``overrides``) and cached. ``hr`` and ``mask`` are cropped to a
    multiple of ``scale``."""

    has_lr = True

    def __init__(self, loader: Loader, scale: int, preset: str = "matlab-bicubic", seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, overrides: dict | None = None):
        from synth.degrade import DEGRADE_VERSION, get_preset
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
        self.cfg = get_preset(preset, **(overrides or {}))
        self.definition = self.cfg.to_dict()
        self.preset_hash = cache_key(self.definition)
        self.code_version = {"fixed_lr": FIXED_LR_VERSION, "degrade": DEGRADE_VERSION}
        self.cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.dir = self.cache / loader.entry.name / f"{preset}-x{self.scale}-seed{self.seed}"
        # what every entry of this loader shares; the per-image part is added in entry_of()
        self._common = {"root": str(Path(loader.root).resolve()), "format": loader.entry.format,
                        "split": loader.split, "preset": self.definition, "scale": self.scale,
                        "seed": self.seed, "code_version": self.code_version}

    def info(self) -> dict:
        return {"preset": self.preset, "scale": self.scale, "seed": self.seed, "preset_hash": self.preset_hash,
                "preset_definition": self.definition, "code_version": dict(self.code_version)}

    def keys(self) -> list[str]:
        return self.inner.keys()

    # -------------------------------------------------------------- cache keys and paths

    @staticmethod
    def hr_identity(hr: np.ndarray, hr_path: Path | str | None) -> dict:
        """What identifies the HR's content: the sha256 of its file (memoised per path, size and
        mtime) or, for an HR read from no file of its own, of its decoded pixels; plus its shape."""
        if hr_path is not None and Path(hr_path).is_file():
            return {"file_sha256": file_digest(hr_path), "shape": list(hr.shape)}
        pixels = hashlib.sha256(np.ascontiguousarray(hr).data).hexdigest()
        return {"pixels_sha256": pixels, "shape": list(hr.shape), "dtype": str(hr.dtype)}

    def entry_of(self, key: str, hr_identity: dict) -> str:
        """The cache entry (16 hex) of ``key``'s LR, from everything it is computed from."""
        return cache_key("fixed-lr", {**self._common, "key": key, "hr": hr_identity})

    def entry_path(self, key: str, entry: str) -> Path:
        return self.dir / f"{key}.{entry}.png"

    def index_path(self, key: str) -> Path:
        return self.dir / "index" / f"{key}.json"

    def lr_path(self, key: str) -> Path:
        """The LR file of ``key`` for its HR as it is now (reads the HR; the file may not exist
        yet — ``item(key)`` makes it)."""
        it = self.inner.item(key)
        return self.entry_path(key, self.entry_of(key, self.hr_identity(it.hr, it.hr_path)))

    # -------------------------------------------------------------- items

    def item(self, key: str) -> BenchItem:
        from synth.degrade import degrade

        it = self.inner.item(key)
        hr, s = it.hr, self.scale
        h, w = hr.shape[:2]
        h2, w2 = h - h % s, w - w % s
        if h2 == 0 or w2 == 0:
            raise AnnotationError(it.hr_path or key, None, f"HR {w}x{h} is smaller than the scale {s}")
        ident = self.hr_identity(hr, it.hr_path)
        entry = self.entry_of(key, ident)
        meta = dict(it.meta)
        mask = it.mask
        if (h2, w2) != (h, w):
            hr = np.ascontiguousarray(hr[:h2, :w2])
            mask = None if mask is None else np.ascontiguousarray(mask[:h2, :w2])
            meta["hr_crop"] = {"from": [h, w], "to": [h2, w2]}
        path = self.entry_path(key, entry)
        lr = _read_cached(path, (h2 // s, w2 // s))
        if lr is None:
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode("utf-8"))])
            lr, params = degrade(hr, s, self.cfg, rng)
            ok, buf = cv2.imencode(".png", lr[:, :, ::-1])
            if not ok:
                raise RuntimeError(f"cannot encode the LR of {key!r} as PNG")
            record = {"key": key, "entry": entry, "hr_path": str(it.hr_path) if it.hr_path else None,
                      "hr": ident, **self._common,
                      "preset_name": self.preset, "preset_hash": self.preset_hash, "params": params}
            atomic_write(path.with_suffix(".json"), json.dumps(record, indent=1))
            atomic_write(path, buf.tobytes())
        self._point_index(key, entry, path)
        meta.update({"lr_path": str(path), "lr_preset": self.preset, "lr_preset_hash": self.preset_hash,
                     "lr_seed": self.seed, "lr_entry": entry, "scale": s})
        return BenchItem(key=key, hr=hr, lr=lr, mask=mask, texts=it.texts, sr_path=it.sr_path, hr_path=it.hr_path,
                         meta=meta)

    def _point_index(self, key: str, entry: str, path: Path) -> None:
        """Make ``index/<key>.json`` name ``entry`` (rewritten only when it names another one)."""
        idx = self.index_path(key)
        try:
            if json.loads(idx.read_text(encoding="utf-8")).get("entry") == entry:
                return
        except (OSError, ValueError, AttributeError):
            pass  # missing or unreadable: (re)write it
        atomic_write(idx, json.dumps({"key": key, "entry": entry, "lr": os.path.relpath(path, idx.parent),
                                      "preset_hash": self.preset_hash, "code_version": self.code_version}))


def _read_cached(path: Path, size: tuple[int, int]) -> np.ndarray | None:
    """The cached LR if present and of the expected size; None means (re)make it."""
    if not path.is_file():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.shape[:2] != size:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])
