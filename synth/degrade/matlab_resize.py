"""MATLAB's ``imresize(img, scale, 'bicubic')``: the LR that SR papers make from HR-only sets.

What is reproduced (facts read in BasicSR's ``basicsr/utils/matlab_functions.py``, Apache-2.0,
itself a port of MATLAB's ``imresize``; this is an independent numpy implementation):

- Keys' cubic kernel with a = -0.5 (``1.5|x|³ - 2.5|x|² + 1`` on [0, 1],
  ``-0.5|x|³ + 2.5|x|² - 4|x| + 2`` on (1, 2]); OpenCV's ``INTER_CUBIC`` uses a = -0.75.
- Antialiasing when downscaling: the kernel is stretched by 1/scale (support 4/scale input
  pixels) and its height scaled by ``scale``, i.e. it low-passes before sampling. OpenCV's
  ``INTER_CUBIC`` always uses a 4-tap kernel, so a ×4 downscale aliases (sharper-looking, ~0.5 dB
  less PSNR after upsampling on a text image).
- Pixel-centre mapping: output pixel x (1-based) samples input u = x/scale + 0.5·(1 - 1/scale).
- Each output pixel's weights are normalised to sum to 1; outside the image, pixels are mirrored
  with the edge pixel repeated (MATLAB/numpy "symmetric" padding).
- Output size ceil(scale · input size); height first, then width (the order matters only at
  float rounding level).

Each axis is one sparse (out × in) weight matrix (at most ceil(4/scale) + 2 taps a row), applied
as a sparse-dense product, so a 2048² RGB image downscales ×4 in about a tenth of a second.
"""
from __future__ import annotations

import math

import numpy as np

from models.errors import TextsrError


class ResizeInputError(TextsrError, ValueError):
    """The image or scale given to :func:`imresize` is not usable."""


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``), float64."""
    ax = np.abs(np.asarray(x, dtype=np.float64))
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1.0
    outer = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return np.where(ax <= 1.0, inner, np.where(ax <= 2.0, outer, 0.0))


def resize_matrix(in_len: int, out_len: int, scale: float, antialiasing: bool = True):
    """The (out_len × in_len) ``scipy.sparse.csr_matrix`` (float64) of one axis: row i holds the
    weights of output pixel i over the input pixels, padding folded back into the image."""
    from scipy.sparse import csr_matrix

    widen = scale < 1 and antialiasing
    width = 4.0 / scale if widen else 4.0
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2  # one spare tap each side; its weight is 0 when unused
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    w = scale * cubic(dist * scale) if widen else cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # 1-based index -> 0-based, mirrored with the edge repeated: period 2n, ... 1 0 | 0 1 ... n-1 | n-1 ...
    j = (idx.astype(np.int64) - 1) % (2 * in_len)
    j = np.where(j < in_len, j, 2 * in_len - 1 - j)
    rows = np.repeat(np.arange(out_len), taps)
    # csr_matrix sums duplicate (row, col) entries: a tap that mirrors onto a pixel already used
    # adds to it, exactly as gathering from the padded image would.
    return csr_matrix((w.ravel(), (rows, j.ravel())), shape=(out_len, in_len))


def imresize(img: np.ndarray, scale: float, antialiasing: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when ``scale < 1``).

    img:   HxW or HxWxC, uint8 (0..255) or float (any range; [0, 1] by convention).
    scale: > 0, the same for height and width; output size is ceil(scale·H) x ceil(scale·W).

    Returns the same layout. uint8 in -> uint8 out, rounded and clipped (what MATLAB returns for
    uint8 images); float in -> float32 out, neither rounded nor clipped (bicubic overshoots).
    """
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or img.size == 0:
        got = f"array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ResizeInputError(f"imresize: expected an HxW or HxWxC image, got {got}")
    if img.dtype != np.uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ResizeInputError(f"imresize: expected uint8 or float pixels, got {img.dtype}")
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) \
            or not math.isfinite(scale) or scale <= 0:
        raise ResizeInputError(f"imresize: scale must be a positive number, got {scale!r}")
    scale = float(scale)
    h, w = img.shape[:2]
    oh, ow = math.ceil(h * scale), math.ceil(w * scale)
    x = img.astype(np.float32)
    c = 1 if img.ndim == 2 else img.shape[2]
    # float32 data, float32 weights: the products and sums stay within ~1e-6 of float64 for
    # images in [0, 1], far below 1/255, and halve the memory traffic.
    mh = resize_matrix(h, oh, scale, antialiasing).astype(np.float32)
    mw = resize_matrix(w, ow, scale, antialiasing).astype(np.float32)
    out = mh @ x.reshape(h, w * c)                                   # (oh, w*c)
    out = out.reshape(oh, w, c).transpose(1, 0, 2).reshape(w, oh * c)
    out = (mw @ out).reshape(ow, oh, c).transpose(1, 0, 2)           # (oh, ow, c)
    out = out[:, :, 0] if img.ndim == 2 else np.ascontiguousarray(out)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out, dtype=np.float32)


def downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """``imresize(img, 1/factor)`` for an integer ``factor`` dividing H and W exactly: the
    classic LR of an HR image (uint8 -> uint8, float -> float32)."""
    h, w = img.shape[:2]
    if h % factor or w % factor:
        raise ResizeInputError(f"downscale: HR size {h}x{w} is not divisible by {factor}; crop it to "
                               f"{h - h % factor}x{w - w % factor} first")
    return imresize(img, 1.0 / factor)
