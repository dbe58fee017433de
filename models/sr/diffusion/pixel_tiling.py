"""Hann-weighted overlapping pixel tiles for models that map an image to same-size maps
(TADiSR: the bicubic-upsampled image -> SR image and text-mask logits).

As the official ``tadisr/tiling.py`` (github.com/mingcv/TADiSR, MIT, commit 6f591a6): square tiles
of ``tile`` px on a grid stepping by ``tile − overlap`` with the last tile flush with the far edge
(:func:`models.sr.diffusion.tiling.tile_starts`), each output weighted by the outer product of a
symmetric Hann window clamped to ≥ 1e-3, summed and divided by the summed weights; an axis shorter
than the tile is replicate-padded to the tile and cropped back. Differences, deliberate:

* each axis is handled on its own. The official code pads *both* axes and resets both tile lists
  to [0] as soon as one side is shorter than the tile, so with H < tile < W only the first
  ``tile`` columns are ever predicted and the rest divide 0 by 0; here the long axis is tiled.
* only one tile is on the model's device at a time; the running sums stay on the input's device
  (the official sums are full-size tensors on the GPU), and because the weights are separable the
  normaliser is two 1-D sums instead of a full-size weight map.
* ``tile <= 0`` runs the whole image once (replicate-padded to a multiple of ``align``).
"""
from __future__ import annotations

from collections.abc import Callable


def hann_window(n: int, floor: float = 1e-3, device=None):
    """The official 1-D tile weight: ``torch.hann_window(n, periodic=False).clamp_min(floor)``, float32."""
    import torch

    return torch.hann_window(n, periodic=False, dtype=torch.float64).clamp_min(floor).to(device=device, dtype=torch.float32)


def _pad_to(x, h: int, w: int):
    import torch.nn.functional as F

    ph, pw = h - x.shape[-2], w - x.shape[-1]
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def hann_tiled(fn: Callable, x, tile: int = 768, overlap: int = 256, align: int = 1, device=None, dtype=None):
    """Apply ``fn(tile_batch) -> tuple of N×Cᵢ×t×t tensors`` over Hann-weighted tiles of ``x``.

    x: N×C×H×W float (any device). Each tile is moved to ``device``/``dtype`` (default: x's) before
    ``fn`` and its outputs back to x's device as float32. ``tile`` must be a multiple of ``align``
    (the model's size granularity, e.g. 8 for a ×8 VAE); ``0 <= overlap < tile``.
    Returns a tuple of N×Cᵢ×H×W float32 tensors (the blended outputs, cropped to x's size).
    """
    import torch

    from models.sr.diffusion.tiling import tile_starts

    n, _, h, w = x.shape
    device = device or x.device
    if tile <= 0:
        H, W = -(-h // align) * align, -(-w // align) * align
        outs = fn(_pad_to(x, H, W).to(device=device, dtype=dtype))
        return tuple(o.to(device=x.device, dtype=torch.float32)[:, :, :h, :w] for o in outs)
    if tile % align:
        raise ValueError(f"tile ({tile}) must be a multiple of {align}")
    if not 0 <= overlap < tile:
        raise ValueError(f"tile overlap ({overlap}) must be in [0, tile={tile})")
    H, W = max(h, tile), max(w, tile)
    xp = _pad_to(x, H, W)
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    win = hann_window(tile, device=x.device)
    wy, wx = torch.zeros(H, device=x.device), torch.zeros(W, device=x.device)
    for y0 in ys:
        wy[y0:y0 + tile] += win
    for x0 in xs:
        wx[x0:x0 + tile] += win
    w2 = win[:, None] * win[None, :]
    sums = None
    for y0 in ys:
        for x0 in xs:
            outs = fn(xp[:, :, y0:y0 + tile, x0:x0 + tile].to(device=device, dtype=dtype))
            if sums is None:
                sums = [torch.zeros(n, o.shape[1], H, W, device=x.device) for o in outs]
            for s, o in zip(sums, outs):
                if tuple(o.shape[-2:]) != (tile, tile):
                    raise RuntimeError(f"tiled model returned {tuple(o.shape)} for a {tile}×{tile} tile")
                s[:, :, y0:y0 + tile, x0:x0 + tile] += o.to(device=x.device, dtype=torch.float32) * w2
    norm = wy[:, None] * wx[None, :]
    return tuple((s / norm)[:, :, :h, :w] for s in sums)
