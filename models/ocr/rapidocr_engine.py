"""PP-OCR through RapidOCR's onnxruntime packages, from the ONNX files shipped inside the wheels.

- ``rapidocr-ppocrv4``: ``rapidocr_onnxruntime`` 1.4.x, PP-OCRv4 det/rec + mobile-v2.0 cls
  (Apache-2.0, https://github.com/RapidAI/RapidOCR).
- ``rapidocr-ppocrv6``: ``rapidocr`` 3.x, PP-OCRv6-small det/rec + mobile-v2.0 cls, with explicit
  model paths so the package never tries its model download.

Detector size policy (``det_limit_side_len=960, det_limit_type="max"``). RapidOCR's default is
``limit_type: min, limit_side_len: 736``: it *upsizes the short side to 736*, so a 64x1024 line
(letterboxed to 256x1024 first) is detected at 736x2944: 1.3 s (v4) / 1.6 s (v6) on 2 threads,
against 0.04 s / 0.13 s with our policy. We use PaddleOCR's classic server policy instead: shrink
only when the long side exceeds 960, keep smaller images at native size (sides rounded to
multiples of 32). Very small text (a few px tall) may then be missed; upscale such images yourself
or pass ``det_limit_type="min"``. RapidOCR's own small-image safeguards stay: the short side is
raised to 30 px, and images at most 30 px tall or wider than 8:1 are letterboxed. The detector
sometimes reads a round object as one character (skimage's coffee cup as "O"/"8", depending on
the scale).

Recognition, one crop per batch. PP-OCR's recogniser (RapidOCR's ``TextRecognizer``) sorts crops by
aspect ratio into batches of ``rec_batch_num`` (6) and resizes every crop of a batch to 48 px tall,
right-padded to the batch's widest ratio (at least 320 px); padding and batch make a crop's reading
depend on its companions (measured: degraded word crops of ``skimage.data.page()`` read beside one
wide line crop changed every score and several strings). Both engines therefore build their
pipelines with ``rec_batch_num = cls_batch_num = 1`` (so :meth:`readtext` recognises each detected
line alone) and :meth:`recognize` feeds the recogniser one crop at a time: a crop's
``(text, score)`` is exactly what ``recognize([crop])`` gives. Cost, measured on 20 real word crops
(2 threads): 1.5x the batched time (v4 0.43 s vs 0.28 s; v6 0.65 s vs 0.41 s).

Small crops. :meth:`recognize` hands crops straight to the recogniser, never through RapidOCR's
front door (which enlarges whole input images whose short side is under 30 px and letterboxes those
at most 30 px tall or wider than 8:1 before detection — that applies to :meth:`readtext`'s image
only). The recogniser itself resizes every crop, tiny or not, to 48 px tall (bilinear, aspect
kept) and pads it on the right to at least 320 px; a 10 px tall crop is thus enlarged 4.8x, the
same way whatever its companions.

Threads: ``num_threads`` sets onnxruntime's intra-op threads of every session (det, cls, rec and
the probability-map session); ``None`` leaves onnxruntime's default (all cores). Use 1 when several
worker processes share the machine.

Device: ``device="cpu"`` (default), ``"cuda"`` or ``"cuda:N"``. For CUDA, when onnxruntime has the
``CUDAExecutionProvider`` (the ``onnxruntime-gpu`` package), every session runs on
``[CUDAExecutionProvider (device_id N), CPUExecutionProvider]``; when it has not, the engine warns
once and runs on CPU. :meth:`settings` names the provider chosen (``provider``), so caches and run
identities tell CPU and GPU readings apart (their float results differ in the last bits). A CUDA
session that onnxruntime silently builds on CPU (CUDA libraries missing) is an error, never a
silent CPU run under a GPU name.

Sessions are built lazily: ``detect_prob`` only loads the detector, ``recognize`` only the
recogniser (v6) or the whole pipeline (v4, whose package loads det/cls/rec together).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.errors import TextsrError
from models.ocr.base import OCREngine, OCRInputError, OCRLine, check_rgb_image

log = logging.getLogger(__name__)

# PaddleOCR trains its DB detectors on BGR images normalised with these ImageNet statistics
# (``NormalizeImage`` in its det configs). RapidOCR's own preprocessing uses 0.5/0.5; both give
# nearly the same map (checked on rendered text), we keep PaddleOCR's training convention.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _package_dir(package: str) -> Path:
    """The installed folder of ``package`` without importing it (importing pulls onnxruntime)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package} is not installed; pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(path: str | os.PathLike | None, default: Path, what: str) -> str:
    p = Path(path).expanduser() if path is not None else default
    if not p.is_file():
        raise FileNotFoundError(
            f"{what} model {p} not found; pass an existing .onnx path"
            + ("" if path is not None else " (the wheel's shipped model is missing: reinstall it)"))
    return str(p)


