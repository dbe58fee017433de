"""Text crops harvested from any photo collection: detect with OCR, cut, segment, keep what OCR confirms.

TADiSR grows its real-text crop corpus from high-resolution photos: text lines are detected and read
by OCR, segmented into glyph masks, and a crop is kept only when OCR agrees with itself on the crop
and on its masked glyphs. Per image (:meth:`Harvester.harvest`):

1. ``ocr.readtext`` finds the lines (4-point quads, reading, score). Lines past
   ``max_lines_per_image``, with an empty reading, a score below ``min_score`` or a quad lower than
   ``min_height`` px are recorded with that verdict and not cut.
2. A line tilted less than ``upright_deg`` is cut on its axis-aligned box plus ``margin``; a tilted
   one is rectified: its quad, grown by ``margin`` along its own axes, is perspective-warped to an
   axis-aligned rectangle of the quad's mean width x mean height (+ 2 margins). A line at least
   1.5x taller than wide is turned 90 degrees counter-clockwise, as PP-OCR turns it before reading
   (text running bottom to top becomes horizontal; anything else fails the OCR checks below).
3. ``split_words`` (the embedded page crops' word cutter, when ``split_words``) cuts the line into
   word crops where the column gaps are unambiguous, else keeps it whole.
4. Each piece goes through the build's own crop checks: ``OCRFilterStage.check_label`` (length,
   px/char), ``SegmentStage`` (the recipe's segmenter, mask fraction) and ``OCRFilterStage.process``
   (OCR of the crop and of its glyphs alone vs the label). The label is the line's OCR reading (a
   pseudo-label, as for the embedded page lines).

Every line (every word piece, when split) gets a verdict: ``kept`` or ``stage/reason``.

Cache (:meth:`Harvester.cached`): one ``.npz`` per image under ``$TEXTSR_CACHE/harvest/``, keyed by the
image's bytes (sha256), :meth:`Harvester.identity` (OCR engine identity, segmenter identity, harvest
settings, the crop checks' thresholds) and :data:`HARVEST_VERSION`; crops and masks are stored
losslessly, so a cached image gives exactly the arrays a fresh run gives.

The build's copy (:func:`write_harvest`, read by :class:`synth.sources.harvested.HarvestedCrops`):
``<dir>/crops.jsonl`` (a header line, then one row per kept crop in image order), ``<dir>/images.jsonl``
(one row per image with every line's verdict), ``<dir>/crops/<n>.png`` and ``<dir>/masks/<n>.png``.
"""
from __future__ import annotations

import json
import re
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from models.cache import cache_dir, cache_key
from models.files import atomic_path, sha256_bytes
from synth.imageio import decode_image, encode_png
from synth.recipe import Recipe, SourceSpec
from synth.types import Rejected

STAGE = "harvest"
# Bumped whenever the same image, engine, segmenter and settings start giving other crops, verdicts
# or labels: cache entries of an older computation are then never read.
HARVEST_VERSION = 1
FORMAT = "textsr-harvest/1"
CROPS_INDEX, IMAGES_INDEX = "crops.jsonl", "images.jsonl"
VERTICAL_RATIO = 1.5  # PP-OCR's own rule for lines it reads rotated by 90 degrees


@dataclass
class HarvestedCrop:
    """One kept crop. ``rgb``: ``HxWx3 uint8``; ``mask``: ``HxW uint8`` in {0, 255} (glyph pixels);
    ``polygon``: the source line's quad, 4 x [x, y] image pixels clockwise from top-left; ``line``:
    its index in the OCR's reading order; ``word``: index of the word piece, -1 for a whole line;
    ``checks``: the OCR filter's readings and similarities."""

    rgb: np.ndarray
    mask: np.ndarray
    label: str
    polygon: list
    line: int
    word: int
    rectified: bool
    checks: dict

    def suffix(self) -> str:
        """The crop's part of its item id: ``l<line>`` or ``l<line>w<word>`` (no dots)."""
        return f"l{self.line}" + (f"w{self.word}" if self.word >= 0 else "")


