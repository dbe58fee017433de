"""Image sources for synth: where backgrounds and real text crops come from.

A source is an indexable collection: ``len(src)``, ``src.item_id(i)`` (stable, JSON-friendly),
``src.load(i)`` (encoded bytes or an RGB/grey array, decoded by ``synth.imageio``) and, for text
crop sources, ``src.label(i)``. Listing is deterministic (sorted), so a (seed, key) pair draws the
same item on every worker.
"""
from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path

import numpy as np

from models.datasets import DatasetEntry, DatasetError, load_catalog
from models.files import IMAGE_EXTS, Location, is_url


# scikit-image's bundled colour photos (no network needed) plus matplotlib's sample photo.
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "colorwheel", "stereo_motorcycle", "grace_hopper")


class SkimagePhotos:
    """The embedded default backgrounds: real colour photos shipped inside scikit-image/matplotlib."""

    name = "skimage-photos"

    def __init__(self, names: tuple[str, ...] = SKIMAGE_PHOTOS):
        self.names = tuple(names)

    def __len__(self) -> int:
        return len(self.names)

    def item_id(self, i: int) -> str:
        return f"skimage:{self.names[i]}"

    def describe(self, item_id: str) -> str | None:
        """The image's own description (scikit-image's docstring line), for metadata captions."""
        if not item_id.startswith("skimage:"):
            return None
        name = item_id.split(":", 1)[1]
        if name == "grace_hopper":
            return "Portrait photo of Grace Hopper in uniform."
        import skimage.data

        doc = (getattr(skimage.data, name, None).__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else None

    def load(self, i: int):
        name = self.names[i]
        if name == "grace_hopper":
            import matplotlib.cbook

            with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
                return f.read()
        import skimage.data

        img = getattr(skimage.data, name)()
        return img[0] if isinstance(img, tuple) else img  # stereo_motorcycle -> left view


class ImageFolder:
    """Every image file under ``root`` (recursive, in sorted ``os.walk`` order). ``root`` may be an
    fsspec URL (``s3://bucket/lsdir``): every worker then lists and reads the images itself, with no
    shared filesystem; the listing order is the same as for a local copy of the tree."""

    def __init__(self, root, name: str = ""):
        self.root = root if is_url(root) else Path(root)
        self.name = name or str(root)

    @cached_property
    def _loc(self) -> Location:
        return Location(self.root)

    @cached_property
    def files(self) -> list[str]:
        if not self._loc.isdir():
            raise DatasetError(f"image source {self.name!r}: {self.root} is not a directory")
        out = [f for f in self._loc.walk() if Path(f).suffix.lower() in IMAGE_EXTS]
        if not out:
            raise DatasetError(f"image source {self.name!r}: no images ({', '.join(sorted(IMAGE_EXTS))}) under {self.root}")
        return out

    def __getstate__(self):  # the fsspec filesystem is re-made in each process
        return {k: v for k, v in self.__dict__.items() if k != "_loc"}

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, i: int) -> str:
        return f"{self.name}:{self.files[i]}"

    def load(self, i: int) -> bytes:
        return self._loc.read_bytes(self.files[i])

    def describe(self, item_id: str) -> str | None:
        """Words of a descriptive file name ("red_fox-in-snow.jpg" -> "Red fox in snow."), for
        metadata captions; None for names without a word (DIV2K's "0801.png")."""
        prefix = f"{self.name}:"
        if not item_id.startswith(prefix):
            return None
        words = re.sub(r"[_\-.]+", " ", Path(item_id[len(prefix):]).stem).strip()
        if not re.search(r"[^\W\d_]{3,}", words):
            return None
        return words[0].upper() + words[1:] + "."


_LMDB_ENVS: dict = {}


