"""SeeSR's UNet and ControlNet: SD-2 networks with an extra image cross-attention after every text one.

Paper: R. Wu, T. Yang, L. Sun, Z. Zhang, S. Li, L. Zhang, "SeeSR: Towards Semantics-Aware Real-World
Image Super-Resolution", CVPR 2024 (arXiv:2311.16518).
Original code: https://github.com/cswry/SeeSR (``models/unet_2d_condition.py``,
``models/unet_2d_blocks.py``, ``models/controlnet.py``), Apache-2.0; written against diffusers 0.21.

This is our own code on top of diffusers' ``UNet2DConditionModel`` / ``ControlNetModel``. What the
official modification is, read from those three files:

- Every cross-attention block (``CrossAttnDownBlock2D``, ``UNetMidBlock2DCrossAttn``,
  ``CrossAttnUpBlock2D``; in the UNet and in the ControlNet) gains ``image_attentions``: a
  ``ModuleList`` of ``Transformer2DModel`` s, one per text ``attentions`` entry, built with the same
  heads / channels / layers / norm groups / linear projection / upcast / attention type as the text
  one but ``cross_attention_dim=512`` (a constructor default in the blocks, never a config key: it is
  the width of the tagging model's ``image_proj`` output).
- Each image transformer runs right after its text transformer, on its output, with
  ``encoder_hidden_states=image_encoder_hidden_states`` (the DAPE/RAM representation embedding,
  ``N x 145 x 512`` for the Swin-L tagger at 384 px), in all three block kinds. In the down and up
  blocks the order is resnet -> text attention -> image attention; in the mid block text attention
  -> image attention -> resnet. Both orders are "image attention directly after text attention".
- The switch is the config key ``use_image_cross_attention`` (``true`` in the released
  ``unet/config.json`` and ``controlnet/config.json``; ``train_seesr.py`` builds both with it).
- ``forward`` of both networks takes ``image_encoder_hidden_states``; the pipeline passes the same
  embedding to the unconditional and conditional CFG halves.

So the released checkpoints carry keys such as
``down_blocks.0.image_attentions.0.transformer_blocks.0.attn2.to_k.weight`` (``[320, 512]`` for
SD-2-base) beside diffusers' usual SD-2 keys; :func:`load_seesr_model` loads them with every key
matched (raising :class:`~models.sr.checkpoint.CheckpointError` naming the keys otherwise).

How we run the image attention without copying diffusers' blocks: ``add_image_attentions`` attaches
the ``image_attentions`` lists to the blocks (so the state dict has the official keys) and registers
a forward hook on each text transformer that feeds its output through the matching image
transformer. The embedding reaches the hooks through a small context object that ``forward`` fills
for the duration of the call. ``encoder_attention_mask`` is not forwarded to the image attention:
it is sized for the text tokens and SeeSR never sets it.

One extension, outside the released configs: ``image_cross_attention_dim`` may be set in the config
(default 512, the official constant) so the tiny random test configuration can stay small.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from models.sr.checkpoint import CheckpointError, check_keys, read_weights_file

IMAGE_CROSS_ATTENTION_DIM = 512  # official: hard-coded default of the blocks' constructors
_OUR_KEYS = ("use_image_cross_attention", "image_cross_attention_dim")
WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


class _ImageContext:
    """Holds the representation embedding while a forward pass runs (not a module: no state)."""

    __slots__ = ("states",)

    def __init__(self):
        self.states: torch.Tensor | None = None


def _image_transformer(text_attn, dim: int):
    """A ``Transformer2DModel`` configured like ``text_attn`` but attending to ``dim``-wide tokens."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    c = text_attn.config
    return Transformer2DModel(
        num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
        in_channels=c.in_channels, num_layers=c.num_layers, cross_attention_dim=dim,
        norm_num_groups=c.norm_num_groups, use_linear_projection=c.use_linear_projection,
        only_cross_attention=c.only_cross_attention, upcast_attention=c.upcast_attention,
        attention_type=c.attention_type)


def _hook(image_attn, ctx: _ImageContext):
    def run(module, args, kwargs, output):
        if ctx.states is None:
            raise ValueError("SeeSR networks need image_encoder_hidden_states (the tagger's "
                             "representation embedding, N x tokens x "
                             f"{image_attn.config.cross_attention_dim}); got None")
        hidden = output[0] if isinstance(output, tuple) else output.sample
        out = image_attn(hidden, encoder_hidden_states=ctx.states,
                         cross_attention_kwargs=kwargs.get("cross_attention_kwargs"),
                         attention_mask=kwargs.get("attention_mask"), return_dict=False)[0]
        return (out,) if isinstance(output, tuple) else type(output)(sample=out)
    return run


def cross_attention_blocks(net) -> list[nn.Module]:
    """The blocks of ``net`` (UNet or ControlNet) holding text cross-attention transformers."""
    blocks = list(net.down_blocks) + [net.mid_block] + list(getattr(net, "up_blocks", []))
    return [b for b in blocks if b is not None and getattr(b, "has_cross_attention", False)]


def add_image_attentions(net, dim: int = IMAGE_CROSS_ATTENTION_DIM) -> _ImageContext:
    """Give every cross-attention block of ``net`` its ``image_attentions`` (official layout) and
    hook them behind the text transformers; returns the context ``forward`` fills."""
    ctx = _ImageContext()
    for block in cross_attention_blocks(net):
        block.image_attentions = nn.ModuleList(_image_transformer(a, dim) for a in block.attentions)
        for attn, image_attn in zip(block.attentions, block.image_attentions):
            attn.register_forward_hook(_hook(image_attn, ctx), with_kwargs=True)
    return ctx


