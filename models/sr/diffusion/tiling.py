"""Tiling for one-step diffusion SR: the UNet over latent tiles, the VAE over pixel/latent tiles.

Latent tiling follows OSEDiff/PiSA-SR (``test_osediff.py``/``pisasr.py``): tiles only when
h·w > tile², square tiles of side min(tile, h, w) on a grid stepping by tile − overlap whose last
tile is flush with the far edge, each tile's output weighted by a Gaussian (σ = 0.1·side; centred as
PiSA-SR's ``_gaussian_weights``, or with rows half a pixel lower as OSEDiff's, which CODSR and SeeSR
copy: each method passes its own) and the sum divided by the summed weights.

VAE tiling: the official code hooks StableSR's "tiled VAE" (pad 32 px around 1024-px encoder tiles,
11 latent px around 224-latent decoder tiles, GroupNorm statistics pooled over all tiles). Here the
encoder runs on overlapping pixel tiles and the decoder on overlapping latent tiles, cross-faded
linearly over the overlap; GroupNorm statistics are per tile. Below the tile size (encoder ≤ 1088
px, decoder ≤ 246 latent px, i.e. ~2 K output pixels — every benchmark image) both run whole,
exactly as the official hook does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def gaussian_weights(h: int, w: int, var: float = 0.01, device=None, row_shift: float = 0.0):
    """h×w float32 tile weights: a separable Gaussian centred on the tile, σ = √var · side.
    ``row_shift`` moves the rows' centre down: 0.5 reproduces OSEDiff's ``_gaussian_weights``
    (midpoint h/2 for rows, (w−1)/2 for columns), which CODSR and SeeSR copy; PiSA-SR's is centred."""
    import torch

    def axis(n, shift):
        t = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2 + shift
        return torch.exp(-(t - mid) ** 2 / (n * n) / (2 * var)) / math.sqrt(2 * math.pi * var)

    return torch.outer(axis(h, row_shift), axis(w, 0.0)).to(device=device, dtype=torch.float32)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile offsets along one axis: 0, s, 2s, … (s = tile − overlap) and a last one at size − tile."""
    if size <= tile:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile ({tile})")
    stride = tile - overlap
    n = 1
    while (n - 1) * stride + tile < size:
        n += 1
    return [i * stride for i in range(n - 1)] + [size - tile]


def tiled_latent(fn: Callable, z, *cond, tile: int = 96, overlap: int = 32, row_shift: float = 0.0):
    """Apply ``fn(z_tile, *cond_tiles) -> tensor`` over latent tiles and blend (see module doc).

    z:    N×C×h×w latent (any dtype/device). ``cond``: tensors aligned with ``z`` whose spatial size
          is an integer multiple k of z's (e.g. the LR image at k = 8); each is cut at k× the
          latent tile's box. ``tile <= 0`` or h·w <= tile² runs ``fn`` once on the whole latent.
    ``row_shift``: of the tile weights' row centre (see :func:`gaussian_weights`).
    Returns N×C'×h×w float32 (C' = what ``fn`` returns).
    """
    import torch

    n, _, h, w = z.shape
    if tile <= 0 or h * w <= tile * tile:
        return fn(z, *cond).float()
    side = min(tile, h, w)
    ks = []
    for c in cond:
        k = c.shape[-2] // h
        if c.shape[-2] != k * h or c.shape[-1] != k * w:
            raise ValueError(f"conditioning of size {tuple(c.shape[-2:])} is not a multiple of the latent's {(h, w)}")
        ks.append(k)
    weights = gaussian_weights(side, side, device=z.device, row_shift=row_shift)
    out = contrib = None
    for y0 in tile_starts(h, side, overlap):
        for x0 in tile_starts(w, side, overlap):
            zt = z[:, :, y0:y0 + side, x0:x0 + side]
            ct = [c[..., k * y0:k * (y0 + side), k * x0:k * (x0 + side)] for c, k in zip(cond, ks)]
            o = fn(zt, *ct).float()
            if out is None:
                out = torch.zeros(n, o.shape[1], h, w, device=z.device)
                contrib = torch.zeros(h, w, device=z.device)
            out[:, :, y0:y0 + side, x0:x0 + side] += o * weights
            contrib[y0:y0 + side, x0:x0 + side] += weights
    return out / contrib


def _ramp(n: int, before: int, after: int):
    """1-D cross-fade weights: linear ramps over the spans shared with the previous/next tile."""
    import torch

    t = torch.arange(n, dtype=torch.float32) + 0.5
    w = torch.ones(n)
    if before > 0:
        w = torch.minimum(w, t / before)
    if after > 0:
        w = torch.minimum(w, (n - t) / after)
    return w


def tiled_resample(fn: Callable, x, tile: int, overlap: int, num: int, den: int, align: int = 1):
    """Apply a local map ``fn`` whose output is num/den × the input size over overlapping tiles.

    x: N×C×H×W; tile and overlap in input pixels. Tile offsets are multiples of ``align`` (and of
    ``den``), so each tile's output lands on whole output pixels. Overlaps are cross-faded with
    linear ramps that sum to one. Returns N×C'×(H·num/den)×(W·num/den) float32.
    """
    import torch

    n, _, h, w = x.shape
    a = max(align, den)
    tile = max(a, tile - tile % a)
    overlap = min(overlap - overlap % a, tile - a)

    def starts(size):
        s = tile_starts(size, tile, overlap)
        return [p - p % a for p in s]

    ys, xs = starts(h), starts(w)
    out = wsum = None
    for i, y0 in enumerate(ys):
        th = min(tile, h - y0)
        by = (ys[i - 1] + tile - y0) if i else 0
        ay = (y0 + tile - ys[i + 1]) if i + 1 < len(ys) else 0
        wy = _ramp(th * num // den, by * num // den, ay * num // den).to(x.device)
        for j, x0 in enumerate(xs):
            tw = min(tile, w - x0)
            bx = (xs[j - 1] + tile - x0) if j else 0
            ax = (x0 + tile - xs[j + 1]) if j + 1 < len(xs) else 0
            wx = _ramp(tw * num // den, bx * num // den, ax * num // den).to(x.device)
            o = fn(x[:, :, y0:y0 + th, x0:x0 + tw]).float()
            if out is None:
                out = torch.zeros(n, o.shape[1], h * num // den, w * num // den, device=x.device)
                wsum = torch.zeros(h * num // den, w * num // den, device=x.device)
            oy, ox = y0 * num // den, x0 * num // den
            wt = wy[:, None] * wx[None, :]
            out[:, :, oy:oy + o.shape[2], ox:ox + o.shape[3]] += o * wt
            wsum[oy:oy + o.shape[2], ox:ox + o.shape[3]] += wt
    return out / wsum


# The official hook pads each tile by 32 px (encoder) / 11 latent px (decoder) and runs whole
# when the image is at most tile + 2·pad: the same thresholds decide here.
ENC_PAD, DEC_PAD = 32, 11


def vae_encode(vae, x, tile: int = 1024, overlap: int = 64):
    """The VAE posterior's moments (N×2C×H/8×W/8: mean, logvar) of x (N×3×H×W in [-1, 1], H, W
    multiples of 8), encoder run on pixel tiles of ``tile`` px when the image is larger than
    ``tile`` + 64. The LoRA layers of OSEDiff's VAE sit inside ``encoder``/``quant_conv`` and run
    with them."""

    def enc(t):
        h = vae.encoder(t)
        return vae.quant_conv(h) if getattr(vae, "quant_conv", None) is not None else h

    if tile <= 0 or max(x.shape[-2:]) <= tile + 2 * ENC_PAD:
        return enc(x)
    return tiled_resample(enc, x, tile, overlap, 1, 8, align=8).to(x.dtype)


def vae_decode(vae, z, tile: int = 224, overlap: int = 16):
    """Decode latents ``z`` (N×C×h×w, already divided by the scaling factor) to N×3×8h×8w in
    about [-1, 1], decoder run on latent tiles of ``tile`` when z is larger than ``tile`` + 22."""

    def dec(t):
        if getattr(vae, "post_quant_conv", None) is not None:
            t = vae.post_quant_conv(t)
        return vae.decoder(t)

    if tile <= 0 or max(z.shape[-2:]) <= tile + 2 * DEC_PAD:
        return dec(z)
    return tiled_resample(dec, z, tile, overlap, 8, 1).to(z.dtype)


def split_moments(moments: Sequence):
    """(mean, std) of a diagonal Gaussian from N×2C moments, logvar clamped as diffusers does."""
    import torch

    mean, logvar = torch.chunk(moments, 2, dim=1)
    logvar = logvar.clamp(-30.0, 20.0)
    return mean, torch.exp(0.5 * logvar)
