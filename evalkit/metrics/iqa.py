"""pyiqa metrics behind our own adapters: weights found locally, never downloaded by surprise.

pyiqa (https://github.com/chaofengc/IQA-PyTorch, Apache-2.0 for its code; each metric's weights carry
the licence of their original release) downloads what it needs inside its metric constructors. Here
every adapter first finds each file it needs (table ``REQUIRED``), and only then builds the pyiqa
metric, handing pyiqa explicit paths wherever pyiqa takes one. A file is looked for in:

1. the cache its third-party loader reads itself: pyiqa's ``$TORCH_HOME/hub/pyiqa``, torchvision's
   ``$TORCH_HOME/hub/checkpoints``, CLIP's ``$TORCH_HOME/hub/clip`` (``TORCH_HOME`` defaults to
   ``~/.cache/torch``), or the Hugging Face hub cache (timm);
2. then :func:`models.weights.resolve`: our ``TEXTSR_WEIGHTS`` dir, the Hugging Face cache, and a
   download only when ``allow_download=True`` (or ``TEXTSR_ALLOW_DOWNLOAD=1``).

A missing file raises :class:`MetricUnavailable` ``"weights-missing: <file> (<source>)"`` before
pyiqa is even imported, so it fails in well under a second and never touches the network.

Where pyiqa offers no path argument (the torchvision backbones of LPIPS/DISTS, the Inception of FID),
a file found in ``TEXTSR_WEIGHTS`` is symlinked into the cache that loader reads, which is all it
checks before downloading. timm (MANIQA's ViT) reads only the Hugging Face cache, so that file must be
there; and set ``HF_HUB_OFFLINE=1`` on machines without network, or huggingface_hub spends ~45 s on
retries before using its cache.

NIQE needs no download at all: pyiqa's parameter file ``niqe_modelparameters.mat`` is written once
(atomically) into ``TEXTSR_WEIGHTS`` from basicsr's shipped ``basicsr/metrics/niqe_pris_params.npz``
(the parameters of the official MATLAB NIQE release), keys renamed to the ``mu_prisparam`` /
``cov_prisparam`` pyiqa's loader reads.

Inputs: every adapter feeds pyiqa RGB float32 in [0, 1] (``uint8 / 255``), NCHW, one image at a time.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from evalkit.metrics.base import MeanMetric, Metric, MetricUnavailable
from evalkit.metrics.fidelity import REGION_RULE, text_region
from evalkit.sample import EvalSample
from models.files import atomic_path, sha256_file
from models.weights import (
    WeightsFile,
    WeightsMissingError,
    hf_cache_dir,
    resolve,
    weights_dir,
)

PYIQA_HF_REPO = "chaofengc/IQA-PyTorch-Weights"
INPUT_RANGE = "RGB float32 in [0, 1] (uint8 / 255), NCHW, one image per call"


def _pyiqa_file(name: str) -> WeightsFile:
    return WeightsFile(name, hf_repo=PYIQA_HF_REPO)


def _torchvision_file(name: str) -> WeightsFile:
    return WeightsFile(name, url=f"https://download.pytorch.org/models/{name}")


@dataclass(frozen=True)
class Needed:
    """One file a pyiqa metric loads in its constructor.

    file:   the file and its source (our resolver's description).
    cache:  the cache its loader reads by itself: ``"pyiqa"``, ``"torchvision"``, ``"clip"`` (dirs
            under ``torch.hub.get_dir()``) or ``"hf"`` (the Hugging Face hub cache, read by timm).
    handed: True when the adapter passes the file's path to pyiqa (any location will do); False when
            the loader reads its own cache (a file found elsewhere is linked into it).
    """

    file: WeightsFile
    cache: str
    handed: bool


_ALEXNET = Needed(_torchvision_file("alexnet-owt-7be5be79.pth"), "torchvision", False)
_VGG16 = Needed(_torchvision_file("vgg16-397923af.pth"), "torchvision", False)
_VIT_B8 = Needed(WeightsFile("vit_base_patch8_224.augreg2_in21k_ft_in1k.safetensors",
                             hf_repo="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k",
                             hf_filename="model.safetensors"), "hf", False)
NIQE_PARAMS = _pyiqa_file("niqe_modelparameters.mat")
CLIP_RN50 = WeightsFile(
    "RN50.pt",
    url="https://openaipublic.azureedge.net/clip/models/"
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
    sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762")

# pyiqa metric name -> files its constructor loads (pyiqa 0.1.16, read from its archs/*.py)
REQUIRED: dict[str, tuple[Needed, ...]] = {
    "lpips": (_ALEXNET, Needed(_pyiqa_file("LPIPS_v0.1_alex-df73285e.pth"), "pyiqa", True)),
    "lpips-vgg": (_VGG16, Needed(_pyiqa_file("LPIPS_v0.1_vgg-a78928a0.pth"), "pyiqa", True)),
    "dists": (_VGG16, Needed(_pyiqa_file("DISTS_weights-f5e65c96.pth"), "pyiqa", True)),
    "niqe": (Needed(NIQE_PARAMS, "pyiqa", True),),
    "musiq": (Needed(_pyiqa_file("musiq_koniq_ckpt-e95806b9.pth"), "pyiqa", True),),
    "maniqa": (_VIT_B8, Needed(_pyiqa_file("ckpt_koniq10k.pt"), "pyiqa", True)),
    "maniqa-pipal": (_VIT_B8, Needed(_pyiqa_file("MANIQA_PIPAL-ae6d356b.pth"), "pyiqa", True)),
    "maniqa-kadid": (_VIT_B8, Needed(_pyiqa_file("ckpt_kadid10k.pt"), "pyiqa", True)),
    "clipiqa": (Needed(CLIP_RN50, "clip", True),),
    "piqe": (),
    "fid": (Needed(_pyiqa_file("pt_inception-2015-12-05-6726825d.pth"), "pyiqa", False),),
}


# ----------------------------------------------------------------------------- finding files

def cache_dir(cache: str) -> Path:
    """The directory a third-party loader reads: ``torch.hub.get_dir()/{pyiqa,checkpoints,clip}``
    (evaluated now, so it follows ``TORCH_HOME``) or the Hugging Face hub cache."""
    if cache == "hf":
        return hf_cache_dir()
    import torch.hub

    sub = {"pyiqa": "pyiqa", "torchvision": "checkpoints", "clip": "clip"}[cache]
    return Path(torch.hub.get_dir()) / sub


class WeightsUnavailable(MetricUnavailable):
    """Some weights files are nowhere local. ``files``: ``(file name, source)`` pairs; ``looked``:
    the places searched. ``reason``: ``"weights-missing: <file> (<source>)[, …]; looked in …"``."""

    def __init__(self, files: list[tuple[str, str]], looked: list[str], hint: str = ""):
        self.files, self.looked, self.hint = list(files), list(dict.fromkeys(looked)), hint
        listed = ", ".join(f"{name} ({source})" for name, source in self.files)
        super().__init__(f"weights-missing: {listed}; looked in {', '.join(self.looked)}"
                         + (f"; {hint}" if hint else ""))

    def __reduce__(self):  # picklable (Ray ships exceptions between processes)
        return (type(self), (self.files, self.looked, self.hint))

    @classmethod
    def combine(cls, errors: list[WeightsUnavailable]) -> WeightsUnavailable:
        hints = "; ".join(dict.fromkeys(e.hint for e in errors if e.hint))
        return cls([f for e in errors for f in e.files], [p for e in errors for p in e.looked], hints)


_FETCH_HINT = "pass allow_download=True (--allow-download) or fetch them into TEXTSR_WEIGHTS"


def _missing(wf: WeightsFile, looked: list[str], hint: str = _FETCH_HINT) -> WeightsUnavailable:
    return WeightsUnavailable([(wf.hf_filename or wf.filename, wf.source)], looked, hint)


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _link_into(src: Path, dest_dir: Path, name: str) -> Path:
    """Symlink ``src`` as ``dest_dir/name`` (atomically: link then rename) and return the link."""
    dest = dest_dir / name
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{name}.{os.getpid()}.link"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(src.resolve(), tmp)
    os.replace(tmp, dest)
    return dest


def locate(need: Needed, allow_download: bool = False, target_dir: Path | None = None) -> Path:
    """Find one needed file locally (see the module docstring for the order) and return its path.

    ``target_dir`` overrides the directory an un-handed file must end up in (FID: the cache dir pyiqa
    fixed when it was imported). Raises :class:`MetricUnavailable` when the file is nowhere and
    downloading is not allowed; downloads only with ``allow_download=True``.
    """
    wf = need.file
    native_dir = None if need.cache == "hf" else (target_dir or cache_dir(need.cache))
    if native_dir is not None:
        native = native_dir / wf.filename
        if native.is_file() and (not wf.sha256 or sha256_file(native) == wf.sha256):
            return native
    try:
        path = resolve(wf, allow_download=allow_download)
    except WeightsMissingError as e:
        if need.cache == "hf":
            raise _missing(wf, [str(hf_cache_dir())], f"timm reads it only from the Hugging Face cache: "
                           f"huggingface-cli download {wf.hf_repo} {wf.hf_filename}") from e
        looked = [str(native_dir), str(weights_dir())] + ([str(hf_cache_dir())] if wf.hf_repo else [])
        raise _missing(wf, looked) from e
    except Exception as e:  # a download that failed (offline, HTTP error) or a checksum mismatch
        raise MetricUnavailable(f"weights-unusable: {wf.hf_filename or wf.filename} ({wf.source}): "
                                f"{type(e).__name__}: {e}") from e
    if need.handed:
        return path
    if need.cache == "hf":
        if not _is_under(path, hf_cache_dir()):
            raise _missing(wf, [str(hf_cache_dir())],
                           f"found {path}, but timm reads it only from the Hugging Face cache "
                           f"(huggingface-cli download {wf.hf_repo} {wf.hf_filename})")
        return path
    try:
        return _link_into(path, native_dir, wf.filename)
    except OSError as e:
        raise MetricUnavailable(f"weights-unplaceable: {wf.filename} found at {path} but cannot be linked "
                                f"into {native_dir} where its loader reads it ({e})") from e


def basicsr_niqe_npz() -> Path | None:
    """basicsr's shipped NIQE parameters, found without importing basicsr."""
    import importlib.util

    spec = importlib.util.find_spec("basicsr")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations))) / "metrics" / "niqe_pris_params.npz"
    return p if p.is_file() else None


