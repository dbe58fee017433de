"""CUTE80 — 80 images of curved text (recognition version: cropped word images).

Dataset: Risnumawan, Shivakumara, Chan & Tan, "A robust arbitrary text detection system for natural
scene images", Expert Systems with Applications 2014. Licence: research use (no explicit licence
found). The set used by recognition / text-SR work is the 288 cropped words of the 80 images.

Layout implemented (root = the folder holding ``timage/``)::

    timage/001.jpg ...
    test_label.txt          ``timage/001.jpg RONALDO 1 RONALDO`` — image path, text, then ignored fields

Verified (mmocr ``dataset_zoo/cute80``: the ``ct80/timage`` tarball and ``test_label.txt`` parsed as
``img text ignore1 ignore2`` split on spaces). Each word crop is one ``BenchItem`` whose single text
instance covers the whole crop (polygon = the image corners, clockwise from top-left), language
``en``. The label file is ``entry.extra["labels"]`` (relative to root) or the first of
``LABEL_FILES`` that exists; a bare file name in it is looked up in ``images_dir`` (default
``timage``). Key = the image stem.

Not supported (not findable to verify here): the original full-image CUTE80 release with per-image
polygon ground truth, and the LMDB copy from clovaai/deep-text-recognition-benchmark (typos fixed).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import TextSetLoader, key_of, language_of, read_lines

IMAGES_DIR = "timage"
LABEL_FILES = ("test_label.txt", "gt.txt", "annotations/test.txt")


class CUTE80Loader(TextSetLoader):
    """CUTE80 word crops: ``BenchItem(hr=crop, texts=[whole-crop instance])``. extra: ``labels``,
    ``images_dir``."""

    def _labels(self) -> Path:
        given = self.entry.extra.get("labels")
        cands = [self.root / given] if given else [self.root / f for f in LABEL_FILES]
        p = next((c for c in cands if c.is_file()), None)
        if p is None:
            raise AnnotationError(cands[0], None, f"CUTE80 label file does not exist (looked for "
                                                  f"{', '.join(str(c) for c in cands)}; set extra.labels)")
        return p

    def _build_index(self) -> dict:
        path = self._labels()
        img_dir = self.root / self.entry.extra.get("images_dir", IMAGES_DIR)
        out = {}
        for i, line in enumerate(read_lines(path, "utf-8-sig"), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < 2:
                self.bad(AnnotationError(path, i, "expected '<image path> <text> ...', got one field"))
                continue
            rel = parts[0].rstrip(",")
            img = self.root / rel
            if not img.is_file() and (img_dir / Path(rel).name).is_file():
                img = img_dir / Path(rel).name
            if not img.is_file():
                self.bad(AnnotationError(path, i, f"image {rel} is missing (looked in {self.root} and {img_dir})"))
                continue
            key = key_of(img.stem)
            if key in out:
                self.bad(AnnotationError(path, i, f"image {rel} is listed twice"))
                continue
            out[key] = (img, parts[1].strip('"'))
        return out

    def item(self, key: str):
        from evalkit.benches import BenchItem
        from evalkit.sample import TextInstance

        img, text = self.record(key)
        hr = self.read_image(img)
        h, w = hr.shape[:2]
        poly = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        return BenchItem(key=key, hr=hr, texts=[TextInstance(poly, text, False, language_of(text))], hr_path=img)
