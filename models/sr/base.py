"""The one SR interface: ``scale`` and ``upscale(batch)``, plus image helpers and tiling.

``upscale`` takes float tensors N×3×H×W in [0, 1] and returns N×3×(s·H)×(s·W) in [0, 1]. Inputs
are validated (type, rank, channels, dtype, range) with a message that says what arrived.
``upscale_image`` takes a numpy HxWx3 uint8 (or float in [0, 1]) array or a PIL image and gives
the same kind back; ``upscale_images`` takes a list of images of different sizes and batches the
ones that share a size.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np


def check_batch(batch: Any, who: str):
    """Validate an SR input batch; returns it unchanged or raises ValueError/TypeError."""
    import torch

    if not isinstance(batch, torch.Tensor):
        raise TypeError(f"{who}.upscale expects a torch.Tensor N×3×H×W in [0, 1], got {type(batch).__name__}")
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"{who}.upscale expects an N×3×H×W tensor, got shape {tuple(batch.shape)}"
                         + (" (add a batch dimension with x[None])" if batch.ndim == 3 else ""))
    if not batch.is_floating_point():
        raise ValueError(f"{who}.upscale expects a float tensor in [0, 1], got {batch.dtype} "
                         "(divide uint8 images by 255)")
    if batch.numel():
        lo, hi = float(batch.min()), float(batch.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{who}.upscale got non-finite values (NaN or inf)")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{who}.upscale expects values in [0, 1], got [{lo:.4g}, {hi:.4g}]"
                             + (" (looks like 0..255: divide by 255)" if hi > 2 else ""))
    return batch


class SRModel:
    """Base of every SR model. Subclasses set ``name`` and ``scale`` and implement ``_forward``
    (validated N×3×H×W float batch -> N×3×sH×sW float batch in [0, 1]).

    Auxiliary outputs: a model that also predicts per-pixel maps (TADiSR's text mask) lists their
    names in ``aux_outputs`` (``("text_mask",)``) and implements ``_forward_aux`` returning
    ``(sr, {name: N×1×sH×sW float in [0, 1]})``; ``upscale_aux`` / ``upscale_images_aux`` give them
    to callers (evalkit writes ``text_mask`` to ``<run>/mask/`` and scores it). For every other model
    ``upscale_aux`` returns the SR and an empty dict.

    Conditioning records: a model whose output depends on per-image inputs it derives itself (OCR
    prompts, captions, tags) sets ``records_conditions = True`` and, in every ``_forward``, sets
    ``last_conditions`` to one JSON-serialisable dict per image of the batch;
    :meth:`upscale_images_records` hands each image its record (evalkit writes it into
    ``per_image.jsonl`` as ``conditioning``).
    """

    name: str = "sr"
    scale: int = 4
    aux_outputs: tuple[str, ...] = ()
    records_conditions: bool = False
    last_conditions: list | None = None

    def upscale(self, batch):
        return self._forward(check_batch(batch, self.name))

    def upscale_aux(self, batch) -> tuple[Any, dict]:
        """``(sr, aux)``: the SR batch and ``{name: N×1×sH×sW float in [0, 1]}`` for each name in
        ``aux_outputs`` (empty for models without auxiliary outputs)."""
        batch = check_batch(batch, self.name)
        if not self.aux_outputs:
            return self._forward(batch), {}
        sr, aux = self._forward_aux(batch)
        if set(aux) != set(self.aux_outputs):
            raise RuntimeError(f"{self.name}._forward_aux returned {sorted(aux)}, but the model declares "
                               f"aux_outputs {list(self.aux_outputs)}")
        for k, v in aux.items():
            want = (sr.shape[0], 1, *sr.shape[2:])
            if tuple(v.shape) != want:
                raise RuntimeError(f"{self.name}: auxiliary output {k!r} has shape {tuple(v.shape)}, expected {want}")
        return sr, aux

    def _forward(self, batch):  # pragma: no cover - abstract
        raise NotImplementedError

    def _forward_aux(self, batch):  # pragma: no cover - abstract
        raise NotImplementedError(f"{self.name} declares aux_outputs {self.aux_outputs} but has no _forward_aux")

    # -- images ------------------------------------------------------------------------------
    def upscale_image(self, img):
        """numpy HxWx3 (uint8, or float in [0, 1]) or PIL image -> the same kind, ×scale."""
        out = self.upscale_images([img])[0]
        return out

    def upscale_images(self, imgs: Sequence) -> list:
        """Images of any sizes; those of equal size are upscaled together as one batch."""
        return [sr for sr, _, _ in self._images(imgs, aux=False)]

    def upscale_images_aux(self, imgs: Sequence) -> list[tuple[Any, dict[str, np.ndarray]]]:
        """Like :meth:`upscale_images`, with each image's auxiliary maps: ``(sr, {name: HxW float32
        in [0, 1]})`` (an empty dict for models without ``aux_outputs``)."""
        return [(sr, maps) for sr, maps, _ in self._images(imgs, aux=True)]

    def upscale_images_records(self, imgs: Sequence, aux: bool = False) -> list[tuple[Any, dict, dict | None]]:
        """``(sr, maps, record)`` per image: :meth:`upscale_images_aux`'s pair (maps empty unless
        ``aux``) and the image's conditioning record (None for models that keep none)."""
        return self._images(imgs, aux=aux)

    def _images(self, imgs: Sequence, aux: bool) -> list[tuple[Any, dict, dict | None]]:
        import torch

        arrays, kinds = [], []
        for i, img in enumerate(imgs):
            arr, kind = _to_float_array(img, f"{self.name}.upscale_image (image {i})")
            arrays.append(arr)
            kinds.append(kind)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, a in enumerate(arrays):
            groups[a.shape].append(i)
        out: list = [None] * len(arrays)
        for idx in groups.values():
            batch = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(0, 3, 1, 2)
            self.last_conditions = None
            sr, maps = self.upscale_aux(batch) if aux else (self.upscale(batch), {})
            records = self.last_conditions if self.records_conditions else None
            if records is not None and len(records) != len(idx):
                raise RuntimeError(f"{self.name}: {len(records)} conditioning records for a batch of {len(idx)}")
            res = sr.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            maps = {k: v.clamp(0, 1)[:, 0].float().cpu().numpy() for k, v in maps.items()}
            for j, i in enumerate(idx):
                out[i] = (_from_float_array(res[j], kinds[i]), {k: v[j] for k, v in maps.items()},
                          records[j] if records is not None else None)
        return out