def _check_threads(num_threads: int | None) -> None:
    if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
        raise OCRInputError(f"num_threads must be a positive int or None, got {num_threads!r}")


CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
NO_CUDA_WARNING = "onnxruntime has no CUDA provider (install onnxruntime-gpu); OCR runs on CPU"
_warned_no_cuda = False


class OCRDeviceError(TextsrError, RuntimeError):
    """onnxruntime was asked for CUDA, lists the provider, but built the session on CPU."""


def parse_device(device: str | None) -> tuple[str, int]:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` (also a ``torch.device``) -> ``("cpu", 0)`` or
    ``("cuda", N)``; anything else raises :class:`OCRInputError`."""
    d = "cpu" if device is None else str(device).strip().lower()
    m = re.fullmatch(r"cuda(?::(\d+))?", d)
    if d == "cpu":
        return "cpu", 0
    if m:
        return "cuda", int(m.group(1) or 0)
    raise OCRInputError(f"OCR device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def onnx_providers(device: str | None) -> list:
    """The onnxruntime providers for ``device``: ``["CPUExecutionProvider"]``, or for CUDA
    ``[("CUDAExecutionProvider", {"device_id": N}), "CPUExecutionProvider"]`` when onnxruntime has
    the CUDA provider; otherwise CPU, with a warning (once per process, stderr via logging)."""
    global _warned_no_cuda
    kind, index = parse_device(device)
    if kind == "cpu":
        return [CPU_PROVIDER]
    import onnxruntime as ort

    if CUDA_PROVIDER in ort.get_available_providers():
        return [(CUDA_PROVIDER, {"device_id": index}), CPU_PROVIDER]
    if not _warned_no_cuda:
        _warned_no_cuda = True
        log.warning(NO_CUDA_WARNING)
    return [CPU_PROVIDER]


def provider_name(providers: list) -> str:
    """``"CPUExecutionProvider"`` or ``"CUDAExecutionProvider:N"``: the first provider of a list."""
    first = providers[0]
    if isinstance(first, tuple):
        return f"{first[0]}:{first[1].get('device_id', 0)}"
    return str(first)


def _check_session_provider(session, providers: list, model_path: str) -> None:
    want = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    got = session.get_providers()[0]
    if got != want:
        raise OCRDeviceError(f"onnxruntime built {Path(model_path).name} on {got}, not {want} (are the "
                             f"CUDA/cuDNN libraries onnxruntime-gpu needs installed?); use device='cpu'")


def make_session(model_path: str, num_threads: int | None = None, providers: list | None = None):
    """An onnxruntime session for ``model_path`` with ``num_threads`` intra-op threads on
    ``providers`` (default CPU; see :func:`onnx_providers`)."""
    import onnxruntime as ort

    providers = providers or [CPU_PROVIDER]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        opts.intra_op_num_threads = num_threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, sess_options=opts, providers=providers)
    _check_session_provider(sess, providers, model_path)
    return sess


def det_input_size(h: int, w: int, limit_side_len: int, limit_type: str) -> tuple[int, int]:
    """The detector input size ``(h, w)`` for an ``h x w`` image under PP-OCR's limit policy.

    ``"max"``: shrink so the long side is at most ``limit_side_len``; ``"min"``: grow so the short
    side is at least ``limit_side_len``. Sides are then rounded to multiples of 32 (at least 32).
    """
    if limit_type == "max":
        ratio = min(1.0, limit_side_len / max(h, w))
    elif limit_type == "min":
        ratio = max(1.0, limit_side_len / min(h, w))
    else:
        raise ValueError(f"limit_type must be 'max' or 'min', got {limit_type!r}")
    rh = max(32, round(h * ratio / 32) * 32)
    rw = max(32, round(w * ratio / 32) * 32)
    return rh, rw


class _RapidOCRBase(OCREngine):
    """Shared parts: input checks, the lazily built DB probability-map session, result packing."""

    def __init__(self, det_model_path: str, num_threads: int | None, det_limit_side_len: int,
                 det_limit_type: str, text_score: float, use_cls: bool, device: str | None = "cpu"):
        _check_threads(num_threads)
        self.device = "cpu" if device is None else str(device)
        self.providers = onnx_providers(self.device)  # decided once, here: settings() names it
        if det_limit_type not in ("max", "min"):
            raise OCRInputError(f"det_limit_type must be 'max' or 'min', got {det_limit_type!r}")
        if det_limit_side_len < 32:
            raise OCRInputError(f"det_limit_side_len must be >= 32, got {det_limit_side_len}")
        self.num_threads = num_threads
        self.det_limit_side_len = int(det_limit_side_len)
        self.det_limit_type = det_limit_type
        self.text_score = float(text_score)
        self.use_cls = bool(use_cls)
        self.det_model_path = det_model_path
        self._det_session = None

    def __getstate__(self) -> dict:
        # onnxruntime sessions do not pickle; drop them so an engine can be shipped to worker
        # processes (Ray, multiprocessing) and rebuild them lazily there.
        state = self.__dict__.copy()
        state["_det_session"] = None
        state["_ocr"] = None
        return state

    def settings(self) -> dict:
        return {**super().settings(),
                "models": [Path(p).name for p in (self.det_model_path, self.rec_model_path,
                                                   self.cls_model_path)],
                "det_limit": f"{self.det_limit_type} {self.det_limit_side_len}",
                "text_score": self.text_score, "use_cls": self.use_cls,
                "provider": provider_name(self.providers)}

    @property
    def on_cuda(self) -> bool:
        return provider_name(self.providers).startswith(CUDA_PROVIDER)

    # -- detection probability map -------------------------------------------------------------
    def detect_prob(self, image: np.ndarray, limit_side_len: int | None = None,
                    limit_type: str | None = None) -> np.ndarray:
        """DB text-probability map, ``HxW float32`` in [0, 1], same size as ``image``.

        The image goes in as BGR, ImageNet mean/std, resized to multiples of 32 under the engine's
        detector limits (or the ``limit_side_len`` / ``limit_type`` given here); the map is resized
        back bilinearly.
        """
        check_rgb_image(image)
        h, w = image.shape[:2]
        rh, rw = det_input_size(h, w, limit_side_len or self.det_limit_side_len,
                                limit_type or self.det_limit_type)
        x = cv2.resize(image[:, :, ::-1], (rw, rh), interpolation=cv2.INTER_LINEAR)
        x = (x.astype(np.float32) / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
        if self._det_session is None:
            self._det_session = make_session(self.det_model_path, self.num_threads, self.providers)
        sess = self._det_session
        prob = sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0]
        prob = cv2.resize(prob.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.clip(prob, 0.0, 1.0)

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _bgr_crops(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(crops, np.ndarray) and crops.ndim == 3:
            raise OCRInputError("recognize() takes a list of crops; wrap a single crop as [crop]")
        out = []
        for i, c in enumerate(crops):
            check_rgb_image(c, f"crop {i}")
            out.append(np.ascontiguousarray(c[:, :, ::-1]))
        return out

    @staticmethod
    def _lines(boxes: Any, texts: Sequence[str], scores: Sequence[float]) -> list[OCRLine]:
        lines = []
        for box, text, score in zip(boxes, texts, scores):
            poly = np.asarray(box, dtype=np.float32).reshape(4, 2)
            lines.append(OCRLine(polygon=poly, text=str(text), score=float(score)))
        return lines


class RapidOCRv4Engine(_RapidOCRBase):
    """PP-OCRv4 (zh+en) det/rec with the mobile-v2.0 180° classifier via ``rapidocr_onnxruntime``.

    num_threads:        onnxruntime intra-op threads per session (None: onnxruntime default).
    det_limit_side_len, det_limit_type: detector size policy, see the module docstring.
    text_score:         lines recognised below this confidence are dropped by :meth:`readtext`.
    use_cls:            run the 180° text-line classifier in :meth:`readtext`.
    det_model_path, rec_model_path, cls_model_path: explicit ONNX files (default: the wheel's).
    rec_keys_path:      character dictionary for a recogniser without one embedded in its metadata.
    device:             "cpu" (default), "cuda" or "cuda:N" (module docstring).
    """

    name = "rapidocr-ppocrv4"

    def __init__(self, num_threads: int | None = None, det_limit_side_len: int = 960,
                 det_limit_type: str = "max", text_score: float = 0.5, use_cls: bool = True,
                 det_model_path: str | None = None, rec_model_path: str | None = None,
                 cls_model_path: str | None = None, rec_keys_path: str | None = None,
                 device: str | None = "cpu"):
        models = _package_dir("rapidocr_onnxruntime") / "models"
        det = _existing(det_model_path, models / "ch_PP-OCRv4_det_infer.onnx", "detection")
        super().__init__(det, num_threads, det_limit_side_len, det_limit_type, text_score, use_cls,
                         device)
        self.rec_model_path = _existing(rec_model_path, models / "ch_PP-OCRv4_rec_infer.onnx",
                                        "recognition")
        self.cls_model_path = _existing(cls_model_path, models / "ch_ppocr_mobile_v2.0_cls_infer.onnx",
                                        "classification")
        self.rec_keys_path = rec_keys_path
        self._ocr = None

    def _pipeline(self):
        if self._ocr is None:
            from rapidocr_onnxruntime import RapidOCR

            threads = -1 if self.num_threads is None else self.num_threads
            kw: dict[str, Any] = {
                "intra_op_num_threads": threads,
                "inter_op_num_threads": -1 if threads == -1 else 1,
                "text_score": self.text_score, "use_cls": self.use_cls,
                "det_model_path": self.det_model_path,
                "det_limit_side_len": self.det_limit_side_len,
                "det_limit_type": self.det_limit_type,
                "rec_model_path": self.rec_model_path, "cls_model_path": self.cls_model_path,
                # one crop per batch: a line's reading must not depend on the other lines
                "rec_batch_num": 1, "cls_batch_num": 1}
            if self.rec_keys_path is not None:
                kw["rec_keys_path"] = self.rec_keys_path
            ocr = RapidOCR(**kw)
            # set on the built modules too: the kwargs go through the package's own parameter
            # parser, and a release that ignored them would silently batch again
            ocr.text_rec.rec_batch_num = 1
            ocr.text_cls.cls_batch_num = 1
            if self.on_cuda:
                # the package's own CUDA switch always takes device 0; put our sessions (the chosen
                # device, checked) into its three session wrappers instead
                for holder, path in ((ocr.text_det.infer, self.det_model_path),
                                     (ocr.text_rec.session, self.rec_model_path),
                                     (ocr.text_cls.infer, self.cls_model_path)):
                    holder.session = make_session(path, self.num_threads, self.providers)
            self._ocr = ocr
        return self._ocr

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        check_rgb_image(image)
        result, _ = self._pipeline()(np.ascontiguousarray(image[:, :, ::-1]))
        if not result:
            return []
        boxes, texts, scores = zip(*result)
        return self._lines(boxes, texts, scores)

    word_boxes = ("CTC positions: rapidocr_onnxruntime's return_word_box (each character's box from "
                  "the recogniser's decoded columns, mapped back through its line's quad); a word's "
                  "quad runs from its first character's left edge to its last one's right edge")

    def readwords(self, image: np.ndarray) -> list[OCRLine]:
        """:meth:`readtext`'s lines split into words at the characters' decoded positions (see
        :attr:`word_boxes`); a line without character boxes falls back to the proportional split."""
        from models.ocr.base import split_line_proportionally

        check_rgb_image(image)
        ocr = self._pipeline()
        post = ocr.text_det.postprocess_op
        # any keyword argument makes the package reset these three to its defaults: pass ours
        result, _ = ocr(np.ascontiguousarray(image[:, :, ::-1]), return_word_box=True, box_thresh=post.box_thresh,
                        unclip_ratio=post.unclip_ratio, text_score=self.text_score)
        out: list[OCRLine] = []
        for row in result or []:
            line = self._lines([row[0]], [row[1]], [row[2]])[0]
            boxes, chars = (row[3], row[4]) if len(row) >= 5 else (None, None)
            if not chars or len(chars) != len(boxes) or "".join(chars) != line.text:
                out.extend(split_line_proportionally(line))
                continue
            i = 0
            while i < len(chars):
                if chars[i].isspace():
                    i += 1
                    continue
                j = i
                while j + 1 < len(chars) and not chars[j + 1].isspace():
                    j += 1
                a, b = np.asarray(boxes[i], np.float32), np.asarray(boxes[j], np.float32)
                out.append(OCRLine(np.stack([a[0], b[1], b[2], a[3]]), "".join(chars[i:j + 1]), line.score))
                i = j + 1
        return out

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        imgs = self._bgr_crops(crops)
        if not imgs:
            return []
        rec = self._pipeline().text_rec
        out = []
        for img in imgs:  # one crop per call: batch independence (module docstring)
            (text, score), = rec([img], False)[0]
            out.append((str(text), float(score)))
        return out


class RapidOCRv6Engine(_RapidOCRBase):
    """PP-OCRv6-small (multilingual zh/en/latin) det/rec + mobile-v2.0 classifier via ``rapidocr`` 3.x.

    Same keyword arguments as :class:`RapidOCRv4Engine`. The models are passed to ``rapidocr`` by
    explicit path, so it never reaches for its downloader.
    """

    name = "rapidocr-ppocrv6"

    def __init__(self, num_threads: int | None = None, det_limit_side_len: int = 960,
                 det_limit_type: str = "max", text_score: float = 0.5, use_cls: bool = True,
                 det_model_path: str | None = None, rec_model_path: str | None = None,
                 cls_model_path: str | None = None, rec_keys_path: str | None = None,
                 device: str | None = "cpu"):
        models = _package_dir("rapidocr") / "models"
        det = _existing(det_model_path, models / "PP-OCRv6_det_small.onnx", "detection")
        super().__init__(det, num_threads, det_limit_side_len, det_limit_type, text_score, use_cls,
                         device)
        self.rec_model_path = _existing(rec_model_path, models / "PP-OCRv6_rec_small.onnx",
                                        "recognition")
        self.cls_model_path = _existing(cls_model_path, models / "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
                                        "classification")
        self.rec_keys_path = rec_keys_path
        self._ocr = None

    def _pipeline(self):
        if self._ocr is None:
            from rapidocr import RapidOCR

            params: dict[str, Any] = {
                "Global.log_level": "error",  # it warns on every image without text
                "Global.text_score": self.text_score,
                "Global.use_cls": self.use_cls,
                "Det.model_path": self.det_model_path,
                "Det.limit_side_len": self.det_limit_side_len,
                "Det.limit_type": self.det_limit_type,
                "Rec.model_path": self.rec_model_path,
                "Cls.model_path": self.cls_model_path,
                # one crop per batch: a line's reading must not depend on the other lines
                "Rec.rec_batch_num": 1,
                "Cls.cls_batch_num": 1,
            }
            if self.num_threads is not None:
                params["EngineConfig.onnxruntime.intra_op_num_threads"] = self.num_threads
                params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
            if self.rec_keys_path is not None:
                params["Rec.rec_keys_path"] = self.rec_keys_path
            if self.on_cuda:
                params["EngineConfig.onnxruntime.use_cuda"] = True
                params["EngineConfig.onnxruntime.cuda_ep_cfg.device_id"] = self.providers[0][1]["device_id"]
            ocr = RapidOCR(params=params)
            if self.on_cuda:  # build the lazy sessions now and check they are on the GPU
                for load, path in ((ocr._load_det_model, self.det_model_path),
                                   (ocr._load_rec_model, self.rec_model_path),
                                   (ocr._load_cls_model, self.cls_model_path)):
                    _check_session_provider(load().session.session, self.providers, path)
            self._ocr = ocr
        return self._ocr

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        check_rgb_image(image)
        out = self._pipeline()(np.ascontiguousarray(image[:, :, ::-1]))
        boxes = getattr(out, "boxes", None)
        texts = getattr(out, "txts", None)
        if boxes is None or texts is None or len(texts) == 0:
            return []
        return self._lines(boxes, texts, out.scores)

    word_boxes = ("CTC positions: rapidocr 3.x's return_word_box (word quads from the recogniser's decoded "
                  "columns, mapped back through the line's quad)")

    def readwords(self, image: np.ndarray) -> list[OCRLine]:
        """:meth:`readtext`'s lines as words, from ``rapidocr``'s word boxes (see :attr:`word_boxes`);
        a line whose word results do not spell it falls back to the proportional split."""
        from models.ocr.base import split_line_proportionally

        check_rgb_image(image)
        ocr = self._pipeline()
        try:
            out = ocr(np.ascontiguousarray(image[:, :, ::-1]), return_word_box=True)
        finally:
            ocr.update_params(return_word_box=False)  # the package keeps call options: readtext stays as it was
        boxes, texts = getattr(out, "boxes", None), getattr(out, "txts", None)
        if boxes is None or texts is None or len(texts) == 0:
            return []
        lines = self._lines(boxes, texts, out.scores)
        results = getattr(out, "word_results", None) or ()
        words: list[OCRLine] = []
        for k, line in enumerate(lines):
            got = results[k] if k < len(results) else ()
            if "".join(w[0] for w in got) != "".join(line.text.split()):
                words.extend(split_line_proportionally(line))
                continue
            words.extend(OCRLine(np.asarray(b, np.float32).reshape(4, 2), str(t), line.score) for t, _, b in got)
        return words

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        imgs = self._bgr_crops(crops)
        if not imgs:
            return []
        from rapidocr.ch_ppocr_rec import TextRecInput

        rec = self._pipeline()._load_rec_model()  # rapidocr 3.x builds its sessions lazily
        rec.rec_batch_num = 1  # see RapidOCRv4Engine._pipeline
        res = []
        for img in imgs:  # one crop per call: batch independence (module docstring)
            out = rec(TextRecInput(img=[img]))
            res.append((str(out.txts[0]), float(out.scores[0])))
        return res