class CtrLmdb:
    """A text-crop LMDB in CTR's layout: ``num-samples``, ``image-%09d`` (encoded image bytes),
    ``label-%09d`` (UTF-8), indices 1-based."""

    def __init__(self, root: Path, name: str = ""):
        self.root = Path(root)
        self.name = name or str(root)
        self._env = None
        self._n = None

    def _open(self):
        if self._env is None:
            import lmdb

            try:  # lmdb allows one handle per environment and process: share it
                key = str(self.root.resolve())
                if key not in _LMDB_ENVS:
                    _LMDB_ENVS[key] = lmdb.open(key, readonly=True, lock=False, readahead=False,
                                                meminit=False, max_readers=64)
                self._env = _LMDB_ENVS[key]
            except lmdb.Error as e:
                raise DatasetError(f"CTR LMDB {self.name!r} at {self.root}: cannot open ({e})") from None
            with self._env.begin() as txn:
                raw = txn.get(b"num-samples")
            if raw is None:
                raise DatasetError(f"CTR LMDB {self.name!r} at {self.root}: no 'num-samples' key "
                                   "(expected CTR layout: num-samples, image-%09d, label-%09d)")
            self._n = int(raw.decode())
        return self._env

    def __getstate__(self):  # lmdb handles don't cross processes; reopen lazily
        return {**self.__dict__, "_env": None}

    def __len__(self) -> int:
        self._open()
        return self._n

    def item_id(self, i: int) -> str:
        return f"{self.name}:{i + 1:09d}"

    def _get(self, key: str) -> bytes | None:
        with self._open().begin() as txn:
            return txn.get(key.encode())

    def load(self, i: int) -> bytes:
        return self._get(f"image-{i + 1:09d}") or b""

    def label(self, i: int) -> str:
        raw = self._get(f"label-{i + 1:09d}")
        return raw.decode("utf-8", errors="replace").strip() if raw else ""


class FolderLabels:
    """Text crops in a folder plus a labels file, one ``relative/path<TAB>transcription`` per line
    (a single space also separates when the line has no tab). Blank lines are ignored; a line with
    no separator has an empty label (skipped and counted when drawn)."""

    def __init__(self, root: Path, labels: str = "", name: str = ""):
        self.root = Path(root)
        self.labels_file = self.root / (labels or "labels.txt")
        self.name = name or str(root)

    @cached_property
    def items(self) -> list[tuple[str, str]]:
        if not self.labels_file.is_file():
            raise DatasetError(f"text-crop source {self.name!r}: labels file {self.labels_file} does not exist")
        out = []
        for line in self.labels_file.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            sep = "\t" if "\t" in line else " "
            path, _, label = line.partition(sep)
            out.append((path.strip(), label.strip()))
        return out

    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, i: int) -> str:
        return f"{self.name}:{self.items[i][0]}"

    def load(self, i: int) -> bytes:
        p = self.root / self.items[i][0]
        return p.read_bytes() if p.is_file() else b""

    def label(self, i: int) -> str:
        return self.items[i][1]


