"""Real-CE — real Chinese-English scene-text SR pairs taken at 13/26/52 mm focal lengths.

Dataset: Ma et al., "Real-CE: A Benchmark for Chinese-English Scene Text Image Super-resolution",
ICCV 2023; https://github.com/mjq11302010044/Real-CE. Licence: non-commercial academic research
only, no redistribution (images on request from the authors).

Layout implemented (root = the folder holding ``train``/``val``)::

    <split>/{13mm,26mm,52mm}/<name>            the same name in each focal-length folder
    <split>/valid_list.txt                      the names to use, one a line
    val/annos/<name stem>.txt                   GBK, x1,y1,...,x4,y4,text per line
    train/trans_annos_52mm_renov/res_<name stem>.txt   UTF-8, same line format

HR is the 52 mm image; LR is the 13 mm image at ×4 and the 26 mm image at ×2. Polygons are in HR
(52 mm) pixels.

Verified against the official loader (``basicsr/data/paired_image_dataset.py: get_RealCE`` and
``PairedImageDatasetRealCEwREC``): the folder/file names, ``valid_list.txt`` (read for val and train),
GBK for ``val/annos``, UTF-8 for the train annotations, ×4 = 13mm→52mm and ×2 = 26mm→52mm, the
train annotations are produced on the 52 mm images (``get_transcripts.py``), and the official
loader always bicubic-resizes the LR image to ``(W_hr // scale, H_hr // scale)`` and crops HR to
``LR × scale`` (the three focal lengths are stored registered at one size). We do the same when the
LR file is not already HR/scale in size (``meta["lr_resized"]``); the crop is from the top-left,
so polygons stay valid.

Differences from the official code, on purpose: the transcription is everything after the 8th
comma (the official loader takes the last comma field, which truncates texts containing commas);
coordinates are parsed as floats (the train annotations are written from numpy arrays). Also
official at ×2: an extra 13mm→26mm pair per image with the 52 mm polygons — not reproduced (the
polygons do not fit the 26 mm HR). ``###`` or an empty text is don't-care; language is ``zh`` when
the text has a Han character, else ``en``.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import (
    TextSetLoader,
    key_of,
    language_of,
    parse_quad_line,
    read_lines,
)

HR_DIR = "52mm"
LR_DIRS = {4: "13mm", 2: "26mm"}
VALID_LIST = "valid_list.txt"
# split -> (annotation folder, file-name prefix, encoding)
ANNOS = {"val": ("annos", "", "gbk"), "train": ("trans_annos_52mm_renov", "res_", "utf-8")}


class RealCELoader(TextSetLoader):
    """Real-CE pairs: ``BenchItem(hr=52mm, lr=13mm (×4) / 26mm (×2) at HR/scale, texts)``.

    extra: ``split`` (val|train, default val), ``scale`` (4|2, default 4), ``aligned_list`` (a file of
    names to restrict to, relative to root or absolute), ``anno_dir`` / ``anno_encoding`` (override
    the split's annotation folder / encoding)."""

    has_lr = True
    default_scale = 4
    default_split = "val"

    def __init__(self, entry, *, split=None, scale=None, skip_bad=False):
        super().__init__(entry, split=split, scale=scale, skip_bad=skip_bad)
        self.scale = int(self.scale)
        if self.scale not in LR_DIRS:
            raise ValueError(f"dataset {entry.name!r}: Real-CE has scales {sorted(LR_DIRS)} "
                             f"(13mm→52mm = 4, 26mm→52mm = 2), got {self.scale}")
        if self.split not in ANNOS:
            raise ValueError(f"dataset {entry.name!r}: Real-CE splits are {sorted(ANNOS)}, got {self.split!r}")
        d, self.anno_prefix, enc = ANNOS[self.split]
        self.anno_dir = self.root / self.split / entry.extra.get("anno_dir", d)
        self.anno_encoding = entry.extra.get("anno_encoding", enc)

    def _names(self, path: Path) -> list[str]:
        if not path.is_file():
            raise AnnotationError(path, None, "name list does not exist")
        return [ln.strip() for ln in read_lines(path, "utf-8-sig") if ln.strip()]

    def _build_index(self) -> dict:
        base = self._require_dir(self.root / self.split, "Real-CE split")
        names = self._names(base / VALID_LIST)
        aligned = self.entry.extra.get("aligned_list")
        if aligned:
            p = Path(aligned).expanduser()
            keep = {Path(n).name for n in self._names(p if p.is_absolute() else self.root / p)}
            names = [n for n in names if n in keep]
        out = {}
        for n in names:
            hr, lr = base / HR_DIR / n, base / LR_DIRS[self.scale] / n
            missing = [p for p in (hr, lr) if not p.is_file()]
            if missing:
                self.bad(AnnotationError(missing[0], None, f"image listed in {VALID_LIST} is missing"))
                continue
            stem = Path(n).stem
            out[key_of(stem)] = (hr, lr, self.anno_dir / f"{self.anno_prefix}{stem}.txt")
        return out

    def texts(self, anno: Path) -> list:
        from evalkit.sample import TextInstance

        if not anno.is_file():
            raise AnnotationError(anno, None, "annotation file is missing")
        out = []
        for i, line in enumerate(read_lines(anno, self.anno_encoding), 1):
            if not line.strip():
                continue
            poly, text = parse_quad_line(anno, i, line)
            out.append(TextInstance(poly, text, text.strip() in ("", "###"), language_of(text)))
        return out

    def item(self, key: str):
        from evalkit.benches import BenchItem

        hr_path, lr_path, anno = self.record(key)
        texts = self.texts(anno)
        hr, lr = self.read_image(hr_path), self.read_image(lr_path)
        s = self.scale
        h, w = hr.shape[0] // s, hr.shape[1] // s
        resized = lr.shape[:2] != (h, w)
        if resized:  # as the official loader: the focal lengths are stored registered at one size
            lr = cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC)
        hr = np.ascontiguousarray(hr[: h * s, : w * s])
        return BenchItem(key=key, hr=hr, lr=lr, texts=texts, hr_path=hr_path,
                         meta={"lr_path": str(lr_path), "lr_focal": LR_DIRS[s], "lr_resized": resized,
                               "anno_path": str(anno)})