def _with_image_states(parent_forward, net, args, kwargs):
    """Run ``parent_forward`` with the representation embedding available to the hooks."""
    states = kwargs.pop("image_encoder_hidden_states", None)
    ctx = getattr(net, "_seesr_ctx", None)
    if ctx is None:
        return parent_forward(net, *args, **kwargs)
    ctx.states = states
    try:
        return parent_forward(net, *args, **kwargs)
    finally:
        ctx.states = None


def _enable_image_attention(net, dim: int = IMAGE_CROSS_ATTENTION_DIM) -> None:
    net._seesr_ctx = add_image_attentions(net, dim)
    net.register_to_config(use_image_cross_attention=True, image_cross_attention_dim=dim)


def _make_classes():
    """Define the subclasses lazily so importing this module does not import diffusers."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    class SeeSRUNet(UNet2DConditionModel):
        """diffusers' ``UNet2DConditionModel`` + SeeSR's image cross-attention.

        ``forward(sample, timestep, encoder_hidden_states, ..., image_encoder_hidden_states=)``:
        sample ``N x 4 x h x w`` latents, text states ``N x 77 x cross_attention_dim``, image states
        ``N x T x image_cross_attention_dim``; the other arguments are diffusers'.
        """

        enable_image_attention = _enable_image_attention

        def forward(self, *args, **kwargs):
            return _with_image_states(UNet2DConditionModel.forward, self, args, kwargs)

    class SeeSRControlNet(ControlNetModel):
        """diffusers' ``ControlNetModel`` + SeeSR's image cross-attention (down and mid blocks).

        ``controlnet_cond`` is the bicubic-upscaled LR image in [0, 1] (not [-1, 1]), as in the
        official pipeline; ``image_encoder_hidden_states`` as for :class:`SeeSRUNet`.
        """

        enable_image_attention = _enable_image_attention

        def forward(self, *args, **kwargs):
            return _with_image_states(ControlNetModel.forward, self, args, kwargs)

    return SeeSRUNet, SeeSRControlNet


_CLASSES: tuple | None = None


def seesr_classes():
    """``(SeeSRUNet, SeeSRControlNet)``."""
    global _CLASSES
    if _CLASSES is None:
        _CLASSES = _make_classes()
    return _CLASSES


def build_seesr_model(kind: str, config: dict):
    """Build ``kind`` ("unet" | "controlnet") from a diffusers config dict (as in ``config.json``).

    ``use_image_cross_attention`` (default True) and ``image_cross_attention_dim`` (default 512) are
    ours to read; the rest goes to diffusers' ``from_config``. Weights are random.
    """
    unet_cls, cn_cls = seesr_classes()
    cls = {"unet": unet_cls, "controlnet": cn_cls}.get(kind)
    if cls is None:
        raise ValueError(f"kind must be 'unet' or 'controlnet', got {kind!r}")
    cfg = {k: v for k, v in config.items() if not k.startswith("_") and k not in _OUR_KEYS}
    net = cls.from_config(cfg)
    if config.get("use_image_cross_attention", True):
        net.enable_image_attention(int(config.get("image_cross_attention_dim", IMAGE_CROSS_ATTENTION_DIM)))
    return net


def load_strict(net: nn.Module, sd: dict, where: str) -> None:
    """``net.load_state_dict(sd)`` with every key matched; a mismatch raises ``CheckpointError``
    naming the keys (missing, unexpected, wrong shape) and ``where`` they came from."""
    check_keys(net.state_dict(), sd, f"{where} does not fit {type(net).__name__}",
               "Is it SeeSR's unet/ or controlnet/ folder for this base model?")
    net.load_state_dict(sd, strict=True)


def load_seesr_model(kind: str, folder: str | os.PathLike, dtype: torch.dtype | None = None):
    """Load SeeSR's ``unet/`` or ``controlnet/`` folder (``config.json`` +
    ``diffusion_pytorch_model.safetensors`` or ``.bin``), strictly. Returns the network in eval mode."""
    folder = Path(folder)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{folder}: no config.json (expected SeeSR's diffusers-layout {kind}/ folder)")
    config = json.loads(cfg_path.read_text())
    if not config.get("use_image_cross_attention", False):
        raise CheckpointError(f"{cfg_path}: use_image_cross_attention is not true; this is not a "
                              f"SeeSR {kind} (SeeSR's released configs set it)")
    weights = next((folder / n for n in WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{folder}: none of {', '.join(WEIGHT_NAMES)} found")
    net = build_seesr_model(kind, config)
    load_strict(net, read_weights_file(weights), str(weights))
    if dtype is not None:
        net.to(dtype)
    return net.eval().requires_grad_(False)


def save_seesr_model(net, folder: str | os.PathLike) -> Path:
    """Write ``net`` as the official folder layout: ``config.json`` (with
    ``use_image_cross_attention: true``) + ``diffusion_pytorch_model.safetensors``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in dict(net.config).items() if not k.startswith("_")}
    cfg = {"_class_name": type(net).__mro__[1].__name__, **cfg}
    if cfg.get("image_cross_attention_dim") == IMAGE_CROSS_ATTENTION_DIM:
        cfg.pop("image_cross_attention_dim")  # the released configs do not carry it
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, default=list))
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(folder / WEIGHT_NAMES[0]))
    return folder