def write_niqe_params(dest: Path, npz: Path) -> Path:
    """Write pyiqa's ``niqe_modelparameters.mat`` (``mu_prisparam`` 1x36, ``cov_prisparam`` 36x36)
    from basicsr's npz (``mu_pris_param``, ``cov_pris_param``), atomically."""
    import scipy.io

    params = np.load(npz)
    with atomic_path(dest) as tmp:
        scipy.io.savemat(str(tmp), {"mu_prisparam": np.asarray(params["mu_pris_param"], np.float64).reshape(1, -1),
                                    "cov_prisparam": np.asarray(params["cov_pris_param"], np.float64)})
    return dest


def niqe_params_path(allow_download: bool = False) -> tuple[Path, str]:
    """The NIQE parameter file and where it came from: pyiqa's cache, ``TEXTSR_WEIGHTS`` / HF cache,
    or written from basicsr's npz into ``TEXTSR_WEIGHTS`` (once). Never downloads unless allowed and
    basicsr is absent."""
    native = cache_dir("pyiqa") / NIQE_PARAMS.filename
    if native.is_file():
        return native, "pyiqa cache"
    with contextlib.suppress(WeightsMissingError):
        return resolve(NIQE_PARAMS, allow_download=False), "found"
    npz = basicsr_niqe_npz()
    if npz is not None:
        for d in (weights_dir(), cache_dir("pyiqa")):
            with contextlib.suppress(OSError):
                return write_niqe_params(d / NIQE_PARAMS.filename, npz), f"written from {npz}"
    try:
        return resolve(NIQE_PARAMS, allow_download=allow_download), "downloaded"
    except WeightsMissingError as e:
        raise _missing(NIQE_PARAMS, [str(native), str(weights_dir()), str(hf_cache_dir())],
                       "basicsr, whose niqe_pris_params.npz it is written from, is not installed either") from e


