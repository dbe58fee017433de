"""OCR metrics on SR output: TADiSR's OCR-A, end-to-end OCR-F1, and character hallucination.

All three read text with one of our OCR engines (``models.ocr``, default ``rapidocr-ppocrv4``,
PP-OCRv4 det+rec as TADiSR used PP-OCR) and keep only integer counts and exact float sums
(:class:`~evalkit.metrics.base.ExactSum`): ``state()`` is plain data, so the runner's resume state
carries it, and per-worker states ``merge`` into exactly (bit for bit) what one process computes. ``needs`` lists ``ocr_hr`` / ``ocr_sr`` so the runner reads (and caches) the OCR lines
once per image for all metrics; a metric reads them itself when they are absent.

Regions (shared by :class:`OCRAccuracy` and :class:`CharHallucination`):
  * the image's ground-truth text instances when the benchmark has them (``sample.texts`` is not
    None), skipping don't-care ones (``dont_care`` or text ``###``); the reference string is the
    GT transcription;
  * otherwise the lines OCR reads on HR (``sample.ocr_hr``, cached by the runner; read here with
    ``ocr.readtext(hr)`` and stored back on the sample when absent); the reference string is the
    HR reading. This is TADiSR's protocol.
  Regions whose reference is empty or whitespace are left out (nothing to score against). Each
  region is cropped from SR with :func:`crop_polygon` and recognised with ``ocr.recognize`` (no
  detection on SR). The engines recognise one crop per recogniser batch, so a region's reading
  does not depend on the other regions of its image (``models.ocr.base.OCREngine``).

Evidence. :class:`OCRAccuracy` returns, per image, ``ocr_a_evidence``: one dict per *scored* region
``{"polygon": [[x, y], ...] (HR px, 2 decimals), "ref", "read", "score" (its OCR-A), "conf"
(recogniser confidence)}``; don't-care, ``###`` and empty-reference regions are not scored and are
not listed. The runner writes it into ``per_image.jsonl`` and the report reads it back instead of
recognising again. :class:`OCRF1` likewise returns ``ocr_f1_evidence``: every SR prediction with its
text, confidence, matched GT index (or None) and whether it was ignored as don't-care.

OCR-F1 is end to end instead: detection + recognition on SR (``sample.ocr_sr``) matched against the
GT instances (or, without annotations, the HR OCR lines as pseudo-GT). Don't-care follows the ICDAR
2015 end-to-end script (RRC ``E2E_iou_1_1.py``): a prediction whose area lies more than half inside
a don't-care GT region is set aside before matching.

The maths is in plain functions in :mod:`evalkit.metrics.ocr_match` (``crop_polygon``,
``polygon_iou``, ``match_end_to_end``, ``prf1``, ``char_edit_counts``); the classes only accumulate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.metrics.base import ExactSum, Metric
from evalkit.metrics.ocr_match import (
    DONT_CARE_AREA_FRACTION,
    DONT_CARE_TEXT,
    E2ECounts,
    char_edit_counts,
    crop_polygon,
    match_end_to_end,
    norm_ci,
    norm_cs,
    prf1,
)
from evalkit.sample import EvalSample
from models.ocr import (
    DEFAULT_OCR,
    RATIO_DISTANCES,
    OCREngine,
    OCRInputError,
    create_ocr,
    levenshtein_ratio,
    normalize_text,
)

# -- shared region reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionReads:
    """The scored regions of one image: their polygons (HR px, as given), reference strings, what
    the recogniser read in the SR crop of each and its confidence in [0, 1], plus where the regions
    came from (``"annotations"`` or ``"hr-ocr"``)."""

    source: str
    refs: tuple[str, ...]
    preds: tuple[str, ...]
    polygons: tuple[np.ndarray, ...] = ()
    confs: tuple[float, ...] = ()


def _is_dont_care(t) -> bool:
    return bool(t.dont_care) or t.text == DONT_CARE_TEXT


def _check_same_size(sample: EvalSample) -> None:
    if sample.hr is not None and sample.hr.shape[:2] != sample.sr.shape[:2]:
        raise OCRInputError(f"sample {sample.key!r}: SR {sample.sr.shape[:2]} and HR "
                         f"{sample.hr.shape[:2]} differ in size; OCR regions are in HR pixels, "
                         "so SR must be at HR size")


def hr_lines(sample: EvalSample, ocr: OCREngine) -> list:
    """``sample.ocr_hr``, reading HR with ``ocr.readtext`` (and storing it on the sample, so the
    other OCR metrics reuse it) when the runner has not."""
    if sample.ocr_hr is None:
        if sample.hr is None:
            raise OCRInputError(f"sample {sample.key!r} has neither text annotations nor HR (nor "
                             "ocr_hr): OCR metrics need one of them for their reference text")
        sample.ocr_hr = ocr.readtext(sample.hr)
    return sample.ocr_hr


def sr_lines(sample: EvalSample, ocr: OCREngine) -> list:
    """``sample.ocr_sr``, reading SR with ``ocr.readtext`` (and storing it) when absent."""
    if sample.ocr_sr is None:
        sample.ocr_sr = ocr.readtext(sample.sr)
    return sample.ocr_sr


# One-entry cache so OCRAccuracy and CharHallucination, updated one after the other on the same
# sample with the same engine, recognise its crops once. Entries hold strong references and are
# compared by identity, so a new array at a recycled address can never hit a stale entry.
_last_reads: list = []


def read_regions(sample: EvalSample, ocr: OCREngine) -> RegionReads:
    """Regions, references and SR recognitions of one image (see the module docstring)."""
    _check_same_size(sample)
    texts = sample.texts
    ocr_hr = None if texts is not None else hr_lines(sample, ocr)
    key = (sample, sample.sr, texts, ocr_hr, ocr)
    if _last_reads and all(a is b for a, b in zip(_last_reads[0], key)):
        return _last_reads[1]
    if texts is not None:
        source = "annotations"
        regions = [(t.polygon, t.text) for t in scored_texts(texts)]
    else:
        source = "hr-ocr"
        regions = [(ln.polygon, ln.text) for ln in ocr_hr if ln.text.strip()]
    crops = [crop_polygon(sample.sr, poly) for poly, _ in regions]
    out = ocr.recognize(crops) if crops else []
    if len(out) != len(crops):
        raise RuntimeError(f"{ocr!r}.recognize returned {len(out)} results for {len(crops)} crops")
    reads = RegionReads(source, tuple(ref for _, ref in regions), tuple(str(t) for t, _ in out),
                        tuple(np.asarray(poly, np.float64) for poly, _ in regions),
                        tuple(float(c) for _, c in out))
    _last_reads[:] = [key, reads]
    return reads


def scored_texts(texts: list) -> list:
    """The annotated text instances OCR-A scores, in order: not don't-care (``dont_care`` or
    ``###``) and with a non-blank reference. :func:`read_regions` reads exactly these."""
    return [t for t in texts if not _is_dont_care(t) and t.text.strip()]


