"""PSNR and SSIM on the Y channel, whole-image and restricted to text regions.

The convention is basicsr's (``basicsr/metrics/psnr_ssim.py``: ``calculate_psnr`` /
``calculate_ssim`` with ``test_y_channel=True``), which most SR papers report:

* Y is BT.601 limited range from RGB in [0, 1]: ``Y = (65.481 R + 128.553 G + 24.966 B + 16) / 255``,
  not rounded (values in [16/255, 235/255]; the maths below works on ``255 * Y``).
* ``crop_border`` pixels are removed from every side before anything else.
* PSNR: ``10 log10(255² / MSE)`` in float64; identical images give ``inf`` (as basicsr).
* SSIM: 11×11 Gaussian window, σ = 1.5, statistics by filtering, kept only where the window lies
  inside the image (the "valid" region: 5 px dropped on each side), C1 = (0.01·255)²,
  C2 = (0.03·255)², float64, mean of the SSIM map.

We compute Y in float64; basicsr computes it in float32, which moves PSNR/SSIM by ~1e-8 at most.
pyiqa's ``psnr``/``ssim`` differ by default (RGB PSNR, full-range YIQ luma for SSIM); even with
``test_y_channel=True, color_space='ycbcr'`` its SSIM rounds Y to integers and clips negative
contrast-structure terms, and its PSNR adds 1e-8 to the MSE (see tests/test_iqa.py for the sizes).

Text-region variants (``text_psnr``, ``text_ssim``) score only the pixels of a text region: the
sample's mask when it has one, else the union of its ground-truth polygons, else the OCR boxes read on
HR. The SSIM of a region is the mean of the (valid-region) SSIM map over the region's pixels, so each
value still sees the 11×11 neighbourhood of its pixel: pixels within 5 px of the region can move it,
pixels farther away cannot.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from evalkit.metrics.base import MeanMetric
from evalkit.sample import EvalSample

Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)  # R, G, B
COLOR_SPACE = "Y (BT.601 limited, basicsr)"
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2
_HALF = SSIM_WINDOW // 2


# ----------------------------------------------------------------------------- plain maths

def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 limited-range luma of an RGB image.

    img: ``HxWx3`` RGB, float in [0, 1] or uint8 (divided by 255 first).
    Returns ``HxW`` float64 in [16/255, 235/255], unrounded (basicsr's ``rgb2ycbcr(y_only=True)``).
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    x = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    return (x @ Y_COEFFS + 16.0) / 255.0


def _y255(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what} must be an RGB HxWx3 image (uint8, or float in [0, 1]), got shape {img.shape}")
    return rgb_to_y(img) * 255.0


def _pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"sr and hr must have the same shape, got {np.shape(sr)} and {np.shape(hr)}; "
                         "resize or crop the SR output to the HR size first")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if min(np.shape(sr)[:2]) <= 2 * crop_border:
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {np.shape(sr)[:2]} image")
        sr = sr[crop_border:-crop_border, crop_border:-crop_border]
        hr = hr[crop_border:-crop_border, crop_border:-crop_border]
    return _y255(sr, "sr"), _y255(hr, "hr")


def _psnr_from_sq_err(sq: np.ndarray) -> float:
    mse = float(np.mean(sq))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """PSNR (dB) on Y between two RGB images of the same size (uint8, or float in [0, 1]).

    Equals basicsr ``calculate_psnr(sr_bgr, hr_bgr, crop_border, test_y_channel=True)``;
    ``inf`` for identical images."""
    y1, y2 = _pair(sr, hr, crop_border)
    return _psnr_from_sq_err((y1 - y2) ** 2)


def ssim_map_y(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> np.ndarray:
    """The SSIM map on Y over the valid region: ``(H' - 10) x (W' - 10)`` float64, where ``H' x W'``
    is the size after ``crop_border``. Entry ``[i, j]`` belongs to pixel ``(i + 5, j + 5)``."""
    y1, y2 = _pair(sr, hr, crop_border)
    return _ssim_map(y1, y2)


def _ssim_map(y1: np.ndarray, y2: np.ndarray) -> np.ndarray:
    h, w = y1.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px (after crop_border), "
                         f"got {h}x{w}")
    k = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)  # float64, sums to 1 (basicsr's window is k kᵀ)

    def filt(a: np.ndarray) -> np.ndarray:
        # separable filtering is the same 2-D window; only the valid part is kept, so the border
        # mode never matters
        return cv2.sepFilter2D(a, cv2.CV_64F, k, k)[_HALF:-_HALF, _HALF:-_HALF]

    mu1, mu2 = filt(y1), filt(y2)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filt(y1 * y1) - mu1_sq
    sigma2_sq = filt(y2 * y2) - mu2_sq
    sigma12 = filt(y1 * y2) - mu1_mu2
    return ((2 * mu1_mu2 + _C1) * (2 * sigma12 + _C2)) / ((mu1_sq + mu2_sq + _C1) * (sigma1_sq + sigma2_sq + _C2))


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """SSIM on Y between two RGB images of the same size (uint8, or float in [0, 1]).

    Equals basicsr ``calculate_ssim(sr_bgr, hr_bgr, crop_border, test_y_channel=True)``."""
    return float(ssim_map_y(sr, hr, crop_border).mean())


def _as_region(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[..., 0]
    if m.shape != tuple(shape):
        raise ValueError(f"mask must be HxW like the image ({shape[0]}x{shape[1]}), got shape {m.shape}")
    if m.dtype == bool:
        return m
    if np.issubdtype(m.dtype, np.integer):
        return m > 127  # the project's masks are 0/255 uint8; a resized mask keeps its majority
    return m > 0.5


def psnr_y_masked(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR on Y over the pixels of ``mask`` only (HxW: bool, uint8 0/255, or float in [0, 1]).

    Returns None when the mask selects no pixel, ``inf`` when the region is identical."""
    y1, y2 = _pair(sr, hr, 0)
    region = _as_region(mask, y1.shape)
    if not region.any():
        return None
    return _psnr_from_sq_err((y1[region] - y2[region]) ** 2)


