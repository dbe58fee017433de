"""ICDAR 2015 Incidental Scene Text (Robust Reading Challenge 4) — HR images + word quadrilaterals.

Dataset: Karatzas et al., "ICDAR 2015 competition on Robust Reading", ICDAR 2015;
https://rrc.cvc.uab.es/?ch=4 (registration required; research use under the RRC terms, no
redistribution). 1000 train / 500 test 1280×720 images, English.

Layout implemented (root = the folder holding the split folders)::

    <images_dir>/img_N.jpg
    <gts_dir>/gt_img_N.txt       one line per word: x1,y1,x2,y2,x3,y3,x4,y4,transcription

``images_dir`` / ``gts_dir`` come from ``entry.extra``; the defaults are the DBNet-style
``test_images``/``test_gts`` (``train_images``/``train_gts`` for split ``train``), and when those do not
exist the folder names of the official RRC zips (``ch4_test_images``/``Challenge4_Test_Task4_GT``,
``ch4_training_images``/``ch4_training_localization_transcription_gt``). A gt file is looked up as
``gt_<stem>.txt`` (official), then ``<name>.txt`` (DBNet's ``img_1.jpg.txt``), then ``<stem>.txt``.

Verified (mmocr ``dataset_zoo/icdar2015`` + ``ICDARTxtTextDetAnnParser``): the line format, ``###`` =
don't care, the files are read as ``utf-8-sig`` (the official gts start with a BOM), the zip names.
The transcription is everything after the 8th comma (it may contain commas). Assumed: the DBNet
folder names and its ``<name>.txt`` gt naming (from memory of MhLiao/DB, not re-checked here).

The helpers the text-detection loaders share are in ``evalkit.loaders.textset``.
"""
from __future__ import annotations

from pathlib import Path

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import (
    DONT_CARE,
    TextSetLoader,
    key_of,
    language_of,
    list_images,
    parse_quad_line,
    read_lines,
)

# (images, gts) per split: DBNet-style names first, then the official RRC zip names
IC15_DIRS = {
    "test": [("test_images", "test_gts"), ("ch4_test_images", "Challenge4_Test_Task4_GT")],
    "train": [("train_images", "train_gts"),
              ("ch4_training_images", "ch4_training_localization_transcription_gt")],
}


class ICDAR2015Loader(TextSetLoader):
    """ICDAR 2015 incidental text: ``BenchItem(hr, texts)``, quadrilaterals in image pixels."""

    def _dirs(self) -> tuple[Path, Path]:
        ex = self.entry.extra
        if ex.get("images_dir") or ex.get("gts_dir"):
            if not (ex.get("images_dir") and ex.get("gts_dir")):
                raise AnnotationError(self.root, None, "set both images_dir and gts_dir in the datasets.yaml entry")
            return self.root / ex["images_dir"], self.root / ex["gts_dir"]
        if self.split not in IC15_DIRS:
            raise AnnotationError(self.root, None, f"unknown split {self.split!r} (expected one of {sorted(IC15_DIRS)}) "
                                                   "or set images_dir/gts_dir")
        for im, gt in IC15_DIRS[self.split]:
            if (self.root / im).is_dir():
                return self.root / im, self.root / gt
        im, gt = IC15_DIRS[self.split][0]
        return self.root / im, self.root / gt

    def _build_index(self) -> dict:
        img_dir, gt_dir = self._dirs()
        self._require_dir(img_dir, "ICDAR2015 image")
        self._require_dir(gt_dir, "ICDAR2015 ground-truth")
        out = {}
        for img in list_images(img_dir):
            cands = [gt_dir / f"gt_{img.stem}.txt", gt_dir / f"{img.name}.txt", gt_dir / f"{img.stem}.txt"]
            gt = next((c for c in cands if c.is_file()), None)
            if gt is None:
                self.bad(AnnotationError(cands[0], None, f"ground truth for {img.name} is missing"))
                continue
            out[key_of(img.stem)] = (img, gt)
        return out

    def item(self, key: str):
        from evalkit.benches import BenchItem
        from evalkit.sample import TextInstance

        img, gt = self.record(key)
        texts = []
        for i, line in enumerate(read_lines(gt, "utf-8-sig"), 1):
            if not line.strip():
                continue
            poly, text = parse_quad_line(gt, i, line)
            texts.append(TextInstance(poly, text, text == DONT_CARE, language_of(text)))
        return BenchItem(key=key, hr=self.read_image(img), texts=texts, hr_path=img,
                         meta={"gt_path": str(gt)})
