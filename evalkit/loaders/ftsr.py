"""FTSR (TADiSR's synthetic full-image text SR set) in TADiSR's folder layout.

Paper: "Text-Aware Image Restoration / TADiSR" (mingcv), repository https://github.com/mingcv/TADiSR
(see its LICENSE; the FTSR data has its own terms on the download page). 50k synthetic triplets,
45k train / 5k test.

Layout (verified against ``tadisr/training/datasets.py`` at f65777d, ``FTSR1024Dataset`` /
``FTSR512Dataset``): ``<root>/sr_bicubic/NNNNNNN.png`` (the LR, bicubic-upsampled to the HR
size), ``<root>/gt/NNNNNNN.png`` (HR), ``<root>/mask/NNNNNNN.png`` (text mask, read as gray),
names ``str(i + 1).zfill(7)``, 1-based. The official loaders split train/test by a number range
(``min_no``/``max_no``, names ``min_no+1 .. max_no``), not by folder; other variants in that file
add ``lr_mask/`` or ``rendered_mask/`` (not read here). The project's ``synth export --layout
tadisr`` writes the same folders plus ``index.jsonl`` (``{"file", "key", "texts": [str]}``).

What this loader does:
- ``split`` (extra/constructor): when ``<root>/<split>/gt`` exists, that subfolder is the set
  (assumed convention for a re-packed download, unverified); otherwise the root is.
- ``index_range: [min_no, max_no]`` (extra): the official number range, e.g. ``[45000, 50000]``
  for the test images if they share the folders with the train images (assumed split point).
- The true LR is not in this layout. ``lr`` is None and ``meta["lr_bicubic_path"]`` names the
  upsampled input; with ``lr_from_bicubic: true`` (extra) ``lr`` = ``cv2.resize(sr_bicubic,
  HR/scale, INTER_AREA)`` — an approximation of the LR, flagged ``meta["lr_from_bicubic"]``.
- ``mask`` → ``BenchItem.mask`` (HxW uint8 as stored). ``index.jsonl`` texts are strings without
  polygons, so ``texts`` stays None and the strings go to ``meta["text_strings"]`` (with
  ``meta["source_key"]``).
- Keys are the 7-digit stems. Missing ``sr_bicubic``/``mask`` for a ``gt`` image, size
  mismatches and bad ``index.jsonl`` lines are ``AnnotationError``s (skipped with ``skip_bad``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError, Loader, read_image

_NAME = re.compile(r"^\d{7}$")


class FTSRTadisr(Loader):
    has_lr = False
    has_texts = False
    default_scale = 4

    def __init__(self, entry, *, lr_from_bicubic: bool | None = None, **kw):
        super().__init__(entry, **kw)
        self.scale = int(self.scale)
        x = entry.extra
        self.lr_from_bicubic = bool(x.get("lr_from_bicubic", False) if lr_from_bicubic is None else lr_from_bicubic)
        self.has_lr = self.lr_from_bicubic
        base = self.root
        if self.split and (self.root / str(self.split) / "gt").is_dir():
            base = self.root / str(self.split)
        self.base = base
        rng = x.get("index_range")
        if rng is not None and (not isinstance(rng, (list, tuple)) or len(rng) != 2 or not rng[0] < rng[1]):
            raise ValueError(f"dataset {entry.name!r}: index_range {rng!r}: expected [min_no, max_no] with min_no < max_no")
        self.index_range = tuple(int(v) for v in rng) if rng is not None else None
        self._index = self._read_index(base / "index.jsonl")
        self._keys: list[str] | None = None

    def _read_index(self, path: Path) -> dict[str, dict]:
        if not path.is_file():
            return {}
        out = {}
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    self.bad(AnnotationError(path, n, f"not valid JSON ({e.msg} at column {e.colno})"))
                    continue
                if (not isinstance(obj, dict) or not isinstance(obj.get("file"), str)
                        or not isinstance(obj.get("texts", []), list)
                        or not all(isinstance(t, str) for t in obj.get("texts", []))):
                    self.bad(AnnotationError(path, n, 'expected {"file": "NNNNNNN.png", "key": str, "texts": [str, ...]}'))
                    continue
                out[Path(obj["file"]).stem] = obj
        return out

    def keys(self) -> list[str]:
        if self._keys is None:
            gt = self.base / "gt"
            if not gt.is_dir():
                raise AnnotationError(gt, None, f"FTSR gt/ folder not found (dataset {self.entry.name!r}); "
                                                "expected <root>[/<split>]/{gt,sr_bicubic,mask}/NNNNNNN.png")
            keys = []
            for p in sorted(gt.glob("*.png")):
                if not _NAME.match(p.stem):
                    continue
                if self.index_range and not self.index_range[0] < int(p.stem) <= self.index_range[1]:
                    continue
                missing = [d for d in ("sr_bicubic", "mask") if not (self.base / d / p.name).is_file()]
                if missing:
                    self.bad(AnnotationError(p, None, f"no {' or '.join(f'{d}/{p.name}' for d in missing)} beside gt/"))
                    continue
                keys.append(p.stem)
            self._keys = keys
        return list(self._keys)

    def item(self, key: str) -> BenchItem:
        name = f"{key}.png"
        hr = read_image(self.base / "gt" / name)
        up_path = self.base / "sr_bicubic" / name
        mask_path = self.base / "mask" / name
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise AnnotationError(mask_path, None, "cannot be read as an image")
        if mask.shape != hr.shape[:2]:
            raise AnnotationError(mask_path, None, f"mask is {mask.shape[1]}x{mask.shape[0]}, HR is "
                                                   f"{hr.shape[1]}x{hr.shape[0]}: expected the same size")
        meta = {"scale": self.scale, "lr_bicubic_path": str(up_path)}
        lr = None
        if self.lr_from_bicubic:
            up = read_image(up_path)
            h, w = hr.shape[:2]
            if up.shape[:2] != (h, w):
                raise AnnotationError(up_path, None, f"sr_bicubic is {up.shape[1]}x{up.shape[0]}, HR is {w}x{h}: "
                                                     "expected the same size")
            if h % self.scale or w % self.scale:
                raise AnnotationError(self.base / "gt" / name, None, f"HR {w}x{h} is not divisible by scale {self.scale}")
            lr = cv2.resize(up, (w // self.scale, h // self.scale), interpolation=cv2.INTER_AREA)
            meta["lr_from_bicubic"] = True
        idx = self._index.get(key)
        if idx is not None:
            meta["text_strings"] = list(idx.get("texts", []))
            if "key" in idx:
                meta["source_key"] = idx["key"]
        return BenchItem(key=key, hr=hr, lr=lr, mask=np.ascontiguousarray(mask), texts=None,
                         hr_path=self.base / "gt" / name, meta=meta)