@dataclass
class ImageHarvest:
    """What one image gave. ``error``: why it could not be decoded (then no lines, no crops);
    ``lines``: one verdict row per line or word piece (``line``, ``word``, ``text``, ``score``,
    ``polygon``, ``verdict`` = ``kept`` or ``stage/reason``, ``detail``)."""

    sha256: str
    width: int | None
    height: int | None
    error: str | None
    lines: list[dict] = field(default_factory=list)
    crops: list[HarvestedCrop] = field(default_factory=list)

    def counts(self) -> Counter:
        """``kept`` and ``stage/reason`` -> n over its verdicts; ``harvest/unreadable`` for an image
        that did not decode."""
        if self.error is not None:
            return Counter({f"{STAGE}/unreadable": 1})
        return Counter(r["verdict"] for r in self.lines)


def spec_key(spec: SourceSpec) -> str:
    """The name a harvest source goes by in a build (its ``name``, else its ``path``)."""
    return spec.name or spec.path


def slug(name: str) -> str:
    """``name`` as a folder name: runs of anything but letters, digits, ``_`` and ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "source"


def content_sha256(data) -> str:
    """sha256 of an image source's item: its encoded bytes, or an array's shape, dtype and bytes."""
    if isinstance(data, np.ndarray):
        head = f"{data.shape}|{data.dtype}|".encode()
        return sha256_bytes(head + np.ascontiguousarray(data).tobytes())
    return sha256_bytes(bytes(data))


# -- cutting a line -------------------------------------------------------------------------------
def line_tilt_deg(quad: np.ndarray) -> float:
    """Angle of a quad's top and bottom edges (mean), degrees, positive = clockwise on screen."""
    d = (quad[1] - quad[0]) + (quad[2] - quad[3])
    return float(np.degrees(np.arctan2(d[1], d[0])))


