"""Text-spotting F1 on SR output, as TAIR (Min et al., ICLR 2026) reports it: detection F1 and
end-to-end F1 at IoU 0.5, no lexicon.

TAIR runs TESTR (Zhang et al., CVPR 2022) on the restored image and scores it against the
benchmark's polygons with TESTR's evaluation (AdelaiDet ``adet/evaluation/text_eval_script.py``,
the ICDAR 2015 / Total-Text end-to-end script lineage, vendored in cvlab-kaist/TAIR under
``testr/``); the script behind TAIR's tables is not released. Here the spotter is the run's OCR
engine (``models.ocr``: ``readtext`` = detection + recognition, polygons + text), recorded in
``settings()`` and summary.json, and the matching is :func:`~evalkit.metrics.ocr_match.match_end_to_end`
— the one ``ocr_f1`` uses:

* don't-care: GT ``dont_care`` or text ``###`` is not counted; a prediction more than half of whose
  area lies inside one is set aside before matching (TESTR's ``AREA_PRECISION_CONSTRAINT`` 0.5);
* ``spot_det_f1``: a prediction and a GT match when their polygon IoU is >= 0.5, text ignored;
* ``spot_e2e_f1``: ... and their transcriptions are equal after NFKC, case folding and removing
  punctuation and whitespace (``norm_ci``); no lexicon;
* pairs are taken greedily by decreasing IoU, one-to-one; P = TP/#pred, R = TP/#GT,
  F1 = 2TP/(#pred + #GT), micro-averaged over the dataset (TESTR's "method" P/R/H-mean are the same
  sums).

Where this differs from TESTR's script (see ``SpotF1.settings()``): TESTR needs IoU > 0.5 (strict);
it compares ``upper()``-cased strings exactly (allowing one special character at either end of the
GT in its non-word-spotting mode) rather than stripping all punctuation; in e2e it pairs boxes by
IoU alone and then checks the text, so a well-placed wrong reading blocks a correct one on the same
GT; and its Total-Text word-spotting mode also marks GT words shorter than 3 characters or with
non-Latin characters don't-care. Its detections come with a confidence threshold; ours are whatever
the engine returns.
"""
from __future__ import annotations

from typing import Any

from evalkit.metrics.base import Metric
from evalkit.metrics.ocr import (
    _check_merge,
    _check_same_size,
    _engine,
    _engine_settings,
    _poly_json,
    hr_lines,
    sr_lines,
)
from evalkit.metrics.ocr_match import (
    DONT_CARE_AREA_FRACTION,
    DONT_CARE_TEXT,
    E2ECounts,
    match_end_to_end,
    norm_ci,
    prf1,
)
from evalkit.sample import EvalSample
from models.ocr import OCREngine, OCRInputError


def any_text(_: str) -> str:
    """Detection-only comparison: every transcription equals every other."""
    return ""


UNITS = ("words", "lines")


def _words(sample: EvalSample, ocr: OCREngine, which: str) -> list:
    """``ocr.readwords`` of the sample's SR or HR image, read once per sample and engine."""
    key = f"ocr_{which}_words:{ocr.name}"
    if key not in sample.extra:
        sample.extra[key] = ocr.readwords(sample.sr if which == "sr" else sample.hr)
    return sample.extra[key]


def spot_counts(sample: EvalSample, ocr: OCREngine, mode: str,
                iou_threshold: float = 0.5, units: str = "words") -> tuple[str, E2ECounts, list]:
    """``(gt_source, counts, predictions)`` of one image: the engine's SR words (``ocr.readwords``) or lines
    (``sample.ocr_sr``, read when absent) matched against ``sample.texts`` (``"annotations"``) or,
    without annotations, the HR OCR words/lines as pseudo-GT (``"hr-ocr"``). ``mode``: ``"det"``
    (IoU only) or ``"e2e"`` (IoU and text)."""
    _check_same_size(sample)
    preds = _words(sample, ocr, "sr") if units == "words" else sr_lines(sample, ocr)
    if sample.texts is not None:
        source = "annotations"
        gts = [(t.polygon, t.text, t.dont_care) for t in sample.texts]
    else:
        source = "hr-ocr"
        hr = _words(sample, ocr, "hr") if units == "words" else hr_lines(sample, ocr)
        gts = [(ln.polygon, ln.text, False) for ln in hr]
    counts = match_end_to_end([ln.polygon for ln in preds], [ln.text for ln in preds],
                              [g[0] for g in gts], [g[1] for g in gts], [g[2] for g in gts],
                              iou_threshold, normalize=any_text if mode == "det" else norm_ci)
    return source, counts, preds


