"""Text-mask metrics: how well a model's predicted text mask (TADiSR's joint segmentation output, or
masks made elsewhere with ``--mask-dir``) matches the benchmark's ground-truth text mask.

Both binarise the prediction at ``threshold`` (probability >= 0.5 by default) and the ground truth at
> 127 (the project's masks are 0/255), then count pixels: TP = predicted and true, FP = predicted
only, FN = true only.

* ``mask_iou`` — foreground IoU ``TP / (TP + FP + FN)`` (TextSeg's fgIoU). Dataset value: the counts
  summed over all images, then the ratio (every pixel weighs the same); ``mask_iou_image_mean`` is the
  mean of per-image IoUs.
* ``mask_f1`` — pixel F-score ``2TP / (2TP + FP + FN)``, summed likewise, with ``mask_precision`` and
  ``mask_recall``; ``mask_f1_image_mean`` per image.

An image whose ground truth and prediction are both empty has no defined value and is skipped; an
image without a ground-truth mask, or without a prediction, is skipped too, and when no image could be
scored the metric is null with the reason (:meth:`MaskMetric.why_null`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from evalkit.metrics.base import ExactSum, Metric
from evalkit.sample import EvalSample


def mask_counts(pred: np.ndarray, gt: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` pixel counts of a predicted mask against the ground truth.

    pred: HxW float probabilities in [0, 1] (``>= threshold`` is text), or bool.
    gt:   HxW uint8 0/255 (``> 127`` is text) or bool, the same size."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if gt.ndim == 3 and gt.shape[2] == 1:
        gt = gt[..., 0]
    if pred.shape != gt.shape:
        raise ValueError(f"predicted mask {pred.shape} and ground-truth mask {gt.shape} differ in size")
    p = pred if pred.dtype == bool else pred >= threshold
    g = gt if gt.dtype == bool else gt > 127
    tp = int(np.count_nonzero(p & g))
    return tp, int(np.count_nonzero(p)) - tp, int(np.count_nonzero(g)) - tp


class MaskMetric(Metric):
    needs = frozenset({"pred_mask", "mask"})
    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **_runner_kw: Any):
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"{self.name}: threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.reset()

    def reset(self) -> None:
        self.tp = self.fp = self.fn = 0
        self.image_sum = ExactSum()  # per-image values, summed exactly (order-independent)
        self.images = 0
        self.no_gt = self.no_pred = self.empty = 0

    def merge(self, other: MaskMetric) -> None:
        if type(other) is not type(self) or other.threshold != self.threshold:
            raise ValueError(f"cannot merge {self.name} states with other settings")
        for k in ("tp", "fp", "fn", "images", "no_gt", "no_pred", "empty"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.image_sum.merge(other.image_sum)

    def _ratio(self, tp: int, fp: int, fn: int) -> float | None:
        raise NotImplementedError

    def update(self, sample: EvalSample) -> dict[str, Any]:
        pred = sample.pred_mask
        if sample.mask is None:
            self.no_gt += 1
            return {self.name: None}
        if pred is None:
            self.no_pred += 1
            return {self.name: None}
        tp, fp, fn = mask_counts(pred, sample.mask, self.threshold)
        v = self._ratio(tp, fp, fn)
        if v is None:
            self.empty += 1
            return {self.name: None}
        self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn
        self.image_sum.add(v)
        self.images += 1
        return {self.name: v}

    def why_null(self) -> str | None:
        """Why the dataset value is null, or None when it is not."""
        if self.images:
            return None
        if self.no_pred and not self.no_gt:
            return "no predicted text mask (the model has no text_mask output; give --mask-dir for masks made elsewhere)"
        if self.no_gt:
            return "the benchmark has no ground-truth text masks"
        return "every image's ground truth and prediction are empty"

    def settings(self) -> dict[str, Any]:
        return {"metric": self.name, "threshold": f"prediction >= {self.threshold}", "ground_truth": "mask > 127",
                "average": "pixel counts summed over images, then the ratio (micro); *_image_mean: mean of "
                           "per-image values", "skipped": "images without GT mask or prediction, or with both empty"}


class MaskIoU(MaskMetric):
    """Foreground IoU of the predicted text mask (see the module docstring)."""

    name = "mask_iou"

    def _ratio(self, tp, fp, fn):
        return tp / (tp + fp + fn) if tp + fp + fn else None

    def compute(self) -> dict[str, Any]:
        return {"mask_iou": self._ratio(self.tp, self.fp, self.fn) if self.images else None,
                "mask_iou_image_mean": self.image_sum.value() / self.images if self.images else None,
                "mask_images": self.images}


class MaskF1(MaskMetric):
    """Pixel F-score of the predicted text mask, with precision and recall (module docstring)."""

    name = "mask_f1"

    def _ratio(self, tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None

    def compute(self) -> dict[str, Any]:
        tp, fp, fn = self.tp, self.fp, self.fn
        return {"mask_f1": self._ratio(tp, fp, fn) if self.images else None,
                "mask_precision": tp / (tp + fp) if self.images and tp + fp else None,
                "mask_recall": tp / (tp + fn) if self.images and tp + fn else None,
                "mask_f1_image_mean": self.image_sum.value() / self.images if self.images else None}
