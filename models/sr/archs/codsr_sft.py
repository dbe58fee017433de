"""CODSR's LQ-guided feature modulation: an SFT layer fed the pixel-unshuffled LR image.

Paper: H. Chen, J. Chen, J. Pan, J. Dong, "Bridging Fidelity-Reality with Controllable One-Step
Diffusion for Image Super-Resolution", CVPR 2026 (arXiv:2512.14061).
Original code: https://github.com/Chanson94/CODSR (``codsr.py``: ``SFTLayer``); the repository
states no licence.

Our own implementation, written from the paper and that file. Its ``state_dict()`` has the keys
of the official ``state_dict_sft`` (``SFT_scale_conv0/1``, ``SFT_shift_conv0/1``, each
``.weight``/``.bias``), so the published ``codsr.pkl`` loads with ``strict=True``.

The official module maps the ×8 pixel-unshuffled, bicubic-upsampled LR (3·8·8 = 192 channels at
latent resolution) to a (scale, shift) pair with the channel count of the UNet's ``conv_in``
output (320 for SD 2.1); the UNet then computes ``h = conv_in(z)·(1 + λ·scale) + λ·shift`` with
``λ = 1/w_t``. The second conv of each branch starts at zero, so an untrained layer is the
identity modulation. The unshuffle has no parameters; it lives here (``forward`` takes the image)
so a caller cannot feed it a wrongly prepared tensor.
"""
from __future__ import annotations

import torch
from torch import nn


class CODSRSFT(nn.Module):
    """LR image -> (scale, shift) for the UNet's first feature map.

    in_channels:  3·factor², the channels of the unshuffled image (192 for factor 8).
    out_channels: ``unet.conv_in.out_channels`` (320 for SD 2.1).
    factor:       the VAE's spatial down-factor, so the output is at latent resolution.

    ``forward(lq)``: ``lq`` N×3×H×W in [-1, 1] (the bicubic-upsampled LR, H and W multiples of
    ``factor``) -> two tensors N×out_channels×H/factor×W/factor, unbounded, in ``lq``'s dtype.
    """

    def __init__(self, in_channels: int = 192, out_channels: int = 320, factor: int = 8):
        super().__init__()
        if in_channels != 3 * factor * factor:
            raise ValueError(f"CODSRSFT: in_channels must be 3·factor² = {3 * factor * factor} for factor "
                             f"{factor}, got {in_channels}")
        self.factor = factor
        self.unshuffle = nn.PixelUnshuffle(factor)
        # names are the official ones: they are the keys of ``state_dict_sft``
        self.SFT_scale_conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.SFT_scale_conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.SFT_shift_conv0 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.SFT_shift_conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_act = nn.SiLU()
        for conv in (self.SFT_scale_conv1, self.SFT_shift_conv1):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = lq.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(f"CODSRSFT: image sides must be multiples of {self.factor}, got {h}×{w}")
        cond = self.unshuffle(lq)
        scale = self.SFT_scale_conv1(self.conv_act(self.SFT_scale_conv0(cond)))
        shift = self.SFT_shift_conv1(self.conv_act(self.SFT_shift_conv0(cond)))
        return scale, shift


def modulate(features: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, strength: float) -> torch.Tensor:
    """The official modulation of ``conv_in``'s output: ``f·(1 + λ·scale) + λ·shift``.

    features: N×C×h×w; scale, shift: N×C×h×w (broadcastable); strength λ = 1/w_t (CODSR scales
    both SFT outputs by it before the UNet, so the modulation weakens as the timestep grows)."""
    return features * (1 + strength * scale) + strength * shift
