"""Blur kernels of Real-ESRGAN's second-order degradation, sampled from an ``np.random.Generator``.

Paper: Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with Pure Synthetic
Data", ICCVW 2021. The maths follows BasicSR's ``basicsr/data/degradations.py``
(``bivariate_Gaussian``, ``bivariate_generalized_Gaussian``, ``bivariate_plateau``,
``random_mixed_kernels``, ``circular_lowpass_kernel``; https://github.com/XPixelGroup/BasicSR,
Apache-2.0) and the kernel sampling of Real-ESRGAN's ``RealESRGANDataset.__getitem__``
(https://github.com/xinntao/Real-ESRGAN, BSD-3-Clause). This is an independent re-implementation:
it draws every random number from the caller's generator (BasicSR uses the global ``random`` and
``np.random`` states) and returns the sampled parameters beside the kernel.

Every kernel returned here is float64, ``KERNEL_SIZE`` x ``KERNEL_SIZE`` (zero-padded around a
centred odd ``size`` x ``size`` support) and sums to 1.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import special

KERNEL_SIZE = 21
"""Side of every padded kernel, as in Real-ESRGAN (``pulse_tensor`` and ``pad_to=21``)."""

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")

# Real-ESRGAN draws the sinc cut-off from a wider range for large kernels: a small kernel cannot
# represent a low cut-off without heavy truncation ringing.
SINC_OMEGA_SMALL = (math.pi / 3, math.pi)  # kernel size < 13
SINC_OMEGA_LARGE = (math.pi / 5, math.pi)  # kernel size >= 13
FINAL_SINC_OMEGA = (math.pi / 3, math.pi)
ROTATION_RANGE = (-math.pi, math.pi)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x (column) and y (row) coordinates of a size x size grid centred on 0, float64."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    return xx, yy


def _quadratic_form(size: int, sig_x: float, sig_y: float, theta: float, isotropic: bool) -> np.ndarray:
    """[x y] Σ⁻¹ [x y]ᵀ on the grid, Σ = R(θ) diag(σx², σy²) R(θ)ᵀ (isotropic: σy = σx, θ = 0)."""
    xx, yy = _grid(size)
    if isotropic:
        return (xx * xx + yy * yy) / (sig_x * sig_x)
    c, s = math.cos(theta), math.sin(theta)
    # Rotating the coordinates into the kernel's principal axes inverts Σ in closed form.
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return u * u / (sig_x * sig_x) + v * v / (sig_y * sig_y)


def _check_size(size: int) -> None:
    if not (isinstance(size, (int, np.integer)) and size % 2 == 1 and 1 <= size <= KERNEL_SIZE):
        raise ValueError(f"kernel size must be an odd int in [1, {KERNEL_SIZE}], got {size!r}")


def bivariate_gaussian(size: int, sig_x: float, sig_y: float = 0.0, theta: float = 0.0,
                       isotropic: bool = True) -> np.ndarray:
    """Normalised (an)isotropic Gaussian, size x size float64. Isotropic ignores sig_y and theta."""
    _check_size(size)
    k = np.exp(-0.5 * _quadratic_form(size, sig_x, sig_y, theta, isotropic))
    return k / k.sum()


def bivariate_generalized_gaussian(size: int, sig_x: float, sig_y: float, theta: float, beta: float,
                                   isotropic: bool = True) -> np.ndarray:
    """Normalised generalised Gaussian exp(-½ q^β), q the quadratic form; size x size float64."""
    _check_size(size)
    k = np.exp(-0.5 * np.power(_quadratic_form(size, sig_x, sig_y, theta, isotropic), beta))
    return k / k.sum()


def bivariate_plateau(size: int, sig_x: float, sig_y: float, theta: float, beta: float,
                      isotropic: bool = True) -> np.ndarray:
    """Normalised plateau kernel 1 / (1 + q^β), q the quadratic form; size x size float64."""
    _check_size(size)
    k = np.reciprocal(np.power(_quadratic_form(size, sig_x, sig_y, theta, isotropic), beta) + 1.0)
    return k / k.sum()


def circular_lowpass_kernel(cutoff: float, size: int) -> np.ndarray:
    """Normalised 2-D circularly symmetric sinc (ideal low-pass) kernel, size x size float64.

    k(r) = ω J₁(ω r) / (2π r), with the r → 0 limit ω² / (4π) at the centre; ``cutoff`` = ω in
    radians per pixel (π is Nyquist).
    """
    _check_size(size)
    xx, yy = _grid(size)
    r = np.hypot(xx, yy)
    c = (size - 1) // 2
    r[c, c] = 1.0  # placeholder, overwritten below; avoids a 0/0 warning
    k = cutoff * special.j1(cutoff * r) / (2.0 * np.pi * r)
    k[c, c] = cutoff * cutoff / (4.0 * np.pi)
    return k / k.sum()


def pad_kernel(kernel: np.ndarray, to: int = KERNEL_SIZE) -> np.ndarray:
    """Zero-pad a centred odd square kernel to ``to`` x ``to``."""
    p = (to - kernel.shape[0]) // 2
    if p < 0:
        raise ValueError(f"kernel of size {kernel.shape[0]} is larger than {to}")
    return np.pad(kernel, ((p, p), (p, p))) if p else kernel


def identity_kernel(size: int = KERNEL_SIZE) -> np.ndarray:
    """A size x size pulse: filtering with it changes nothing."""
    k = np.zeros((size, size), dtype=np.float64)
    k[size // 2, size // 2] = 1.0
    return k


def _uniform(rng: np.random.Generator, lo_hi: Sequence[float]) -> float:
    return float(rng.uniform(lo_hi[0], lo_hi[1]))


def _sample_beta(rng: np.random.Generator, beta_range: Sequence[float]) -> float:
    # BasicSR splits the draw at 1 so that "sharper than Gaussian" and "flatter than Gaussian"
    # shapes are equally likely whatever the range's asymmetry; kept for parity (for a range
    # starting at 1, half the draws are exactly 1).
    if rng.uniform() < 0.5:
        return _uniform(rng, (beta_range[0], 1.0))
    return _uniform(rng, (1.0, beta_range[1]))


def _params(kind: str, size: int, sigma_x=None, sigma_y=None, theta=None, beta=None, omega=None) -> dict[str, Any]:
    """The fixed schema of a kernel's sampled parameters (None where not applicable)."""
    f = (lambda v: None if v is None else float(v))
    return {"type": kind, "size": int(size), "sigma_x": f(sigma_x), "sigma_y": f(sigma_y),
            "theta": f(theta), "beta": f(beta), "omega": f(omega)}


