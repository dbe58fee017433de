"""The OCR engine interface, its result type, input checks and the engine registry.

Every engine takes RGB ``HxWx3 uint8`` numpy images (the project's one image type) and converts to
whatever its backend wants itself (BGR for the PP-OCR family).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.registry import Registry


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
    """Return ``image`` if it is an ``HxWx3 uint8`` numpy array, else raise ValueError saying why."""
    if not isinstance(image, np.ndarray):  # ValueError, not TypeError: one error type for bad images
        raise ValueError(  # noqa: TRY004
            f"{what} must be an RGB HxWx3 uint8 numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{what} must be an RGB HxWx3 uint8 numpy array, got shape {image.shape} dtype "
            f"{image.dtype}; convert grey with np.repeat(img[..., None], 3, -1), drop alpha with "
            f"img[..., :3], and scale floats with (img * 255).round().astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what} is empty (shape {image.shape})")
    return image


class OCREngine:
    """Base class of the OCR engines (PP-OCR detection + recognition behind one adapter).

    Subclasses implement :meth:`readtext`, :meth:`recognize` and :meth:`detect_prob`.
    """

    name: str = "ocr"

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        """Detect and recognise text lines in an RGB ``HxWx3 uint8`` image.

        Returns lines in reading order (top to bottom, left to right); an empty list when none.
        """
        raise NotImplementedError

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


OCR_ENGINES = Registry("OCR engine", {
    "rapidocr-ppocrv4": "models.ocr.rapidocr_engine:RapidOCRv4Engine",
    "rapidocr-ppocrv6": "models.ocr.rapidocr_engine:RapidOCRv6Engine",
    "paddleocr": "models.ocr.paddle_engine:PaddleOCREngine",
})

DEFAULT_OCR = "rapidocr-ppocrv4"


def create_ocr(name: str = DEFAULT_OCR, **kwargs) -> OCREngine:
    """Build the OCR engine registered as ``name`` with its constructor keyword arguments."""
    return OCR_ENGINES.create(name, **kwargs)


def list_ocr(pattern: str | None = None) -> list[str]:
    """Registered OCR engine names, optionally filtered by a glob ``pattern`` (e.g. ``"rapid*"``)."""
    return OCR_ENGINES.names(pattern)