def _pyiqa_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("pyiqa")
    except metadata.PackageNotFoundError:
        return "not installed"


def _import_pyiqa():
    try:
        import pyiqa
    except ImportError as e:
        raise MetricUnavailable(f"package-missing: pyiqa ({e}); pip install pyiqa") from e
    return pyiqa


def _to_tensor(img: np.ndarray, device: str, what: str):
    import torch

    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"{what} must be an RGB HxWx3 uint8 image, got shape {img.shape} dtype {img.dtype}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255.0).to(device)


# ----------------------------------------------------------------------------- adapters

class PyiqaMetric(MeanMetric):
    """A pyiqa metric as a :class:`MeanMetric`: the mean of per-image scores.

    Keyword args (the runner passes the same set to every metric): ``device`` (default "cpu"),
    ``allow_download`` (default False); anything else the runner passes (``crop_border``, ``ocr``)
    is ignored unless the metric uses it.
    """

    pyiqa_name: str = ""
    full_reference: bool = False
    color_space: str = "RGB"

    def __init__(self, *, device: Any = "cpu", allow_download: bool = False, **_runner_kw: Any):
        self.device = str(device)
        self.allow_download = bool(allow_download)
        self.weights = self._find_weights()          # filename -> path (str), recorded in settings()
        with contextlib.redirect_stdout(sys.stderr):  # pyiqa prints "Loading pretrained model …"
            self._net = self._build(_import_pyiqa())
        super().__init__()

    # -- construction
    def required(self) -> tuple[Needed, ...]:
        return REQUIRED[self.pyiqa_name]

    def _find_weights(self) -> dict[str, str]:
        found, errors = {}, []
        for need in self.required():  # look for every file, so one message names all that are missing
            try:
                found[need.file.filename] = str(locate(need, self.allow_download))
            except WeightsUnavailable as e:
                errors.append(e)
        if errors:
            raise WeightsUnavailable.combine(errors)
        return found

    def _path(self, need_index: int) -> str:
        return self.weights[self.required()[need_index].file.filename]

    def _options(self) -> dict[str, Any]:
        return {}

    def _build(self, pyiqa) -> Callable:
        import torch

        return pyiqa.create_metric(self.pyiqa_name, device=torch.device(self.device), **self._options())

    # -- scoring
    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "pyiqa_metric": self.pyiqa_name, "pyiqa_version": _pyiqa_version(),
                "options": {k: v for k, v in self._options().items() if "path" not in k and k != "backbone"},
                "color_space": self.color_space, "lower_is_better": not self.higher_is_better,
                "input_range": INPUT_RANGE, "device": self.device, "weights": dict(self.weights),
                "average": "mean over images"}

    def score(self, sr: np.ndarray, hr: np.ndarray | None = None) -> float:
        """The pyiqa score of one RGB uint8 image (and its reference for full-reference metrics)."""
        import torch

        x = _to_tensor(sr, self.device, "sr")
        with torch.inference_mode():
            if self.full_reference:
                out = self._net(x, _to_tensor(hr, self.device, "hr"))
            else:
                out = self._net(x)
        return float(torch.as_tensor(out).reshape(-1)[0])

    def value(self, sample: EvalSample) -> float | None:
        if self.full_reference and sample.hr is None:
            return None
        return self.score(sample.sr, sample.hr)


