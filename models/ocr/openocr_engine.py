"""OpenOCR (mobile) through onnxruntime: RepViT DB detector + RepSVTR (SVTRv2 mobile) CTC recogniser.

OpenOCR: Du et al., "SVTRv2: CTC Beats Encoder-Decoder Models in Scene Text Recognition" (ICCV 2025);
https://github.com/Topdu/OpenOCR (Apache-2.0), pip package ``openocr-python`` (0.1.5). GLYPH-SR
reports OCR-F1 with this engine. Our own code, written from its ONNX inference path
(``tools/infer_e2e.py``, ``tools/infer_det.py``, ``tools/infer_rec.py``, ``configs/det/dbnet/repvit_db.yml``,
``configs/rec/svtrv2/repsvtr_ch.yml``, ``opendet/``, ``openrec/`` at commit ae934e5, identical in the
0.1.5 wheel); the package itself is not a dependency (it pulls modelscope and PyMuPDF).

Files (``develop0.0.1`` GitHub release; ``openocr-python`` also fetches them by the same names from
ModelScope ``topdktu/OpenOCR`` / Hugging Face ``topdu/OpenOCR`` into ``~/.cache/openocr/``):
``openocr_det_model.onnx`` (12.4 MB), ``openocr_rec_model.onnx`` (25.1 MB), and the CTC dictionary
``tools/utils/ppocr_keys_v1.txt`` of the repository (6623 characters, PaddleOCR's key set). Only the
mobile pair has ONNX files: OpenOCR's ``mode="server"`` (SVTRv2 server recogniser) runs on torch alone.

What the OpenOCR pipeline does, and this engine with it:

- Detector input: BGR, ``(x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]`` per channel in that
  order, ``1x3xHxW``; size policy ``DetResizeForTest(limit_side_len=960, limit_type="max")``: shrink
  only when the long side exceeds 960, sides ``int(side*ratio)`` rounded to multiples of 32 (at least
  32); images with ``h + w < 64`` are first zero-padded to at least 32x32 at the top-left. Output: the
  DB probability map ``Nx1xHxW`` (sigmoid).
- DB post-processing (``DBPostProcess``, quad boxes): threshold 0.3, no dilation, contours (at most
  1000), min-area rectangles with short side >= 3, box score = mean probability inside the contour
  (``score_mode: slow``) >= 0.6, unclip ratio 1.5 (pyclipper round offset, boxes that split into
  several polygons dropped), short side >= 5 after unclipping, scaled back and rounded to ints. No
  clockwise re-ordering or 3-px filter (PaddleOCR's ``filter_tag_det_res`` is not in OpenOCR).
- Reading order (``sorted_boxes``): by the first corner's (y, x), then neighbours whose first corners
  are within 10 px vertically swap into left-to-right order.
- Crops: perspective warp of each quad to its width x height (bicubic, border replicated), turned 90°
  when at least 1.5x taller than wide.
- Recogniser input (``RecDynamicResize(image_shape=[48, 320], padding=False)``): BGR, resized bilinear
  to 48 px tall and ``ceil(48*w/h)`` wide, ``(x/255 - 0.5) / 0.5``, right-padded with zeros to at least
  320 px. Output: softmax ``NxTxC``.
- CTC decoding (``CTCLabelDecode``, ``use_space_char: True``): classes are blank (index 0), the 6623
  dictionary lines, then " " (C = 6625); greedy argmax, repeats merged, blanks dropped; score = mean of
  the kept steps' max probability (0 for an empty reading).
- ``drop_score`` 0.5: :meth:`readtext` keeps lines with score >= ``text_score``.

Deviation: OpenOCR recognises the detected crops in batches of 6, each padded to the batch's widest
crop; we feed one crop per recogniser call (batch independence, see :class:`OCREngine`).

PP-OCRv4's ONNX det/rec share this I/O convention exactly (DB map; 48-px CTC with the same 6623-key
dictionary plus space, blank 0), which is how ``tests/test_openocr.py`` runs this pipeline offline
with the PP-OCRv4 files of the ``rapidocr_onnxruntime`` wheel standing in for OpenOCR's.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from models.ocr.base import OCREngine, OCRInputError, OCRLine, check_rgb_image
from models.ocr.rapidocr_engine import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _check_threads,
    make_session,
    onnx_providers,
    provider_name,
)
from models.weights import WeightsFile, resolve

OPENOCR_RELEASE = "https://github.com/Topdu/OpenOCR/releases/download/develop0.0.1/"
OPENOCR_COMMIT = "e5f3b452e87b9bb99e3399b678ecabf0d25fce35"  # last commit touching the dictionary
# sha256 of the two ONNX files: not published by OpenOCR (a third party reports 2cebf56e… for the rec
# file); identity() hashes the content anyway, so caches stay keyed by the file actually used.
OPENOCR_DET = WeightsFile("openocr_det_model.onnx", url=OPENOCR_RELEASE + "openocr_det_model.onnx")
OPENOCR_REC = WeightsFile("openocr_rec_model.onnx", url=OPENOCR_RELEASE + "openocr_rec_model.onnx")
OPENOCR_DICT = WeightsFile(
    "ppocr_keys_v1.txt",
    url=f"https://raw.githubusercontent.com/Topdu/OpenOCR/{OPENOCR_COMMIT}/tools/utils/ppocr_keys_v1.txt",
    sha256="28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7")

REC_HEIGHT = 48
REC_MIN_WIDTH = 320


def needs() -> tuple[WeightsFile, ...]:
    """The files ``openocr-mobile`` needs (detector, recogniser, dictionary)."""
    return OPENOCR_DET, OPENOCR_REC, OPENOCR_DICT


# -- detection ------------------------------------------------------------------------------------
def det_input_size(h: int, w: int, limit_side_len: int = 960, limit_type: str = "max") -> tuple[int, int]:
    """OpenOCR's ``DetResizeForTest`` size ``(h, w)`` for an ``h x w`` image: ``"max"`` shrinks so the
    long side is at most ``limit_side_len``, ``"min"`` grows so the short side is at least it; each side
    is truncated to int, then rounded to a multiple of 32 (at least 32)."""
    if limit_type == "max":
        ratio = limit_side_len / max(h, w) if max(h, w) > limit_side_len else 1.0
    elif limit_type == "min":
        ratio = limit_side_len / min(h, w) if min(h, w) < limit_side_len else 1.0
    else:
        raise OCRInputError(f"det_limit_type must be 'max' or 'min', got {limit_type!r}")
    return (max(int(round(int(h * ratio) / 32) * 32), 32),
            max(int(round(int(w * ratio) / 32) * 32), 32))


def _mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The min-area rectangle of ``contour`` as ``(4, 2) float32`` corners (top-left, top-right,
    bottom-right, bottom-left as DB orders them) and its short side."""
    rect = cv2.minAreaRect(contour)
    pts = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    a, d = (pts[0], pts[1]) if pts[1][1] > pts[0][1] else (pts[1], pts[0])
    b, c = (pts[2], pts[3]) if pts[3][1] > pts[2][1] else (pts[3], pts[2])
    return np.array([a, b, c, d], dtype=np.float32), min(rect[1])


