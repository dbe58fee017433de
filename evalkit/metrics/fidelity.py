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

Two other conventions, chosen with ``convention=`` on :class:`PSNR` / :class:`SSIM` (protocols pick
them, see ``evalkit/protocols.py``):

* ``"pyiqa"`` — pyiqa's ``psnr`` / ``ssim`` with ``test_y_channel=True, color_space='ycbcr'`` (the
  OSEDiff/CODSR/PiSA-SR ``test_metrics.py`` recipe), ported to numpy from pyiqa 0.1.16
  (``archs/psnr_arch.py``, ``archs/ssim_arch.py``, ``archs/func_util.py::preprocess_rgb``,
  ``utils/color_util.py``, ``matlab_utils/functions.py::fspecial``; identical in 0.1.10, which OSEDiff
  pins, apart from formatting). The same BT.601 Y, but computed in float32 from ``uint8 / 255``
  (``((R·65.481 + G·128.553) + B·24.966 + 16) / 255``, the order torch evaluates it, so the rounding
  below ties the same way); PSNR on that unrounded Y in [0, 1] with ``MSE + 1e-8`` (identical images:
  80 dB, not inf); SSIM on ``round(255·Y)`` (half to even), the 2-D Gaussian window rounded to float32,
  valid region, float64, and the contrast-structure term clipped at 0 (``relu``) before it multiplies
  the luminance term. No downsampling (pyiqa's ``downsample=False`` default).
* ``"tadisr"`` — what TADiSR's own code computes (``tadisr/training/metrics.py`` in mingcv/TADiSR, MIT;
  its repository has no script for the paper's tables): on RGB in [0, 1] (clamped), PSNR
  ``20 log10(1 / RMSE)`` over all three channels (100 for identical images), SSIM with an 11×11
  Gaussian (σ = 1.5) applied with *zero padding* over the whole image ("same" size), per channel,
  C1 = 0.01², C2 = 0.03², mean over channels and pixels (float64 here; float32 there, see
  :func:`ssim_rgb_tadisr`).

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
from models.errors import TextsrError

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


def _check_pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> None:
    if np.shape(sr) != np.shape(hr):
        raise ValueError(f"sr and hr must have the same shape, got {np.shape(sr)} and {np.shape(hr)}; "
                         "resize or crop the SR output to the HR size first")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border and min(np.shape(sr)[:2]) <= 2 * crop_border:
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {np.shape(sr)[:2]} image")


def _pair(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    _check_pair(sr, hr, crop_border)
    if crop_border:
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


# ----------------------------------------------------------------------------- pyiqa convention

CONVENTIONS = ("basicsr", "pyiqa", "tadisr")
PYIQA_COLOR_SPACE = "Y (BT.601 limited, pyiqa ycbcr: float32)"
PYIQA_PSNR_EPS = 1e-8
_Y32 = np.array([65.481, 128.553, 24.966], dtype=np.float32)  # pyiqa rgb2ycbcr's first column


def _rgb01_f32(img: np.ndarray, what: str) -> np.ndarray:
    """``HxWx3`` RGB as float32 in [0, 1]: uint8 is divided by 255 in float32 (what ``img2tensor(...,
    float32=True) / 255.0`` gives), float input is cast to float32 as it is."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what} must be an RGB HxWx3 image (uint8, or float in [0, 1]), got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    return img.astype(np.float32)


def rgb_to_y_pyiqa(img: np.ndarray) -> np.ndarray:
    """pyiqa's ``to_y_channel(x, 1.0, 'ycbcr')`` of one RGB image.

    img: ``HxWx3`` RGB, uint8 or float in [0, 1]. Returns ``HxW`` float32 in [16/255, 235/255],
    unrounded, bit-identical to pyiqa's on CPU: each product is rounded to float32 and summed R, G, B
    in that order, then ``+ 16`` and ``/ 255`` (checked on 8.4 M real pixels; numpy's ``@`` differs in
    the last bit on ~19 % of them, which flips the rounding of ``255 Y`` on a few).
    """
    x = _rgb01_f32(img, "image")
    y = x[..., 0] * _Y32[0] + x[..., 1] * _Y32[1] + x[..., 2] * _Y32[2]
    return (y + np.float32(16.0)) / np.float32(255.0)


def _pair_pyiqa(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    _check_pair(sr, hr, crop_border)
    y1, y2 = rgb_to_y_pyiqa(_rgb01_f32(sr, "sr")), rgb_to_y_pyiqa(_rgb01_f32(hr, "hr"))
    if crop_border:  # pyiqa crops RGB first; Y is per pixel, so cropping Y is the same
        y1 = y1[crop_border:-crop_border, crop_border:-crop_border]
        y2 = y2[crop_border:-crop_border, crop_border:-crop_border]
    return y1, y2


def psnr_y_pyiqa(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """pyiqa ``psnr`` (``test_y_channel=True, color_space='ycbcr'``), dB: ``10 log10(1 / (MSE + 1e-8))``
    on the unrounded float32 Y in [0, 1]. Identical images give 80 dB. The MSE of the float32
    differences is summed in float64 (pyiqa: float32), a difference of ~1e-6 dB."""
    y1, y2 = _pair_pyiqa(sr, hr, crop_border)
    d = y1 - y2  # float32, as pyiqa
    mse = float(np.mean(np.square(d, dtype=np.float64)))
    return float(10.0 * np.log10(1.0 / (mse + PYIQA_PSNR_EPS)))


def _pyiqa_window() -> np.ndarray:
    # MATLAB fspecial('gaussian', 11, 1.5) built in float64, then stored as float32 by pyiqa (.float())
    # and cast back to float64 for the float64 filtering: the float32 rounding is part of the recipe
    r = np.arange(SSIM_WINDOW, dtype=np.float64) - _HALF
    h = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2.0 * SSIM_SIGMA * SSIM_SIGMA))
    h[h < np.finfo(h.dtype).eps * h.max()] = 0
    return (h / h.sum()).astype(np.float32).astype(np.float64)


_PYIQA_WIN = _pyiqa_window()


def ssim_map_y_pyiqa(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> np.ndarray:
    """pyiqa's SSIM map (``ssim``, ``test_y_channel=True, color_space='ycbcr'``, ``downsample=False``):
    ``(H' - 10) x (W' - 10)`` float64 on ``round(255 Y)``, contrast-structure term clipped at 0."""
    y1, y2 = _pair_pyiqa(sr, hr, crop_border)
    # 255·Y rounded half to even in float32 (torch.round), then float64 as pyiqa's SSIM.forward
    y1 = np.round(y1 * np.float32(255.0)).astype(np.float64)
    y2 = np.round(y2 * np.float32(255.0)).astype(np.float64)
    h, w = y1.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} px (after crop_border), "
                         f"got {h}x{w}")

    def filt(a: np.ndarray) -> np.ndarray:
        # the 2-D float32-rounded window (not separable exactly); valid part only, so the border mode
        # never matters
        return cv2.filter2D(a, cv2.CV_64F, _PYIQA_WIN)[_HALF:-_HALF, _HALF:-_HALF]

    mu1, mu2 = filt(y1), filt(y2)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filt(y1 * y1) - mu1_sq
    sigma2_sq = filt(y2 * y2) - mu2_sq
    sigma12 = filt(y1 * y2) - mu1_mu2
    cs = np.maximum((2 * sigma12 + _C2) / (sigma1_sq + sigma2_sq + _C2), 0.0)
    return ((2 * mu1_mu2 + _C1) / (mu1_sq + mu2_sq + _C1)) * cs


def ssim_y_pyiqa(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """pyiqa ``ssim`` with ``test_y_channel=True, color_space='ycbcr'``: the mean of
    :func:`ssim_map_y_pyiqa`. RGB images of the same size, uint8 or float in [0, 1]."""
    return float(ssim_map_y_pyiqa(sr, hr, crop_border).mean())


# ----------------------------------------------------------------------------- TADiSR's own code

def _rgb_pair_tadisr(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    _check_pair(sr, hr, crop_border)
    a = np.clip(_rgb01_f32(sr, "sr"), 0.0, 1.0)
    b = np.clip(_rgb01_f32(hr, "hr"), 0.0, 1.0)
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    return a, b


def psnr_rgb_tadisr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """TADiSR's ``PSNR(pred, gt)``: RGB clamped to [0, 1], ``20 log10(1 / RMSE)`` over all channels
    (float32 differences, mean in float64); identical images give 100 (as its code)."""
    a, b = _rgb_pair_tadisr(sr, hr, crop_border)
    rmse = float(np.sqrt(np.mean(np.square(a - b, dtype=np.float64))))
    return 100.0 if rmse == 0 else float(20.0 * np.log10(1.0 / rmse))


def _tadisr_window() -> np.ndarray:
    # TADiSR's window bit for bit: float32 taps, normalised by their sum (torch sums them exactly and
    # rounds once), the outer product of the taps in float32. It sums to 1 - 7e-8, and that matters:
    # a window sum of 1 + e adds e * E[x²] to every variance, ~1e-5 of SSIM next to C2 = 9e-4.
    taps = np.exp(-((np.arange(SSIM_WINDOW) - _HALF) ** 2) / (2.0 * SSIM_SIGMA ** 2)).astype(np.float32)
    taps = taps / np.float32(taps.astype(np.float64).sum())
    return np.outer(taps, taps).astype(np.float64)


_TADISR_WIN = _tadisr_window()


def ssim_rgb_tadisr(sr: np.ndarray, hr: np.ndarray, crop_border: int = 0) -> float:
    """TADiSR's ``SSIM(img1, img2)`` (the pytorch-ssim recipe): RGB clamped to [0, 1], per channel,
    11×11 Gaussian σ = 1.5 (1-D taps normalised in float32, outer product), zero padding so the map
    has the image's size, C1 = 0.01², C2 = 0.03²; mean over channels and pixels.

    TADiSR runs it in float32, where ``E[x²] - E[x]²`` loses digits: its value moves by ~1e-5 with
    the summation order (device, library). We filter in float64, the value its float32 runs scatter
    around."""
    a, b = _rgb_pair_tadisr(sr, hr, crop_border)
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def filt(x: np.ndarray) -> np.ndarray:
        # zero padding (torch conv2d padding=5), all channels at once
        return cv2.filter2D(x, cv2.CV_64F, _TADISR_WIN, borderType=cv2.BORDER_CONSTANT)

    mu1, mu2 = filt(a), filt(b)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = filt(a * a) - mu1_sq
    sigma2_sq = filt(b * b) - mu2_sq
    sigma12 = filt(a * b) - mu1_mu2
    m = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(m.mean())


_PSNR_FUNCS = {"basicsr": psnr_y, "pyiqa": psnr_y_pyiqa, "tadisr": psnr_rgb_tadisr}
_SSIM_FUNCS = {"basicsr": ssim_y, "pyiqa": ssim_y_pyiqa, "tadisr": ssim_rgb_tadisr}


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

class FidelityConventionError(TextsrError, ValueError):
    """A PSNR/SSIM ``convention`` that does not exist."""


def _check_convention(convention: str, metric: str) -> str:
    if convention not in CONVENTIONS:
        import difflib

        close = difflib.get_close_matches(str(convention), CONVENTIONS, n=1)
        raise FidelityConventionError(f"{metric}: unknown convention {convention!r}"
                                      + (f"; did you mean {close[0]!r}?" if close else "")
                                      + f" (known: {', '.join(CONVENTIONS)})")
    return convention


_SOURCES = {
    "pyiqa": "pyiqa 0.1.16 archs/psnr_arch.py, archs/ssim_arch.py, utils/color_util.py (same maths in 0.1.10)",
    "tadisr": "mingcv/TADiSR tadisr/training/metrics.py @ 6f591a6b9a0e665982e853f22c9d145c97da2ae0",
}


class PSNR(MeanMetric):
    """Mean per-image PSNR, dB. ``convention``: ``"basicsr"`` (default: Y, float64, identical images
    give inf), ``"pyiqa"`` (pyiqa ``psnr`` on ycbcr Y: float32 Y, MSE + 1e-8) or ``"tadisr"`` (RGB,
    TADiSR's own code); see the module docstring."""

    name = "psnr"
    higher_is_better = True
    needs = frozenset({"sr", "hr"})

    def __init__(self, crop_border: int = 0, convention: str = "basicsr", **_runner_kw: Any):
        # the runner passes device/ocr/allow_download to every metric; this one needs none of them
        self.crop_border = int(crop_border)
        self.convention = _check_convention(convention, self.name)
        self._fn = _PSNR_FUNCS[self.convention]
        super().__init__()

    def settings(self) -> dict[str, Any]:
        common = {"metric": self.name, "convention": self.convention, "crop_border": self.crop_border,
                  "average": "mean over images"}
        if self.convention == "pyiqa":
            return {**common, "color_space": PYIQA_COLOR_SPACE, "rounding": "none (Y unrounded, in [0, 1])",
                    "formula": "10*log10(1 / (MSE + 1e-8))", "identical_images": "80 dB",
                    "implementation": "evalkit.metrics.fidelity.psnr_y_pyiqa (= pyiqa psnr, test_y_channel=True, "
                                      "color_space='ycbcr')", "source": _SOURCES["pyiqa"]}
        if self.convention == "tadisr":
            return {**common, "color_space": "RGB, clamped to [0, 1]", "formula": "20*log10(1 / RMSE)",
                    "identical_images": "100", "implementation": "evalkit.metrics.fidelity.psnr_rgb_tadisr",
                    "source": _SOURCES["tadisr"]}
        return {**common, "color_space": COLOR_SPACE, "rounding": "none (float64 Y)",
                "implementation": "evalkit.metrics.fidelity.psnr_y (float64; = basicsr calculate_psnr, "
                                  "test_y_channel=True)",
                "identical_images": "inf"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        return self._fn(sample.sr, sample.hr, self.crop_border)


class SSIM(MeanMetric):
    """Mean per-image SSIM. ``convention``: ``"basicsr"`` (default: Y, float64, no clipping),
    ``"pyiqa"`` (pyiqa ``ssim`` on ycbcr Y: Y rounded to integers, c·s term clipped at 0) or
    ``"tadisr"`` (RGB, zero-padded window, TADiSR's own code); see the module docstring."""

    name = "ssim"
    higher_is_better = True
    needs = frozenset({"sr", "hr"})

    def __init__(self, crop_border: int = 0, convention: str = "basicsr", **_runner_kw: Any):
        self.crop_border = int(crop_border)
        self.convention = _check_convention(convention, self.name)
        self._fn = _SSIM_FUNCS[self.convention]
        super().__init__()

    def settings(self) -> dict[str, Any]:
        common = {"metric": self.name, "convention": self.convention, "crop_border": self.crop_border,
                  "average": "mean over images"}
        if self.convention == "pyiqa":
            return {**common, "color_space": PYIQA_COLOR_SPACE,
                    "rounding": "round(255*Y) half to even (float32), then float64",
                    "window": "11x11 Gaussian sigma=1.5 (2-D, rounded to float32), valid region, no downsampling",
                    "constants": "C1=(0.01*255)^2, C2=(0.03*255)^2", "cs_clip": "relu(c*s) before multiplying l",
                    "implementation": "evalkit.metrics.fidelity.ssim_y_pyiqa (= pyiqa ssim, test_y_channel=True, "
                                      "color_space='ycbcr')", "source": _SOURCES["pyiqa"]}
        if self.convention == "tadisr":
            return {**common, "color_space": "RGB, clamped to [0, 1], per channel",
                    "window": "11x11 Gaussian sigma=1.5 (float32), zero padding, same size",
                    "constants": "C1=0.01^2, C2=0.03^2", "dtype": "float32",
                    "implementation": "evalkit.metrics.fidelity.ssim_rgb_tadisr", "source": _SOURCES["tadisr"]}
        return {**common, "color_space": COLOR_SPACE, "rounding": "none (float64 Y)",
                "window": "11x11 Gaussian sigma=1.5, valid region", "constants": "C1=(0.01*255)^2, C2=(0.03*255)^2",
                "cs_clip": "none",
                "implementation": "evalkit.metrics.fidelity.ssim_y (float64, cv2 filtering; = basicsr "
                                  "calculate_ssim, test_y_channel=True)"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        return self._fn(sample.sr, sample.hr, self.crop_border)


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