def ssim_y_masked(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray) -> float | None:
    """SSIM on Y averaged over the pixels of ``mask`` that lie in the valid region (5 px in from
    every image side, where the SSIM map is defined).

    A mask covering the whole image gives exactly :func:`ssim_y`. Returns None when no mask pixel is
    in the valid region."""
    y1, y2 = _pair(sr, hr, 0)
    region = _as_region(mask, y1.shape)[_HALF:-_HALF, _HALF:-_HALF]
    if not region.any():
        return None
    return float(_ssim_map(y1, y2)[region].mean())


# ----------------------------------------------------------------------------- text regions

def polygons_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (each ``Kx2`` float, x/y in pixels) into an ``HxW`` bool union mask."""
    canvas = np.zeros(shape, np.uint8)
    pts = [np.round(np.asarray(p, np.float64).reshape(-1, 2)).astype(np.int32) for p in polygons]
    pts = [p for p in pts if len(p) >= 3]
    if pts:
        cv2.fillPoly(canvas, pts, 1)
    return canvas.astype(bool)


def text_region(sample: EvalSample) -> tuple[np.ndarray | None, str]:
    """The text region of a sample at HR size and where it came from.

    Order: ``sample.mask`` if the benchmark has one ("mask"), else the union of the ground-truth
    polygons in ``sample.texts`` including don't-care ones ("texts"), else the polygons of the OCR
    lines read on HR ("ocr_hr"). A source that is present decides, even when it is empty (an image
    whose annotation has no text has no text region). Returns ``(HxW bool or None, source)``; None
    when the region is empty or no source is present (source "none").
    """
    ref = sample.hr if sample.hr is not None else sample.sr
    shape = tuple(np.shape(ref)[:2])
    if sample.mask is not None:
        region, source = _as_region(sample.mask, shape), "mask"
    elif sample.texts is not None:
        region, source = polygons_mask([t.polygon for t in sample.texts], shape), "texts"
    elif sample.ocr_hr is not None:
        region, source = polygons_mask([ln.polygon for ln in sample.ocr_hr], shape), "ocr_hr"
    else:
        return None, "none"
    return (region if region.any() else None), source


REGION_RULE = ("sample mask (>127) if present, else union of GT polygons (incl. don't-care), "
               "else polygons of OCR lines read on HR; None (skipped) when empty")


# ----------------------------------------------------------------------------- metrics

class PSNR(MeanMetric):
    """Mean per-image PSNR on Y (basicsr convention), dB. Identical images give inf."""

    name = "psnr"
    higher_is_better = True
    needs = frozenset({"sr", "hr"})

    def __init__(self, crop_border: int = 0, **_runner_kw: Any):
        # the runner passes device/ocr/allow_download to every metric; this one needs none of them
        self.crop_border = int(crop_border)
        super().__init__()

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "color_space": COLOR_SPACE, "crop_border": self.crop_border,
                "implementation": "evalkit.metrics.fidelity.psnr_y (float64; = basicsr calculate_psnr, "
                                  "test_y_channel=True)",
                "identical_images": "inf", "average": "mean over images"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        return psnr_y(sample.sr, sample.hr, self.crop_border)


class SSIM(MeanMetric):
    """Mean per-image SSIM on Y (basicsr convention)."""

    name = "ssim"
    higher_is_better = True
    needs = frozenset({"sr", "hr"})

    def __init__(self, crop_border: int = 0, **_runner_kw: Any):
        self.crop_border = int(crop_border)
        super().__init__()

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "color_space": COLOR_SPACE, "crop_border": self.crop_border,
                "window": "11x11 Gaussian sigma=1.5, valid region", "constants": "C1=(0.01*255)^2, C2=(0.03*255)^2",
                "implementation": "evalkit.metrics.fidelity.ssim_y (float64, cv2 filtering; = basicsr "
                                  "calculate_ssim, test_y_channel=True)",
                "average": "mean over images"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        return ssim_y(sample.sr, sample.hr, self.crop_border)


class TextPSNR(MeanMetric):
    """Mean per-image PSNR on Y over the text region (see :func:`text_region`); images without a
    text region are skipped. ``crop_border`` does not apply (the region is chosen explicitly)."""

    name = "text_psnr"
    higher_is_better = True
    needs = frozenset({"sr", "hr", "mask", "texts", "ocr_hr"})

    def __init__(self, **_runner_kw: Any):
        super().__init__()

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "color_space": COLOR_SPACE, "region": REGION_RULE, "crop_border": 0,
                "implementation": "evalkit.metrics.fidelity.psnr_y_masked (MSE over region pixels)",
                "average": "mean over images with a text region"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        region, _ = text_region(sample)
        return None if region is None else psnr_y_masked(sample.sr, sample.hr, region)


class TextSSIM(MeanMetric):
    """Mean per-image SSIM on Y over the text region: the SSIM map averaged over region pixels in
    the valid region (see :func:`ssim_y_masked`)."""

    name = "text_ssim"
    higher_is_better = True
    needs = frozenset({"sr", "hr", "mask", "texts", "ocr_hr"})

    def __init__(self, **_runner_kw: Any):
        super().__init__()

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "color_space": COLOR_SPACE, "region": REGION_RULE, "crop_border": 0,
                "implementation": "evalkit.metrics.fidelity.ssim_y_masked (whole-image SSIM map, averaged "
                                  "over region pixels >= 5 px from the image border; windows may reach 5 px "
                                  "outside the region)",
                "average": "mean over images with a text region"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        region, _ = text_region(sample)
        return None if region is None else ssim_y_masked(sample.sr, sample.hr, region)
