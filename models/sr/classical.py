"""Classical interpolation 'SR' baselines.

``bicubic`` is OpenCV's / PyTorch's bicubic (Keys a = −0.75, pixel-centre aligned, no
antialiasing) — for *upscaling* antialiasing plays no role, so it equals PIL's bicubic up to
PIL's a = −0.5 kernel; it is not MATLAB's ``imresize`` (a = −0.5). ``lanczos`` is OpenCV's
Lanczos-4 and ``nearest`` plain pixel replication.
"""
from __future__ import annotations

import cv2
import numpy as np

_CV = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "nearest": cv2.INTER_NEAREST}


class ClassicalSR:
    kind = "bicubic"

    def __init__(self, scale: int = 4, weights=None, device=None, dtype=None):
        if weights is not None:
            raise ValueError(f"{self.kind} has no weights (got weights={weights!r})")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"{self.kind}: scale must be a positive integer, got {scale!r}")
        self.scale = int(scale)
        self.device = device

    def upscale_image(self, img: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """HxWx3 uint8 RGB -> (scale·H)x(scale·W)x3 uint8, or to ``size`` = (width, height)."""
        if img.dtype != np.uint8 or img.ndim not in (2, 3):
            raise ValueError(f"{self.kind}.upscale_image expects HxW[x3] uint8, got {img.shape} {img.dtype}")
        h, w = img.shape[:2]
        size = size or (w * self.scale, h * self.scale)
        return cv2.resize(img, size, interpolation=_CV[self.kind])

    def upscale(self, batch):
        """N×3×H×W float tensor in [0, 1] -> N×3×(sH)×(sW), clamped to [0, 1]."""
        import torch
        import torch.nn.functional as F

        if not isinstance(batch, torch.Tensor) or batch.ndim != 4 or batch.shape[1] != 3:
            got = tuple(batch.shape) if hasattr(batch, "shape") else type(batch).__name__
            raise ValueError(f"{self.kind}.upscale expects an N×3×H×W tensor, got {got}")
        if not batch.is_floating_point():
            raise ValueError(f"{self.kind}.upscale expects a float tensor in [0, 1], got {batch.dtype}")
        if self.kind == "lanczos":  # torch has no Lanczos: go through OpenCV image by image
            arr = batch.detach().float().cpu().permute(0, 2, 3, 1).numpy()
            out = np.stack([cv2.resize(a, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LANCZOS4) for a in arr])
            return torch.from_numpy(out).permute(0, 3, 1, 2).to(batch).clamp(0, 1)
        mode = {"bicubic": "bicubic", "nearest": "nearest"}[self.kind]
        kw = {"align_corners": False} if mode == "bicubic" else {}
        return F.interpolate(batch, scale_factor=self.scale, mode=mode, **kw).clamp(0, 1)


class Bicubic(ClassicalSR):
    kind = "bicubic"


class Lanczos(ClassicalSR):
    kind = "lanczos"


class Nearest(ClassicalSR):
    kind = "nearest"
