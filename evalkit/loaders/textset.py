"""Shared parts of the scene-text benchmark loaders (realce, svt, ctw1500, icdar2015, totaltext,
cute80): ``TextSetLoader``, line/coordinate/XML parsing that reports file and line, language and
key helpers."""
from __future__ import annotations

import glob
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from pathlib import Path

import numpy as np

from evalkit.loaders.base import AnnotationError, Loader
from models.files import is_image_file

DONT_CARE = "###"

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")


# ---------------------------------------------------------------- shared helpers

def language_of(text: str) -> str:
    """``"zh"`` when the text has any CJK (Han) character, else ``"en"``."""
    return "zh" if _HAN.search(text) else "en"


def key_of(stem: str) -> str:
    """A webdataset-safe key: dots would split the extension (webdataset #237)."""
    return stem.replace(".", "_")


def read_lines(path: Path, encoding: str) -> list[str]:
    """The file's lines (no line ends). An undecodable byte is an ``AnnotationError`` naming its line."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read annotation file ({e.strerror})") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise AnnotationError(path, line, f"not valid {encoding} (byte {data[e.start:e.start + 1]!r} at offset "
                                          f"{e.start}); the file must be {encoding}-encoded") from None
    return text.lstrip("\ufeff").splitlines()


def parse_coords(path: Path, line_no: int, fields: list[str], expected: int | None = None) -> np.ndarray:
    """Numeric fields -> K×2 float32 polygon."""
    if expected is not None and len(fields) != expected:
        raise AnnotationError(path, line_no, f"expected {expected} coordinates, got {len(fields)}")
    try:
        vals = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        raise AnnotationError(path, line_no, f"non-numeric coordinate {bad.strip()!r}") from None
    if len(vals) % 2 or len(vals) < 8:
        raise AnnotationError(path, line_no, f"a polygon needs an even number (>= 8) of coordinates, got {len(vals)}")
    return np.asarray(vals, np.float32).reshape(-1, 2)


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def parse_quad_line(path: Path, line_no: int, line: str) -> tuple[np.ndarray, str]:
    """``x1,y1,x2,y2,x3,y3,x4,y4,text`` -> (4×2 float32, text). Splits on the first 8 commas only, so
    the text may itself contain commas."""
    parts = line.split(",", 8)
    if len(parts) < 9:
        raise AnnotationError(path, line_no, f"expected 8 comma-separated coordinates and a transcription "
                                             f"(x1,y1,...,x4,y4,text), got {len(parts)} field(s)")
    return parse_coords(path, line_no, parts[:8], 8), parts[8]


def parse_xml(path: Path) -> tuple[ET.Element, dict[int, int]]:
    """Parse an XML file, remembering each element's 1-based source line (``lines[id(elem)]``) so that
    errors can name it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AnnotationError(path, None, f"cannot read annotation file ({e.strerror})") from None
    builder, lines = ET.TreeBuilder(), {}
    p = xml.parsers.expat.ParserCreate()

    def start(tag, attrs):
        lines[id(builder.start(tag, attrs))] = p.CurrentLineNumber

    p.StartElementHandler = start
    p.EndElementHandler = builder.end
    p.CharacterDataHandler = builder.data
    try:
        p.Parse(data, True)
    except xml.parsers.expat.ExpatError as e:
        raise AnnotationError(path, e.lineno, f"not well-formed XML ({xml.parsers.expat.errors.messages[e.code]})") from None
    return builder.close(), lines


def find_image(folder: Path, stem: str) -> Path | None:
    """The image file ``<stem>.<image suffix>`` in ``folder`` (any case of the suffix), or None."""
    hits = sorted(p for p in folder.glob(f"{glob.escape(stem)}.*") if p.stem == stem and is_image_file(p) and p.is_file())
    return hits[0] if hits else None


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())


class TextSetLoader(Loader):
    """A loader of HR images with text annotations. Subclasses fill ``self._index`` (key -> record)
    in ``_build_index()`` — listings only — and implement ``item``. ``items()`` skips (with
    ``skip_bad``) an image whose annotation is malformed or whose file is missing, and counts it."""

    has_texts = True
    default_split: str = "test"

    def __init__(self, entry, *, split=None, scale=None, skip_bad=False):
        super().__init__(entry, split=split, scale=scale, skip_bad=skip_bad)
        self.split = self.split or self.default_split
        self._index: dict | None = None

    def _build_index(self) -> dict:
        raise NotImplementedError

    def _require_dir(self, p: Path, what: str) -> Path:
        if not p.is_dir():
            raise AnnotationError(p, None, f"{what} folder does not exist (dataset {self.entry.name!r}, "
                                           f"split {self.split!r}); check root/split or set it in datasets.yaml extra")
        return p

    def keys(self) -> list[str]:
        if self._index is None:
            self._index = self._build_index()
        return list(self._index)

    def record(self, key: str):
        self.keys()
        if key not in self._index:
            raise KeyError(f"{self.entry.name}: no item {key!r}")
        return self._index[key]


# ---------------------------------------------------------------- ICDAR 2015

