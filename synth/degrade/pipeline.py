"""Real-ESRGAN's second-order degradation in numpy + OpenCV, one image at a time, reproducible.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021; order of operations from ``RealESRGANModel.feed_data`` in
https://github.com/xinntao/Real-ESRGAN (BSD-3-Clause); noise, filtering and USM maths from BasicSR
(https://github.com/XPixelGroup/BasicSR, Apache-2.0). Independent re-implementation, no torch.

Differences from the torch reference chain, each on purpose:

- JPEG is a real codec: ``cv2.imencode``/``cv2.imdecode`` (libjpeg, 4:2:0 chroma, standard tables
  scaled by the same 5000/q or 200-2q rule) at an integer quality drawn uniformly from the range.
  BasicSR's ``DiffJPEG`` is a differentiable torch re-implementation of the same codec with a
  real-valued quality; Real-ESRGAN uses it only to run on GPU batches. The real codec is several
  times faster on CPU and is what LR images in the wild actually went through.
- Resizing is ``cv2.resize`` (INTER_AREA / INTER_LINEAR / INTER_CUBIC for torch's
  area / bilinear / bicubic). Bilinear and bicubic (a = -0.75, no antialiasing) match torch's
  ``F.interpolate(align_corners=False)``; area differs slightly (OpenCV weights fractional pixel
  overlaps exactly where torch's adaptive average pooling does not; for upscaling OpenCV's area
  mode interpolates where torch's repeats pixels).
- Randomness comes only from the caller's ``np.random.Generator``: same generator state, same
  bytes out.

Everything runs in float32 RGB in [0, 1] between the uint8 input and the uint8 output.

Besides the chain, two plain downscales (``kind``): ``matlab-bicubic``, MATLAB's antialiased
``imresize`` (``synth.degrade.matlab_resize``), the LR of most SR papers' HR-only benchmarks; and
``cv2-bicubic``, OpenCV ``INTER_CUBIC`` without antialiasing.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from synth.degrade import matlab_resize
from synth.degrade.kernels import (
    KERNEL_SIZE,
    KERNEL_TYPES,
    sample_blur_kernel,
    sample_final_sinc,
)

SUPPORTED_SCALES = (2, 4, 8)
RESIZE_MODES = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}
KINDS = ("second-order", "matlab-bicubic", "cv2-bicubic")

# The version of what ``degrade`` computes: bump it whenever the same (HR, scale, config, generator
# state) would give other LR bytes, so caches keyed by it (evalkit's fixed LR) are never reused
# stale. 1: the chain and cv2-bicubic as first written; 2: kinds renamed, matlab-bicubic added.
DEGRADE_VERSION = 2

_ODD_7_21 = tuple(range(7, 22, 2))
# torchvision's rgb_to_grayscale weights (ITU-R 601-2 luma), used by basicsr's gray poisson noise.
_GRAY_WEIGHTS = np.array([0.2989, 0.587, 0.114], dtype=np.float32)
# USMSharp defaults in basicsr/Real-ESRGAN: radius 50 (made odd: 51), sigma 0 -> OpenCV's rule
# 0.3 * ((51 - 1) / 2 - 1) + 0.8 = 8, weight 0.5, threshold 10 (0-255 scale).
_USM_RADIUS, _USM_WEIGHT, _USM_THRESHOLD = 51, 0.5, 10.0


@dataclass(frozen=True)
class DegradeConfig:
    """Every parameter of the second-order degradation. Defaults are Real-ESRGAN x4plus training.

    Ranges are (low, high) tuples and are sampled uniformly; probabilities are in [0, 1].
    Suffix 1 = first degradation stage (at HR resolution), 2 = second stage (around LR size).

    name:            label written into each sample's params ("preset" key).
    kind:            "second-order" (the Real-ESRGAN chain), "matlab-bicubic" (MATLAB's
                     antialiased bicubic ``imresize``) or "cv2-bicubic" (OpenCV INTER_CUBIC, no
                     antialiasing); for the two plain downscales every other field is ignored.
    usm_sharpen:     unsharp-mask the HR image before degrading it (Real-ESRGAN's ``gt_usm``).
    kernel_list, kernel_prob: blur kernel types (of ``KERNEL_TYPES``) and their probabilities,
                     shared by both stages.
    kernel_range1/2: odd kernel supports (sampled uniformly), each <= 21; kernels are zero-padded
                     to 21x21.
    sinc_prob1/2:    probability that a stage's blur is a sinc (circular low-pass) kernel instead.
    blur_sigma1/2:   Gaussian sigma range in HR pixels (sigma_x; sigma_y too for anisotropic kernels).
    betag_range1/2:  shape beta of generalised-Gaussian kernels.
    betap_range1/2:  shape beta of plateau kernels.
    second_blur_prob: probability that stage 2 blurs at all.
    resize_prob1/2:  probabilities of (up, down, keep).
    resize_range1/2: (low, high): a "down" scale is drawn in [low, 1], an "up" scale in [1, high].
                     Stage 1 scales the HR size, stage 2 scales the target LR size HR/scale.
    resize_modes:    interpolation modes drawn uniformly for every resize.
    gaussian_noise_prob1/2: probability of Gaussian noise; otherwise Poisson noise.
    noise_range1/2:  Gaussian sigma on the 0-255 scale.
    poisson_scale_range1/2: multiplier of the Poisson noise.
    gray_noise_prob1/2: probability that the noise is the same in all three channels.
    jpeg_range1/2:   JPEG quality range (integers, inclusive); jpeg_range2 is the final JPEG.
    final_sinc_prob: probability of a final sinc filter after the resize to LR size.
    final_kernel_range: odd supports of the final sinc kernel.
    final_resize_first_prob: probability of [resize + sinc, then JPEG] rather than
                     [JPEG, then resize + sinc].
    """

    name: str = "custom"
    kind: str = "second-order"
    usm_sharpen: bool = True
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    # stage 1
    kernel_range1: tuple[int, ...] = _ODD_7_21
    sinc_prob1: float = 0.1
    blur_sigma1: tuple[float, float] = (0.2, 3.0)
    betag_range1: tuple[float, float] = (0.5, 4.0)
    betap_range1: tuple[float, float] = (1.0, 2.0)
    resize_prob1: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range1: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob1: float = 0.5
    noise_range1: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range1: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob1: float = 0.4
    jpeg_range1: tuple[int, int] = (30, 95)
    # stage 2
    second_blur_prob: float = 0.8
    kernel_range2: tuple[int, ...] = _ODD_7_21
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[int, int] = (30, 95)
    # final stage
    final_sinc_prob: float = 0.8
    final_kernel_range: tuple[int, ...] = _ODD_7_21
    final_resize_first_prob: float = 0.5
    resize_modes: tuple[str, ...] = ("area", "bilinear", "bicubic")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # accept lists (YAML, JSON) but store tuples: hashable, frozen
            v = getattr(self, f.name)
            if isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))
        self._validate()

    def _validate(self) -> None:
        def fail(field: str, got: Any, expected: str) -> None:
            raise ValueError(f"DegradeConfig.{field}: got {got!r}, expected {expected}")

        if self.kind not in KINDS:
            fail("kind", self.kind, f"one of {KINDS}")
        unknown = [k for k in self.kernel_list if k not in KERNEL_TYPES]
        if unknown or not self.kernel_list:
            fail("kernel_list", self.kernel_list, f"a non-empty subset of {KERNEL_TYPES}")
        if len(self.kernel_prob) != len(self.kernel_list) or min(self.kernel_prob) < 0 or sum(self.kernel_prob) <= 0:
            fail("kernel_prob", self.kernel_prob, f"{len(self.kernel_list)} non-negative weights, one per kernel_list entry")
        for name in ("kernel_range1", "kernel_range2", "final_kernel_range"):
            sizes = getattr(self, name)
            if not sizes or any(not isinstance(s, (int, np.integer)) or s % 2 == 0 or not 1 <= s <= KERNEL_SIZE
                                for s in sizes):
                fail(name, sizes, f"a non-empty tuple of odd ints in [1, {KERNEL_SIZE}]")
        for name in ("resize_prob1", "resize_prob2"):
            p = getattr(self, name)
            if len(p) != 3 or min(p) < 0 or sum(p) <= 0:
                fail(name, p, "three non-negative weights (up, down, keep)")
        for name in ("resize_range1", "resize_range2"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= 1 <= hi:
                fail(name, (lo, hi), "(low, high) with 0 < low <= 1 <= high")
        for name in ("blur_sigma1", "blur_sigma2", "betag_range1", "betag_range2", "betap_range1",
                     "betap_range2", "noise_range1", "noise_range2", "poisson_scale_range1",
                     "poisson_scale_range2", "jpeg_range1", "jpeg_range2"):
            r = getattr(self, name)
            if len(r) != 2 or r[0] > r[1] or r[0] < 0:
                fail(name, r, "(low, high) with 0 <= low <= high")
        for name in ("blur_sigma1", "blur_sigma2"):
            if getattr(self, name)[0] <= 0:
                fail(name, getattr(self, name), "sigmas > 0")
        for name in ("jpeg_range1", "jpeg_range2"):
            lo, hi = getattr(self, name)
            if int(lo) != lo or int(hi) != hi or not 1 <= lo <= hi <= 100:
                fail(name, (lo, hi), "integer qualities with 1 <= low <= high <= 100")
        for name in ("sinc_prob1", "sinc_prob2", "second_blur_prob", "gaussian_noise_prob1", "gaussian_noise_prob2",
                     "gray_noise_prob1", "gray_noise_prob2", "final_sinc_prob", "final_resize_first_prob"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                fail(name, p, "a probability in [0, 1]")
        if not self.resize_modes or any(m not in RESIZE_MODES for m in self.resize_modes):
            fail("resize_modes", self.resize_modes, f"a non-empty subset of {tuple(RESIZE_MODES)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------------------------------
# building blocks (float32 HxWx3 RGB in, same out)
# ---------------------------------------------------------------------------------------------

def _filter(img: np.ndarray, kernel21: np.ndarray, size: int) -> np.ndarray:
    """Correlate with a centred kernel, reflect-101 borders (= torch 'reflect' padding, what
    basicsr's ``filter2D`` does). Only the kernel's nonzero ``size`` x ``size`` support is used:
    the zero padding changes nothing but the cost."""
    c, r = KERNEL_SIZE // 2, size // 2
    k = kernel21[c - r:c + r + 1, c - r:c + r + 1]
    if size > 3:
        # A rank-1 kernel (the isotropic Gaussians, ~40% of draws) runs as two 1-D passes: 2k
        # instead of k² taps per pixel. The tolerance keeps the result equal to the 2-D filter
        # to float32 rounding.
        u, sv, vt = np.linalg.svd(k)
        if sv[1] <= 1e-9 * sv[0]:
            col = (u[:, 0] * math.sqrt(sv[0])).astype(np.float32)
            row = (vt[0] * math.sqrt(sv[0])).astype(np.float32)
            return cv2.sepFilter2D(img, -1, row, col, borderType=cv2.BORDER_REFLECT_101)
    return cv2.filter2D(img, -1, np.ascontiguousarray(k, dtype=np.float32), borderType=cv2.BORDER_REFLECT_101)


def usm_sharpen(img: np.ndarray) -> np.ndarray:
    """basicsr ``USMSharp`` (radius 50, weight 0.5, threshold 10) on float32 HxWxC in [0, 1]."""
    g = cv2.getGaussianKernel(_USM_RADIUS, 0).astype(np.float32)
    blur = cv2.sepFilter2D(img, -1, g, g, borderType=cv2.BORDER_REFLECT_101)
    residual = cv2.subtract(img, blur)
    # OpenCV's element-wise ops are multi-threaded and SIMD; numpy's equivalents were a third of
    # this function's time. THRESH_BINARY is a strict ">", as basicsr's mask.
    _, mask = cv2.threshold(cv2.absdiff(img, blur), _USM_THRESHOLD / 255.0, 1.0, cv2.THRESH_BINARY)
    soft = cv2.sepFilter2D(mask, -1, g, g, borderType=cv2.BORDER_REFLECT_101)
    sharp = cv2.scaleAdd(residual, _USM_WEIGHT, img)
    np.clip(sharp, 0.0, 1.0, out=sharp)
    return cv2.add(img, cv2.multiply(soft, cv2.subtract(sharp, img)))


def _resize(img: np.ndarray, h: int, w: int, mode: str) -> np.ndarray:
    if img.shape[0] == h and img.shape[1] == w:
        return img  # every mode is the identity at the same size
    return cv2.resize(img, (w, h), interpolation=RESIZE_MODES[mode])


def _add_noise(img: np.ndarray, rng: np.random.Generator, gaussian_prob: float, sigma_range: Sequence[float],
               poisson_range: Sequence[float], gray_prob: float) -> tuple[np.ndarray, dict]:
    """basicsr ``random_add_gaussian_noise_pt`` / ``random_add_poisson_noise_pt`` (clip, no round)."""
    h, w = img.shape[:2]
    if rng.uniform() < gaussian_prob:
        sigma = float(rng.uniform(sigma_range[0], sigma_range[1]))
        gray = bool(rng.uniform() < gray_prob)
        shape = (h, w, 1) if gray else (h, w, 3)
        noise = rng.standard_normal(shape, dtype=np.float32)
        noise *= np.float32(sigma / 255.0)
        out = img + noise
        params = {"type": "gaussian", "sigma": sigma, "poisson_scale": None, "gray": gray}
    else:
        scale = float(rng.uniform(poisson_range[0], poisson_range[1]))
        gray = bool(rng.uniform() < gray_prob)
        src = (img @ _GRAY_WEIGHTS)[..., None] if gray else img
        # Poisson counts of an image quantised to 8 bits, with as many "photon levels" as the
        # next power of two above its number of distinct values (skimage.util.random_noise rule).
        q = np.clip(np.rint(src * 255.0), 0, 255).astype(np.uint8)
        levels = np.count_nonzero(np.bincount(q.ravel(), minlength=256))
        vals = float(2 ** math.ceil(math.log2(levels)))
        lam = (np.arange(256, dtype=np.float64) * (vals / 255.0))[q]
        noise = (_poisson(rng, q, vals / 255.0) - lam) * (scale / vals)
        out = img + noise.astype(np.float32)
        params = {"type": "poisson", "sigma": None, "poisson_scale": scale, "gray": gray}
    np.clip(out, 0.0, 1.0, out=out)
    return out, params


def _poisson(rng: np.random.Generator, q: np.ndarray, step: float) -> np.ndarray:
    """Poisson counts with mean ``q * step`` per pixel, by inverting each level's CDF at one
    uniform per pixel. ``rng.poisson`` would draw the same distribution, but its use of the
    stream depends on the pixel values, so two images that differ in a few pixels (text variants
    of one scene) would get different noise everywhere; here every pixel's noise depends on its own
    value and its own uniform only."""
    from scipy.special import gammaln

    u = rng.random(q.shape)
    flat, uf = q.ravel(), u.ravel()
    counts = np.bincount(flat, minlength=256)
    present = np.flatnonzero(counts)
    lams = present * step
    k = np.arange(int(lams.max() + 12 * math.sqrt(lams.max()) + 12), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):  # level 0: fixed on the next line
        logpmf = k[None, :] * np.log(lams)[:, None] - lams[:, None] - gammaln(k + 1)[None, :]
    logpmf[lams == 0] = np.where(k == 0, 0.0, -np.inf)
    cdf = np.cumsum(np.exp(logpmf), axis=1)
    out = np.empty(flat.shape, np.float64)
    order = np.argsort(flat, kind="stable")
    start = 0
    for row, level in enumerate(present):
        idx = order[start:start + counts[level]]
        start += counts[level]
        out[idx] = np.searchsorted(cdf[row], uf[idx], side="left")
    return out.reshape(q.shape)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through a real JPEG codec at ``quality`` (libjpeg via OpenCV, 4:2:0)."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV only fails on empty images, which validation excludes
        raise RuntimeError(f"cv2.imencode failed on a {img.shape} image at quality {quality}")
    out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out.astype(np.float32) * np.float32(1.0 / 255.0)


def _sample_resize(rng: np.random.Generator, probs: Sequence[float], rng_range: Sequence[float],
                   modes: Sequence[str]) -> tuple[str, float, str]:
    p = np.asarray(probs, dtype=np.float64)
    direction = ("up", "down", "keep")[int(rng.choice(3, p=p / p.sum()))]
    if direction == "up":
        s = float(rng.uniform(1.0, rng_range[1]))
    elif direction == "down":
        s = float(rng.uniform(rng_range[0], 1.0))
    else:
        s = 1.0
    return direction, s, _choice(rng, modes)


def _choice(rng: np.random.Generator, items: Sequence[str]) -> str:
    return str(items[int(rng.integers(len(items)))])


def _jpeg_quality(rng: np.random.Generator, q_range: Sequence[int]) -> int:
    return int(rng.integers(int(q_range[0]), int(q_range[1]) + 1))


def _check_input(hr: np.ndarray, scale: int) -> None:
    if not isinstance(hr, np.ndarray) or hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        got = f"{hr.dtype} array of shape {hr.shape}" if isinstance(hr, np.ndarray) else type(hr).__name__
        raise ValueError(f"degrade: hr must be an HxWx3 uint8 RGB array, got {got}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale not in SUPPORTED_SCALES:
        raise ValueError(f"degrade: scale must be one of {SUPPORTED_SCALES}, got {scale!r}")
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(
            f"degrade: HR size {h}x{w} is not divisible by scale {scale}; crop it to "
            f"{h - h % scale}x{w - w % scale} (or pad) first")


# ---------------------------------------------------------------------------------------------
# the chain
# ---------------------------------------------------------------------------------------------

def degrade(hr: np.ndarray, scale: int, cfg: DegradeConfig, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Degrade one HR image into its LR counterpart.

    hr:    HxWx3 uint8 RGB, H and W divisible by ``scale``.
    scale: 2, 4 or 8.
    cfg:   a ``DegradeConfig`` (see ``synth.degrade.presets.get_preset``).
    rng:   the only source of randomness; the same generator state gives byte-identical output.

    Returns (LR, params): LR is (H/scale)x(W/scale)x3 uint8 RGB; params is a JSON-serialisable
    dict (plain Python scalars, lists and dicts) of every sampled value:
    ``preset, kind, scale, hr_size, lr_size, usm_sharpen``; for the plain downscales
    ``interpolation`` (how it was made, e.g. "matlab-imresize-bicubic") and ``antialias``; for the
    second-order chain
    ``stage1 {kernel, resize, noise, jpeg_quality}``, ``stage2 {blur_applied, kernel, resize, noise}``,
    ``final {order, resize, sinc, jpeg_quality}``. A kernel is ``{type, size, sigma_x, sigma_y,
    theta, beta, omega}`` (None where not applicable; the final sinc's type is "sinc" or
    "identity"), a resize ``{direction, scale, interpolation, size}``, a noise ``{type, sigma,
    poisson_scale, gray}``.

    Order (Real-ESRGAN ``feed_data``): optional USM → stage 1: blur, random resize, noise, JPEG →
    stage 2: blur (p = second_blur_prob), random resize relative to the LR size, noise → final:
    [resize to LR size + sinc, JPEG] or [JPEG, resize + sinc] → round(x·255) clamped.
    """
    _check_input(hr, scale)
    h, w = hr.shape[:2]
    lh, lw = h // scale, w // scale
    params: dict[str, Any] = {"preset": cfg.name, "kind": cfg.kind, "scale": int(scale),
                              "hr_size": [h, w], "lr_size": [lh, lw]}
    if cfg.kind == "matlab-bicubic":
        # Nothing is sampled: the generator is left untouched, the LR depends on the HR alone.
        params.update(usm_sharpen=False, interpolation="matlab-imresize-bicubic", antialias=True)
        return matlab_resize.downscale(hr, scale), params
    if cfg.kind == "cv2-bicubic":
        params.update(usm_sharpen=False, interpolation="cv2-inter-cubic", antialias=False)
        x = hr.astype(np.float32) * np.float32(1.0 / 255.0)
        return _to_uint8(cv2.resize(x, (lw, lh), interpolation=cv2.INTER_CUBIC)), params

    x = hr.astype(np.float32) * np.float32(1.0 / 255.0)

    params["usm_sharpen"] = bool(cfg.usm_sharpen)
    if cfg.usm_sharpen:
        x = usm_sharpen(x)

    # ---- stage 1, at HR resolution
    k1, k1_params = sample_blur_kernel(
        rng, kernel_range=cfg.kernel_range1, kernel_list=cfg.kernel_list, kernel_prob=cfg.kernel_prob,
        sinc_prob=cfg.sinc_prob1, sigma_range=cfg.blur_sigma1, betag_range=cfg.betag_range1,
        betap_range=cfg.betap_range1)
    x = _filter(x, k1, k1_params["size"])
    direction, s, mode = _sample_resize(rng, cfg.resize_prob1, cfg.resize_range1, cfg.resize_modes)
    # F.interpolate(scale_factor=s) gives floor(size * s)
    size1 = [max(1, math.floor(h * s)), max(1, math.floor(w * s))]
    x = _resize(x, size1[0], size1[1], mode)
    x, noise1 = _add_noise(x, rng, cfg.gaussian_noise_prob1, cfg.noise_range1, cfg.poisson_scale_range1,
                           cfg.gray_noise_prob1)
    q1 = _jpeg_quality(rng, cfg.jpeg_range1)
    x = _jpeg(x, q1)
    params["stage1"] = {"kernel": k1_params,
                        "resize": {"direction": direction, "scale": s, "interpolation": mode, "size": size1},
                        "noise": noise1, "jpeg_quality": q1}

    # ---- stage 2, around the LR size
    k2, k2_params = sample_blur_kernel(
        rng, kernel_range=cfg.kernel_range2, kernel_list=cfg.kernel_list, kernel_prob=cfg.kernel_prob,
        sinc_prob=cfg.sinc_prob2, sigma_range=cfg.blur_sigma2, betag_range=cfg.betag_range2,
        betap_range=cfg.betap_range2)
    blur2 = bool(rng.uniform() < cfg.second_blur_prob)
    if blur2:
        x = _filter(x, k2, k2_params["size"])
    direction, s, mode = _sample_resize(rng, cfg.resize_prob2, cfg.resize_range2, cfg.resize_modes)
    size2 = [max(1, int(h / scale * s)), max(1, int(w / scale * s))]
    x = _resize(x, size2[0], size2[1], mode)
    x, noise2 = _add_noise(x, rng, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                           cfg.gray_noise_prob2)
    params["stage2"] = {"blur_applied": blur2, "kernel": k2_params,
                        "resize": {"direction": direction, "scale": s, "interpolation": mode, "size": size2},
                        "noise": noise2}

    # ---- final: resize to LR + sinc, and JPEG, in either order
    sinc, sinc_params = sample_final_sinc(rng, prob=cfg.final_sinc_prob, kernel_range=cfg.final_kernel_range)
    resize_first = bool(rng.uniform() < cfg.final_resize_first_prob)
    mode = _choice(rng, cfg.resize_modes)
    q2 = _jpeg_quality(rng, cfg.jpeg_range2)
    if resize_first:
        x = _resize(x, lh, lw, mode)
        if sinc_params["type"] == "sinc":
            x = _filter(x, sinc, sinc_params["size"])
        x = _jpeg(x, q2)
    else:
        x = _jpeg(x, q2)
        x = _resize(x, lh, lw, mode)
        if sinc_params["type"] == "sinc":
            x = _filter(x, sinc, sinc_params["size"])
    params["final"] = {"order": "resize-sinc-jpeg" if resize_first else "jpeg-resize-sinc",
                       "resize": {"interpolation": mode, "size": [lh, lw]},
                       "sinc": sinc_params, "jpeg_quality": q2}
    return _to_uint8(x), params


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """round(x·255) clamped to [0, 255], the quantisation at the end of ``feed_data``."""
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