class TextSegWords:
    """Word crops with exact glyph masks from TextSeg (Xu et al., "Rethinking Text Segmentation:
    A Novel Dataset and A Text-Specific Refinement Approach", CVPR 2021;
    github.com/SHI-Labs/Rethinking-Text-Segmentation; research licence). Layout as released:
    ``image/<name>.jpg``, ``semantic_label/<name>_maskfg.png`` (text pixels non-zero) and
    ``annotation/<name>_anno.json`` mapping word ids to ``{"text": str, "bbox": [x1, y1, …, x4,
    y4], …}``. Each word is cut on the bounding rectangle of its quad (plus a margin), with the
    dataset's own mask as the glyph mask: no segmentation stage needed. Words whose text is
    ``#``-only (TextSeg's unreadable mark) or empty are dropped when listed.
    (Layout from the official release notes; the json keys beyond text/bbox are not read.)"""

    def __init__(self, root: Path, name: str = "", margin: int = 3):
        self.root = Path(root)
        self.name = name or str(root)
        self.margin = margin

    @cached_property
    def items(self) -> list[tuple[str, str, tuple[int, int, int, int]]]:
        import json

        ann_dir = self.root / "annotation"
        if not ann_dir.is_dir():
            raise DatasetError(f"TextSeg source {self.name!r}: no annotation/ folder under {self.root}")
        out = []
        for f in sorted(ann_dir.glob("*_anno.json")):
            stem = f.name[: -len("_anno.json")]
            try:
                words = json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise DatasetError(f"{f}: not valid JSON ({e})") from None
            for wid, w in sorted(words.items()):
                text = str(w.get("text", "")).strip()
                box = w.get("bbox")
                if not text or set(text) <= {"#"} or not box or len(box) < 8:
                    continue
                xs, ys = box[0::2], box[1::2]
                out.append((stem, text, (int(min(xs)), int(min(ys)), int(max(xs)) + 1, int(max(ys)) + 1)))
        if not out:
            raise DatasetError(f"TextSeg source {self.name!r}: no usable words in {ann_dir}")
        return out

    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, i: int) -> str:
        stem, _, box = self.items[i]
        return f"{self.name}:{stem}:{box[0]}_{box[1]}"

    def _cut(self, img: np.ndarray, i: int) -> np.ndarray:
        x0, y0, x1, y1 = self.items[i][2]
        m = self.margin
        h, w = img.shape[:2]
        return np.ascontiguousarray(img[max(0, y0 - m):min(h, y1 + m), max(0, x0 - m):min(w, x1 + m)])

    def load(self, i: int):
        import cv2

        p = self.root / "image" / f"{self.items[i][0]}.jpg"
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        return b"" if img is None else self._cut(img[:, :, ::-1], i)

    def mask(self, i: int) -> np.ndarray | None:
        import cv2

        p = self.root / "semantic_label" / f"{self.items[i][0]}_maskfg.png"
        m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        return None if m is None else np.where(self._cut(m, i) > 0, 255, 0).astype(np.uint8)

    def label(self, i: int) -> str:
        return self.items[i][1]


