"""TADiSR's networks besides the diffusion backbone: the joint segmentation decoders and the VAE
skip-conv wiring (nn.Modules and the forward glue only; loading and tiling live in
``models.sr.tadisr``).

Port of Hu et al., "Text-Aware Real-World Image Super-Resolution via Diffusion Model with Joint
Segmentation Decoders" (NeurIPS 2025), github.com/mingcv/TADiSR (MIT licence), commit 6f591a6:
``tadisr/pipelines.py`` (``JointSegmentationDecoders``, ``CDIBlock``, ``my_vae_encoder_fwd``, the
decode loop of ``TADiSRPipeline.forward``/``CogView4Pipeline.forward``) and
``tadisr/kolors_decoder.py`` (``MaskInteractionDecoderKolors640M``, ``MuGIBlockOri``).

Two decoder families, each with the official parameter names (so the released state dicts load
strictly):

* ``"cdi"`` — CogView4's ``JointSegmentationDecoders``: per scale a ``CDIBlock`` (a resnet, a
  sigmoid-gated exchange between the streams, channel attention, GroupNorm, SiLU, 1×1 conv, scaled
  by zero-initialised ``a_l``/``a_r``). Official sizes: channels (1024, 1024, 1024, 512), last
  mask width 128.
* ``"mugi"`` — Kolors' ``MaskInteractionDecoderKolors640M``: per scale a ``MuGIBlockOri`` (channel
  LayerNorm, 1×1 + depthwise 3×3 convs, an ungated product exchange, channel attention; a second
  LayerNorm/1×1 stage). The official block multiplies the image stream's updates by 0, so only the
  mask stream changes; here the image stream is passed through unchanged, which is the same except
  that a non-finite update cannot turn the image into NaN (0·inf). Official sizes: channels
  (512, 512, 512, 256), last mask width 256.

The dual-stream wrappers hold *the same* module objects in ``seq_l`` and ``seq_r`` (the official
``DualStreamBlock``/``DualStreamSepBlock`` add each module to both), so both streams share weights
and the state dict names each parameter twice — as the checkpoints do.

Shapes: the image stream enters as the VAE decoder's mid-block output (N×c0×h×w, h = H/8), the
mask stream enters as the same tensor (the official ``attn_map = latents_out``), each up block
doubles the size (the last keeps it); the mask head returns N×1×H×W logits (float, unbounded).
"""
from __future__ import annotations

import torch
from torch import nn

from models.layers import LayerNorm2d


class CABlock(nn.Module):
    """Channel attention: x · conv1×1(global average of x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.ca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x * self.ca(x)


class DualStreamGLU(nn.Module):
    """(x1·σ(y2), y1·σ(x2)) of the channel halves: the CDI exchange."""

    def forward(self, x, y):
        x1, x2 = x.chunk(2, dim=1)
        y1, y2 = y.chunk(2, dim=1)
        return x1 * torch.sigmoid(y2), y1 * torch.sigmoid(x2)


class DualStreamGate(nn.Module):
    """(x1·y2, y1·x2) of the channel halves: the MuGI exchange (no sigmoid)."""

    def forward(self, x, y):
        x1, x2 = x.chunk(2, dim=1)
        y1, y2 = y.chunk(2, dim=1)
        return x1 * y2, y1 * x2


class DualStreamSeq(nn.Sequential):
    """Runs ``(x, y) -> module(x, y)`` through its members; y defaults to x."""

    def forward(self, x, y=None):
        y = x if y is None else y
        for module in self:
            x, y = module(x, y)
        return x, y


class DualStreamBlock(nn.Module):
    """The same modules applied to each stream (shared weights, two state-dict names)."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.seq_l = nn.Sequential(*modules)
        self.seq_r = nn.Sequential(*modules)

    def forward(self, x, y):
        return self.seq_l(x), self.seq_r(y)


