"""The TAIR benchmarks: Real-Text and SA-Text-test.

Min et al., "Text-Aware Image Restoration with Diffusion Models", ICLR 2026 (arXiv 2506.09993);
code https://github.com/cvlab-kaist/TAIR (Apache-2.0); data on Hugging Face:
``Min-Jaewon/SA-Text-test``, ``Min-Jaewon/Real-Text`` (and Google Drive for Real-Text). The
annotations come from the authors' pipeline https://github.com/paulcho98/text_restoration_dataset.

``RealText`` (format ``tair-realtext``)
    Real LR/HR pairs cut from RealSR and DRealSR, 128² LR -> 512² HR (×4), text instances annotated.
    Layout implemented — the TAIR README's Google Drive folder::

        <root>/HQ/<id>.<ext>      high-quality images (HR)
        <root>/LQ/<id>.<ext>      real low-quality inputs (LR)
        <root>/real_benchmark_dataset.json

    The JSON is the authors' "nested" format (``transform_dataset.py --mode transform``):
    ``{<id>: {"0": {"text_instances": [{"text": str, "bbox": [x1, y1, x2, y2],
    "polygon": [[x, y] × 16]}, ...]}, ["blur_category": str]}}`` — what TAIR's own loader reads
    (``terediff/dataset/utils.py``: ``json[img_id]['0']['text_instances']``, ``ann['text']``,
    ``ann['bbox']`` x1y1x2y2, ``ann['polygon']`` 16 points; ``img_id = file name before the first
    dot``). A root holding ``data/*.parquet`` instead (the Hugging Face copy) is read like SA-Text-test
    below with the LR column ``lq_column`` (extra, default ``lq_img``).

``SATextTest`` (format ``tair-satext``)
    1,000 SA-1B crops (512² HR) with three degraded LR versions (levels 1–3, "overlapping severity
    ranges"). Layout implemented — the Hugging Face dataset ``Min-Jaewon/SA-Text-test`` as its card
    declares it: ``<root>/data/test-*.parquet``, one row per image, columns ``id`` (string),
    ``hq_img``, ``lq_img_lv1``, ``lq_img_lv2``, ``lq_img_lv3`` (datasets ``Image``: a struct of
    encoded ``bytes`` and ``path``), ``text`` (list of strings), ``bbox`` (list of 2×2 int32
    ``[[x1, y1], [x2, y2]]``), ``poly`` (list of 16×2 int32). Extra ``level`` (1, 2 or 3; default 1)
    picks the LR column.

Text instances: ``TextInstance(polygon = the 16-point polygon (HR px, float32), text, dont_care =
text == "###")``; an instance without a polygon (TAIR's code reads it with ``.get``) gets its bbox
rectangle. Keys are the ids (dots replaced, as for every loader).

Verified (cvlab-kaist/TAIR @ 5f0365f4 README + ``terediff/dataset/utils.py``; paulcho98/
text_restoration_dataset @ fb5e16b ``dataset_curation/transform_dataset.py``, ``src/formatting.py``; the
SA-Text-test dataset card's ``dataset_info``): the folder and file names above, the JSON nesting and
field names, bbox = x1y1x2y2, 16-point polygons, the parquet column names and shapes, 1,000 test rows.
TAIR's demo pairs (``assets/demo_imgs``) are 128² LQ / 512² HQ.

Not verified (no copy of the data or of the Real-Text card's fields was reachable from here): that
``real_benchmark_dataset.json`` uses the same nesting as SA-Text's ``restoration_dataset.json``; the
Real-Text parquet column names; that SA-Text-test's LR images are 128² (×4) rather than 512²
(restoration at the same size, as TAIR's training degradation resizes back). Every pair is checked
(LR × scale == HR, else an ``AnnotationError`` naming both sizes: set ``scale: 1`` for same-size
pairs). The image count of Real-Text is not asserted.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from evalkit.benches import BenchError, BenchItem, images_by_stem
from evalkit.loaders.base import AnnotationError, ImageReadError, Loader, read_image
from evalkit.loaders.srpairs import check_pair
from evalkit.loaders.textset import key_of, language_of
from evalkit.sample import TextInstance

DONT_CARE = "###"
LEVELS = (1, 2, 3)
REALTEXT_JSON = "real_benchmark_dataset.json"
PARQUET_GLOB = "data/*.parquet"


# ---------------------------------------------------------------- shared helpers

def _instance(where: Path | str, text: object, polygon: object, bbox: object) -> TextInstance:
    """One TAIR text instance -> ``TextInstance`` (16-point polygon, else the bbox rectangle)."""
    if not isinstance(text, str):
        raise AnnotationError(where, None, f"text must be a string, got {type(text).__name__}")
    poly = None
    if polygon is not None and len(polygon):
        poly = np.asarray(polygon, dtype=np.float32)
        if poly.ndim == 1 and poly.size % 2 == 0:  # flattened [x1, y1, x2, y2, ...]
            poly = poly.reshape(-1, 2)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 4 or not np.isfinite(poly).all():
            raise AnnotationError(where, None, f"polygon of {text!r} must be K>=4 (x, y) points, "
                                               f"got shape {np.shape(polygon)}")
    elif bbox is not None:
        b = np.asarray(bbox, dtype=np.float32).reshape(-1)
        if b.size != 4 or not np.isfinite(b).all():
            raise AnnotationError(where, None, f"bbox of {text!r} must be x1, y1, x2, y2, got {bbox!r}")
        x1, y1, x2, y2 = b
        poly = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    else:
        raise AnnotationError(where, None, f"text instance {text!r} has neither polygon nor bbox")
    return TextInstance(poly, text, text == DONT_CARE, language_of(text))


def _decode(blob: object, where: str) -> np.ndarray:
    """A datasets ``Image`` cell (``{"bytes", "path"}``) -> RGB uint8 HxWx3."""
    data = blob.get("bytes") if isinstance(blob, dict) else blob
    if not data:
        raise ImageReadError(where, None, "image cell holds no bytes")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ImageReadError(where, None, "image bytes cannot be decoded")
    return np.ascontiguousarray(img[:, :, ::-1])


class _ParquetRows:
    """Rows of a Hugging Face parquet export, read lazily: the annotation columns at listing, the
    two image columns of one row group per item (the last row group kept)."""

    def __init__(self, root: Path, hr_col: str, lr_col: str, what: str):
        import pyarrow.parquet as pq

        self.files = sorted(root.glob(PARQUET_GLOB))
        if not self.files:
            raise AnnotationError(root, None, f"{what}: no {PARQUET_GLOB} files (the Hugging Face layout)")
        self.hr_col, self.lr_col = hr_col, lr_col
        self.where: dict[str, tuple[int, int, int]] = {}   # key -> (file, row group, row in group)
        self.texts: dict[str, list[TextInstance]] = {}
        self._cache: tuple[tuple[int, int], dict] | None = None
        for fi, path in enumerate(self.files):
            pf = pq.ParquetFile(path)
            cols = set(pf.schema_arrow.names)
            need = {"id", "text", hr_col, lr_col}
            if not need <= cols:
                raise AnnotationError(path, None, f"{what}: columns {sorted(need - cols)} missing (found "
                                                  f"{sorted(cols)}); expected the dataset card's layout")
            ann_cols = [c for c in ("id", "text", "bbox", "poly") if c in cols]
            for gi in range(pf.num_row_groups):
                t = pf.read_row_group(gi, columns=ann_cols).to_pylist()
                for ri, row in enumerate(t):
                    key = key_of(str(row["id"]))
                    where = f"{path} (id {row['id']})"
                    if key in self.where:
                        raise AnnotationError(path, None, f"{what}: id {row['id']!r} appears twice")
                    texts, bboxes, polys = row["text"] or [], row.get("bbox") or [], row.get("poly") or []
                    if (bboxes and len(bboxes) != len(texts)) or (polys and len(polys) != len(texts)):
                        raise AnnotationError(where, None, f"{len(texts)} texts but {len(bboxes)} bboxes and "
                                                           f"{len(polys)} polygons")
                    self.texts[key] = [_instance(where, t_, polys[i] if polys else None,
                                                 bboxes[i] if bboxes else None) for i, t_ in enumerate(texts)]
                    self.where[key] = (fi, gi, ri)

    def images(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        import pyarrow.parquet as pq

        fi, gi, ri = self.where[key]
        if self._cache is None or self._cache[0] != (fi, gi):
            cols = pq.ParquetFile(self.files[fi]).read_row_group(gi, columns=[self.hr_col, self.lr_col])
            self._cache = ((fi, gi), cols.to_pydict())
        rows = self._cache[1]
        where = f"{self.files[fi]} (key {key})"
        return _decode(rows[self.hr_col][ri], where + f" {self.hr_col}"), \
            _decode(rows[self.lr_col][ri], where + f" {self.lr_col}")


# ---------------------------------------------------------------- loaders

class _TairLoader(Loader):
    has_lr = True
    has_texts = True
    default_scale = 4

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        self.scale = int(self.scale)
        self._keys: list[str] | None = None

    def _pair_item(self, key: str, hr: np.ndarray, lr: np.ndarray, lr_where: Path | str,
                   texts: list[TextInstance], meta: dict) -> BenchItem:
        meta = {"scale": self.scale, **meta}
        meta.update(check_pair(hr, lr, self.scale, Path(str(lr_where))))
        return BenchItem(key=key, hr=hr, lr=lr, texts=list(texts), meta=meta)


class RealText(_TairLoader):
    """Real-Text: ``BenchItem(hr, lr, texts)``. Extras: ``scale`` (default 4), ``hr_dir`` /
    ``lr_dir`` / ``annotations`` (default ``HQ``, ``LQ``, ``real_benchmark_dataset.json``),
    ``lq_column`` (parquet copy only, default ``lq_img``)."""

    def __init__(self, entry, **kw):
        super().__init__(entry, **kw)
        x = entry.extra
        self.hr_dir = self.root / x.get("hr_dir", "HQ")
        self.lr_dir = self.root / x.get("lr_dir", "LQ")
        self.ann_path = self.root / x.get("annotations", REALTEXT_JSON)
        self.lq_column = str(x.get("lq_column", "lq_img"))
        self._pairs: dict[str, tuple[Path, Path]] = {}
        self._texts: dict[str, list[TextInstance]] = {}
        self._parquet: _ParquetRows | None = None

    def keys(self) -> list[str]:
        if self._keys is None:
            if not self.ann_path.is_file() and any(self.root.glob(PARQUET_GLOB)):
                self._parquet = _ParquetRows(self.root, "hq_img", self.lq_column, "Real-Text")
                self._keys = sorted(self._parquet.where)
            else:
                self._keys = self._list_folders()
        return list(self._keys)

    def _list_folders(self) -> list[str]:
        if not self.ann_path.is_file():
            raise AnnotationError(self.ann_path, None, f"Real-Text annotations not found (expected "
                                                      f"{REALTEXT_JSON} beside HQ/ and LQ/, or data/*.parquet)")
        try:
            ann = json.loads(self.ann_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AnnotationError(self.ann_path, None, f"not valid UTF-8 JSON ({e})") from None
        if not isinstance(ann, dict):
            raise AnnotationError(self.ann_path, None, "expected a JSON object {image id: {\"0\": "
                                                      "{\"text_instances\": [...]}}}")
        try:
            hr = images_by_stem(self.hr_dir, "Real-Text HQ")
            lr = images_by_stem(self.lr_dir, "Real-Text LQ")
        except BenchError as e:
            raise AnnotationError(self.root, None, str(e)) from None
        # TAIR's loader keys images by the name before the first dot
        hr = {s.split(".")[0]: p for s, p in hr.items()}
        lr = {s.split(".")[0]: p for s, p in lr.items()}
        for img_id in sorted(ann):
            try:
                texts = self._parse(img_id, ann[img_id])
            except AnnotationError as e:
                self.bad(e)
                continue
            if img_id not in hr or img_id not in lr:
                missing = " and ".join(d for d, m in (("HQ", hr), ("LQ", lr)) if img_id not in m)
                self.bad(AnnotationError(self.ann_path, None, f"image {img_id!r} is annotated but has no "
                                                              f"file in {missing}"))
                continue
            key = key_of(img_id)
            self._pairs[key] = (hr[img_id], lr[img_id])
            self._texts[key] = texts
        return sorted(self._pairs)

    def _parse(self, img_id: str, entry: object) -> list[TextInstance]:
        where = f"{self.ann_path} (image {img_id})"
        if not isinstance(entry, dict):
            raise AnnotationError(where, None, f"expected an object, got {type(entry).__name__}")
        crops = [v for k, v in entry.items() if k != "blur_category"]
        out = []
        for crop in crops:
            inst = crop.get("text_instances") if isinstance(crop, dict) else None
            if not isinstance(inst, list):
                raise AnnotationError(where, None, "expected {\"0\": {\"text_instances\": [...]}}")
            for t in inst:
                if not isinstance(t, dict) or "text" not in t:
                    raise AnnotationError(where, None, f"text instance without 'text': {t!r:.80}")
                out.append(_instance(where, t["text"], t.get("polygon"), t.get("bbox")))
        return out

    def item(self, key: str) -> BenchItem:
        if self._keys is None:
            self.keys()
        if self._parquet is not None:
            hr, lr = self._parquet.images(key)
            return self._pair_item(key, hr, lr, f"{key} {self.lq_column}", self._parquet.texts[key], {})
        hr_path, lr_path = self._pairs[key]
        it = self._pair_item(key, read_image(hr_path), read_image(lr_path), lr_path, self._texts[key],
                             {"lr_path": str(lr_path)})
        it.hr_path = hr_path
        return it


class SATextTest(_TairLoader):
    """SA-Text-test (Hugging Face parquet): ``BenchItem(hr, lr of the chosen level, texts)``.
    Extras: ``level`` (1, 2 or 3; default 1), ``scale`` (default 4)."""

    def __init__(self, entry, *, level: int | None = None, **kw):
        super().__init__(entry, **kw)
        lv = level if level is not None else entry.extra.get("level", 1)
        try:
            lv = int(lv)
        except (TypeError, ValueError):
            lv = None
        if lv not in LEVELS:
            raise ValueError(f"dataset {entry.name!r}: SA-Text-test level must be 1, 2 or 3, got "
                             f"{entry.extra.get('level', level)!r}")
        self.level = lv
        self.split = f"test-lv{lv}"
        self._rows: _ParquetRows | None = None

    def keys(self) -> list[str]:
        if self._keys is None:
            self._rows = _ParquetRows(self.root, "hq_img", f"lq_img_lv{self.level}", "SA-Text-test")
            self._keys = sorted(self._rows.where)
        return list(self._keys)

    def item(self, key: str) -> BenchItem:
        if self._rows is None:
            self.keys()
        hr, lr = self._rows.images(key)
        return self._pair_item(key, hr, lr, f"{key} lq_img_lv{self.level}", self._rows.texts[key],
                               {"level": self.level})
