"""The OCR engine interface, its result type, input checks and the engine registry.

Every engine takes RGB ``HxWx3 uint8`` numpy images (the project's one image type) and converts to
whatever its backend wants itself (BGR for the PP-OCR family).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.errors import TextsrError
from models.registry import Registry


class OCRInputError(TextsrError, ValueError):
    """An image, crop or argument handed to an OCR engine or an OCR score is not what it takes."""


@dataclass(frozen=True)
class OCRLine:
    """One detected and recognised text line.

    polygon: ``(4, 2) float32`` corner points in input-image pixels (x, y), clockwise from the
             top-left corner as the detector orders them.
    text:    the recognised string (may be empty when the recogniser read nothing).
    score:   recognition confidence in [0, 1].
    """

    polygon: np.ndarray
    text: str
    score: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Axis-aligned ``(x0, y0, x1, y1)`` integer box enclosing the polygon (x1/y1 exclusive)."""
        x0, y0 = np.floor(self.polygon.min(axis=0)).astype(int)
        x1, y1 = np.ceil(self.polygon.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1), int(y1)


def check_rgb_image(image: object, what: str = "image") -> np.ndarray:
    """Return ``image`` if it is an ``HxWx3 uint8`` numpy array, else raise :class:`OCRInputError`
    (a ``ValueError``) saying why."""
    if not isinstance(image, np.ndarray):  # ValueError, not TypeError: one error type for bad images
        raise OCRInputError(
            f"{what} must be an RGB HxWx3 uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise OCRInputError(
            f"{what} must be an RGB HxWx3 uint8 numpy array, got shape {image.shape} dtype "
            f"{image.dtype}; convert grey with np.repeat(img[..., None], 3, -1), drop alpha with "
            f"img[..., :3], and scale floats with (img * 255).round().astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise OCRInputError(f"{what} is empty (shape {image.shape})")
    return image


class OCREngine:
    """Base class of the OCR engines (PP-OCR detection + recognition behind one adapter).

    Subclasses implement :meth:`readtext`, :meth:`recognize` and :meth:`detect_prob`.

    Batch independence (a contract of every engine): a crop's ``(text, score)`` from
    :meth:`recognize` is exactly what ``recognize([crop])`` returns, whatever other crops share the
    call, and :meth:`readtext` recognises each detected line the same way. PP-OCR's recogniser
    pads every crop of a batch to the widest one (and RapidOCR sorts crops by aspect ratio into
    batches of 6), so batched readings of a crop change with its companions — measured on degraded
    word crops of ``skimage.data.page()``: beside one wide crop, every score and several strings
    changed. The engines therefore feed the recogniser one crop per batch.
    """

    name: str = "ocr"
    # How recognition batches crops; recorded in metric settings and in cache keys of OCR output.
    rec_batching: str = "one crop per recogniser batch (a crop's reading never depends on others)"

    def settings(self) -> dict:
        """What decides this engine's output, as plain data (for run manifests and cache keys)."""
        return {"engine": self.name, "rec_batching": self.rec_batching}

    def identity(self) -> dict:
        """What this engine's readings depend on: :meth:`settings` plus its model files named by
        their content (sha256 of every ``*_model_path`` attribute), not their path — the key of
        every cache of OCR output (evalkit's HR OCR, synth's background verdicts)."""
        from pathlib import Path

        from models.files import file_digest

        out = dict(self.settings())
        for k, v in sorted(vars(self).items()):
            if k.endswith("_model_path") and isinstance(v, str) and Path(v).is_file():
                out[k.removesuffix("_path") + "_sha256"] = file_digest(v)
        return out

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        """Detect and recognise text lines in an RGB ``HxWx3 uint8`` image.

        Returns lines in reading order (top to bottom, left to right); an empty list when none.
        """
        raise NotImplementedError

    # How :meth:`readwords` finds word boxes (recorded by the metrics that use them).
    word_boxes: str = ("proportional: each line's quad cut along its top and bottom edges in "
                       "proportion to character counts (an approximation for engines without "
                       "character positions)")

    def readwords(self, image: np.ndarray) -> list[OCRLine]:
        """Words instead of lines: :meth:`readtext`'s lines split at whitespace, each word with its own
        quad (TL, TR, BR, BL) and the line's score. This default cuts a line's quad in proportion to
        character counts (see :attr:`word_boxes`); an engine that knows where each character was
        decoded overrides it. A line without whitespace (a word, or CJK text) stays one entry."""
        return [w for ln in self.readtext(image) for w in split_line_proportionally(ln)]

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        """Recognise a batch of RGB ``hxwx3 uint8`` text-line crops (no detection).

        Returns one ``(text, score)`` per crop, in input order; score in [0, 1].
        """
        raise NotImplementedError

    def detect_prob(self, image: np.ndarray) -> np.ndarray:
        """The DB detector's per-pixel text probability map of an RGB ``HxWx3 uint8`` image.

        Returns ``HxW float32`` in [0, 1], the same size as ``image``. Line level: the DB map covers
        a shrunk text kernel (PP-OCR's unclip ratio ~1.6 grows it back to the line box).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def cut_quad(quad: np.ndarray, f0: float, f1: float) -> np.ndarray:
    """The part of a text line's quad (4×2, TL TR BR BL) between fractions ``f0`` < ``f1`` of its
    length, cut along its top (TL→TR) and bottom (BL→BR) edges -> 4×2 float32, same order."""
    q = np.asarray(quad, np.float32).reshape(4, 2)
    top, bottom = q[1] - q[0], q[2] - q[3]
    return np.stack([q[0] + f0 * top, q[0] + f1 * top, q[3] + f1 * bottom, q[3] + f0 * bottom]).astype(np.float32)


def split_line_proportionally(line: OCRLine) -> list[OCRLine]:
    """One line -> its whitespace-separated words, each quad cut from the line's quad
    (:func:`cut_quad`) at the fraction of characters before and after the word."""
    words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", line.text)]
    if len(words) <= 1:
        return [line]
    n = len(line.text)
    return [OCRLine(cut_quad(line.polygon, a / n, b / n), text, line.score) for a, b, text in words]


OCR_ENGINES = Registry("OCR engine", {
    "rapidocr-ppocrv4": "models.ocr.rapidocr_engine:RapidOCRv4Engine",
    "rapidocr-ppocrv6": "models.ocr.rapidocr_engine:RapidOCRv6Engine",
    "paddleocr": "models.ocr.paddle_engine:PaddleOCREngine",
    "openocr-mobile": "models.ocr.openocr_engine:OpenOCREngine",
})

DEFAULT_OCR = "rapidocr-ppocrv4"


def create_ocr(name: str = DEFAULT_OCR, **kwargs) -> OCREngine:
    """Build the OCR engine registered as ``name`` with its constructor keyword arguments."""
    return OCR_ENGINES.create(name, **kwargs)


def list_ocr(pattern: str | None = None) -> list[str]:
    """Registered OCR engine names, optionally filtered by a glob ``pattern`` (e.g. ``"rapid*"``)."""
    return OCR_ENGINES.names(pattern)
