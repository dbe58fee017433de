"""The metric registry: name -> ``"module.path:Class"``, imported only when asked for.

Every metric class takes the same keyword arguments, so the runner can build any of them alike:
``crop_border=0``, ``device="cpu"``, ``allow_download=False``, ``ocr=None`` (an OCR engine, used by the
OCR metrics); a metric ignores those it has no use for. Names are the keys the values are reported
under (``summary.json``), hence snake_case here rather than the hyphenated registry style.

A protocol (:mod:`evalkit.protocols`) adds per-metric keyword arguments that change *how* a metric is
computed (e.g. ``create_metric("ssim", convention="pyiqa")``) but never its name; the metric's
``settings()`` records them.
"""
from __future__ import annotations

from typing import Any

from models.registry import Registry

METRICS = Registry("metric", {
    # fidelity to HR: basicsr convention (Y) by default; convention="pyiqa" (Y) | "tadisr" (RGB)
    # (evalkit/protocols.py picks them per paper)
    "psnr": "evalkit.metrics.fidelity:PSNR",
    "ssim": "evalkit.metrics.fidelity:SSIM",
    "text_psnr": "evalkit.metrics.fidelity:TextPSNR",
    "text_ssim": "evalkit.metrics.fidelity:TextSSIM",
    # pyiqa, full reference
    "lpips": "evalkit.metrics.iqa:LPIPS",
    "text_lpips": "evalkit.metrics.iqa:TextLPIPS",
    "dists": "evalkit.metrics.iqa:DISTS",
    "fid": "evalkit.metrics.fid:FID",
    # pyiqa, no reference
    "niqe": "evalkit.metrics.iqa:NIQE",
    "musiq": "evalkit.metrics.iqa:MUSIQ",
    "maniqa": "evalkit.metrics.iqa:MANIQA",
    "clipiqa": "evalkit.metrics.iqa:CLIPIQA",
    "piqe": "evalkit.metrics.iqa:PIQE",
    # OCR
    "ocr_a": "evalkit.metrics.ocr:OCRAccuracy",
    "ocr_f1": "evalkit.metrics.ocr:OCRF1",
    "char_hallucination": "evalkit.metrics.ocr:CharHallucination",
    # text spotting on SR (TAIR): detection F1 and end-to-end F1, IoU 0.5, no lexicon
    "spot_det_f1": "evalkit.metrics.spotting:SpotDetF1",
    "spot_e2e_f1": "evalkit.metrics.spotting:SpotE2EF1",
    # OCR-A / word accuracy / char hallucination per annotation level (ReasonText perception|reasoning)
    "ocr_by_level": "evalkit.metrics.ocr_groups:OCRByGroup",
    # the model's predicted text mask (TADiSR) against the benchmark's
    "mask_iou": "evalkit.metrics.mask:MaskIoU",
    "mask_f1": "evalkit.metrics.mask:MaskF1",
})

DEFAULT_METRICS = ("psnr", "ssim", "lpips", "niqe", "ocr_a", "ocr_f1", "text_psnr", "text_ssim",
                   "char_hallucination")


def create_metric(name: str, **kw: Any):
    """Build metric ``name`` (see :func:`list_metrics`) with keyword options, e.g.
    ``create_metric("psnr", crop_border=4)``, ``create_metric("lpips", device="cuda")``.
    Raises ``evalkit.metrics.base.MetricUnavailable`` when its weights or packages are missing."""
    return METRICS.create(name, **kw)


def list_metrics(pattern: str | None = None) -> list[str]:
    return METRICS.names(pattern)