class LPIPS(PyiqaMetric):
    """LPIPS v0.1 (``net="alex"``, pyiqa ``lpips``; ``net="vgg"``: ``lpips-vgg``), SR vs HR."""

    name = "lpips"
    higher_is_better = False
    full_reference = True
    needs = frozenset({"sr", "hr"})

    def __init__(self, *, net: str = "alex", **kw: Any):
        if net not in ("alex", "vgg"):
            raise ValueError(f"LPIPS net must be 'alex' or 'vgg', got {net!r}")
        self.pyiqa_name = "lpips" if net == "alex" else "lpips-vgg"
        super().__init__(**kw)

    def _options(self) -> dict[str, Any]:
        return {"pretrained_model_path": self._path(1)}  # the backbone comes from torchvision's cache


class DISTS(PyiqaMetric):
    name = "dists"
    pyiqa_name = "dists"
    higher_is_better = False
    full_reference = True
    needs = frozenset({"sr", "hr"})

    def _options(self) -> dict[str, Any]:
        return {"pretrained_model_path": self._path(1)}


class NIQE(PyiqaMetric):
    """pyiqa ``niqe`` (the official MATLAB parameters). ``color_space``: luma used, "yiq" (pyiqa's
    default, what pyiqa-based papers report) or "ycbcr" (BT.601 limited Y, basicsr's
    ``calculate_niqe``). ``crop_border`` is applied like basicsr's. Needs images >= ~192 px."""

    name = "niqe"
    pyiqa_name = "niqe"
    higher_is_better = False
    needs = frozenset({"sr"})

    def __init__(self, *, color_space: str = "yiq", crop_border: int = 0, **kw: Any):
        if color_space not in ("yiq", "ycbcr"):
            raise ValueError(f"NIQE color_space must be 'yiq' or 'ycbcr', got {color_space!r}")
        self.color_space = f"Y of {color_space.upper()}" + (" (full range)" if color_space == "yiq"
                                                            else " (BT.601 limited)")
        self._cs, self.crop_border = color_space, int(crop_border)
        super().__init__(**kw)

    def _find_weights(self) -> dict[str, str]:
        path, self.params_source = niqe_params_path(self.allow_download)
        return {NIQE_PARAMS.filename: str(path)}

    def _options(self) -> dict[str, Any]:
        return {"pretrained_model_path": self._path(0), "color_space": self._cs, "crop_border": self.crop_border}

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "crop_border": self.crop_border, "params": self.params_source,
                "rounding": "Y rounded to integers (as MATLAB / basicsr)"}