def _engine(ocr: OCREngine | str | None) -> OCREngine:
    if ocr is None:
        return create_ocr(DEFAULT_OCR)
    if isinstance(ocr, str):
        return create_ocr(ocr)
    return ocr


def _check_merge(a: Metric, b: Metric) -> None:
    if type(a) is not type(b):
        raise TypeError(f"cannot merge {type(b).__name__} into {type(a).__name__}")
    if a.settings() != b.settings():
        raise ValueError(f"cannot merge {a.name} states computed with different settings: "
                         f"{a.settings()} vs {b.settings()}")


def _engine_settings(ocr: OCREngine) -> dict[str, Any]:
    """The engine's own settings (name, models, batching) for a metric's settings()."""
    return ocr.settings() if hasattr(ocr, "settings") else {"engine": ocr.name}


def _poly_json(polygon: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(polygon).reshape(-1, 2)]


REGIONS_RULE = ("GT text instances when the benchmark has them (don't-care and '###' skipped; "
                "reference = GT transcription), else OCR lines read on HR (reference = HR "
                "reading); regions with an empty reference are skipped")
CROP_RULE = ("region quad perspective-warped to an axis-aligned rectangle (PP-OCR "
             "get_rotate_crop_image: bicubic, border replicate, rot90 if h/w >= 1.5); K>4-point "
             "polygons via their min-area rectangle; counter-clockwise quads re-ordered clockwise; "
             "each crop recognised alone (one crop per recogniser batch)")


# -- metrics ---------------------------------------------------------------------------------------


