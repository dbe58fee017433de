"""Classical interpolation 'SR' baselines.

``bicubic`` is OpenCV's / PyTorch's bicubic (Keys a = −0.75, pixel-centre aligned, no
antialiasing) — for *upscaling* antialiasing plays no role; it is neither PIL's bicubic
(a = −0.5) nor MATLAB's ``imresize`` (a = −0.5, antialiased when shrinking). ``lanczos`` is
OpenCV's Lanczos-4 and ``nearest`` plain pixel replication.
"""
from __future__ import annotations

import cv2
import numpy as np

from models.sr.base import SRModel

_CV = {"bicubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4, "nearest": cv2.INTER_NEAREST}


class ClassicalSR(SRModel):
    kind = "bicubic"

    def __init__(self, scale: int = 4, weights=None, device=None, dtype=None):
        if weights is not None:
            raise ValueError(f"{self.kind} has no weights (got weights={weights!r})")
        if int(scale) != scale or scale < 1:
            raise ValueError(f"{self.kind}: scale must be a positive integer, got {scale!r}")
        self.name = self.kind
        self.scale = int(scale)
        self.device = device
        self.weights_info = {"weights": "none (interpolation)"}

    def upscale_image(self, img, size: tuple[int, int] | None = None):
        """HxWx3 uint8 RGB -> (scale·H)x(scale·W)x3 uint8 (or to ``size`` = (width, height)), via
        OpenCV; PIL images and float arrays go through the tensor path."""
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8):
            if size is not None:
                raise ValueError(f"{self.kind}.upscale_image: size= needs a uint8 numpy image")
            return super().upscale_image(img)
        if img.ndim not in (2, 3):
            raise ValueError(f"{self.kind}.upscale_image expects HxW[x3] uint8, got {img.shape}")
        h, w = img.shape[:2]
        return cv2.resize(img, size or (w * self.scale, h * self.scale), interpolation=_CV[self.kind])

    def _forward(self, batch):
        import torch
        import torch.nn.functional as F

        if self.kind == "lanczos":  # torch has no Lanczos: OpenCV image by image
            arr = batch.detach().float().cpu().permute(0, 2, 3, 1).numpy()
            out = np.stack([cv2.resize(a, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_LANCZOS4)
                            for a in arr])
            return torch.from_numpy(out).permute(0, 3, 1, 2).to(batch).clamp(0, 1)
        kw = {"align_corners": False} if self.kind == "bicubic" else {}
        return F.interpolate(batch, scale_factor=self.scale, mode=self.kind, **kw).clamp(0, 1)


class Bicubic(ClassicalSR):
    kind = "bicubic"


class Lanczos(ClassicalSR):
    kind = "lanczos"


class Nearest(ClassicalSR):
    kind = "nearest"


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, scale: int = 4, **options):
    """``create_sr`` target: ``bicubic`` / ``lanczos`` / ``nearest`` at integer ``scale`` (the
    ``-tiny`` variants are the same thing: there is nothing to shrink)."""
    if options:
        raise TypeError(f"{name}: unexpected options {sorted(options)} (classical models take scale only)")
    cls = {"bicubic": Bicubic, "lanczos": Lanczos, "nearest": Nearest}[name]
    return cls(scale=scale, weights=weights, device=device, dtype=dtype)