def quad_size(quad: np.ndarray) -> tuple[float, float]:
    """(width, height) of a quad: the mean of its top/bottom and of its left/right edge lengths."""
    w = (np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[3])) / 2
    h = (np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    return float(w), float(h)


def cut_line(img: np.ndarray, quad: np.ndarray, margin: int, upright_deg: float) -> tuple[np.ndarray, bool]:
    """The line under ``quad`` (``(4, 2)`` x, y clockwise from top-left) of RGB ``img``, as
    ``(crop HxWx3 uint8, rectified)``. Upright lines: the axis-aligned box plus ``margin``, clipped
    to the image. Tilted ones: the quad grown by ``margin`` along its own axes, warped (bicubic,
    edge pixels replicated) to ``round(width) + 2 margin`` x ``round(height) + 2 margin``."""
    quad = np.asarray(quad, np.float32)
    if abs(line_tilt_deg(quad)) < upright_deg:
        x0, y0 = np.floor(quad.min(0)).astype(int) - margin
        x1, y1 = np.ceil(quad.max(0)).astype(int) + margin
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        x0, y0 = max(x0, 0), max(y0, 0)
        return np.ascontiguousarray(img[y0:max(y0, y1), x0:max(x0, x1)]), False
    w, h = quad_size(quad)
    u = (quad[1] - quad[0]) + (quad[2] - quad[3])
    v = (quad[3] - quad[0]) + (quad[2] - quad[1])
    u, v = u / np.linalg.norm(u) * margin, v / np.linalg.norm(v) * margin
    src = np.stack([quad[0] - u - v, quad[1] + u - v, quad[2] + u + v, quad[3] - u + v]).astype(np.float32)
    W, H = round(w) + 2 * margin, round(h) + 2 * margin
    dst = np.array([[0, 0], [W, 0], [W, H], [0, H]], np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(img, m, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return out, True


# -- the per-image job ----------------------------------------------------------------------------
class Harvester:
    """Harvests text crops from one image at a time with ``recipe``'s OCR engine, segmenter,
    crop checks (``text.crops``) and harvest settings (``text.crops.harvest``). ``ocr``: an engine
    to share (else one is made with ``num_threads``)."""

    def __init__(self, recipe: Recipe, ocr=None, num_threads: int | None = None):
        from models.ocr import create_ocr
        from synth.factory import make_segmenter
        from synth.stages.ocr_filter import OCRFilterStage
        from synth.stages.segment import SegmentStage

        self.recipe = recipe
        self.cfg = recipe.text.crops.harvest
        self.ocr = ocr if ocr is not None else create_ocr(recipe.ocr_engine, num_threads=num_threads)
        self.segmenter = make_segmenter(recipe.segmenter, self.ocr)
        self.segment = SegmentStage(self.segmenter, min_mask_fraction=recipe.text.crops.min_mask_fraction)
        self.ocr_filter = OCRFilterStage(recipe.text.crops, self.ocr)
        self._identity = None
        self.hits = self.misses = 0

    def identity(self) -> dict:
        """Everything a harvested image's result depends on besides its bytes (the cache key)."""
        if self._identity is None:
            c = self.recipe.text.crops
            self._identity = json.loads(json.dumps({
                "version": HARVEST_VERSION, "ocr": self.ocr.identity(),
                "segmenter": self.segmenter.identity(), "settings": asdict(self.cfg),
                "checks": {"min_chars": c.min_chars, "max_chars": c.max_chars,
                           "min_edge_per_char": c.min_edge_per_char, "ocr_min_similarity": c.ocr_min_similarity,
                           "min_mask_fraction": c.min_mask_fraction,
                           "max_mask_fraction": self.segment.max_fraction}}))
        return self._identity

    def harvest(self, data, item: str = "") -> ImageHarvest:
        """Encoded image bytes (or an RGB/grey array) -> its :class:`ImageHarvest`. An image the
        decoder rejects gives ``error`` set, never an exception."""
        sha = content_sha256(data)
        try:
            img = decode_image(data, stage=STAGE, what=item or sha[:12], allow_gray=True)
        except Rejected as r:
            return ImageHarvest(sha, None, None, f"{r.reason}: {r.detail}")
        res = ImageHarvest(sha, int(img.shape[1]), int(img.shape[0]), None)
        cfg = self.cfg
        for j, line in enumerate(self.ocr.readtext(img)):
            quad = np.asarray(line.polygon, np.float32)
            text = line.text.strip()
            row = {"line": j, "word": -1, "text": text, "score": round(float(line.score), 4),
                   "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in quad]}
            w, h = quad_size(quad)
            why = None
            if j >= cfg.max_lines_per_image:
                why = ("over-limit", f"line {j} >= max_lines_per_image {cfg.max_lines_per_image}")
            elif not text:
                why = ("empty-text", "")
            elif line.score < cfg.min_score:
                why = ("low-score", f"{line.score:.3f} < {cfg.min_score}")
            elif min(w, h) < cfg.min_height:  # the text height, whichever way the line runs
                why = ("too-low", f"{min(w, h):.1f} px < {cfg.min_height}")
            if why:
                res.lines.append({**row, "verdict": f"{STAGE}/{why[0]}", "detail": why[1]})
                continue
            crop, rectified = cut_line(img, quad, cfg.margin, cfg.upright_deg)
            if h >= VERTICAL_RATIO * w:  # a line read top to bottom: turned as PP-OCR's recogniser turns it
                crop, rectified = np.ascontiguousarray(np.rot90(crop)), True
            if crop.size == 0:
                res.lines.append({**row, "verdict": f"{STAGE}/empty-crop", "detail": ""})
                continue
            pieces = [(crop, text)]
            if cfg.split_words:
                from synth.sources.images import split_words

                pieces = split_words(crop, text, cfg.margin)
            for k, (piece, label) in enumerate(pieces):
                word = k if len(pieces) > 1 else -1
                where = f"line {j}" + (f" word {k}" if word >= 0 else "")
                prow = {**row, "word": word, "text": label}
                try:
                    self.ocr_filter.check_label(piece, label, where)
                    mask = self.segment.process(piece, where)
                    checks = self.ocr_filter.process(piece, mask, label, where)
                except Rejected as r:
                    res.lines.append({**prow, "verdict": f"{r.stage}/{r.reason}", "detail": r.detail})
                    continue
                res.lines.append({**prow, "verdict": "kept", "detail": ""})
                res.crops.append(HarvestedCrop(np.ascontiguousarray(piece), mask, label, row["polygon"], j, word,
                                               rectified, checks))
        return res

    # -- the project cache ---------------------------------------------------------------------
    def cache_path(self, sha: str):
        key = cache_key("harvest", sha, self.identity())
        return cache_dir("harvest", key[:2], f"{key}.npz")

    def cached(self, data, item: str = "") -> tuple[ImageHarvest, bool]:
        """:meth:`harvest` through the project cache: ``(result, hit)``. ``hits``/``misses`` count."""
        path = self.cache_path(content_sha256(data))
        if path.is_file():
            got = _load(path)
            if got is not None:
                self.hits += 1
                return got, True
        res = self.harvest(data, item)
        _save(path, res)
        self.misses += 1
        return res, False


def _save(path, res: ImageHarvest) -> None:
    meta = {k: v for k, v in asdict(res).items() if k != "crops"}
    meta["crops"] = [{k: v for k, v in asdict(c).items() if k not in ("rgb", "mask")} for c in res.crops]
    arrays = {"meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), np.uint8)}
    for n, c in enumerate(res.crops):
        arrays[f"rgb{n}"], arrays[f"mask{n}"] = c.rgb, c.mask
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def _load(path) -> ImageHarvest | None:
    """A cache entry, or None when it cannot be read (then it is computed and written again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            crops = [HarvestedCrop(rgb=z[f"rgb{n}"], mask=z[f"mask{n}"], **c) for n, c in enumerate(meta.pop("crops"))]
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    return ImageHarvest(**meta, crops=crops)


# -- the build's copy ---------------------------------------------------------------------------
def crop_file(image_index: int, crop: HarvestedCrop, kind: str) -> str:
    """Relative path of a kept crop's PNG (``kind``: ``crops`` or ``masks``) in a harvest folder."""
    return f"{kind}/{image_index:07d}-{crop.suffix()}.png"


def write_crops(loc, image_index: int, res: ImageHarvest) -> None:
    """The PNGs of one image's kept crops into the harvest folder ``loc`` (a ``models.files.Location``)."""
    for c in res.crops:
        loc.write_bytes(crop_file(image_index, c, "crops"), encode_png(c.rgb))
        loc.write_bytes(crop_file(image_index, c, "masks"), encode_png(c.mask))


def write_index(loc, header: dict, items: list[tuple[str, ImageHarvest]]) -> dict:
    """The two index files of a harvest folder, for ``items`` = ``[(image item id, result)]`` in the
    source's order (their PNGs written by :func:`write_crops`). Returns the counts."""
    counts = Counter()
    crops, images = [], []
    for n, (item, res) in enumerate(items):
        counts.update(res.counts())
        images.append({"id": item, "sha256": res.sha256, "width": res.width, "height": res.height,
                       "error": res.error, "lines": res.lines})
        for c in res.crops:
            crops.append({"id": f"{item}#{c.suffix()}", "image": item, "label": c.label, "polygon": c.polygon,
                          "line": c.line, "word": c.word, "rectified": c.rectified, "checks": c.checks,
                          "crop": crop_file(n, c, "crops"), "mask": crop_file(n, c, "masks")})
    head = {**header, "format": FORMAT, "images": len(items), "kept": len(crops),
            "counts": dict(sorted(counts.items()))}

    def jsonl(rows):
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows).encode("utf-8")

    loc.write_bytes(IMAGES_INDEX, jsonl(images))
    loc.write_bytes(CROPS_INDEX, jsonl([head, *crops]))  # last: its presence means the folder is whole
    return head
