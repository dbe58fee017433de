"""Hi-SAM and SAM-TSS text stroke segmentation (loading and the inference procedure).

Hi-SAM: "Hi-SAM: Marrying Segment Anything Model for Hierarchical Text Segmentation", Ye et al.,
arXiv:2401.17904; official code https://github.com/ymy-k/Hi-SAM (Apache-2.0). The same repo ships
**SAM-TSS** (its README calls the models "SAM-TS-B/L/H"), the stroke-only model; we register it as
``sam-ts``. The network is :mod:`models.seg.archs.hisam_arch`; checked against the official
modules (same random weights, tiny sizes): stroke logits, H-decoder masks and word masks agree to
3e-7.

Checkpoints (official README): SAM-TSS ``sam_tss_{b,l,h}_{totaltext,textseg,hiertext}.pth`` and
Hi-SAM ``hi_sam_{b,l,h}.pth``; OneDrive shares (no scriptable download), mirrored by the
third-party Hugging Face repo ``GoGiants1/Hi-SAM`` (used for the fetch command). They omit SAM's
frozen ViT weights, which come from Segment Anything's ``sam_vit_{b,l,h}_*.pth``
(https://dl.fbaipublicfiles.com/segment_anything/). Loading follows the official ``_build_sam``:
the checkpoint (or its ``"model"`` entry) first, then every key of the SAM file it lacks; unlike
upstream (``strict=False``), every network key must be filled and every file key used, else a
:class:`~models.sr.checkpoint.CheckpointError` names the file and the keys. No sha256 is published.

Procedure (the official ``SamPredictor`` + ``HiSam.postprocess_masks``): resize the longest side to
1024 (PIL bilinear), normalise with SAM's pixel mean/std (0-255 scale), zero-pad to 1024²; the
S-decoder's high-resolution stroke logits (1024²) are cropped to the resized image, resized
bilinearly to the input size and thresholded at logit 0 (``mask_threshold``, probability 0.5).
``window``/``stride`` turn on the official sliding-window mode (``--patch_mode``: 512 px windows,
stride 384 for HierText; logits of overlapping windows are summed). On CUDA the network runs under
fp16 autocast (``half=False`` for fp32).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.ocr.base import check_rgb_image
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
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


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


def _resolve(wf: WeightsFile, explicit, allow_download, what: str) -> Path:
    try:
        return resolve(wf, explicit, allow_download=allow_download)
    except WeightsMissingError as e:
        why = f"not found ({what}; {OFFICIAL}; the Hugging Face repo below is a mirror)" \
            if wf.hf_repo == HF_MIRROR else f"not found ({what})"
        raise WeightsMissingError(e.weights_file, e.looked, why=why) from None


def load_hisam(net, weights: Path, encoder: Path, what: str) -> dict:
    """Fill ``net`` (a :class:`~models.seg.archs.hisam_arch.HiSAM`) from a Hi-SAM / SAM-TSS
    checkpoint plus the SAM file holding the ViT weights it omits, every key accounted for.
    Returns a record (paths, sha256s, how many tensors each file gave)."""
    from models.files import sha256_file
    from models.sr.checkpoint import CheckpointError, check_keys, read_state_dict

    own = net.state_dict()
    sd, _ = read_state_dict(Path(weights), keys=("model",))  # train.py saves {"model": ...}
    sam, _ = read_state_dict(Path(encoder), keys=("model",))
    for path, d, hint in ((weights, sd, (f"Is it a {what} checkpoint (hi_sam_* need hi-sam, "
                                        "sam_tss_* sam-ts) of this model_type?")),
                          (encoder, sam, "Is it Segment Anything's sam_vit_* file?")):
        extra = [k for k in d if k not in own]
        if extra:
            raise CheckpointError(f"{path}: {len(extra)} keys the {what} network does not have "
                                  f"(e.g. {', '.join(extra[:3])}). {hint}")
    # the checkpoint's own tensors win over SAM's (its mask decoder is fine-tuned), as upstream
    merged = {**{k: v for k, v in sam.items() if k not in sd}, **sd}
    check_keys(own, merged, f"{weights} + {encoder} do not fill the {what} network",
               "Is model_type the checkpoint's (vit_b / vit_l / vit_h) and the SAM file the same size?")
    net.load_state_dict(merged, strict=True)
    return {"weights": str(weights), "weights_sha256": sha256_file(Path(weights)), "weights_tensors": len(sd),
            "encoder": str(encoder), "encoder_sha256": sha256_file(Path(encoder)),
            "encoder_tensors": len(merged) - len(sd)}


def _preprocess_shape(h: int, w: int, long: int) -> tuple[int, int]:
    """SAM's ResizeLongestSide target ``(h', w')``."""
    s = long / max(h, w)
    return int(h * s + 0.5), int(w * s + 0.5)