class OCRAccuracy(Metric):
    """OCR-A (TADiSR): how much of the HR/GT text is still legible in SR, in [0, 1], higher better.

    Per region: ``levenshtein_ratio(pred, ref, distance) = (|p| + |r| - dist(p, r)) / (|p| + |r|)``
    on the raw strings (case- and space-sensitive, as TADiSR's formula reads), with ``pred`` the
    recognition of the region's SR crop (regions and references: module docstring). ``ocr_a_ci`` is
    the same on NFKC, case-folded, whitespace-free strings (PP-OCR's spaces are unreliable).

    ``distance``: ``"indel"`` (default) — TADiSR's "Levenshtein ratio" is python-Levenshtein's
    ``Levenshtein.ratio``, whose distance counts a substitution as 2, so a wrong word of the right
    length ("HOTEL" read as "XQZJW") scores 0: hallucinated text is what OCR-A must catch.
    ``"levenshtein"`` — unit-cost substitutions (the same pair scores 0.5), for comparison with
    runs scored that way. ``settings()`` names the exact function.

    Per image: the mean over its regions (``ocr_a``, ``ocr_a_ci``), ``ocr_a_regions``,
    ``ocr_a_ref`` (``"annotations"`` or ``"hr-ocr"``) and ``ocr_a_evidence`` (one dict per scored
    region: ``polygon``, ``ref``, ``read``, ``score``, ``conf``; ``ocr_a`` is the mean of its
    ``score`` values); None (evidence ``[]``) for an image without regions, counted as skipped. Dataset: ``ocr_a`` is the **per-region mean over all regions** (the headline: every
    text box weighs the same); ``ocr_a_image_mean`` is the mean of the per-image means. TADiSR does
    not publish which it averages (unverified), so both are reported.

    ``ocr``: an :class:`OCREngine`, a registered engine name, or None for ``rapidocr-ppocrv4``.
    Other keyword arguments (``crop_border``, ``device`` …) are accepted and ignored.
    """

    name = "ocr_a"
    higher_is_better = True
    # hr / ocr_hr are read only for samples without text annotations
    needs = frozenset({"sr", "hr", "ocr_hr"})

    def __init__(self, ocr: OCREngine | str | None = None, distance: str = "indel",
                 **_ignored: Any):
        if distance not in RATIO_DISTANCES:
            raise OCRInputError(f"ocr_a: distance must be one of {sorted(RATIO_DISTANCES)} "
                                f"('indel' = Levenshtein.ratio, TADiSR's), got {distance!r}")
        self.ocr = _engine(ocr)
        self.distance = distance
        self.reset()

    def settings(self) -> dict[str, Any]:
        return {
            "engine": self.ocr.name,
            "engine_settings": _engine_settings(self.ocr),
            "regions": REGIONS_RULE,
            "crop": CROP_RULE,
            "distance": self.distance,
            "score": f"models.ocr.levenshtein_ratio(pred, ref, distance={self.distance!r}) on raw "
                     f"strings (case- and whitespace-sensitive): {RATIO_DISTANCES[self.distance]}",
            "score_ci": "ocr_a_ci: same function and distance on NFKC, case-folded, "
                        "whitespace-removed strings",
            "evidence": "ocr_a_evidence per image: scored regions only (don't-care, '###' and "
                        "empty references are not scored and not listed)",
            "headline": "ocr_a = mean over all regions of the dataset (per-region)",
            "also": "ocr_a_image_mean = mean of per-image region means (images without regions "
                    "skipped)",
            "tadisr_averaging": "unpublished (per box or per image unverified)",
        }

    def reset(self) -> None:
        # exact sums: region scores one by one, per-image means one by one (order-independent)
        self.region_sum, self.region_sum_ci = ExactSum(), ExactSum()
        self.regions = 0
        self.image_sum, self.image_sum_ci = ExactSum(), ExactSum()
        self.images = 0
        self.skipped = 0

    def update(self, sample: EvalSample) -> dict[str, Any]:
        reads = read_regions(sample, self.ocr)
        n = len(reads.refs)
        if n == 0:
            self.skipped += 1
            return {"ocr_a": None, "ocr_a_ci": None, "ocr_a_regions": 0, "ocr_a_ref": reads.source,
                    "ocr_a_evidence": []}
        scores = [levenshtein_ratio(p, r, self.distance) for p, r in zip(reads.preds, reads.refs)]
        scores_ci = [levenshtein_ratio(_ci(p), _ci(r), self.distance)
                     for p, r in zip(reads.preds, reads.refs)]
        s, s_ci = math.fsum(scores), math.fsum(scores_ci)
        evidence = [{"polygon": _poly_json(poly), "ref": ref, "read": pred, "score": score,
                     "conf": conf}
                    for poly, ref, pred, score, conf in zip(reads.polygons, reads.refs, reads.preds,
                                                            scores, reads.confs)]
        for v, v_ci in zip(scores, scores_ci):
            self.region_sum.add(v)
            self.region_sum_ci.add(v_ci)
        self.regions += n
        self.image_sum.add(s / n)
        self.image_sum_ci.add(s_ci / n)
        self.images += 1
        return {"ocr_a": s / n, "ocr_a_ci": s_ci / n, "ocr_a_regions": n,
                "ocr_a_ref": reads.source, "ocr_a_evidence": evidence}

    def compute(self) -> dict[str, Any]:
        r, i = self.regions, self.images
        return {
            "ocr_a": self.region_sum.value() / r if r else None,
            "ocr_a_image_mean": self.image_sum.value() / i if i else None,
            "ocr_a_ci": self.region_sum_ci.value() / r if r else None,
            "ocr_a_ci_image_mean": self.image_sum_ci.value() / i if i else None,
            "ocr_a_regions": r,
            "ocr_a_images": i,
            "ocr_a_skipped": self.skipped,
        }

    def merge(self, other: OCRAccuracy) -> None:
        _check_merge(self, other)
        for k in ("region_sum", "region_sum_ci", "image_sum", "image_sum_ci"):
            getattr(self, k).merge(getattr(other, k))
        self.regions += other.regions
        self.images += other.images
        self.skipped += other.skipped