class ResnetBlock2D(nn.Module):
    """The official decoder's own plain resnet (no time embedding): GN-SiLU-conv ×2 + shortcut."""

    def __init__(self, in_channels: int, out_channels: int | None = None, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.act = nn.SiLU()

    def forward(self, x):
        h = self.conv2(self.act(self.norm2(self.conv1(self.act(self.norm1(x))))))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class CDIBlock(nn.Module):
    """CogView4's cross-stream interaction block (``pipelines.py`` ``CDIBlock``)."""

    def __init__(self, c: int, groups: int = 32):
        super().__init__()
        self.block1 = DualStreamSeq(
            DualStreamBlock(ResnetBlock2D(c, c, groups=groups), nn.Conv2d(c, c * 2, 1)),
            DualStreamGLU(),
            DualStreamBlock(CABlock(c)),
            DualStreamBlock(nn.GroupNorm(num_groups=groups, num_channels=c)),
            DualStreamBlock(nn.SiLU()),
            DualStreamBlock(nn.Conv2d(c, c, 1)),
        )
        self.a_l = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.a_r = nn.Parameter(torch.zeros((1, c, 1, 1)))

    def forward(self, inp_l, inp_r):
        x, y = self.block1(inp_l, inp_r)
        return inp_l + x * self.a_l, inp_r + y * self.a_r


class MuGIBlock(nn.Module):
    """Kolors' ``MuGIBlockOri``: only the mask (right) stream is updated (see the module doc)."""

    def __init__(self, c: int):
        super().__init__()
        self.block1 = DualStreamSeq(
            DualStreamBlock(LayerNorm2d(c), nn.Conv2d(c, c * 2, 1),
                            nn.Conv2d(c * 2, c * 2, 3, padding=1, groups=c * 2)),
            DualStreamGate(),
            DualStreamBlock(CABlock(c)),
            DualStreamBlock(nn.Conv2d(c, c, 1)),
        )
        self.a_l = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.a_r = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.block2 = DualStreamSeq(
            DualStreamBlock(LayerNorm2d(c), nn.Conv2d(c, c * 2, 1)),
            DualStreamGate(),
            DualStreamBlock(nn.Conv2d(c, c, 1)),
        )
        self.b_l = nn.Parameter(torch.zeros((1, c, 1, 1)))
        self.b_r = nn.Parameter(torch.zeros((1, c, 1, 1)))

    def forward(self, left, right):
        _, upd = self.block1(left, right)
        right = right + upd * self.a_r
        _, upd = self.block2(left, right)
        return left, right + upd * self.b_r


class JointSegmentationDecoder(nn.Module):
    """The mask decoder that runs beside the VAE decoder (official module names).

    kind:     "cdi" (CogView4) or "mugi" (Kolors).
    channels: the VAE decoder's up-block input widths (c0, c1, c2, c3); ``last``: the mask
              stream's width after the last up block. Mask up block i maps c_i -> c_{i+1}
              (the last c3 -> ``last``), upsampling ×2 except the last.
    groups:   GroupNorm groups (32 officially; smaller for tiny test sizes).
    """

    def __init__(self, kind: str, channels: tuple[int, int, int, int], last: int, groups: int = 32):
        super().__init__()
        from diffusers.models.unets.unet_2d_blocks import UpDecoderBlock2D

        if kind not in ("cdi", "mugi"):
            raise ValueError(f"decoder kind must be 'cdi' or 'mugi', got {kind!r}")
        self.kind = kind
        block = (lambda c: CDIBlock(c, groups)) if kind == "cdi" else MuGIBlock
        self.interaction_blocks = nn.ModuleList([DualStreamSeq(block(c)) for c in channels])
        outs = list(channels[1:]) + [last]
        self.up_blocks = nn.ModuleList([
            UpDecoderBlock2D(num_layers=2, in_channels=ci, out_channels=co, add_upsample=i < 3,
                             resnet_eps=1e-6, resnet_act_fn="silu", resnet_groups=groups,
                             resnet_time_scale_shift="group")
            for i, (ci, co) in enumerate(zip(channels, outs))])
        self.out_block = nn.Sequential(nn.GroupNorm(num_channels=last, num_groups=groups, eps=1e-6), nn.SiLU(),
                                       nn.Conv2d(last, 1, 3, padding=1))


# official sizes (kolors_decoder.py MaskInteractionDecoderKolors640M; pipelines.py JointSegmentationDecoders)
OFFICIAL_DECODERS = {"kolors": ("mugi", (512, 512, 512, 256), 256), "cogview4": ("cdi", (1024, 1024, 1024, 512), 128)}


def decoder_for_vae(kind: str, vae_config, groups: int = 32) -> JointSegmentationDecoder:
    """The decoder sized to a VAE: channels = its decoder's up-block inputs (b3, b3, b2, b1 of
    ``block_out_channels`` b0..b3); last width = c3 for "mugi" (Kolors: 256), b0 for "cdi"
    (CogView4: 128) — the official sizes for the two released VAEs."""
    b = tuple(vae_config.block_out_channels)
    if len(b) != 4:
        raise ValueError(f"TADiSR needs a 4-level VAE, got block_out_channels {b}")
    channels = (b[3], b[3], b[2], b[1])
    return JointSegmentationDecoder(kind, channels, channels[3] if kind == "mugi" else b[0], groups)


def add_skip_convs(vae):
    """Add ``decoder.skip_conv_1..4`` (1×1, no bias, weight 1e-5 as initialised officially) to a
    diffusers AutoencoderKL: skip_conv_{k+1} maps the encoder feature entering down block 3−k
    (widths b2, b1, b0, b0) to the width entering decoder up block k (b3, b3, b2, b1). Kolors (SDXL
    VAE, b = 128/256/512/512): 512→512, 256→512, 128→512, 128→256. skip_conv_1 exists (and is in
    the checkpoints) but, as officially, is never used."""
    b = tuple(vae.config.block_out_channels)
    ins, outs = (b[2], b[1], b[0], b[0]), (b[3], b[3], b[2], b[1])
    for k, (ci, co) in enumerate(zip(ins, outs), 1):
        conv = nn.Conv2d(ci, co, kernel_size=1, bias=False)
        nn.init.constant_(conv.weight, 1e-5)
        setattr(vae.decoder, f"skip_conv_{k}", conv)
    return vae


def encode_with_skips(vae, x):
    """VAE encoder that also returns the features entering each down block (the official
    ``my_vae_encoder_fwd``'s ``current_down_blocks``). x: N×3×H×W in [-1, 1] ->
    (moments N×2C×H/8×W/8 after ``quant_conv`` when the VAE has one, [4 features])."""
    enc = vae.encoder
    h = enc.conv_in(x)
    feats = []
    for block in enc.down_blocks:
        feats.append(h)
        h = block(h)
    h = enc.conv_out(enc.conv_act(enc.conv_norm_out(enc.mid_block(h))))
    if getattr(vae, "quant_conv", None) is not None:
        h = vae.quant_conv(h)
    return h, feats


def joint_decode(vae, decoder: JointSegmentationDecoder, z, feats):
    """The official joint decode. z: latent already divided by the scaling factor (N×C×h×w);
    feats: :func:`encode_with_skips`'s features. -> (image N×3×8h×8w in about [-1, 1], mask logits
    N×1×8h×8w). ``post_quant_conv`` runs when the VAE has one (Kolors' SDXL VAE; the official
    Kolors path calls it, the CogView4 path has none)."""
    d = vae.decoder
    if getattr(vae, "post_quant_conv", None) is not None:
        z = vae.post_quant_conv(z)
    img = d.mid_block(d.conv_in(z))
    mask = img
    skips = [d.skip_conv_1, d.skip_conv_2, d.skip_conv_3, d.skip_conv_4]
    rev = feats[::-1]
    for i, (up_im, up_mask, inter) in enumerate(zip(d.up_blocks, decoder.up_blocks, decoder.interaction_blocks)):
        if i > 0:
            img = img + skips[i](rev[i])
        img, mask = inter(img, mask)
        img = up_im(img)
        mask = up_mask(mask)
    mask = decoder.out_block(mask)
    img = d.conv_out(d.conv_act(d.conv_norm_out(img)))
    return img, mask
