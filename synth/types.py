"""Plain data passed between synth stages. Images are numpy arrays, RGB, HxWx3 uint8."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class TextPatch:
    """One text instance ready to paste.

    rgb:   HxWx3 uint8, the patch pixels (for rendered text: fill and outline already coloured).
    alpha: HxW float32 in [0, 1], how much of ``rgb`` covers the background when pasted.
    mask:  HxW uint8 in {0, 255}, the glyph pixels (text strokes, outline included when rendered).
    quad:  4x2 float32, the text's oriented box in patch pixels, clockwise from top-left of the
           text's reading direction.
    text:  the transcription; language: "en" | "zh" | other ISO-639-1 code.
    source: JSON-serialisable facts about where it came from (renderer parameters, dataset id…).
    """

    rgb: np.ndarray
    alpha: np.ndarray
    mask: np.ndarray
    quad: np.ndarray
    text: str
    language: str
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.rgb.shape[:2]
        if self.rgb.shape != (h, w, 3) or self.rgb.dtype != np.uint8:
            raise ValueError(f"TextPatch.rgb must be HxWx3 uint8, got {self.rgb.shape} {self.rgb.dtype}")
        if self.alpha.shape != (h, w) or self.mask.shape != (h, w):
            raise ValueError(f"TextPatch alpha/mask must be {(h, w)}, got {self.alpha.shape} / {self.mask.shape}")
        if self.quad.shape != (4, 2):
            raise ValueError(f"TextPatch.quad must be 4x2, got {self.quad.shape}")


class Rejected(Exception):
    """A candidate (background, crop, sample) a stage refuses; ``stage`` and ``reason`` are counted
    in the manifest. Raised by stages, caught by the sample factory, never fatal to a build."""

    def __init__(self, stage: str, reason: str, detail: str = ""):
        super().__init__(f"{stage}: {reason}" + (f" ({detail})" if detail else ""))
        self.stage = stage
        self.reason = reason
        self.detail = detail
