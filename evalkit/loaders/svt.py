"""SVT — the Street View Text dataset: HR street images + word rectangles.

Dataset: Wang, Babenko & Belongie, "End-to-end scene text recognition", ICCV 2011;
http://vision.ucsd.edu/~kai/svt/ (distributed as ``svt.zip`` -> ``svt1/``). Licence: research use;
images are Google Street View captures (no redistribution terms stated — treat as research-only).
350 images (100 train / 250 test), English, words in upper case.

Layout implemented (root = the folder with the xml files; a ``svt1/`` child is used if the root
itself has none)::

    train.xml / test.xml           (split)
    img/<name>.jpg

    <tagset><image>
      <imageName>img/14_03.jpg</imageName>
      <Resolution x="1280" y="880"/>    (``resolution`` is accepted too)
      <lex>WORD,WORD,...</lex>
      <taggedRectangles>
        <taggedRectangle height="75" width="236" x="375" y="253"><tag>LIVING</tag></taggedRectangle>

Verified (mmocr ``dataset_zoo/svt/sample_anno.md`` and ``SVTTextDetAnnParser``): this structure, the
``Resolution`` capitalisation, and that the rectangle is (x, y, width, height) in image pixels;
polygon = its 4 corners clockwise from top-left. Texts are kept as annotated (upper case; mmocr
lower-cases them). No rectangle is don't-care. Key = the image file stem. The lexicon is kept in
``meta["lexicon"]``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.textset import TextSetLoader, key_of, language_of, parse_xml

SPLIT_FILES = {"train": "train.xml", "test": "test.xml"}
SUBDIR = "svt1"


def _child(el, name: str):
    name = name.lower()
    return next((c for c in el if c.tag.lower() == name), None)


class SVTLoader(TextSetLoader):
    """SVT: ``BenchItem(hr, texts)``. extra: ``split`` (test|train, default test), ``xml`` (an
    annotation file to use instead, relative to root)."""

    def _xml_path(self) -> Path:
        name = self.entry.extra.get("xml") or SPLIT_FILES.get(self.split)
        if name is None:
            raise ValueError(f"dataset {self.entry.name!r}: SVT splits are {sorted(SPLIT_FILES)}, got {self.split!r}")
        p = self.root / name
        if not p.is_file() and (self.root / SUBDIR / name).is_file():
            p = self.root / SUBDIR / name
        if not p.is_file():
            raise AnnotationError(p, None, "SVT annotation file does not exist")
        return p

    def _build_index(self) -> dict:
        path = self._xml_path()
        base = path.parent
        root, lines = parse_xml(path)
        out = {}
        for image in root.iter():
            if image.tag.lower() != "image":
                continue
            try:
                out_item = self._parse_image(path, base, image, lines)
            except AnnotationError as e:
                self.bad(e)
                continue
            key, rec = out_item
            if key in out:
                self.bad(AnnotationError(path, lines.get(id(image)), f"duplicate image {rec[0].name}"))
                continue
            out[key] = rec
        return out

    def _parse_image(self, path, base, image, lines):
        from evalkit.sample import TextInstance

        line = lines.get(id(image))
        name_el = _child(image, "imageName")
        if name_el is None or not (name_el.text or "").strip():
            raise AnnotationError(path, line, "<image> without <imageName>")
        img = base / name_el.text.strip()
        if not img.is_file():
            raise AnnotationError(path, lines.get(id(name_el)), f"image {img} is missing")
        res = _child(image, "Resolution")
        lex = _child(image, "lex")
        texts = []
        rects = _child(image, "taggedRectangles")
        for r in (list(rects) if rects is not None else []):
            rl = lines.get(id(r))
            try:
                x, y, w, h = (float(r.attrib[k]) for k in ("x", "y", "width", "height"))
            except KeyError as e:
                raise AnnotationError(path, rl, f"taggedRectangle without attribute {e.args[0]!r} "
                                                "(expected x, y, width, height)") from None
            except ValueError:
                raise AnnotationError(path, rl, "non-numeric taggedRectangle attribute "
                                                f"{ {k: r.attrib.get(k) for k in ('x', 'y', 'width', 'height')} }") from None
            tag = _child(r, "tag")
            text = (tag.text or "").strip() if tag is not None else ""
            poly = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float32)
            texts.append(TextInstance(poly, text, text == "", language_of(text)))
        meta = {"lexicon": [w for w in (lex.text or "").strip().split(",") if w] if lex is not None else []}
        if res is not None:
            meta["resolution"] = (res.attrib.get("x"), res.attrib.get("y"))
        return key_of(img.stem), (img, texts, meta)

    def item(self, key: str):
        from evalkit.benches import BenchItem

        img, texts, meta = self.record(key)
        return BenchItem(key=key, hr=self.read_image(img), texts=list(texts), hr_path=img, meta=dict(meta))