class ImageMaskCrops:
    """Text crops with ground-truth glyph masks from an image + text-mask dataset such as BTS
    (Xu et al., "BTS: A Bi-lingual Benchmark for Text Segmentation in the Wild", CVPR 2022):
    ``image/<name>.jpg`` + ``semantic_label/<name>.png`` (text pixels non-zero). Item ``i`` is
    image ``i``'s largest text region: mask pixels joined into lines by a horizontal closing,
    cut on their bounding box with a margin. The dataset's own mask is the glyph mask; the
    transcription is what the OCR engine reads on the crop, which the OCR filter then checks
    against the masked glyphs (as for the embedded page words). We did not verify whether BTS's
    release also carries word transcriptions; if it does, reading them would replace the OCR
    pseudo-label."""

    def __init__(self, root: Path, ocr=None, name: str = "", margin: int = 4):
        self.root = Path(root)
        self.ocr = ocr
        self.name = name or str(root)
        self.margin = margin
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, str] | None] = {}

    @cached_property
    def names(self) -> list[tuple[Path, Path]]:
        img_dir, lab_dir = self.root / "image", self.root / "semantic_label"
        if not img_dir.is_dir() or not lab_dir.is_dir():
            raise DatasetError(f"image+mask source {self.name!r}: expected image/ and semantic_label/ under {self.root}")
        out = []
        for p in sorted(img_dir.iterdir()):
            m = lab_dir / f"{p.stem}.png"
            if p.suffix.lower() in IMAGE_EXTS and m.is_file():
                out.append((p, m))
        if not out:
            raise DatasetError(f"image+mask source {self.name!r}: no image with a semantic_label/<name>.png mask")
        return out

    def __len__(self) -> int:
        return len(self.names)

    def item_id(self, i: int) -> str:
        return f"{self.name}:{self.names[i][0].stem}"

    def _region(self, i: int):
        if i in self._cache:
            return self._cache[i]
        import cv2

        img_p, mask_p = self.names[i]
        img, mask = cv2.imread(str(img_p), cv2.IMREAD_COLOR), cv2.imread(str(mask_p), cv2.IMREAD_GRAYSCALE)
        found = None
        if img is not None and mask is not None and mask.shape == img.shape[:2] and (mask > 0).any():
            on = (mask > 0).astype(np.uint8)
            rows = np.flatnonzero(on.any(1))
            k = max(3, (rows[-1] - rows[0] + 1) // 8)
            lines = cv2.morphologyEx(on, cv2.MORPH_CLOSE, np.ones((3, 2 * k + 1), np.uint8))
            n, _, stats, _ = cv2.connectedComponentsWithStats(lines)
            if n > 1:
                j = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
                x, y, w, h = stats[j, :4]
                m, H, W = self.margin, *on.shape
                sl = (slice(max(0, y - m), min(H, y + h + m)), slice(max(0, x - m), min(W, x + w + m)))
                crop = np.ascontiguousarray(img[sl][:, :, ::-1])
                text = ""
                if self.ocr is not None:
                    text = self.ocr.recognize([crop])[0][0].strip()
                found = (crop, np.where(mask[sl] > 0, 255, 0).astype(np.uint8), text)
        self._cache[i] = found
        return found

    def load(self, i: int):
        r = self._region(i)
        return b"" if r is None else r[0]

    def mask(self, i: int):
        r = self._region(i)
        return None if r is None else r[1]

    def label(self, i: int) -> str:
        r = self._region(i)
        return "" if r is None else r[2]


def split_words(line: np.ndarray, label: str, margin: int = 3) -> list[tuple[np.ndarray, str]]:
    """Cut a dark-on-light text line into word crops at its widest column gaps.

    With n words the n−1 widest ink-free column runs are the word spaces, provided they are
    clearly wider than every other gap (letter spacing); otherwise — or when the label and the
    ink disagree — the whole line is returned, so a label never lands on the wrong pixels."""
    import cv2

    words = label.split()
    if len(words) < 2:
        return [(line, label)]
    grey = cv2.cvtColor(line, cv2.COLOR_RGB2GRAY)
    _, ink = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    h = ink.shape[0]
    band = ink[h // 4: h - h // 4]  # the line's core rows: neighbouring lines intrude top and bottom
    on = np.flatnonzero(band.sum(0) > 0)
    if on.size == 0:
        return [(line, label)]
    steps = np.diff(on)
    gaps = np.flatnonzero(steps > 1)                    # indices into `on` where a gap starts
    if gaps.size < len(words) - 1:
        return [(line, label)]
    order = gaps[np.argsort(steps[gaps], kind="stable")[::-1]]
    cut, rest = np.sort(order[:len(words) - 1]), order[len(words) - 1:]
    widest_rest = steps[rest].max() if rest.size else 1
    if steps[cut].min() < max(widest_rest + 2, 1.5 * widest_rest):
        return [(line, label)]
    starts = np.concatenate([[on[0]], on[cut + 1]])
    ends = np.concatenate([on[cut], [on[-1]]]) + 1
    w = line.shape[1]
    return [(np.ascontiguousarray(line[:, max(0, a - margin):min(w, b + margin)]), word)
            for a, b, word in zip(starts, ends, words)]


class SkimagePageLines:
    """Embedded real text crops: the words of scikit-image's scanned ``page``, cut from the lines
    the OCR engine detects and labelled with what it reads (whole lines where the word cut is
    ambiguous). Real printed glyphs on real paper
    texture; the labels are OCR pseudo-labels, which the OCR filter then checks against the
    segmented glyphs (lines read with low confidence are dropped here)."""

    name = "skimage-page-lines"

    def __init__(self, ocr, min_score: float = 0.9, margin: int = 3):
        self.ocr = ocr
        self.min_score = min_score
        self.margin = margin

    @cached_property
    def items(self) -> list[tuple[np.ndarray, str]]:
        import skimage.data

        page = np.repeat(skimage.data.page()[:, :, None], 3, axis=2)
        out = []
        for line in self.ocr.readtext(page):
            if line.score < self.min_score or not line.text.strip():
                continue
            x0, y0 = np.floor(line.polygon.min(0)).astype(int) - self.margin
            x1, y1 = np.ceil(line.polygon.max(0)).astype(int) + self.margin
            x0, y0 = max(x0, 0), max(y0, 0)
            crop = page[y0:y1, x0:x1]
            if crop.size:
                out.extend(split_words(np.ascontiguousarray(crop), line.text.strip(), self.margin))
        if not out:
            raise DatasetError("skimage-page-lines: OCR found no text lines in skimage.data.page()")
        return out

    def __len__(self) -> int:
        return len(self.items)

    def item_id(self, i: int) -> str:
        return f"skimage-page:line{i:02d}"

    def load(self, i: int) -> np.ndarray:
        return self.items[i][0]

    def label(self, i: int) -> str:
        return self.items[i][1]


def open_source(spec, *, catalog: dict[str, DatasetEntry] | None = None, ocr=None, want_labels: bool):
    """A recipe ``SourceSpec`` -> a source object. Raises DatasetError for unknown names,
    missing roots and formats that don't fit the role."""
    if spec.name == "skimage-photos":
        return SkimagePhotos()
    if spec.name == "skimage-page-lines":
        if ocr is None:
            raise DatasetError("skimage-page-lines needs an OCR engine")
        return SkimagePageLines(ocr)
    if spec.path and is_url(spec.path):
        return _url_folder(spec.name or spec.path, spec.path, spec.format or "image-folder", want_labels)
    if spec.path:
        entry = DatasetEntry(name=spec.name or spec.path, format=spec.format or "image-folder",
                             root=str(Path(spec.path).expanduser().resolve()), labels=spec.labels)
    else:
        catalog = catalog if catalog is not None else load_catalog()
        if spec.name not in catalog:
            import difflib

            close = difflib.get_close_matches(spec.name, list(catalog) + ["skimage-photos", "skimage-page-lines"], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DatasetError(f"unknown source {spec.name!r}{hint} (datasets.yaml names, "
                               "skimage-photos, skimage-page-lines, or give path: and format:)")
        entry = catalog[spec.name]
        if is_url(entry.root):
            return _url_folder(entry.name, entry.root, entry.format, want_labels)
    root = entry.require_root()
    if not want_labels and entry.format in ("textseg", "image-mask"):
        raise DatasetError(f"source {entry.name!r} is a text-crop source (textseg), not backgrounds")
    if want_labels and entry.format == "image-folder":
        raise DatasetError(f"source {entry.name!r} is an image-folder; text crops need ctr-lmdb or folder-labels")
    if entry.format == "image-folder":
        return ImageFolder(root, entry.name)
    if entry.format == "ctr-lmdb":
        return CtrLmdb(root, entry.name)
    if entry.format == "folder-labels":
        return FolderLabels(root, entry.labels or spec.labels, entry.name)
    if entry.format == "textseg":
        return TextSegWords(root, entry.name)
    if entry.format == "image-mask":
        return ImageMaskCrops(root, ocr=ocr, name=entry.name)
    raise DatasetError(f"source {entry.name!r}: unknown format {entry.format!r}")


def _url_folder(name: str, url: str, fmt: str, want_labels: bool) -> ImageFolder:
    if want_labels or fmt != "image-folder":
        raise DatasetError(f"source {name!r}: only image-folder background sources may be fsspec URLs ({url} is "
                           f"{fmt} as {'text crops' if want_labels else 'backgrounds'}); put other datasets at the "
                           "same path on every node")
    return ImageFolder(url, name)
