"""The plain maths of the OCR metrics: cropping a text region, polygon IoU, the end-to-end matching
of predicted to ground-truth words (with ICDAR 2015's don't-care rule), precision/recall/F1 and
character edit counts. :mod:`evalkit.metrics.ocr` holds the metric classes that accumulate them."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import Levenshtein
import numpy as np

from models.ocr import OCRInputError, normalize_text

DONT_CARE_TEXT = "###"
# ICDAR 2015's AREA_PRECISION_CONSTRAINT: a detection is don't-care when more than this fraction of
# its own area lies inside a don't-care GT region.
DONT_CARE_AREA_FRACTION = 0.5


# -- geometry --------------------------------------------------------------------------------------


def _as_polygon(polygon: object, what: str = "polygon") -> np.ndarray:
    p = np.asarray(polygon, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 4 or not np.isfinite(p).all():
        raise OCRInputError(f"{what} must be a finite Kx2 array of (x, y) points with K >= 4, got "
                         f"shape {p.shape}; pass TextInstance/OCRLine polygons in HR pixels")
    return p


def quad_from_polygon(polygon: object) -> np.ndarray:
    """The ``(4, 2) float32`` quad a polygon is cropped with.

    4 points: the quad itself, made clockwise (on screen, y down) while keeping its first point, so
    a counter-clockwise annotation is not cropped mirrored. K > 4 points (curved text): the
    minimum-area rectangle, ordered top-left, top-right, bottom-right, bottom-left as PP-OCR's DB
    post-processing orders its boxes.
    """
    p = _as_polygon(polygon)
    if len(p) == 4:
        x, y = p[:, 0], p[:, 1]
        signed_area = float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))
        if signed_area < 0:
            p = p[[0, 3, 2, 1]]
        return p.astype(np.float32)
    box = cv2.boxPoints(cv2.minAreaRect(p.astype(np.float32)))
    box = box[np.argsort(box[:, 0], kind="stable")]
    left, right = box[:2], box[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.array([tl, tr, br, bl], dtype=np.float32)


def crop_polygon(image: np.ndarray, polygon: object) -> np.ndarray:
    """Crop a text region from an RGB ``HxWx3 uint8`` image as an axis-aligned line image.

    The region's quad (:func:`quad_from_polygon`) is perspective-warped to a ``w x h`` rectangle,
    ``w`` = the longer of its top/bottom edges, ``h`` = the longer of its left/right edges (at least
    1 px each), bicubic, border replicated; a result at least 1.5x taller than wide is rotated 90°
    (vertical text). This is PP-OCR's ``get_rotate_crop_image`` — the crop ``readtext`` itself
    feeds the recogniser — so a region read on an image and recognised from that image's crop
    agree. Real-CE's evaluation also perspective-warps each GT quad.
    Returns ``hxwx3 uint8``.
    """
    quad = quad_from_polygon(polygon)
    w = max(1, int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3]))))
    h = max(1, int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(quad, dst)
    crop = cv2.warpPerspective(image, m, (w, h), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REPLICATE)
    if crop.shape[0] / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop)


def _shape(polygon: np.ndarray):
    from shapely.geometry import Polygon
    from shapely.validation import make_valid

    g = Polygon(polygon)
    return g if g.is_valid else make_valid(g)


def polygon_iou(a: object, b: object) -> float:
    """Intersection over union of two Kx2 polygons (shapely; self-intersecting ones are repaired
    with ``make_valid``). 0.0 when the union has no area."""
    ga, gb = _shape(np.asarray(a, np.float64)), _shape(np.asarray(b, np.float64))
    union = ga.union(gb).area
    return float(ga.intersection(gb).area / union) if union > 0 else 0.0


def _iou_matrix(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> np.ndarray:
    iou = np.zeros((len(preds), len(gts)))
    if not preds or not gts:
        return iou
    pb = np.array([[*p.min(0), *p.max(0)] for p in preds])
    gb = np.array([[*g.min(0), *g.max(0)] for g in gts])
    p_shapes: dict[int, Any] = {}
    g_shapes: dict[int, Any] = {}
    for i in range(len(preds)):
        for j in range(len(gts)):  # bounding boxes first: most pairs do not touch
            if (pb[i, 0] >= gb[j, 2] or gb[j, 0] >= pb[i, 2]
                    or pb[i, 1] >= gb[j, 3] or gb[j, 1] >= pb[i, 3]):
                continue
            ga = p_shapes.setdefault(i, _shape(preds[i]))
            gg = g_shapes.setdefault(j, _shape(gts[j]))
            union = ga.union(gg).area
            iou[i, j] = ga.intersection(gg).area / union if union > 0 else 0.0
    return iou


def _inside_fraction(preds: Sequence[np.ndarray], regions: Sequence[np.ndarray]) -> np.ndarray:
    """``[i, j]`` = area(pred i ∩ region j) / area(pred i); 0.0 for a prediction without area."""
    frac = np.zeros((len(preds), len(regions)))
    for i, p in enumerate(preds):
        gp = _shape(p)
        if gp.area <= 0:
            continue
        for j, r in enumerate(regions):
            frac[i, j] = gp.intersection(_shape(r)).area / gp.area
    return frac


# -- end-to-end matching ---------------------------------------------------------------------------


def norm_ci(s: str) -> str:
    """OCR-F1's default comparison form: NFKC, case-folded, whitespace and punctuation removed."""
    return normalize_text(s, ignore_case=True, ignore_space=True, ignore_punct=True)


def norm_cs(s: str) -> str:
    """OCR-F1's case-sensitive form: NFKC, whitespace removed, case and punctuation kept."""
    return normalize_text(s, ignore_space=True)