def _contour_score(prob: np.ndarray, contour: np.ndarray) -> float:
    """Mean of ``prob`` inside the polygon ``contour`` (DB's ``box_score_slow``)."""
    h, w = prob.shape
    pts = contour.reshape(-1, 2).copy()
    x0, x1 = np.clip(pts[:, 0].min(), 0, w - 1), np.clip(pts[:, 0].max(), 0, w - 1)
    y0, y1 = np.clip(pts[:, 1].min(), 0, h - 1), np.clip(pts[:, 1].max(), 0, h - 1)
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    pts[:, 0] -= x0
    pts[:, 1] -= y0
    cv2.fillPoly(mask, pts.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def _unclip(box: np.ndarray, ratio: float) -> list:
    """Grow ``box`` by ``area * ratio / perimeter`` (pyclipper round offset); a list of polygons."""
    import pyclipper
    from shapely.geometry import Polygon

    poly = Polygon(box)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return offset.Execute(poly.area * ratio / poly.length)


def db_boxes(prob: np.ndarray, dest_hw: tuple[int, int], thresh: float = 0.3, box_thresh: float = 0.6,
             unclip_ratio: float = 1.5, max_candidates: int = 1000, min_size: int = 3) -> list[np.ndarray]:
    """DB post-processing of a probability map ``prob`` (``hxw float32``): quad boxes, ``(4, 2) int32``
    each, in a ``dest_hw`` image's pixels (see the module docstring for the rule)."""
    h, w = prob.shape
    dest_h, dest_w = dest_hw
    bitmap = (prob > thresh).astype(np.uint8) * 255
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours[:max_candidates]:
        pts, side = _mini_box(contour)
        if side < min_size or _contour_score(prob, contour) < box_thresh:
            continue
        grown = _unclip(pts, unclip_ratio)
        if len(grown) != 1:  # OpenOCR drops boxes whose offset splits (or vanishes)
            continue
        box, side = _mini_box(np.asarray(grown[0], dtype=np.float32).reshape(-1, 1, 2))
        if side < min_size + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / w * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / h * dest_h), 0, dest_h)
        boxes.append(box.astype(np.int32))
    return boxes


