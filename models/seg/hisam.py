"""Slots for Hi-SAM and SAM-TSS text stroke segmentation (weights resolution only; no loader yet).

Hi-SAM: "Hi-SAM: Marrying Segment Anything Model for Hierarchical Text Segmentation", Ye et al.,
arXiv:2401.17904; official code https://github.com/ymy-k/Hi-SAM (licence: no LICENSE file in the
copy we could read; third parties list Apache-2.0 — unverified). The same repo ships **SAM-TSS**,
its stroke-only model; we register it as ``sam-ts``. We found no separate project called "SAM-TS",
so reading the name as Hi-SAM's SAM-TSS is our interpretation.

Checkpoints (from the official README): SAM-TSS ``sam_tss_{b,l,h}_{totaltext,textseg,hiertext}.pth``
and Hi-SAM ``hi_sam_{b,l,h}.pth``. The official links are OneDrive shares (no scriptable
download); the Hugging Face repo ``GoGiants1/Hi-SAM`` is a third-party mirror holding the same file
names, used here for the fetch command. These checkpoints omit SAM's ViT image encoder, which must
come from Segment Anything (``sam_vit_{b,l,h}_*.pth``, https://dl.fbaipublicfiles.com/segment_anything/).
No sha256 is published for any of them.

Both constructors resolve their files through :func:`models.weights.resolve` and raise
``WeightsMissingError`` (naming the file, where we looked, the source and the fetch command) when
a file is absent; when everything is present they raise ``NotImplementedError``: the loader (Hi-SAM's
modified mask decoder + SAM image encoder, 1024x1024 input) is not written yet.
"""
from __future__ import annotations

import os

import numpy as np

from models.seg.base import TextSegmenter
from models.weights import WeightsFile, WeightsMissingError, resolve

HF_MIRROR = "GoGiants1/Hi-SAM"  # third-party mirror of the official OneDrive checkpoints
OFFICIAL = "official download: the OneDrive links in https://github.com/ymy-k/Hi-SAM#checkpoints"

_SIZE = {"vit_b": "b", "vit_l": "l", "vit_h": "h"}
SAM_ENCODERS = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
SAM_TSS_DATASETS = ("totaltext", "textseg", "hiertext")


def hisam_weights(model_type: str) -> WeightsFile:
    return WeightsFile(filename=f"hi_sam_{_size(model_type)}.pth", hf_repo=HF_MIRROR)


def sam_tss_weights(model_type: str, dataset: str) -> WeightsFile:
    if dataset not in SAM_TSS_DATASETS:
        raise ValueError(f"SAM-TSS dataset must be one of {SAM_TSS_DATASETS}, got {dataset!r}")
    return WeightsFile(filename=f"sam_tss_{_size(model_type)}_{dataset}.pth", hf_repo=HF_MIRROR)


def sam_encoder_weights(model_type: str) -> WeightsFile:
    name = SAM_ENCODERS[_check_type(model_type)]
    return WeightsFile(filename=name, url=f"https://dl.fbaipublicfiles.com/segment_anything/{name}")


def _check_type(model_type: str) -> str:
    if model_type not in _SIZE:
        raise ValueError(f"model_type must be one of {sorted(_SIZE)}, got {model_type!r}")
    return model_type


def _size(model_type: str) -> str:
    return _SIZE[_check_type(model_type)]


def _resolve(wf: WeightsFile, explicit, allow_download, what: str):
    try:
        return resolve(wf, explicit, allow_download=allow_download)
    except WeightsMissingError as e:
        why = f"not found ({what}; {OFFICIAL}; the Hugging Face repo below is a mirror)" \
            if wf.hf_repo == HF_MIRROR else f"not found ({what})"
        raise WeightsMissingError(e.weights_file, e.looked, why=why) from None


class _SAMTextSegmenter(TextSegmenter):
    def _load(self, main: WeightsFile, weights, encoder_weights, allow_download, what: str) -> None:
        self.weights_path = _resolve(main, weights, allow_download, what)
        self.encoder_path = _resolve(sam_encoder_weights(self.model_type), encoder_weights,
                                     allow_download, f"SAM {self.model_type} image encoder for {what}")
        raise NotImplementedError(
            f"{what}: found {self.weights_path} and {self.encoder_path}, but the loader is not "
            "written yet; use create_segmenter('ppocr-db-glyph') meanwhile")

    def segment(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}: the loader is not written yet")


class HiSAMSegmenter(_SAMTextSegmenter):
    """Hi-SAM (stroke + word/line/paragraph) — slot: resolves ``hi_sam_{b,l,h}.pth`` + SAM encoder.

    model_type: ``vit_b`` | ``vit_l`` | ``vit_h``. weights / encoder_weights: explicit file paths
    (or folders holding them). allow_download: as in :func:`models.weights.resolve`.
    """

    name = "hi-sam"

    def __init__(self, model_type: str = "vit_l", weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str = "cpu",
                 allow_download: bool | None = None):
        self.model_type = _check_type(model_type)
        self.device = device
        self._load(hisam_weights(model_type), weights, encoder_weights, allow_download,
                   f"Hi-SAM {model_type}")


class SAMTSSegmenter(_SAMTextSegmenter):
    """SAM-TSS (Hi-SAM's stroke-only model) — slot: resolves ``sam_tss_{b,l,h}_{dataset}.pth`` + SAM
    encoder. ``dataset``: the training set of the checkpoint, ``totaltext`` | ``textseg`` |
    ``hiertext`` (the README demo uses ``hiertext``)."""

    name = "sam-ts"

    def __init__(self, model_type: str = "vit_l", dataset: str = "hiertext",
                 weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str = "cpu",
                 allow_download: bool | None = None):
        self.model_type = _check_type(model_type)
        self.dataset = dataset
        self.device = device
        self._load(sam_tss_weights(model_type, dataset), weights, encoder_weights, allow_download,
                   f"SAM-TSS {model_type} ({dataset})")
