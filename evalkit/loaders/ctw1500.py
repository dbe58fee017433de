"""SCUT-CTW1500 — curved text lines, 14-point polygons.

Dataset: Liu et al., "Curved scene text detection via transverse and longitudinal sequence
connection", Pattern Recognition 2019; https://github.com/Yuliang-Liu/Curve-Text-Detector. Licence:
academic research only. 1000 train / 500 test images, text-line level.

Layout implemented (root = the folder holding the split folders; names in the module constants,
overridable with ``images_dir`` / ``labels_dir`` in ``entry.extra``)::

    train_images/NNNN.jpg     ctw1500_train_labels/NNNN.xml    (split train)
    test_images/NNNN.jpg      ctw1500_test_labels/000NNNN.txt  (split test)

The annotation format is chosen per image by which file exists (``000<stem>.txt``, ``<stem>.txt`` or
``<stem>.xml``), so either split may use either format:

* txt (the 2020 test labels with transcriptions): one line per text line,
  ``x1,y1,...,x14,y14,####text`` — 28 absolute integer coordinates, then ``####`` and the text (which
  may contain commas). ``###`` as the text = don't care.
* txt, original 2017 ``text_label_curve`` form (no transcriptions): 32 integers per line,
  ``xmin,ymin,xmax,ymax`` then 28 offsets from (xmin, ymin); text = ``""``, not don't-care.
* xml (the 2020 train labels)::

    <Annotations><image file="0001.jpg">
      <box height="..." left="..." top="..." width="..."><label>text</label>
           <segs>x1,y1,...,x14,y14</segs><pts x=".." y=".."/>...</box>

Verified (mmocr ``CTW1500AnnParser`` + ``dataset_zoo/ctw1500``): the zip/folder names, the
``000NNNN.txt`` naming, the 28-int + ``####text`` test line, ``<label>``/``<segs>`` with 28 ints, and
mmocr uses ``segs`` as absolute coordinates. Assumed: that ``segs`` are absolute (the brief said they
may be offsets from the box's left/top) — we take them as absolute when they lie inside the box
(±the box size), and as offsets when only ``segs + (left, top)`` does; which one is recorded in
``meta["segs"]``. Assumed from memory: the 32-value 2017 form. Language: ``zh`` when the text has a
Han character, else ``en``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import (
    TextSetLoader,
    key_of,
    language_of,
    list_images,
    parse_coords,
    parse_xml,
    read_lines,
)

DIRS = {"train": ("train_images", "ctw1500_train_labels"), "test": ("test_images", "ctw1500_test_labels")}
DONT_CARE = "###"


def _inside(pts: np.ndarray, l: float, t: float, w: float, h: float) -> bool:
    # generous slack: annotated points may sit on or a little outside the box
    return bool(np.all((pts[:, 0] >= l - w) & (pts[:, 0] <= l + 2 * w) & (pts[:, 1] >= t - h) & (pts[:, 1] <= t + 2 * h)))


class CTW1500Loader(TextSetLoader):
    """SCUT-CTW1500: ``BenchItem(hr, texts)``. extra: ``split`` (test|train, default test),
    ``images_dir``, ``labels_dir``."""

    def _build_index(self) -> dict:
        ex = self.entry.extra
        if self.split not in DIRS and not (ex.get("images_dir") and ex.get("labels_dir")):
            raise ValueError(f"dataset {self.entry.name!r}: CTW1500 splits are {sorted(DIRS)}, got {self.split!r} "
                             "(or set images_dir and labels_dir)")
        im_d, lb_d = DIRS.get(self.split, (None, None))
        img_dir = self._require_dir(self.root / ex.get("images_dir", im_d), "CTW1500 image")
        lab_dir = self._require_dir(self.root / ex.get("labels_dir", lb_d), "CTW1500 label")
        out = {}
        for img in list_images(img_dir):
            cands = [lab_dir / f"000{img.stem}.txt", lab_dir / f"{img.stem}.txt", lab_dir / f"{img.stem}.xml"]
            lab = next((c for c in cands if c.is_file()), None)
            if lab is None:
                self.bad(AnnotationError(cands[0], None, f"no label file for {img.name} "
                                                         f"(looked for {', '.join(c.name for c in cands)})"))
                continue
            out[key_of(img.stem)] = (img, lab)
        return out

    def _txt(self, path: Path) -> list:
        from evalkit.sample import TextInstance

        out = []
        for i, line in enumerate(read_lines(path, "utf-8-sig"), 1):
            if not line.strip():
                continue
            parts = line.split(",")
            if len(parts) == 32 and "#" not in line:       # 2017 form: bbox + 28 offsets
                vals = parse_coords(path, i, parts, 32)
                poly = vals[2:] + vals[0]
                out.append(TextInstance(poly, "", False, "en"))
                continue
            if len(parts) < 29 or not parts[28].startswith("####"):
                raise AnnotationError(path, i, f"expected 28 coordinates then ####text "
                                               f"(x1,y1,...,x14,y14,####text), got {len(parts)} field(s)"
                                               + ("" if len(parts) < 29 else f" and {parts[28][:10]!r} after the 28th"))
            poly = parse_coords(path, i, parts[:28], 28)
            text = ",".join(parts[28:])[4:]
            out.append(TextInstance(poly, text, text == DONT_CARE, language_of(text)))
        return out

    def _xml(self, path: Path) -> tuple[list, str]:
        from evalkit.sample import TextInstance

        root, lines = parse_xml(path)
        out, modes = [], set()
        for box in root.iter():
            if box.tag != "box":
                continue
            ln = lines.get(id(box))
            label = next((c for c in box if c.tag == "label"), None)
            segs = next((c for c in box if c.tag == "segs"), None)
            if segs is None or not (segs.text or "").strip():
                raise AnnotationError(path, ln, "<box> without <segs>")
            pts = parse_coords(path, lines.get(id(segs)), segs.text.strip().split(","), 28)
            try:
                l, t, w, h = (float(box.attrib[k]) for k in ("left", "top", "width", "height"))
            except (KeyError, ValueError):
                raise AnnotationError(path, ln, f"<box> needs numeric left/top/width/height, got {dict(box.attrib)}") from None
            if not _inside(pts, l, t, w, h) and _inside(pts + np.float32([l, t]), l, t, w, h):
                pts, mode = pts + np.float32([l, t]), "offsets"
            else:
                mode = "absolute"
            modes.add(mode)
            text = (label.text or "").strip() if label is not None else ""
            out.append(TextInstance(pts, text, text == DONT_CARE, language_of(text)))
        return out, "+".join(sorted(modes))

    def item(self, key: str):
        from evalkit.benches import BenchItem

        img, lab = self.record(key)
        meta = {"label_path": str(lab)}
        if lab.suffix == ".xml":
            texts, meta["segs"] = self._xml(lab)
        else:
            texts = self._txt(lab)
        return BenchItem(key=key, hr=self.read_image(img), texts=texts, hr_path=img, meta=meta)