@dataclass(frozen=True)
class E2ECounts:
    """One image's end-to-end counts. ``n_pred`` excludes ignored predictions (those mostly inside
    a don't-care GT); ``n_gt`` excludes don't-care GT. ``matches`` are ``(pred_index, gt_index)`` TP
    pairs; ``ignored`` the indices of the ignored predictions."""

    tp: int
    n_pred: int
    n_gt: int
    n_ignored: int
    matches: tuple[tuple[int, int], ...] = ()
    ignored: tuple[int, ...] = ()

    @property
    def fp(self) -> int:
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        return self.n_gt - self.tp


def match_end_to_end(pred_polygons: Sequence[object], pred_texts: Sequence[str],
                     gt_polygons: Sequence[object], gt_texts: Sequence[str],
                     gt_dont_care: Sequence[bool] | None = None, iou_threshold: float = 0.5,
                     normalize: Callable[[str], str] = norm_ci,
                     dont_care_fraction: float = DONT_CARE_AREA_FRACTION) -> E2ECounts:
    """Greedy one-to-one end-to-end matching of predicted text boxes to GT boxes.

    Don't-care first, as the ICDAR 2015 end-to-end script does (RRC ``E2E_iou_1_1.py``, v1.1,
    e.g. whai362/pan_pp.pytorch ``eval/ic15_word_spotting/script.py``): a prediction is ignored —
    neither TP nor FP, left out of matching — when ``area(pred ∩ G) / area(pred) >
    dont_care_fraction`` (0.5, the script's ``AREA_PRECISION_CONSTRAINT``) for some don't-care GT
    ``G`` (``gt_dont_care`` or text ``###``). A prediction mostly inside a ``###`` region is thus
    ignored even when its IoU with it is small, and one that only touches it counts. Don't-care GT
    are not counted in ``n_gt``.

    Then a (prediction, GT) pair is eligible when the GT is not don't-care, their polygon IoU is
    ``>= iou_threshold`` and ``normalize(pred) == normalize(gt)``. Eligible pairs are taken in
    order of decreasing IoU (ties: lower prediction, then GT index), each prediction and GT at most
    once; every pair taken is a true positive.

    Because text equality is part of eligibility, a well-placed wrong reading does not block a
    correct reading of the same GT (the ICDAR-15 script instead pairs boxes by IoU alone, then
    checks the text); both rules agree whenever each GT has at most one prediction over it.
    """
    if len(pred_polygons) != len(pred_texts) or len(gt_polygons) != len(gt_texts):
        raise OCRInputError("polygons and texts must have the same length: got "
                         f"{len(pred_polygons)}/{len(pred_texts)} predictions, "
                         f"{len(gt_polygons)}/{len(gt_texts)} GT")
    if gt_dont_care is None:
        gt_dont_care = [False] * len(gt_texts)
    dc = [bool(d) or t == DONT_CARE_TEXT for d, t in zip(gt_dont_care, gt_texts)]
    preds = [_as_polygon(p, "prediction polygon") for p in pred_polygons]
    gts = [_as_polygon(g, "GT polygon") for g in gt_polygons]
    dc_idx = [j for j in range(len(gts)) if dc[j]]
    inside = _inside_fraction(preds, [gts[j] for j in dc_idx]) if dc_idx else None
    ignored = tuple(i for i in range(len(preds))
                    if inside is not None and bool((inside[i] > dont_care_fraction).any()))
    iou = _iou_matrix(preds, gts)
    pn = [normalize(t) for t in pred_texts]
    gn = [normalize(t) for t in gt_texts]
    pairs = sorted((-iou[i, j], i, j) for i in range(len(preds)) for j in range(len(gts))
                   if i not in ignored and not dc[j] and iou[i, j] >= iou_threshold
                   and pn[i] == gn[j])
    used_p: set[int] = set()
    used_g: set[int] = set()
    matches = []
    for _, i, j in pairs:
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            matches.append((i, j))
    return E2ECounts(tp=len(matches), n_pred=len(preds) - len(ignored), n_gt=dc.count(False),
                     n_ignored=len(ignored), matches=tuple(sorted(matches)), ignored=ignored)


def prf1(tp: int, n_pred: int, n_gt: int) -> tuple[float | None, float | None, float | None]:
    """Precision ``tp/n_pred`` (None without predictions), recall ``tp/n_gt`` (None without GT) and
    F1 ``2·tp/(n_pred + n_gt)`` — which is ``2PR/(P+R)`` where both are defined and 0.0 when only one
    side is empty (text there but nothing read, or only false readings): a method that reads nothing
    must score 0, not "unavailable". F1 is None only when there is neither a prediction nor a GT."""
    p = tp / n_pred if n_pred else None
    r = tp / n_gt if n_gt else None
    f = 2 * tp / (n_pred + n_gt) if n_pred + n_gt else None
    return p, r, f


# -- character edits -------------------------------------------------------------------------------


def char_edit_counts(ref: str, pred: str) -> tuple[int, int, int]:
    """``(substitutions, deletions, insertions)`` of one minimal Levenshtein alignment turning
    ``ref`` into ``pred`` (``Levenshtein.editops``): a substitution is a reference character read as
    another character, a deletion a reference character lost, an insertion a character read that
    the reference does not have. They sum to ``Levenshtein.distance(ref, pred)``. When several
    minimal alignments exist (``"ab"`` vs ``"ba"``: two substitutions or a deletion + insertion),
    the library's choice is taken."""
    subs = dels = ins = 0
    for op, _, _ in Levenshtein.editops(ref, pred):
        if op == "replace":
            subs += 1
        elif op == "delete":
            dels += 1
        else:
            ins += 1
    return subs, dels, ins
