"""FID (Heusel et al., NeurIPS 2017) as pyiqa computes it in clean-fid's "clean" mode, from streamed,
mergeable feature statistics instead of folders of files.

A batch's state is its images' features themselves (16 KiB an image and side), folded into the sums
``Σ f`` / ``Σ f fᵀ`` (two 2048² float64 matrices, 32 MiB each) only when merged or computed: a Ray
worker ships a batch's delta in kilobytes, and the driver's accumulator is the sums.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.metrics.base import Metric
from evalkit.metrics.iqa import REQUIRED, _import_pyiqa, _pyiqa_version, locate
from evalkit.sample import EvalSample

FID_SIZE = (299, 299)
FID_DIMS = 2048


def fid_clean_input(img: np.ndarray) -> np.ndarray:
    """pyiqa ``fid`` "clean" preprocessing of one image (clean-fid's, ``archs/fid_arch.py``
    ``ResizeDataset``): each channel as a float32 PIL image (mode ``F``) resized to 299x299 with PIL
    bicubic, clipped to [0, 255].

    img: ``HxWx3`` RGB uint8 (what PIL's ``Image.open(path).convert("RGB")`` gives for the file).
    Returns ``299x299x3`` float32 in [0, 255]; the network input is ``(x - 128) / 128``, CHW.
    """
    from PIL import Image

    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"FID takes RGB HxWx3 uint8 images, got shape {img.shape} dtype {img.dtype}")
    chans = []
    for c in range(3):
        # a float32 array is PIL mode "F" (pyiqa passes mode="F", which newer Pillow deprecates)
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c]).astype(np.float32))
        ch = ch.resize(FID_SIZE, resample=Image.BICUBIC)
        chans.append(np.asarray(ch).clip(0, 255).reshape(*FID_SIZE, 1))
    return np.concatenate(chans, axis=2).astype(np.float32)


def frechet_from_sums(n1: int, s1: np.ndarray, q1: np.ndarray, n2: int, s2: np.ndarray,
                      q2: np.ndarray) -> float:
    """The Fréchet distance of two feature sets given as sums: ``n`` (count), ``s = Σ f`` (D,) and
    ``q = Σ f fᵀ`` (D, D), float64. Mean ``s / n``; covariance ``(q - s sᵀ / n) / (n - 1)`` (unbiased,
    what ``np.cov(feats, rowvar=False)`` gives); the distance is pyiqa's own ``frechet_distance``
    (scipy ``sqrtm``, ~10-20 s for D = 2048 on 2 cores). Needs ``n >= 2`` on both sides."""
    from pyiqa.archs import fid_arch

    def stats(n, s, q):
        mu = s / n
        return mu, (q - np.outer(s, s) / n) / (n - 1)  # s_i s_j == s_j s_i: exactly symmetric

    mu1, sig1 = stats(n1, s1, q1)
    mu2, sig2 = stats(n2, s2, q2)
    with contextlib.redirect_stdout(sys.stderr):  # it prints when it regularises a singular product
        return float(fid_arch.frechet_distance(mu1, sig1, mu2, sig2))


class FID(Metric):
    """FID between the set of SR images and the set of HR images: pyiqa ``fid`` in clean-fid "clean"
    mode (PIL bicubic resize to 299², input ``(x - 128) / 128``, pytorch-fid's FID InceptionV3, pool3
    features, 2048-d; Fréchet distance of the two sets' means and unbiased covariances), computed
    from streamed feature statistics instead of folders of files.

    ``update(sample)`` extracts the pool3 feature of ``sample.sr`` and of ``sample.hr`` (each image
    alone, batch of 1, so a feature depends on its image only) and adds it to its side's sums:
    ``sr_n`` / ``hr_n`` (int), ``sr_sum`` / ``hr_sum`` (Σ f, ``(2048,)`` float64), ``sr_outer`` /
    ``hr_outer`` (Σ f fᵀ, ``(2048, 2048)`` float64, 32 MiB each) — folded from the features that
    ``update`` collects when they are merged or computed. ``merge`` adds the sums (exact up to
    float64 addition order); ``state()`` holds the unfolded features, or the sums once folded. ``compute()``: :func:`frechet_from_sums`,
    None with fewer than 2 images on a side. A sample without HR adds its SR only and is counted in
    ``skipped``. ``update`` returns ``{"fid": None}``: FID has no per-image value.

    Against pyiqa on files: pyiqa decodes files with PIL, we score the decoded arrays (identical for
    PNG); pyiqa batches 8 images and takes float32 means, which moves FID by ~1e-7 relative.

    ``inception``: an InceptionV3 built elsewhere (pyiqa's ``archs.inception.InceptionV3`` with
    ``output_blocks=[3]``), used as it is instead of the weights file (tests; shared networks).
    """

    name = "fid"
    higher_is_better = False
    needs = frozenset({"sr", "hr"})
    mode = "clean"

    def __init__(self, *, device: Any = "cpu", allow_download: bool = False, inception: Any = None,
                 **_runner_kw: Any):
        self.device = str(device)
        self.allow_download = bool(allow_download)
        if inception is None:
            self.weights = self._find_weights()
            with contextlib.redirect_stdout(sys.stderr):  # pyiqa prints "Loading pretrained model …"
                inception = self._build()
        else:
            self.weights = {"inception": "given (not from a weights file)"}
        import torch

        self._net = inception.to(torch.device(self.device)).eval()
        self.reset()

    def _find_weights(self) -> dict[str, str]:
        (need,) = REQUIRED["fid"]
        _import_pyiqa()
        from pyiqa.utils.download_util import (
            DEFAULT_CACHE_DIR,  # fixed when pyiqa was imported
        )

        return {need.file.filename: str(locate(need, self.allow_download, target_dir=Path(DEFAULT_CACHE_DIR)))}

    def _build(self):
        """pyiqa's FID network (``archs/fid_arch.py`` ``FID(dims=2048).model``): it loads the weights
        from pyiqa's cache, where :meth:`_find_weights` put them."""
        from pyiqa.archs.fid_arch import FID as PyiqaFID

        return PyiqaFID(dims=FID_DIMS).model

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "pyiqa_metric": "fid", "pyiqa_version": _pyiqa_version(), "mode": self.mode,
                "preprocess": "per channel: float32 PIL bicubic resize to 299x299, clip [0, 255], (x - 128) / 128",
                "network": "pytorch-fid FID InceptionV3 (pyiqa archs/inception.py), one image per forward",
                "features": "pool3 2048, streamed sums", "sets": "SR images vs HR images",
                "covariance": "unbiased (n - 1), from sums", "distance": "pyiqa archs.fid_arch.frechet_distance",
                "lower_is_better": True, "input_range": "RGB uint8 arrays (as decoded)",
                "device": self.device, "weights": dict(self.weights), "merge": "add statistics"}

    def reset(self) -> None:
        self.sr_n = self.hr_n = 0
        self.sr_sum, self.hr_sum = np.zeros(FID_DIMS), np.zeros(FID_DIMS)
        self.sr_outer, self.hr_outer = np.zeros((FID_DIMS, FID_DIMS)), np.zeros((FID_DIMS, FID_DIMS))
        self._new = {"sr": [], "hr": []}  # features not folded into the sums yet
        self.skipped = 0

    def _fold(self) -> None:
        for side, feats in self._new.items():
            if feats:
                self.add_features(side, np.stack(feats))
        self._new = {"sr": [], "hr": []}

    def state(self) -> dict[str, Any]:
        """A batch's features as they are (``sr_feats``/``hr_feats``, ``(N, 2048)``) while nothing has
        been folded into the sums — a worker's per-batch delta stays small — else the sums."""
        if self.sr_n == 0 and self.hr_n == 0:
            return {"sr_feats": np.array(self._new["sr"]).reshape(-1, FID_DIMS),
                    "hr_feats": np.array(self._new["hr"]).reshape(-1, FID_DIMS), "skipped": self.skipped}
        self._fold()
        return super().state()

    def load_state(self, state: dict[str, Any]) -> None:
        if "sr_feats" in state:
            self.reset()
            self._new = {side: list(np.asarray(state[f"{side}_feats"], np.float64).reshape(-1, FID_DIMS))
                         for side in ("sr", "hr")}
            self.skipped = int(state.get("skipped", 0))
        else:
            super().load_state({k: v for k, v in state.items() if k != "_new"})
            self._new = {"sr": [], "hr": []}

    def features(self, img: np.ndarray) -> np.ndarray:
        """The pool3 feature of one RGB uint8 image: ``(2048,)`` float64 (the network's float32)."""
        import torch

        x = torch.from_numpy(fid_clean_input(img)).permute(2, 0, 1)[None]
        x = (x - 128) / 128
        with torch.inference_mode():
            feat = self._net(x.to(torch.device(self.device)), False, False)[0]
        return feat.reshape(FID_DIMS).cpu().numpy().astype(np.float64)

    def add_features(self, side: str, feats: np.ndarray) -> None:
        """Add features ``(N, 2048)`` (or one ``(2048,)``) to side ``"sr"`` or ``"hr"``."""
        if side not in ("sr", "hr"):
            raise ValueError(f"side must be 'sr' or 'hr', got {side!r}")
        f = np.asarray(feats, np.float64).reshape(-1, FID_DIMS)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + len(f))
        getattr(self, f"{side}_sum")[:] += f.sum(axis=0)
        getattr(self, f"{side}_outer")[:] += f.T @ f

    def update(self, sample: EvalSample) -> dict[str, float | None]:
        self._new["sr"].append(self.features(sample.sr))
        if sample.hr is None:
            self.skipped += 1
        else:
            self._new["hr"].append(self.features(sample.hr))
        return {self.name: None}

    def merge(self, other: FID) -> None:
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        self._fold()
        other._fold()
        self.sr_n += other.sr_n
        self.hr_n += other.hr_n
        for k in ("sr_sum", "hr_sum", "sr_outer", "hr_outer"):
            getattr(self, k)[:] += getattr(other, k)
        self.skipped += other.skipped

    def compute(self) -> dict[str, float | None]:
        self._fold()
        if self.sr_n < 2 or self.hr_n < 2:
            return {self.name: None}
        return {self.name: frechet_from_sums(self.sr_n, self.sr_sum, self.sr_outer,
                                             self.hr_n, self.hr_sum, self.hr_outer)}