def sample_blur_kernel(rng: np.random.Generator, *, kernel_range: Sequence[int], kernel_list: Sequence[str],
                       kernel_prob: Sequence[float], sinc_prob: float, sigma_range: Sequence[float],
                       betag_range: Sequence[float], betap_range: Sequence[float]) -> tuple[np.ndarray, dict]:
    """One stage's blur kernel, as Real-ESRGAN's dataset samples ``kernel1`` / ``kernel2``.

    Size uniform over ``kernel_range``; with prob ``sinc_prob`` a sinc kernel (ω uniform in
    ``SINC_OMEGA_SMALL`` for size < 13 else ``SINC_OMEGA_LARGE``), otherwise a type drawn from
    ``kernel_list`` with ``kernel_prob``; σx (and for anisotropic types σy) uniform in
    ``sigma_range``, θ uniform in [-π, π]; β per ``_sample_beta``.

    Returns (KERNEL_SIZE x KERNEL_SIZE float64 summing to 1, parameter dict with keys
    type, size, sigma_x, sigma_y, theta, beta, omega; None where not applicable).
    """
    size = int(kernel_range[int(rng.integers(len(kernel_range)))])
    if rng.uniform() < sinc_prob:
        omega = _uniform(rng, SINC_OMEGA_SMALL if size < 13 else SINC_OMEGA_LARGE)
        return pad_kernel(circular_lowpass_kernel(omega, size)), _params("sinc", size, omega=omega)

    p = np.asarray(kernel_prob, dtype=np.float64)
    kind = str(kernel_list[int(rng.choice(len(kernel_list), p=p / p.sum()))])
    isotropic = not kind.endswith("aniso")
    sig_x = _uniform(rng, sigma_range)
    if isotropic:
        sig_y, theta = sig_x, 0.0
    else:
        sig_y = _uniform(rng, sigma_range)
        theta = _uniform(rng, ROTATION_RANGE)

    if kind in ("iso", "aniso"):
        k, beta = bivariate_gaussian(size, sig_x, sig_y, theta, isotropic), None
    elif kind.startswith("generalized"):
        beta = _sample_beta(rng, betag_range)
        k = bivariate_generalized_gaussian(size, sig_x, sig_y, theta, beta, isotropic)
    elif kind.startswith("plateau"):
        beta = _sample_beta(rng, betap_range)
        k = bivariate_plateau(size, sig_x, sig_y, theta, beta, isotropic)
    else:  # DegradeConfig validates kernel_list; this guards direct callers
        raise ValueError(f"unknown kernel type {kind!r}; expected one of {KERNEL_TYPES}")
    return pad_kernel(k), _params(kind, size, sig_x, sig_y, theta, beta)


def sample_final_sinc(rng: np.random.Generator, *, prob: float,
                      kernel_range: Sequence[int]) -> tuple[np.ndarray, dict]:
    """The final-stage kernel: with prob ``prob`` a sinc (size uniform over ``kernel_range``,
    ω uniform in [π/3, π]), else the identity pulse. Returns (21x21 float64, params)."""
    if rng.uniform() < prob:
        size = int(kernel_range[int(rng.integers(len(kernel_range)))])
        omega = _uniform(rng, FINAL_SINC_OMEGA)
        return pad_kernel(circular_lowpass_kernel(omega, size)), _params("sinc", size, omega=omega)
    return identity_kernel(), _params("identity", 1)
