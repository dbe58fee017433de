"""Official SwinIR checkpoints in basicsr 1.4.2's ``basicsr.archs.swinir_arch.SwinIR``.

SwinIR: J. Liang, J. Cao, G. Sun, K. Zhang, L. Van Gool, R. Timofte, "SwinIR: Image Restoration
Using Swin Transformer", ICCVW 2021. Original code: https://github.com/JingyunLiang/SwinIR
(``models/network_swinir.py``), Apache-2.0; basicsr's copy is also Apache-2.0.

Checked against the official ``network_swinir.py`` (repo HEAD 6545850, 2022-12-04):

- The state-dict keys, shapes and dtypes are identical. Both register ``relative_position_index``
  (every block) and ``attn_mask`` (shifted blocks only; ``None`` -- hence absent -- in the others)
  as persistent buffers, so both appear in the official checkpoints and in basicsr's module. The
  mask is built for ``img_size`` (64 x 64 here: (64, 64, 64) for window 8) and recomputed in the
  forward for any other size. In eval mode the outputs agree to fp32 rounding.
- basicsr's forward has no padding: H and W must be multiples of ``window_size``. The official
  forward reflect-pads bottom/right to a multiple (``check_image_size``) and crops the output;
  :func:`swinir_forward_padded` does the same around basicsr's module.
  (The official test script ``main_test_swinir.py`` pads before that, differently: by mirror
  concatenation (``torch.flip``, edge pixel repeated) and by a whole extra window when the size is
  already a multiple.)
- ``upsampler='nearest+conv'``: the official code also supports x2 (no ``conv_up2``); basicsr
  asserts ``upscale == 4``. Same keys at x4.

The real-world x4 model ``003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth``:
https://github.com/JingyunLiang/SwinIR/releases/download/v0.0/003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth
(release v0.0; no sha256 is published). Weights under ``params_ema`` (``main_test_swinir.py``
``define_model``, task ``real_sr``); constructor arguments: :data:`SWINIR_REAL_X4_KWARGS`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import nn

from models.sr.archs.hat_arch import reflect_pad

SWINIR_REAL_X4_KWARGS = MappingProxyType({
    # main_test_swinir.py, define_model(), task 'real_sr', not --large_model
    "upscale": 4,
    "in_chans": 3,
    "img_size": 64,
    "window_size": 8,
    "img_range": 1.0,
    "depths": (6, 6, 6, 6, 6, 6),
    "embed_dim": 180,
    "num_heads": (6, 6, 6, 6, 6, 6),
    "mlp_ratio": 2.0,
    "upsampler": "nearest+conv",
    "resi_connection": "1conv",
})
SWINIR_REAL_X4_PARAM_KEY = "params_ema"

# buffers that are pure functions of the constructor arguments
_DERIVED_BUFFERS = ("relative_position_index", "attn_mask")


def _is_derived(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _DERIVED_BUFFERS


def adapt_official_swinir_state_dict(sd: Mapping, net: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """Return an official SwinIR state dict ready for ``net.load_state_dict(..., strict=True)``.

    ``sd``: an official checkpoint as loaded by ``torch.load`` -- either the state dict itself or
    the wrapper ``{'params_ema': ..., 'params': ...}`` (``params_ema`` is preferred, as the official
    test script does for real-world SR). ``net``: basicsr's ``SwinIR`` built with the matching
    arguments.

    The keys already match (see the module docstring). The derived buffers
    (``relative_position_index``, ``attn_mask``) are taken from ``net`` -- they depend only on the
    configuration, and a checkpoint trained at another ``img_size`` carries an ``attn_mask`` of
    another shape. Any other missing or unexpected key, or a shape mismatch, raises ``ValueError``
    naming the keys, since it means ``net`` was built with the wrong arguments.
    """
    if "params_ema" in sd:
        sd = sd["params_ema"]
    elif "params" in sd:
        sd = sd["params"]
    own = net.state_dict()
    learned_ckpt = {k for k in sd if not _is_derived(k)}
    learned_net = {k for k in own if not _is_derived(k)}
    missing, unexpected = sorted(learned_net - learned_ckpt), sorted(learned_ckpt - learned_net)
    wrong = sorted(k for k in learned_net & learned_ckpt if tuple(sd[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        def head(keys):
            return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")
        parts = []
        if missing:
            parts.append(f"missing from the checkpoint: {head(missing)}")
        if unexpected:
            parts.append(f"not in the network: {head(unexpected)}")
        if wrong:
            parts.append("shape differs: " + head(
                [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in wrong]))
        raise ValueError(
            "The SwinIR checkpoint does not fit the network (" + "; ".join(parts) + "). Build "
            "basicsr's SwinIR with the checkpoint's arguments, e.g. SWINIR_REAL_X4_KWARGS for "
            "003_realSR_BSRGAN_DFO_s64w8_SwinIR-M_x4_GAN.pth.")
    out = OrderedDict()
    for k, v in own.items():
        out[k] = v if _is_derived(k) else sd[k]
    return out


def swinir_forward_padded(net: nn.Module, x: torch.Tensor, window_size: int | None = None) -> torch.Tensor:
    """Run basicsr's SwinIR on any H x W as the official forward does.

    x: (B, C, H, W) float. Reflect-pads bottom/right to a multiple of the window size (read from
    the first block when not given; basicsr's top module does not store it), runs ``net`` and
    crops to (H * upscale, W * upscale). Returns the same dtype.
    """
    ws = window_size or net.layers[0].residual_group.blocks[0].window_size
    h, w = x.shape[-2:]
    y = net(reflect_pad(x, (-h) % ws, (-w) % ws))
    return y[..., : h * net.upscale, : w * net.upscale]
