"""PaddleOCR 3.x as an optional engine, from local model folders only.

PaddleOCR (Apache-2.0, https://github.com/PaddlePaddle/PaddleOCR) downloads its models at first use
and fails offline, and its paddlex dependency pins ``numpy<2.4`` and ``opencv-contrib-python==4.10``,
which conflicts with the rest of this project's stack. So it is never the default, is not installed
here, and this adapter only runs from local exported-model folders, each holding
``inference.json`` (or ``inference.pdmodel``), ``inference.pdiparams`` and ``inference.yml``.
It sets ``PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK=True`` and ``enable_mkldnn=False`` (the settings
found to work offline on CPU).

Batch independence (the :class:`~models.ocr.base.OCREngine` contract): the pipeline is built with
``text_recognition_batch_size=1`` and :meth:`PaddleOCREngine.recognize` predicts one crop per call
with ``batch_size=1``, like the RapidOCR engines, so a crop's reading never depends on the other
crops handed in with it.

Untested in this repository (paddle is not installable beside the rest of the stack); the calls
follow PaddleOCR 3.x's documented Python API (``PaddleOCR(...).predict``, ``TextRecognition``).
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.ocr.base import OCREngine, OCRInputError, OCRLine, check_rgb_image

_INSTALL_HINT = (
    "the 'paddleocr' engine needs PaddleOCR 3.x: pip install paddleocr paddlepaddle "
    "(preferably in a separate environment: paddlex pins numpy<2.4 and opencv-contrib-python==4.10). "
    "Its models must be local exported-model dirs (inference.json|pdmodel, inference.pdiparams, "
    "inference.yml) passed as det_model_dir= and rec_model_dir=; nothing is downloaded. "
    "For an offline PP-OCR engine use 'rapidocr-ppocrv4' (the default).")


def _check_model_dir(path: str | os.PathLike | None, what: str) -> str:
    if path is None:
        raise OCRInputError(f"paddleocr: {what}_model_dir is required (a local exported-model dir); "
                         + _INSTALL_HINT)
    p = Path(path).expanduser()
    needed = ["inference.pdiparams", "inference.yml"]
    missing = [n for n in needed if not (p / n).is_file()]
    if not ((p / "inference.json").is_file() or (p / "inference.pdmodel").is_file()):
        missing.insert(0, "inference.json|inference.pdmodel")
    if missing:
        raise FileNotFoundError(f"paddleocr {what} model dir {p} lacks {', '.join(missing)}; "
                                "export or download the model there first")
    return str(p)


class PaddleOCREngine(OCREngine):
    """PaddleOCR 3.x detection + recognition from local model dirs (no orientation/unwarping models).

    det_model_dir, rec_model_dir: local exported-model folders (required).
    det_model_name, rec_model_name: PaddleOCR model names (e.g. ``PP-OCRv5_mobile_det``) when the
        folder's inference.yml does not name the model; None lets PaddleOCR read it from the folder.
    num_threads:  Paddle CPU math threads (``cpu_threads``); None keeps PaddleOCR's default.
    det_limit_side_len, det_limit_type, text_score: as for the RapidOCR engines.
    """

    name = "paddleocr"

    def __init__(self, det_model_dir: str | None = None, rec_model_dir: str | None = None,
                 det_model_name: str | None = None, rec_model_name: str | None = None,
                 num_threads: int | None = None, det_limit_side_len: int = 960,
                 det_limit_type: str = "max", text_score: float = 0.5):
        if importlib.util.find_spec("paddleocr") is None:
            raise ImportError("paddleocr is not installed; " + _INSTALL_HINT)
        self.det_model_dir = _check_model_dir(det_model_dir, "det")
        self.rec_model_dir = _check_model_dir(rec_model_dir, "rec")
        self.det_model_name = det_model_name
        self.rec_model_name = rec_model_name
        self.num_threads = num_threads
        self.det_limit_side_len = det_limit_side_len
        self.det_limit_type = det_limit_type
        self.text_score = text_score
        self._ocr = None
        self._rec = None

    def _common(self) -> dict[str, Any]:
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        kw: dict[str, Any] = {"device": "cpu", "enable_mkldnn": False}
        if self.num_threads is not None:
            kw["cpu_threads"] = self.num_threads
        return kw

    def _pipeline(self):
        if self._ocr is None:
            from paddleocr import PaddleOCR

            kw = self._common()
            kw.update(text_detection_model_dir=self.det_model_dir,
                      text_recognition_model_dir=self.rec_model_dir,
                      use_doc_orientation_classify=False, use_doc_unwarping=False,
                      use_textline_orientation=False,
                      text_det_limit_side_len=self.det_limit_side_len,
                      text_det_limit_type=self.det_limit_type,
                      text_rec_score_thresh=self.text_score,
                      # one line per recogniser batch: no reading depends on the other lines
                      text_recognition_batch_size=1)
            if self.det_model_name:
                kw["text_detection_model_name"] = self.det_model_name
            if self.rec_model_name:
                kw["text_recognition_model_name"] = self.rec_model_name
            self._ocr = PaddleOCR(**kw)
        return self._ocr

    def _recognizer(self):
        if self._rec is None:
            from paddleocr import TextRecognition

            kw = self._common()
            kw["model_dir"] = self.rec_model_dir
            if self.rec_model_name:
                kw["model_name"] = self.rec_model_name
            self._rec = TextRecognition(**kw)
        return self._rec

    def settings(self) -> dict:
        return {**super().settings(), "det_model_dir": self.det_model_dir,
                "rec_model_dir": self.rec_model_dir,
                "det_limit": f"{self.det_limit_type} {self.det_limit_side_len}",
                "text_score": self.text_score}

    def readtext(self, image: np.ndarray) -> list[OCRLine]:
        check_rgb_image(image)
        lines: list[OCRLine] = []
        for res in self._pipeline().predict(np.ascontiguousarray(image[:, :, ::-1])):
            for poly, text, score in zip(res["rec_polys"], res["rec_texts"], res["rec_scores"]):
                poly = np.asarray(poly, dtype=np.float32)
                if poly.shape != (4, 2):  # curved/multi-point polygon -> its min-area rectangle
                    import cv2

                    poly = cv2.boxPoints(cv2.minAreaRect(poly)).astype(np.float32)
                lines.append(OCRLine(polygon=poly, text=str(text), score=float(score)))
        return lines

    def recognize(self, crops: Sequence[np.ndarray]) -> list[tuple[str, float]]:
        imgs = []
        for i, c in enumerate(crops):
            check_rgb_image(c, f"crop {i}")
            imgs.append(np.ascontiguousarray(c[:, :, ::-1]))
        if not imgs:
            return []
        rec = self._recognizer()
        out = []
        for img in imgs:  # one crop per call: batch independence (module docstring)
            (r,) = list(rec.predict(img, batch_size=1))
            out.append((str(r["rec_text"]), float(r["rec_score"])))
        return out

    def detect_prob(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError(
            "paddleocr's pipeline does not expose the DB probability map; use "
            "create_ocr('rapidocr-ppocrv4').detect_prob (same PP-OCR detector family, ONNX)")