def _windows(h: int, w: int, size: int, stride: int) -> list[tuple[slice, slice]]:
    """The official sliding windows (``patchify_sliding``): a grid of ``stride`` steps, windows
    running past an edge shifted back inside."""
    out = []
    for y in range(0, h, stride):
        y0, y1 = (y, y + size) if y + size <= h else (max(h - size, 0), h)
        for x in range(0, w, stride):
            x0, x1 = (x, x + size) if x + size <= w else (max(w - size, 0), w)
            out.append((slice(y0, y1), slice(x0, x1)))
    return out


class _SAMTextSegmenter(TextSegmenter):
    """Shared procedure. Subclasses set ``self.net`` (built, weights loaded) via :meth:`_init`."""

    hier = False

    def _init(self, model_type: str, device, half: bool, batch_size: int, threshold: float,
              window: int | None, stride: int | None) -> None:
        import torch

        self.model_type = model_type
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.half = bool(half)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.threshold = float(threshold)
        if window is not None and (window < 16 or not 0 < (stride or window) <= window):
            raise ValueError(f"window must be >= 16 px and 0 < stride <= window, got {window}, {stride}")
        self.window, self.stride = window, (stride or window)
        self.load_record: dict = {}

    def _build(self, model_type: str, seed: int | None = None):
        import torch

        from models.seg.archs.hisam_arch import HiSAM, hisam_config

        cfg = hisam_config(model_type, hier=self.hier)
        if seed is None:
            net = HiSAM(cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                net = HiSAM(cfg)
        return net.eval()

    def _finish(self, net) -> None:
        import torch

        self.net = net.to(self.device)
        self.img_size = net.cfg.img_size
        self._mean = torch.tensor(PIXEL_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(PIXEL_STD, device=self.device).view(3, 1, 1)

    def _autocast(self):
        import contextlib

        import torch

        if self.device.type == "cuda" and self.half:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def _inputs(self, images: Sequence[np.ndarray]):
        """uint8 images -> ``(B, 3, S, S)`` normalised, padded batch and each resized ``(h', w')``."""
        import torch
        from PIL import Image

        S = self.img_size
        batch = torch.zeros(len(images), 3, S, S, device=self.device)
        sizes = []
        for i, im in enumerate(images):
            h, w = _preprocess_shape(*im.shape[:2], S)
            # PIL bilinear, as SAM's ResizeLongestSide.apply_image (torchvision resize on a PIL image)
            r = np.array(Image.fromarray(im).resize((w, h), Image.BILINEAR))
            t = torch.from_numpy(r).to(self.device).permute(2, 0, 1).float()
            batch[i, :, :h, :w] = (t - self._mean) / self._std  # padding stays 0 = the mean colour
            sizes.append((h, w))
        return batch, sizes

    def _embed(self, images: Sequence[np.ndarray]):
        batch, sizes = self._inputs(images)
        with self._autocast():
            return self.net.image_encoder(batch), sizes

    def _to_input(self, logits, size: tuple[int, int], orig: tuple[int, int]):
        """``(B, C, s, s)`` logits in the padded frame -> ``(B, C, H, W)`` at the input size
        (``postprocess_masks``: to S², crop the resized image, to the input size; bilinear)."""
        import torch.nn.functional as F

        S = self.img_size
        logits = logits.float()
        if logits.shape[-1] != S:
            logits = F.interpolate(logits, (S, S), mode="bilinear", align_corners=False)
        logits = logits[..., :size[0], :size[1]]
        return F.interpolate(logits, orig, mode="bilinear", align_corners=False)

    def _stroke_logits(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                chunk = images[i:i + self.batch_size]
                emb, sizes = self._embed(chunk)
                with self._autocast():
                    logits = self.net.stroke_logits(emb)
                for j, im in enumerate(chunk):
                    out.append(self._to_input(logits[j:j + 1], sizes[j], im.shape[:2])[0, 0].cpu().numpy())
        return out

    def stroke_logits(self, image: np.ndarray) -> np.ndarray:
        """RGB ``HxWx3 uint8`` -> ``HxW float32`` stroke logits (> 0 is text); sliding windows
        when ``window`` is set and the image is larger than one."""
        check_rgb_image(image)
        h, w = image.shape[:2]
        if self.window is None or max(h, w) <= self.window:
            return self._stroke_logits([image])[0]
        wins = _windows(h, w, self.window, self.stride)
        acc = np.zeros((h, w), np.float32)
        for (ys, xs), lg in zip(wins, self._stroke_logits([image[ys, xs] for ys, xs in wins])):
            acc[ys, xs] += lg
        return acc

    def segment(self, image: np.ndarray) -> np.ndarray:
        """RGB ``HxWx3 uint8`` text crop or scene -> ``HxW uint8`` stroke mask in {0, 255}."""
        return (self.stroke_logits(image) > self.threshold).astype(np.uint8) * np.uint8(255)

    def segment_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """:meth:`segment` of each image, ``batch_size`` images per network call (sizes may differ;
        sliding-window images go one by one)."""
        images = [check_rgb_image(im, f"image {i}") for i, im in enumerate(images)]
        direct = [i for i, im in enumerate(images) if self.window is None or max(im.shape[:2]) <= self.window]
        out: list[np.ndarray | None] = [None] * len(images)
        for i, lg in zip(direct, self._stroke_logits([images[i] for i in direct])):
            out[i] = (lg > self.threshold).astype(np.uint8) * np.uint8(255)
        for i, im in enumerate(images):
            if out[i] is None:
                out[i] = self.segment(im)
        return out


class _HierMixin:
    hier = True

    def hierarchy(self, image: np.ndarray, points: np.ndarray) -> dict:
        """Hi-SAM's H-decoder for foreground ``points`` ``(N, 2)`` (x, y in input pixels) on RGB
        ``HxWx3 uint8`` ``image`` -> ``{"word", "line", "paragraph"}`` each ``(N, H, W) uint8`` in
        {0, 255} and ``"line_score"``, ``"paragraph_score"`` ``(N,) float32`` (predicted IoU).
        Upstream's demo then keeps the word polygon containing the point; that is left to callers."""
        import torch

        check_rgb_image(image)
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        H, W = image.shape[:2]
        with torch.inference_mode():
            emb, sizes = self._embed([image])
            h, w = sizes[0]
            xy = torch.as_tensor(pts * [w / W, h / H], dtype=torch.float32, device=self.device)
            with self._autocast():
                masks, iou, word = self.net.hier_logits(emb, xy)
            masks = self._to_input(masks, sizes[0], (H, W)) > self.threshold
            word = self._to_input(word, sizes[0], (H, W))[:, 0] > self.threshold
        u8 = lambda t: t.cpu().numpy().astype(np.uint8) * np.uint8(255)
        iou = iou.float().cpu().numpy()
        return {"word": u8(word), "line": u8(masks[:, 0]), "paragraph": u8(masks[:, 1]),
                "line_score": iou[:, 0], "paragraph_score": iou[:, 1]}


_COMMON_DOC = """
    device: ``"cuda"`` / ``"cpu"`` / None (CUDA when available). half: fp16 autocast on CUDA.
    batch_size: images per network call in :meth:`segment_batch`. threshold: logit threshold (0 =
    probability 0.5, upstream's). window / stride: sliding-window mode for scenes (upstream's
    ``--patch_mode`` uses 512 / 384); None = whole image resized to 1024.
    weights / encoder_weights: explicit file paths (or folders holding them); allow_download: as in
    :func:`models.weights.resolve` (only the SAM encoder has a direct URL)."""


class _RealSAM(_SAMTextSegmenter):
    def _load_real(self, main: WeightsFile, weights, encoder_weights, allow_download, what: str) -> None:
        self.weights_path = _resolve(main, weights, allow_download, what)
        self.encoder_path = _resolve(sam_encoder_weights(self.model_type), encoder_weights,
                                     allow_download, f"SAM {self.model_type} image encoder for {what}")
        net = self._build(self.model_type)
        self.load_record = load_hisam(net, self.weights_path, self.encoder_path, what)
        self._finish(net)


class SAMTSSegmenter(_RealSAM):
    __doc__ = """SAM-TSS (Hi-SAM's stroke-only model): ``sam_tss_{b,l,h}_{dataset}.pth`` + SAM encoder.

    model_type: ``vit_b`` | ``vit_l`` | ``vit_h``. dataset: the checkpoint's training set,
    ``totaltext`` | ``textseg`` | ``hiertext`` (the README demo uses ``hiertext``).""" + _COMMON_DOC

    name = "sam-ts"

    def __init__(self, model_type: str = "vit_l", dataset: str = "hiertext",
                 weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str | None = None,
                 half: bool = True, batch_size: int = 4, threshold: float = 0.0,
                 window: int | None = None, stride: int | None = None,
                 allow_download: bool | None = None):
        _check_type(model_type)
        self.dataset = dataset
        main = sam_tss_weights(model_type, dataset)
        self._init(model_type, device, half, batch_size, threshold, window, stride)
        self._load_real(main, weights, encoder_weights, allow_download, f"SAM-TSS {model_type} ({dataset})")


class HiSAMSegmenter(_HierMixin, _RealSAM):
    __doc__ = """Hi-SAM: ``hi_sam_{b,l,h}.pth`` + SAM encoder. :meth:`segment` gives the stroke mask
    (S-decoder, as SAM-TSS); :meth:`hierarchy` the word / line / paragraph masks at points.

    model_type: ``vit_b`` | ``vit_l`` | ``vit_h``.""" + _COMMON_DOC

    name = "hi-sam"

    def __init__(self, model_type: str = "vit_l", weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str | None = None,
                 half: bool = True, batch_size: int = 4, threshold: float = 0.0,
                 window: int | None = None, stride: int | None = None,
                 allow_download: bool | None = None):
        _check_type(model_type)
        main = hisam_weights(model_type)
        self._init(model_type, device, half, batch_size, threshold, window, stride)
        self._load_real(main, weights, encoder_weights, allow_download, f"Hi-SAM {model_type}")


class _TinySAM(_SAMTextSegmenter):
    def _load_tiny(self, seed: int, weights, encoder_weights, what: str) -> None:
        net = self._build("tiny", seed=seed)
        if weights is not None or encoder_weights is not None:
            if weights is None or encoder_weights is None:
                raise ValueError(f"{what}: pass both weights and encoder_weights, or neither (random weights)")
            # test files: no source to fetch from, so the resolver's message says where they were looked for
            wf = WeightsFile(filename=Path(weights).name)
            ef = WeightsFile(filename=Path(encoder_weights).name)
            self.weights_path = resolve(wf, weights, allow_download=False)
            self.encoder_path = resolve(ef, encoder_weights, allow_download=False)
            self.load_record = load_hisam(net, self.weights_path, self.encoder_path, what)
        self._finish(net)


class SAMTSTinySegmenter(_TinySAM):
    __doc__ = """SAM-TSS structure at toy sizes (ViT width 32, depth 2, 128² input), random weights
    from ``seed`` unless ``weights`` + ``encoder_weights`` (files in the official key layout) are
    given. For tests and smoke runs; its masks mean nothing.""" + _COMMON_DOC

    name = "sam-ts-tiny"

    def __init__(self, seed: int = 0, weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str | None = "cpu",
                 half: bool = True, batch_size: int = 4, threshold: float = 0.0,
                 window: int | None = None, stride: int | None = None):
        self._init("tiny", device, half, batch_size, threshold, window, stride)
        self._load_tiny(seed, weights, encoder_weights, "SAM-TSS tiny")


class HiSAMTinySegmenter(_HierMixin, _TinySAM):
    __doc__ = """Hi-SAM structure (with the H-decoder) at toy sizes; see :class:`SAMTSTinySegmenter`.""" \
        + _COMMON_DOC

    name = "hi-sam-tiny"

    def __init__(self, seed: int = 0, weights: str | os.PathLike | None = None,
                 encoder_weights: str | os.PathLike | None = None, device: str | None = "cpu",
                 half: bool = True, batch_size: int = 4, threshold: float = 0.0,
                 window: int | None = None, stride: int | None = None):
        self._init("tiny", device, half, batch_size, threshold, window, stride)
        self._load_tiny(seed, weights, encoder_weights, "Hi-SAM tiny")
