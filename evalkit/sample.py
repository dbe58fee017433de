"""What a metric sees for one image."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TextInstance:
    """A ground-truth text instance: polygon (K×2 float, HR pixels, K >= 4), transcription,
    don't-care flag (``###`` in IC15-style annotations), language code."""

    polygon: np.ndarray
    text: str
    dont_care: bool = False
    language: str = ""


@dataclass
class EvalSample:
    """One scored image. Images are RGB HxWx3 uint8; ``sr`` and ``hr`` have the same size.

    mask:   HxW uint8 {0, 255} text mask at HR size, when the benchmark has one.
    texts:  ground-truth text instances, when the benchmark has them (else None).
    ocr_hr: OCR lines (``models.ocr.OCRLine``) read on HR — cached per benchmark by the runner.
    ocr_sr: OCR lines read on SR (detection + recognition), computed once per image by the runner
            and shared by every metric that needs them.
    pred_mask: HxW float32 in [0, 1], the text mask the SR model predicted (``aux_outputs``
            ``text_mask``, e.g. TADiSR) or one read from ``--mask-dir``; None otherwise.
    """

    key: str
    sr: np.ndarray
    hr: np.ndarray | None = None
    lr: np.ndarray | None = None
    mask: np.ndarray | None = None
    texts: list[TextInstance] | None = None
    ocr_hr: list | None = None
    ocr_sr: list | None = None
    pred_mask: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