def _to_float_array(img, who: str) -> tuple[np.ndarray, str]:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), np.float32) / 255.0, "pil"
    if not isinstance(img, np.ndarray):
        raise TypeError(f"{who}: expected a numpy array or PIL image, got {type(img).__name__}")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{who}: expected HxWx3 RGB, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0, "uint8"
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32), "float"
    raise ValueError(f"{who}: expected uint8 or float in [0, 1], got {img.dtype}")


def _from_float_array(arr: np.ndarray, kind: str):
    if kind == "float":
        return arr
    u8 = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    if kind == "pil":
        from PIL import Image

        return Image.fromarray(u8)
    return u8


# -- tiling --------------------------------------------------------------------------------------
def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    s = list(range(0, size - tile, stride))
    return s + [size - tile]


def _axis_weights(n: int, ov_before: int, ov_after: int):
    """1-D blending weights of one tile's output along an axis of ``n`` px that shares
    ``ov_before``/``ov_after`` px with its neighbours.

    Over a shared span of ``ov`` px the two tiles' weights sum to 1. Each tile keeps the half of
    the span nearer its own centre, where it saw more real image around it (a tile's edge pixels
    saw padding instead), and the halves are cross-faded over the middle eighth of the span, so
    there is no seam and no pixel relies on a tile with less than 7/16 of the overlap as context.
    Deep nets (RRDBNet) need that context: their output still moves by >1/255 at 48 px from a
    cut, which is why their default overlap is 128 px."""
    import torch

    t = torch.arange(n, dtype=torch.float32) + 0.5
    w = torch.ones(n)
    for ov, pos in ((ov_before, t), (ov_after, n - t)):
        if ov > 0:
            fade = max(ov / 8.0, 1.0)
            w = torch.minimum(w, ((pos - (ov - fade) / 2) / fade).clamp(0, 1))
    return w


def _shared(starts: list[int], i: int, tile: int, after: bool = False) -> int:
    """Pixels tile ``i`` shares with its previous (or next) neighbour along one axis."""
    if after:
        return starts[i] + tile - starts[i + 1] if i + 1 < len(starts) else 0
    return starts[i - 1] + tile - starts[i] if i > 0 else 0


