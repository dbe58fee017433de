"""ReasonText: paired ×4 text-image SR benchmark whose words carry a perception / reasoning level.

What the issue states: 513 LR/HR pairs, 128×128 → 512×512 (×4), word-level human annotations,
each word labelled ``perception`` (legible from the degraded input itself) or ``reasoning`` (only
recoverable from context). Scored with per-level OCR metrics (``ocr_by_level``:
``ocr_a_perception``, ``ocr_a_reasoning``, ``word_acc_*`` …).

NOT verified (no paper, repository or dataset card naming ReasonText could be found from here —
searched the pages, docs, code and issues corpora; nothing to fetch): the folder names, file
names and format, the annotation file's name and schema, whether coordinates are in HR or LR
pixels, and the licence. This loader reads the layout below — the common paired-SR layout plus one
JSON annotation file — and every part of it can be re-pointed from the dataset entry::

    <root>/HR/<name>.png            512×512 (any image suffix; ``hr_dir`` extra)
    <root>/LR/<name>.png            128×128, paired by file stem (``lr_dir`` extra)
    <root>/annotations.json         (``annotations`` extra, relative to the root)

``annotations.json`` is one JSON object, image name (file name or stem) → list of words::

    {"0001.png": [{"text": "OPEN", "polygon": [[x, y], ...], "level": "perception"},
                  {"text": "HOURS", "bbox": [x1, y1, x2, y2], "level": "reasoning"}]}

* ``text``: the transcription (``transcription`` is accepted too);
* geometry in HR pixels: ``polygon`` (at least 4 ``[x, y]`` points, or a flat list of 2·K
  numbers) or ``bbox`` ``[x1, y1, x2, y2]`` with ``x2 > x1``, ``y2 > y1``; ``annotation_scale``
  (extra, default 1) multiplies the coordinates, e.g. 4 for annotations drawn on the LR image;
* ``level``: ``perception`` or ``reasoning`` (any case); anything else is an error naming the file
  and the image, so a schema that differs is caught at listing time, not scored silently.

A bad word is an ``AnnotationError`` naming the file and the image (with ``skip_bad`` that image is
left out and counted). Images with no entry in the file get no words (``texts = []``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.benches import BenchItem
from evalkit.loaders.base import AnnotationError
from evalkit.loaders.srpairs import SRPairs
from evalkit.loaders.textset import language_of
from evalkit.sample import TextInstance

LEVELS = ("perception", "reasoning")


@dataclass(frozen=True)
class LevelledText(TextInstance):
    """A GT word with its ReasonText level (``perception`` | ``reasoning``), the field the
    ``ocr_by_level`` metric groups by (``group_field="level"``)."""

    level: str = ""


class ReasonText(SRPairs):
    """LR/HR pairs by file stem (``BenchItem.lr`` uint8 RGB 128×128×3, ``hr`` 512×512×3, checked
    LR × 4 == HR) with ``texts``: :class:`LevelledText` words in HR pixels."""

    has_texts = True

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        x = entry.extra
        self.hr_dir = self.root / x.get("hr_dir", "HR")
        self.lr_dir = self.root / x.get("lr_dir", "LR")
        self.ann_path = self.root / x.get("annotations", "annotations.json")
        self.annotation_scale = float(x.get("annotation_scale", 1))
        self._words: dict[str, list[LevelledText]] | None = None

    def _list(self) -> dict[str, tuple[Path, Path]]:
        pairs = super()._list()
        words = self._read_annotations()
        stems = {hr.stem: key for key, (hr, _) in pairs.items()}
        self._words = {}
        for name, ws in words.items():
            key = stems.get(Path(name).stem)
            if key is None:
                self.bad(AnnotationError(self.ann_path, None, f"image {name!r} is annotated but not in {self.hr_dir}"))
                continue
            self._words[key] = ws
        # an image with a bad word is left out whole (skip_bad), never scored on part of its words
        return {k: v for k, v in pairs.items() if v[0].stem not in self._bad_images}

    def _read_annotations(self) -> dict[str, list[LevelledText]]:
        self._bad_images: set[str] = set()
        if not self.ann_path.is_file():
            raise AnnotationError(self.ann_path, None, "ReasonText annotations file not found (set the "
                                  f"'annotations' extra of dataset {self.entry.name!r} to its path, relative to the root)")
        try:
            data = json.loads(self.ann_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise AnnotationError(self.ann_path, e.lineno, f"not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise AnnotationError(self.ann_path, None, 'expected one JSON object {"<image name>": [{"text", '
                                  '"polygon" | "bbox", "level"}, ...]}, got ' + type(data).__name__)
        out = {}
        for name, words in data.items():
            try:
                out[name] = [self._word(w, i) for i, w in enumerate(_as_list(words))]
            except _BadWord as e:
                self._bad_images.add(Path(name).stem)
                self.bad(AnnotationError(self.ann_path, None, f"image {name!r}: {e}"))
        return out

    def _word(self, w, i: int) -> LevelledText:
        if not isinstance(w, dict):
            raise _BadWord(f"word {i}: expected an object, got {w!r}")
        text = w.get("text", w.get("transcription"))
        if not isinstance(text, str):
            raise _BadWord(f"word {i}: no 'text' string")
        level = str(w.get("level", "")).strip().lower()
        if level not in LEVELS:
            raise _BadWord(f"word {i} ({text!r}): level {w.get('level')!r} is not one of {', '.join(LEVELS)}")
        poly = _polygon(w, i) * self.annotation_scale
        return LevelledText(poly.astype(np.float32), text, False, language_of(text), level)

    def item(self, key: str) -> BenchItem:
        it = super().item(key)
        it.texts = list(self._words.get(key, []))
        return it


def _as_list(words) -> list:
    if not isinstance(words, list):
        raise _BadWord(f"expected a list of words, got {type(words).__name__}")
    return words


def _polygon(w: dict, i: int) -> np.ndarray:
    """K×2 float64 polygon from ``polygon`` (K×2 or flat 2K) or ``bbox`` [x1, y1, x2, y2]."""
    if "polygon" in w:
        try:
            p = np.asarray(w["polygon"], dtype=np.float64)
        except (TypeError, ValueError):
            p = np.zeros((0,))
        if p.ndim == 1 and p.size % 2 == 0:
            p = p.reshape(-1, 2)
        if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 4 or not np.isfinite(p).all():
            raise _BadWord(f"word {i}: polygon must be at least 4 [x, y] points, got {w['polygon']!r}")
        return p
    if "bbox" in w:
        b = w["bbox"]
        if (not isinstance(b, list) or len(b) != 4 or not all(isinstance(v, (int, float)) for v in b)
                or not (b[2] > b[0] and b[3] > b[1])):
            raise _BadWord(f"word {i}: bbox must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1, got {b!r}")
        x1, y1, x2, y2 = map(float, b)
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    raise _BadWord(f"word {i}: needs a 'polygon' or a 'bbox'")


class _BadWord(Exception):
    """One bad word of an image; turned into an ``AnnotationError`` naming the file and image."""