class MUSIQ(PyiqaMetric):
    """pyiqa ``musiq`` (trained on KonIQ-10k; higher is better, ~0–100)."""

    name = "musiq"
    pyiqa_name = "musiq"
    needs = frozenset({"sr"})

    def _options(self) -> dict[str, Any]:
        return {"pretrained_model_path": self._path(0)}


class MANIQA(PyiqaMetric):
    """pyiqa MANIQA. ``variant="pipal"`` (default: pyiqa ``maniqa-pipal``, the OSEDiff/CODSR recipe),
    ``"koniq"`` (pyiqa's plain ``maniqa``) or ``"kadid"``. The checkpoint holds the whole network,
    but pyiqa still builds timm's ViT-B/8 with its pretrained weights first (from the HF cache)."""

    name = "maniqa"
    needs = frozenset({"sr"})

    _VARIANTS: ClassVar[dict[str, str]] = {"pipal": "maniqa-pipal", "koniq": "maniqa", "kadid": "maniqa-kadid"}

    def __init__(self, *, variant: str = "pipal", **kw: Any):
        if variant not in self._VARIANTS:
            raise ValueError(f"MANIQA variant must be one of {sorted(self._VARIANTS)}, got {variant!r}")
        self.pyiqa_name = self._VARIANTS[variant]
        super().__init__(**kw)

    def _options(self) -> dict[str, Any]:
        return {"pretrained": False}

    def _build(self, pyiqa) -> Callable:
        # pyiqa reads a user checkpoint under the key 'params' but its own release files have no such
        # key, so load the release file the way pyiqa's default path does (strict, no key)
        from pyiqa.archs.arch_util import load_pretrained_network

        metric = super()._build(pyiqa)
        load_pretrained_network(metric.net, self._path(1), True)
        return metric


class CLIPIQA(PyiqaMetric):
    """pyiqa ``clipiqa`` (CLIP RN50 with antonym prompt pairs; no trained weights beyond CLIP).
    Needs the ``openai-clip`` package, which imports ``pkg_resources`` (setuptools < 81)."""

    name = "clipiqa"
    pyiqa_name = "clipiqa"
    needs = frozenset({"sr"})

    def _find_weights(self) -> dict[str, str]:
        try:
            import clip  # noqa: F401  (pyiqa imports it for clipiqa)
        except ImportError as e:
            raise MetricUnavailable(f"package-missing: openai-clip ({e}); pip install openai-clip "
                                    "'setuptools<81'") from e
        return super()._find_weights()

    def _options(self) -> dict[str, Any]:
        return {"backbone": self._path(0)}  # pyiqa's CLIP loader takes a checkpoint path as the name


class PIQE(PyiqaMetric):
    """pyiqa ``piqe`` (no weights; lower is better, 0–100)."""

    name = "piqe"
    pyiqa_name = "piqe"
    higher_is_better = False
    color_space = "Y of YIQ (full range)"
    needs = frozenset({"sr"})


def text_box(region: np.ndarray, min_size: int = 32) -> tuple[int, int, int, int]:
    """The bounding box ``(x0, y0, x1, y1)`` (exclusive ends) of a non-empty HxW bool region, grown
    about its centre to at least ``min_size`` px per side and shifted to stay inside the image (an
    image side shorter than ``min_size`` is taken whole)."""
    ys, xs = np.nonzero(region)
    h, w = region.shape

    def grow(a0: int, a1: int, n: int) -> tuple[int, int]:
        short = min_size - (a1 - a0)
        if short > 0:
            a0, a1 = a0 - short // 2, a1 + short - short // 2
            if a0 < 0:
                a0, a1 = 0, a1 - a0
            if a1 > n:
                a0, a1 = max(0, a0 - (a1 - n)), n
        return a0, a1

    x0, x1 = grow(int(xs.min()), int(xs.max()) + 1, w)
    y0, y1 = grow(int(ys.min()), int(ys.max()) + 1, h)
    return x0, y0, x1, y1


class TextLPIPS(LPIPS):
    """LPIPS on the bounding box of the text region (:func:`~evalkit.metrics.fidelity.text_region`),
    grown to at least 32 px per side; None when the image has no text region."""

    name = "text_lpips"
    needs = frozenset({"sr", "hr", "mask", "texts", "ocr_hr"})
    min_size = 32

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "region": REGION_RULE,
                "crop": f"bounding box of the region, grown to >= {self.min_size} px per side"}

    def value(self, sample: EvalSample) -> float | None:
        if sample.hr is None:
            return None
        region, _ = text_region(sample)
        if region is None:
            return None
        x0, y0, x1, y1 = text_box(region, self.min_size)
        return self.score(sample.sr[y0:y1, x0:x1], sample.hr[y0:y1, x0:x1])