def tiled_forward(fn: Callable, x, scale: int, tile: int, overlap: int, device=None, dtype=None):
    """Run ``fn`` over ``x`` (N×3×H×W, any device) in ``tile``-px tiles overlapping by ``overlap``.

    Each tile alone is moved to ``device``/``dtype`` and its output back to ``x``'s device as
    float32, so device memory is bounded by one tile whatever the image size (Real-ESRGAN's own
    ``--tile`` moves the whole image to the GPU first). Outputs are cross-faded over the overlaps
    with weights that sum to one (``_axis_weights``): no seams.
    """
    import torch

    device = device or x.device
    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return fn(x.to(device=device, dtype=dtype)).to(device=x.device, dtype=torch.float32)
    if overlap >= tile:
        raise ValueError(f"tile_overlap ({overlap}) must be smaller than tile ({tile})")
    stride = tile - overlap
    out = torch.zeros(n, c, h * scale, w * scale, dtype=torch.float32, device=x.device)
    ys, xs = _starts(h, tile, stride), _starts(w, tile, stride)
    # weights are separable and the tiles a product grid, so their sum is the outer product of
    # two 1-D sums: no full-size weight map, and the final normalisation is in place
    wsum_y = torch.zeros(h * scale, device=x.device)
    wsum_x = torch.zeros(w * scale, device=x.device)
    wys = [_axis_weights(min(tile, h - y0) * scale, _shared(ys, i, tile) * scale, _shared(ys, i, tile, after=True) * scale)
           for i, y0 in enumerate(ys)]
    wxs = [_axis_weights(min(tile, w - x0) * scale, _shared(xs, i, tile) * scale, _shared(xs, i, tile, after=True) * scale)
           for i, x0 in enumerate(xs)]
    for y0, wy in zip(ys, wys):
        wsum_y[y0 * scale:y0 * scale + len(wy)] += wy.to(x.device)
    for x0, wx in zip(xs, wxs):
        wsum_x[x0 * scale:x0 * scale + len(wx)] += wx.to(x.device)
    for y0, wy in zip(ys, wys):
        for x0, wx in zip(xs, wxs):
            t = x[:, :, y0:y0 + tile, x0:x0 + tile]
            o = fn(t.to(device=device, dtype=dtype)).to(device=x.device, dtype=torch.float32)
            o = o * (wy[:, None] * wx[None, :]).to(x.device)  # o may be an inference tensor
            out[:, :, y0 * scale:y0 * scale + o.shape[2], x0 * scale:x0 * scale + o.shape[3]] += o
    out /= wsum_y[:, None]
    out /= wsum_x[None, :]
    return out


class TorchSR(SRModel):
    """An ``nn.Module`` SR network behind the interface, with device/dtype handling and tiling.

    net:          maps N×3×h×w in [0, 1] to N×3×(s·h)×(s·w).
    device:       'cpu', 'cuda', 'cuda:1', a torch.device, or None (CUDA when available).
    dtype:        torch dtype or 'fp16'/'fp32'/'bf16'; None = fp16 on CUDA, fp32 on CPU.
    tile:         tile side in input pixels (0 = whole image); tile_overlap: shared pixels.
    pad_multiple: inputs are reflect-padded to a multiple of this (window sizes), output cropped.
    post:         optional callable applied to the net's output (e.g. a fixed resize).
    channels_last: run convolutional nets in NHWC memory order (1.2× faster for RRDBNet on CPU,
                  see benchmarks/RESULTS.md; the Tensor Core layout on CUDA).
    weights_info: where the weights came from (path, sha256, source), for run records.
    """

    def __init__(self, net, *, name: str, scale: int, device=None, dtype=None, tile: int = 512,
                 tile_overlap: int = 128, pad_multiple: int = 1, post: Callable | None = None,
                 weights_info: dict | None = None, channels_last: bool = False):
        import torch

        self.name, self.scale = name, int(scale)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if isinstance(dtype, str):
            dtype = {"fp16": torch.float16, "float16": torch.float16, "fp32": torch.float32,
                     "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}[dtype]
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        if dtype == torch.float16 and self.device.type == "cpu":
            raise ValueError(f"{name}: fp16 is not supported on CPU; use dtype='fp32' or a CUDA device")
        self.dtype = dtype
        self.tile, self.tile_overlap, self.pad_multiple = int(tile), int(tile_overlap), int(pad_multiple)
        self.post = post
        self.weights_info = weights_info or {}
        self.channels_last = channels_last
        self.net = net.eval().to(device=self.device, dtype=dtype)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        for p in self.net.parameters():
            p.requires_grad_(False)

    def _run(self, x):
        import torch
        import torch.nn.functional as F

        h, w = x.shape[2:]
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.net(x)
            if self.post is not None:
                y = self.post(y)
            return y[:, :, :h * self.scale, :w * self.scale].clamp(0, 1)

    def _forward(self, batch):
        return tiled_forward(self._run, batch, self.scale, self.tile, self.tile_overlap,
                             device=self.device, dtype=self.dtype)