def _ci(s: str) -> str:
    return normalize_text(s, ignore_case=True, ignore_space=True)


class OCRF1(Metric):
    """End-to-end OCR-F1 of SR (GLYPH-SR's OCR-F1; its exact rule is unpublished, this is the usual
    scene-text end-to-end protocol), in [0, 1], higher better.

    Predictions: OCR lines read on SR (``sample.ocr_sr``, det + rec; read here when absent).
    GT: ``sample.texts`` (``ocr_f1_gt = "annotations"``) or, without annotations, the HR OCR lines
    as pseudo-GT (``"hr-ocr"``). Matching: :func:`match_end_to_end` with IoU >= ``iou_threshold``
    (0.5); ``ocr_f1`` compares transcriptions case-insensitively with punctuation and whitespace
    removed (NFKC), ``ocr_f1_cs`` case-sensitively with whitespace removed. Don't-care GT
    (``dont_care`` / ``###``) are not counted; a prediction more than half of whose area lies inside
    one is ignored (ICDAR 2015's rule, see :func:`match_end_to_end`).

    Per image also ``ocr_f1_evidence``: one dict per SR prediction ``{"polygon", "text", "conf",
    "gt": matched GT index (case-insensitive matching) or None, "ignored": bool}``.

    Micro-averaged: TP, #pred and #GT are summed over the dataset, then P = TP/#pred,
    R = TP/#GT, F1 = 2TP/(#pred+#GT) (= 2PR/(P+R)) — not the mean of per-image F1. P is None without
    predictions, R without GT; F1 is 0 when one side is empty (nothing read where there is text) and
    None only when both are; the counts are always reported.

    Granularity caveat: PP-OCR detects *lines* while word-level GT (SVT, CUTE80, IC15 …) has one
    box per word, so a correctly read multi-word line matches no word box (IoU < 0.5, text
    differs) and costs one FP plus one FN per word. Compare OCR-F1 only between SR methods under the
    same engine and GT, or on line-level GT; with HR pseudo-GT both sides are line-level.
    """

    name = "ocr_f1"
    higher_is_better = True
    # hr / ocr_hr (pseudo-GT) are read only for samples without text annotations
    needs = frozenset({"sr", "hr", "ocr_hr", "ocr_sr"})

    def __init__(self, ocr: OCREngine | str | None = None, iou_threshold: float = 0.5,
                 **_ignored: Any):
        if not 0.0 < iou_threshold <= 1.0:
            raise OCRInputError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.ocr = _engine(ocr)
        self.iou_threshold = float(iou_threshold)
        self.reset()

    def settings(self) -> dict[str, Any]:
        return {
            "engine": self.ocr.name,
            "engine_settings": _engine_settings(self.ocr),
            "predictions": "OCR det+rec lines on SR",
            "gt": "GT text instances when the benchmark has them, else HR OCR lines (pseudo-GT, "
                  "per image: ocr_f1_gt)",
            "matching": f"greedy one-to-one by decreasing polygon IoU (shapely) among pairs with "
                        f"IoU >= {self.iou_threshold} and equal normalised text; each pair a TP",
            "text_ci": "ocr_f1: NFKC, case-folded, punctuation and whitespace removed",
            "text_cs": "ocr_f1_cs: NFKC, whitespace removed, case and punctuation kept",
            "dont_care": f"GT dont_care or '{DONT_CARE_TEXT}': not in #GT; a prediction with "
                         f"area(pred & dont-care GT) / area(pred) > {DONT_CARE_AREA_FRACTION} is "
                         "ignored before matching (not in #pred): ICDAR 2015 end-to-end script "
                         "(E2E_iou_1_1.py AREA_PRECISION_CONSTRAINT)",
            "averaging": "micro: TP, #pred, #GT summed over the dataset; P=TP/#pred, R=TP/#GT, "
                         "F1=2TP/(#pred+#GT) (=2PR/(P+R); 0 when only one side is empty); P/R None "
                         "when their denominator is 0",
            "granularity": "OCR lines are line-level; word-level GT boxes do not match lines",
        }

    def reset(self) -> None:
        self.tp = self.n_pred = self.n_ignored = 0
        self.tp_cs = self.n_pred_cs = self.n_ignored_cs = 0
        self.n_gt = 0
        self.images = 0
        self.images_pseudo_gt = 0

    def counts(self, sample: EvalSample) -> tuple[str, E2ECounts, E2ECounts]:
        """``(gt_source, case-insensitive counts, case-sensitive counts)`` of one image (the SR
        predictions are ``sample.ocr_sr`` afterwards)."""
        _check_same_size(sample)
        preds = sr_lines(sample, self.ocr)
        if sample.texts is not None:
            source = "annotations"
            gts = [(t.polygon, t.text, t.dont_care) for t in sample.texts]
        else:
            source = "hr-ocr"
            gts = [(ln.polygon, ln.text, False) for ln in hr_lines(sample, self.ocr)]
        args = ([ln.polygon for ln in preds], [ln.text for ln in preds],
                [g[0] for g in gts], [g[1] for g in gts], [g[2] for g in gts], self.iou_threshold)
        return source, match_end_to_end(*args, normalize=norm_ci), \
            match_end_to_end(*args, normalize=norm_cs)

    def update(self, sample: EvalSample) -> dict[str, Any]:
        source, ci, cs = self.counts(sample)
        self.tp += ci.tp
        self.n_pred += ci.n_pred
        self.n_ignored += ci.n_ignored
        self.tp_cs += cs.tp
        self.n_pred_cs += cs.n_pred
        self.n_ignored_cs += cs.n_ignored
        self.n_gt += ci.n_gt
        self.images += 1
        self.images_pseudo_gt += source == "hr-ocr"
        out = self._values(ci.tp, ci.n_pred, cs.tp, cs.n_pred, ci.n_gt, ci.n_ignored)
        out["ocr_f1_gt"] = source
        matched = dict(ci.matches)
        out["ocr_f1_evidence"] = [
            {"polygon": _poly_json(ln.polygon), "text": ln.text, "conf": float(ln.score),
             "gt": matched.get(i), "ignored": i in ci.ignored}
            for i, ln in enumerate(sample.ocr_sr)]
        return out

    @staticmethod
    def _values(tp: int, n_pred: int, tp_cs: int, n_pred_cs: int, n_gt: int,
                n_ignored: int) -> dict[str, Any]:
        p, r, f = prf1(tp, n_pred, n_gt)
        p_cs, r_cs, f_cs = prf1(tp_cs, n_pred_cs, n_gt)
        return {"ocr_f1": f, "ocr_f1_precision": p, "ocr_f1_recall": r,
                "ocr_f1_tp": tp, "ocr_f1_n_pred": n_pred, "ocr_f1_n_gt": n_gt,
                "ocr_f1_n_ignored": n_ignored,
                "ocr_f1_cs": f_cs, "ocr_f1_cs_precision": p_cs, "ocr_f1_cs_recall": r_cs,
                "ocr_f1_cs_tp": tp_cs, "ocr_f1_cs_n_pred": n_pred_cs}

    def compute(self) -> dict[str, Any]:
        out = self._values(self.tp, self.n_pred, self.tp_cs, self.n_pred_cs, self.n_gt,
                           self.n_ignored)
        out["ocr_f1_images"] = self.images
        out["ocr_f1_images_pseudo_gt"] = self.images_pseudo_gt
        return out

    def merge(self, other: OCRF1) -> None:
        _check_merge(self, other)
        for k in ("tp", "n_pred", "n_ignored", "tp_cs", "n_pred_cs", "n_ignored_cs", "n_gt",
                  "images", "images_pseudo_gt"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


class CharHallucination(Metric):
    """Character hallucination: how often SR turns a reference character into *another* one.

    Same regions, references and SR recognitions as :class:`OCRAccuracy` (shared, not recomputed,
    when both run on a sample with the same engine). Per region, reference and reading are
    NFKC-normalised with whitespace removed (case kept; ``ignore_case=True`` folds it) and aligned
    with :func:`char_edit_counts`. Hallucination is a *substitution* — a glyph rendered as a
    plausible wrong character — not a loss: deletions (characters gone, e.g. blurred away) are
    reported separately as ``char_loss_rate``, insertions as ``char_insertion_rate``.

    Rates are micro-averaged: ``char_hallucination = Σ substitutions / Σ len(ref)`` over all
    regions (per image: over its regions), likewise for losses and insertions; lower is better.
    None for an image without regions (skipped). Only characters the recogniser can still place in
    the alignment are attributed: a crop read as nothing counts all its characters as lost.
    """

    name = "char_hallucination"
    higher_is_better = False
    # hr / ocr_hr are read only for samples without text annotations
    needs = frozenset({"sr", "hr", "ocr_hr"})

    def __init__(self, ocr: OCREngine | str | None = None, ignore_case: bool = False,
                 **_ignored: Any):
        self.ocr = _engine(ocr)
        self.ignore_case = bool(ignore_case)
        self.reset()

    def settings(self) -> dict[str, Any]:
        return {
            "engine": self.ocr.name,
            "regions": REGIONS_RULE,
            "crop": CROP_RULE,
            "strings": "NFKC, whitespace removed, "
                       + ("case-folded" if self.ignore_case else "case-sensitive"),
            "alignment": "one minimal Levenshtein alignment (Levenshtein.editops) ref -> SR read",
            "rates": "char_hallucination = substitutions / ref chars; char_loss_rate = deletions "
                     "/ ref chars; char_insertion_rate = insertions / ref chars; micro over all "
                     "regions",
        }

    def reset(self) -> None:
        self.subs = self.dels = self.ins = self.ref_chars = 0
        self.regions = self.images = self.skipped = 0

    def _norm(self, s: str) -> str:
        return normalize_text(s, ignore_case=self.ignore_case, ignore_space=True)

    @staticmethod
    def _rates(subs: int, dels: int, ins: int, n: int) -> dict[str, Any]:
        return {"char_hallucination": subs / n if n else None,
                "char_loss_rate": dels / n if n else None,
                "char_insertion_rate": ins / n if n else None,
                "char_substitutions": subs, "char_deletions": dels, "char_insertions": ins,
                "char_ref_chars": n}

    def update(self, sample: EvalSample) -> dict[str, Any]:
        reads = read_regions(sample, self.ocr)
        subs = dels = ins = n = 0
        for ref, pred in zip(reads.refs, reads.preds):
            r = self._norm(ref)
            s, d, i = char_edit_counts(r, self._norm(pred))
            subs, dels, ins, n = subs + s, dels + d, ins + i, n + len(r)
        if not reads.refs or n == 0:
            self.skipped += 1
            return self._rates(0, 0, 0, 0) | {"char_regions": 0}
        self.subs += subs
        self.dels += dels
        self.ins += ins
        self.ref_chars += n
        self.regions += len(reads.refs)
        self.images += 1
        return self._rates(subs, dels, ins, n) | {"char_regions": len(reads.refs)}

    def compute(self) -> dict[str, Any]:
        return self._rates(self.subs, self.dels, self.ins, self.ref_chars) | {
            "char_regions": self.regions, "char_images": self.images,
            "char_skipped": self.skipped}

    def merge(self, other: CharHallucination) -> None:
        _check_merge(self, other)
        for k in ("subs", "dels", "ins", "ref_chars", "regions", "images", "skipped"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
