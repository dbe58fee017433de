"""Colour correction of a diffusion SR output towards its (bicubic-upscaled) input.

As in StableSR's ``colorfix.py`` (Li Yi; used unchanged by OSEDiff, PiSA-SR, SeeSR, CODSR as
``my_utils/wavelet_color_fix.py``):

- AdaIN: each channel of the output is shifted and scaled to the source's per-image channel mean
  and standard deviation (unbiased variance + 1e-5, as there).
- wavelet: the output's high frequencies (5 levels of a dilated 3×3 binomial blur, replicate
  padding, radius 2^i) plus the source's low frequencies.

The official code applies them to 8-bit PIL images; here they work on float tensors N×3×H×W in
[0, 1] (no rounding to 8 bits in between) and the result is clamped to [0, 1].
"""
from __future__ import annotations

COLOR_FIXES = ("adain", "wavelet", "none")


def _mean_std(x, eps: float = 1e-5):
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    return flat.mean(dim=2).view(n, c, 1, 1), (flat.var(dim=2) + eps).sqrt().view(n, c, 1, 1)


def adain(target, source):
    """``target`` with the per-channel mean/std of ``source`` (both N×C×H×W float; sizes may differ)."""
    tm, ts = _mean_std(target)
    sm, ss = _mean_std(source)
    return (target - tm) / ts * ss + sm


def wavelet_blur(x, radius: int):
    import torch
    import torch.nn.functional as F

    k = torch.tensor([[0.0625, 0.125, 0.0625], [0.125, 0.25, 0.125], [0.0625, 0.125, 0.0625]],
                     dtype=x.dtype, device=x.device)
    c = x.shape[1]
    k = k[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (radius,) * 4, mode="replicate"), k, groups=c, dilation=radius)


def wavelet_decompose(x, levels: int = 5):
    """(high, low) with x = high + low: low is ``levels`` dilated blurs of x."""
    high = x.new_zeros(x.shape)
    for i in range(levels):
        low = wavelet_blur(x, 2 ** i)
        high = high + (x - low)
        x = low
    return high, x


def wavelet(target, source):
    """``target``'s high frequencies + ``source``'s low frequencies (same N×C×H×W size)."""
    return wavelet_decompose(target)[0] + wavelet_decompose(source)[1]


def color_fix(mode: str, target, source):
    """Apply colour fix ``mode`` ("adain" | "wavelet" | "none") to ``target`` (N×3×H×W in [0, 1])
    towards ``source`` (same shape, [0, 1]); the result is float32 clamped to [0, 1]."""
    if mode not in COLOR_FIXES:
        raise ValueError(f"color_fix must be one of {', '.join(COLOR_FIXES)}; got {mode!r}")
    target, source = target.float(), source.float()
    if mode == "adain":
        target = adain(target, source)
    elif mode == "wavelet":
        target = wavelet(target, source)
    return target.clamp(0, 1)