class SpotF1(Metric):
    """Text-spotting F1 of the SR image (module docstring), in [0, 1], higher better.

    Per image: ``<name>`` (F1), ``<name>_precision``, ``<name>_recall``, ``<name>_tp``,
    ``<name>_n_pred``, ``<name>_n_gt``, ``<name>_n_ignored``, ``<name>_gt`` (``"annotations"`` or
    ``"hr-ocr"``) and ``<name>_evidence`` (one dict per SR prediction: ``polygon``, ``text``,
    ``conf``, matched ``gt`` index or None, ``ignored``). Dataset: the same from the summed counts
    (micro), plus ``<name>_images`` and ``<name>_images_pseudo_gt``. P is None without predictions,
    R without GT, F1 only when both are absent (:func:`~evalkit.metrics.ocr_match.prf1`).
    """

    mode = ""
    higher_is_better = True
    # hr / ocr_hr (pseudo-GT) are read only for samples without text annotations
    needs = frozenset({"sr", "hr", "ocr_hr", "ocr_sr"})

    def __init__(self, ocr: OCREngine | str | None = None, iou_threshold: float = 0.5, units: str = "words",
                 **_ignored: Any):
        if not 0.0 < float(iou_threshold) <= 1.0:
            raise OCRInputError(f"{self.name}: iou_threshold must be in (0, 1], got {iou_threshold}")
        if units not in UNITS:
            raise OCRInputError(f"{self.name}: units must be one of {', '.join(UNITS)}; got {units!r}")
        self.ocr = _engine(ocr)
        self.iou_threshold = float(iou_threshold)
        self.units = units
        if units == "words":  # words are read here (readwords), the runner's SR lines are not needed
            self.needs = type(self).needs - {"ocr_sr"}
        self.reset()

    def settings(self) -> dict[str, Any]:
        text = ("ignored (detection only)" if self.mode == "det" else
                "equal after NFKC, case folding, punctuation and whitespace removal (norm_ci); "
                "no lexicon")
        return {
            "engine": self.ocr.name,
            "engine_settings": _engine_settings(self.ocr),
            "spotter": ("the run's OCR engine on SR: readwords (its lines split into words; word boxes: "
                        f"{self.ocr.word_boxes})" if self.units == "words" else
                        "the run's OCR engine on SR: readtext (det + rec) line polygons and texts"),
            "units": self.units,
            "gt": "GT text instances when the benchmark has them, else HR OCR lines (pseudo-GT, "
                  f"per image: {self.name}_gt)",
            "matching": f"greedy one-to-one by decreasing polygon IoU (shapely) among pairs with "
                        f"IoU >= {self.iou_threshold}; evalkit.metrics.ocr_match.match_end_to_end",
            "text": text,
            "dont_care": f"GT dont_care or '{DONT_CARE_TEXT}': not in #GT; a prediction with "
                         f"area(pred & dont-care GT) / area(pred) > {DONT_CARE_AREA_FRACTION} is "
                         "ignored before matching (not in #pred)",
            "averaging": "micro: TP, #pred, #GT summed over the dataset; P=TP/#pred, R=TP/#GT, "
                         "F1=2TP/(#pred+#GT); P/R None when their denominator is 0",
            "vs_testr": "TESTR's text_eval_script: IoU > 0.5 (strict); upper()-cased exact text "
                        "(GT may drop one special char at either end) instead of punctuation "
                        "stripping; e2e pairs by IoU alone then checks text; Total-Text word "
                        "spotting also sets GT words < 3 chars or non-Latin don't-care (not here)",
            "granularity": ("words, as the spotting benchmarks annotate them" if self.units == "words" else
                            "engine lines vs word-level GT: a line over several GT words matches none"),
        }

    def reset(self) -> None:
        self.tp = self.n_pred = self.n_gt = self.n_ignored = 0
        self.images = self.images_pseudo_gt = 0

    @staticmethod
    def _generic(tp: int, n_pred: int, n_gt: int, n_ignored: int) -> dict[str, Any]:
        p, r, f = prf1(tp, n_pred, n_gt)
        return {"f1": f, "precision": p, "recall": r, "tp": tp, "n_pred": n_pred, "n_gt": n_gt,
                "n_ignored": n_ignored}

    def _values(self, v: dict[str, Any]) -> dict[str, Any]:
        """The generic counts and rates of :meth:`_generic` under the reported keys; the
        subclasses spell them out (a dict literal), so ``tests/test_report.py`` finds them and
        checks that ``evalkit/directions.py`` knows each."""
        raise NotImplementedError

    def update(self, sample: EvalSample) -> dict[str, Any]:
        source, c, preds = spot_counts(sample, self.ocr, self.mode, self.iou_threshold, self.units)
        self.tp += c.tp
        self.n_pred += c.n_pred
        self.n_gt += c.n_gt
        self.n_ignored += c.n_ignored
        self.images += 1
        self.images_pseudo_gt += source == "hr-ocr"
        out = self._values(self._generic(c.tp, c.n_pred, c.n_gt, c.n_ignored))
        out[self.name + "_gt"] = source
        matched = dict(c.matches)
        out[self.name + "_evidence"] = [
            {"polygon": _poly_json(ln.polygon), "text": ln.text, "conf": float(ln.score),
             "gt": matched.get(i), "ignored": i in c.ignored}
            for i, ln in enumerate(preds)]
        return out

    def compute(self) -> dict[str, Any]:
        out = self._values(self._generic(self.tp, self.n_pred, self.n_gt, self.n_ignored))
        out[self.name + "_images"] = self.images
        out[self.name + "_images_pseudo_gt"] = self.images_pseudo_gt
        return out

    def merge(self, other: SpotF1) -> None:
        _check_merge(self, other)
        for k in ("tp", "n_pred", "n_gt", "n_ignored", "images", "images_pseudo_gt"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


class SpotDetF1(SpotF1):
    """TAIR's detection F1: IoU >= 0.5 with a GT polygon, transcription ignored."""

    name = "spot_det_f1"
    mode = "det"

    def _values(self, v: dict[str, Any]) -> dict[str, Any]:
        return {"spot_det_f1": v["f1"], "spot_det_f1_precision": v["precision"],
                "spot_det_f1_recall": v["recall"], "spot_det_f1_tp": v["tp"],
                "spot_det_f1_n_pred": v["n_pred"], "spot_det_f1_n_gt": v["n_gt"],
                "spot_det_f1_n_ignored": v["n_ignored"]}


class SpotE2EF1(SpotF1):
    """TAIR's end-to-end F1 (no lexicon): IoU >= 0.5 and the same transcription (``norm_ci``)."""

    name = "spot_e2e_f1"
    mode = "e2e"

    def _values(self, v: dict[str, Any]) -> dict[str, Any]:
        return {"spot_e2e_f1": v["f1"], "spot_e2e_f1_precision": v["precision"],
                "spot_e2e_f1_recall": v["recall"], "spot_e2e_f1_tp": v["tp"],
                "spot_e2e_f1_n_pred": v["n_pred"], "spot_e2e_f1_n_gt": v["n_gt"],
                "spot_e2e_f1_n_ignored": v["n_ignored"]}
