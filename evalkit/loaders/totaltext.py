"""Total-Text — curved / multi-oriented word polygons.

Dataset: Ch'ng & Chan, "Total-Text: A Comprehensive Dataset for Scene Text Detection and
Recognition", ICDAR 2017; https://github.com/cs-chan/Total-Text-Dataset. Licence: BSD-3-Clause
(the repository's), images for research. 1255 train / 300 test images, English.

Layout implemented (root = the folder holding ``Images`` and the groundtruth folder)::

    Images/{Train,Test}/imgN.jpg
    txt_format/{Train,Test}/poly_gt_imgN.txt      (``Groundtruth/Text/{Train,Test}`` also tried)

Legacy txt groundtruth, one word per entry (an entry may wrap over several lines; a new entry
starts with ``x:``)::

    x: [[259 313 389 427 354 302]], y: [[542 462 417 459 507 582]], ornt: [u'c'], transcriptions: [u'PAUL']

``#`` as the transcription (or as ``ornt``) = don't care.

Verified (mmocr ``TotaltextTextDetAnnParser`` + ``dataset_zoo/totaltext``): the entry format and its
line wrapping, ``#`` = don't care, ``img(\\d+).jpg`` <-> ``poly_gt_img\\1.txt``, the ``txt_format``
folders. Assumed: the ``Groundtruth/Text`` fallback; a transcription list with several items is
joined with commas (as mmocr does). The newer (2020) annotation version in .mat / other formats
is not supported. Polygons need at least 4 points (``TextInstance``); fewer is an error.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import (
    TextSetLoader,
    key_of,
    language_of,
    list_images,
    read_lines,
)

SPLIT_DIRS = {"train": "Train", "test": "Test"}
IMAGES_DIR = "Images"
GT_DIRS = ("txt_format", "Groundtruth/Text")
DONT_CARE = "#"
_ENTRY = re.compile(r"^x:\s*\[\[(?P<x>.*?)\]\]\s*,\s*y:\s*\[\[(?P<y>.*?)\]\]\s*,\s*ornt:\s*\[(?P<o>.*?)\]\s*,"
                    r"\s*transcriptions:\s*\[(?P<t>.*)\]\s*$", re.DOTALL)


def parse_entry(path: Path, line_no: int, entry: str) -> tuple[np.ndarray, str, str]:
    """One legacy entry -> (K×2 float32 polygon, transcription, orientation)."""
    m = _ENTRY.match(entry.strip())
    if not m:
        raise AnnotationError(path, line_no, "expected \"x: [[...]], y: [[...]], ornt: [u'..'], "
                                             f"transcriptions: [u'...']\", got {entry.strip()[:60]!r}")
    try:
        xs = [float(v) for v in m["x"].replace(",", " ").split()]
        ys = [float(v) for v in m["y"].replace(",", " ").split()]
    except ValueError:
        raise AnnotationError(path, line_no, f"non-numeric coordinate in x: [[{m['x']}]] / y: [[{m['y']}]]") from None
    if len(xs) != len(ys) or len(xs) < 4:
        raise AnnotationError(path, line_no, f"x and y need the same number (>= 4) of points, got {len(xs)} and {len(ys)}")
    try:
        words = ast.literal_eval("[" + m["t"] + "]")
        ornt = ast.literal_eval("[" + m["o"] + "]")
    except (ValueError, SyntaxError):
        raise AnnotationError(path, line_no, f"cannot read transcriptions [{m['t']}] / ornt [{m['o']}] "
                                             "as quoted strings") from None
    text = ",".join(str(w) for w in words) if words else DONT_CARE
    return np.stack([xs, ys], 1).astype(np.float32), text, str(ornt[0]) if ornt else ""


class TotalTextLoader(TextSetLoader):
    """Total-Text: ``BenchItem(hr, texts)``. extra: ``split`` (test|train, default test),
    ``images_dir`` / ``gts_dir`` (folders relative to root that replace ``Images/<Split>`` and
    ``txt_format/<Split>``)."""

    def _dirs(self) -> tuple[Path, Path]:
        ex = self.entry.extra
        sp = SPLIT_DIRS.get(self.split)
        if sp is None and not (ex.get("images_dir") and ex.get("gts_dir")):
            raise ValueError(f"dataset {self.entry.name!r}: Total-Text splits are {sorted(SPLIT_DIRS)}, "
                             f"got {self.split!r} (or set images_dir and gts_dir)")
        img_dir = self.root / ex["images_dir"] if ex.get("images_dir") else self.root / IMAGES_DIR / sp
        if ex.get("gts_dir"):
            return img_dir, self.root / ex["gts_dir"]
        gts = [self.root / g / sp for g in GT_DIRS]
        return img_dir, next((g for g in gts if g.is_dir()), gts[0])

    def _build_index(self) -> dict:
        img_dir, gt_dir = self._dirs()
        self._require_dir(img_dir, "Total-Text image")
        self._require_dir(gt_dir, "Total-Text groundtruth")
        out = {}
        for img in list_images(img_dir):
            gt = gt_dir / f"poly_gt_{img.stem}.txt"
            if not gt.is_file():
                self.bad(AnnotationError(gt, None, f"ground truth for {img.name} is missing"))
                continue
            out[key_of(img.stem)] = (img, gt)
        return out

    def texts(self, gt: Path) -> list:
        from evalkit.sample import TextInstance

        entries: list[tuple[int, str]] = []
        for i, line in enumerate(read_lines(gt, "utf-8-sig"), 1):
            if not line.strip():
                continue
            if line.lstrip().startswith("x:") or not entries:
                entries.append((i, line.strip()))
            else:  # a wrapped entry
                n, prev = entries[-1]
                entries[-1] = (n, prev + " " + line.strip())
        out = []
        for n, e in entries:
            poly, text, ornt = parse_entry(gt, n, e)
            out.append(TextInstance(poly, text, text == DONT_CARE or ornt == DONT_CARE, language_of(text)))
        return out

    def item(self, key: str):
        from evalkit.benches import BenchItem

        img, gt = self.record(key)
        texts = self.texts(gt)
        return BenchItem(key=key, hr=self.read_image(img), texts=texts, hr_path=img, meta={"gt_path": str(gt)})