def sort_boxes(boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """OpenOCR's reading order: by the first corner's (y, x); a box whose first corner is within 10 px
    vertically of its predecessor's and further left moves before it."""
    out = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            if abs(out[j + 1][0][1] - out[j][0][1]) < 10 and out[j + 1][0][0] < out[j][0][0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The text line under ``quad`` (``(4, 2)``, clockwise from top-left) warped upright: bicubic,
    border replicated, turned 90° when at least 1.5x taller than wide. ``hxwx3`` like ``image``."""
    pts = quad.astype(np.float32)
    w = int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3])))
    h = int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2])))
    dst = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(pts, dst), (w, h),
                               borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    if crop.shape[0] * 1.0 / max(crop.shape[1], 1) >= 1.5:
        crop = np.rot90(crop)
    return crop


# -- recognition ----------------------------------------------------------------------------------
def rec_input(bgr: np.ndarray) -> np.ndarray:
    """``1x3x48xW float32`` recogniser input of one BGR crop (``RecDynamicResize([48, 320])``)."""
    h, w = bgr.shape[:2]
    ratio = w / float(h)
    width = int(REC_HEIGHT * max(ratio, REC_MIN_WIDTH / REC_HEIGHT))
    resized_w = min(width, math.ceil(REC_HEIGHT * ratio))
    x = cv2.resize(bgr, (resized_w, REC_HEIGHT)).astype(np.float32).transpose(2, 0, 1) / 255
    out = np.zeros((1, 3, REC_HEIGHT, width), dtype=np.float32)
    out[0, :, :, :resized_w] = (x - 0.5) / 0.5
    return out


def ctc_greedy(probs: np.ndarray, characters: Sequence[str]) -> tuple[str, float]:
    """Greedy CTC decoding of one ``TxC`` softmax output: index 0 is the blank, index i >= 1 is
    ``characters[i - 1]``. Returns ``(text, mean max-probability of the kept steps)``; ``("", 0.0)``
    when nothing is kept."""
    idx = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    text = "".join(characters[i - 1] for i in idx[keep])
    return text, float(np.mean(conf[keep])) if keep.any() else 0.0


def ctc_spans(probs: np.ndarray, characters: Sequence[str], width: int, resized_w: int) -> list[tuple[str, float, float]]:
    """Greedy CTC decoding with positions: ``(word, x0, x1)`` for each whitespace-free run of kept
    characters, x0/x1 as fractions of the crop's width. CTC fires once per character, near its
    middle, so a word's edges are taken halfway between the decoded space and its neighbours: the
    first word starts at the crop's left edge, the last ends at its right edge, and inner
    boundaries sit at the middle of each decoded space's step (a step t of T covers input columns
    [t·W/T, (t+1)·W/T) of the ``width``-px recogniser input, whose first ``resized_w`` px are the
    crop)."""
    idx = probs.argmax(axis=1)
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    step_px = width / max(len(idx), 1)
    words, run, edge = [], [], 0.0
    for t in np.flatnonzero(keep):
        ch = characters[idx[t] - 1]
        if ch.isspace():
            mid = min(1.0, (t + 0.5) * step_px / resized_w)
            if run:
                words.append(("".join(run), edge, mid))
                run = []
            edge = mid
        else:
            run.append(ch)
    if run:
        words.append(("".join(run), edge, 1.0))
    return words


def read_dictionary(path: str | Path) -> list[str]:
    """The recogniser's characters: one per line of ``path`` (UTF-8, newline stripped), then " "."""
    lines = Path(path).read_bytes().decode("utf-8").split("\n")
    if lines and lines[-1] == "":  # a final newline ends the last line; it adds no character
        lines.pop()
    return [ln.rstrip("\r") for ln in lines] + [" "]


class OpenOCREngine(OCREngine):
    """OpenOCR mobile (RepViT-DB detector + RepSVTR recogniser) on onnxruntime.

    num_threads:        onnxruntime intra-op threads per session (None: onnxruntime default).
    det_limit_side_len, det_limit_type: detector size policy (OpenOCR: 960, "max").
    det_thresh, box_thresh, unclip_ratio, max_candidates: DB post-processing (OpenOCR: 0.3, 0.6, 1.5, 1000).
    text_score:         :meth:`readtext` keeps lines read with at least this score (OpenOCR's drop_score 0.5).
    det_model_path, rec_model_path, dict_path: explicit files; default: the weights resolver
                        (``$TEXTSR_WEIGHTS``, then a download only when allowed).
    allow_download:     let the resolver download missing files (None: ``TEXTSR_ALLOW_DOWNLOAD``).
    device:             "cpu" (default), "cuda" or "cuda:N" (as the RapidOCR engines).
    """

    name = "openocr-mobile"

    def __init__(self, num_threads: int | None = None, det_limit_side_len: int = 960,
                 det_limit_type: str = "max", det_thresh: float = 0.3, box_thresh: float = 0.6,
                 unclip_ratio: float = 1.5, max_candidates: int = 1000, text_score: float = 0.5,
                 det_model_path: str | None = None, rec_model_path: str | None = None,
                 dict_path: str | None = None, allow_download: bool | None = None,
                 device: str | None = "cpu"):
        _check_threads(num_threads)
        if det_limit_type not in ("max", "min"):
            raise OCRInputError(f"det_limit_type must be 'max' or 'min', got {det_limit_type!r}")
        if det_limit_side_len < 32:
            raise OCRInputError(f"det_limit_side_len must be >= 32, got {det_limit_side_len}")
        self.det_model_path = str(resolve(OPENOCR_DET, det_model_path, allow_download))
        self.rec_model_path = str(resolve(OPENOCR_REC, rec_model_path, allow_download))
        self.dict_path = str(resolve(OPENOCR_DICT, dict_path, allow_download))
        self.characters = read_dictionary(self.dict_path)
        self.device = "cpu" if device is None else str(device)
        self.providers = onnx_providers(self.device)
        self.num_threads = num_threads
        self.det_limit_side_len = int(det_limit_side_len)
        self.det_limit_type = det_limit_type
        self.det_thresh = float(det_thresh)
        self.box_thresh = float(box_thresh)
        self.unclip_ratio = float(unclip_ratio)
        self.max_candidates = int(max_candidates)
        self.text_score = float(text_score)
        self._det_session = None
        self._rec_session = None

    @classmethod
    def check_weights(cls, allow_download: bool | None = False) -> None:
        """Raise :class:`models.weights.WeightsMissingError` unless every default file resolves
        (what ``evalkit`` asks before preferring this engine)."""
        for wf in needs():
            resolve(wf, allow_download=allow_download)

    def __getstate__(self) -> dict:
        # onnxruntime sessions do not pickle; workers rebuild them lazily
        return {**self.__dict__, "_det_session": None, "_rec_session": None}

    def settings(self) -> dict:
        return {**super().settings(),
                "models": [Path(p).name for p in (self.det_model_path, self.rec_model_path, self.dict_path)],
                "det_limit": f"{self.det_limit_type} {self.det_limit_side_len}",
                "db": {"thresh": self.det_thresh, "box_thresh": self.box_thresh,
                       "unclip_ratio": self.unclip_ratio, "max_candidates": self.max_candidates},
                "text_score": self.text_score, "provider": provider_name(self.providers)}

    def identity(self) -> dict:
        from models.files import file_digest

        # the dictionary decides the strings as much as the models do
        return {**super().identity(), "dict_sha256": file_digest(self.dict_path)}

    # -- sessions -----------------------------------------------------------------------------------
    def _det(self):
        if self._det_session is None:
            self._det_session = make_session(self.det_model_path, self.num_threads, self.providers)
        return self._det_session

    def _rec(self):
        if self._rec_session is None:
            sess = make_session(self.rec_model_path, self.num_threads, self.providers)
            classes = sess.get_outputs()[0].shape[-1]
            if isinstance(classes, int) and classes != len(self.characters) + 1:
                raise OCRInputError(
                    f"{Path(self.rec_model_path).name} has {classes} classes but {self.dict_path} gives "
                    f"{len(self.characters)} characters + blank; pass the dictionary it was trained with")
            self._rec_session = sess
        return self._rec_session

    # -- detection ----------------------------------------------------------------------------------
    def _prob_map(self, bgr: np.ndarray, limit_side_len: int, limit_type: str) -> np.ndarray:
        """The detector's map of a BGR image at its detector input size: ``hxw float32``."""
        rh, rw = det_input_size(*bgr.shape[:2], limit_side_len, limit_type)
        x = cv2.resize(bgr, (rw, rh))
        x = (x.astype(np.float32) / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
        sess = self._det()
        return sess.run(None, {sess.get_inputs()[0].name: x})[0][0, 0].astype(np.float32)

    @staticmethod
    def _pad_small(bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        if h + w >= 64:
            return bgr
        out = np.zeros((max(32, h), max(32, w), 3), dtype=np.uint8)
        out[:h, :w] = bgr
        return out

    def detect_prob(self, image: np.ndarray, limit_side_len: int | None = None,
                    limit_type: str | None = None) -> np.ndarray:
        """DB text-probability map, ``HxW float32`` in [0, 1], same size as ``image`` (the map of the
        detector input resized back bilinearly; tiny images' zero padding cut off)."""
        check_rgb_image(image)
        h, w = image.shape[:2]
        bgr = self._pad_small(np.ascontiguousarray(image[:, :, ::-1]))
        prob = self._prob_map(bgr, limit_side_len or self.det_limit_side_len, limit_type or self.det_limit_type)
        prob = cv2.resize(prob, (bgr.shape[1], bgr.shape[0]), interpolation=cv2.INTER_LINEAR)[:h, :w]
        return np.clip(prob, 0.0, 1.0)

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Text-line quads of an RGB ``HxWx3 uint8`` image in reading order, ``(4, 2) int32`` each."""
        check_rgb_image(image)
        h, w = image.shape[:2]
        # OpenOCR maps boxes of a padded tiny image back with the unpadded size; kept as it does
        prob = self._prob_map(self._pad_small(np.ascontiguousarray(image[:, :, ::-1])),
                              self.det_limit_side_len, self.det_limit_type)
        boxes = db_boxes(prob, (h, w), self.det_thresh, self.box_thresh, self.unclip_ratio,
                         self.max_candidates)
        return sort_boxes(boxes)

    # -- recognition --------------------------------------------------------------------------------
    def _probs(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(recogniser input 1×3×48×W, its T×C softmax output) of one RGB crop."""
        sess = self._rec()
        x = rec_input(np.ascontiguousarray(rgb[:, :, ::-1]))
        return x, sess.run(None, {sess.get_inputs()[0].name: x})[0][0]

    def _read(self, rgb: np.ndarray) -> tuple[str, float]:
        return ctc_greedy(self._probs(rgb)[1], self.characters)

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        if isinstance(crops, np.ndarray) and crops.ndim == 3:
            raise OCRInputError("recognize() takes a list of crops; wrap a single crop as [crop]")
        for i, c in enumerate(crops):
            check_rgb_image(c, f"crop {i}")
        return [self._read(c) for c in crops]  # one crop per call: batch independence

    word_boxes = ("CTC positions: the line quad cut along its top and bottom edges at the middle of each "
                  "decoded space's step (mapped from the recogniser input back to the crop); the first and "
                  "last words reach the quad's ends (lines read turned by 90 degrees: the proportional cut)")

    def _lines(self, image: np.ndarray):
        """Each detected line read above ``text_score``: (quad 4×2 float32, crop, recogniser input
        width, CTC output T×C, text, score)."""
        for quad in self.detect(image):
            crop = crop_quad(image, quad)
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                continue
            x, probs = self._probs(crop)
            text, score = ctc_greedy(probs, self.characters)
            if score >= self.text_score:
                yield quad.astype(np.float32), crop, x.shape[-1], probs, text, score

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        return [OCRLine(polygon=q, text=text, score=score) for q, _, _, _, text, score in self._lines(image)]

    def readwords(self, image: np.ndarray) -> list[OCRLine]:
        """:meth:`readtext`'s lines split into words at their characters' CTC decoding positions."""
        from models.ocr.base import cut_quad, split_line_proportionally

        out = []
        for q, crop, width, probs, text, score in self._lines(image):
            qw = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3]))
            qh = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
            upright = qh < 1.5 * qw  # crop_quad turns the others by 90 degrees
            resized_w = min(width, math.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0]))
            spans = ctc_spans(probs, self.characters, width, resized_w)
            if not upright or "".join(t for t, _, _ in spans) != "".join(text.split()):
                out.extend(split_line_proportionally(OCRLine(q, text, score)))
            else:
                out.extend(OCRLine(cut_quad(q, f0, f1), word, score) for word, f0, f1 in spans)
        return out
