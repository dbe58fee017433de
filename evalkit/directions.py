"""Which way is better for every value a metric reports: ``"higher"``, ``"lower"`` or None.

One table for the report (its arrows) and ``evalkit compare`` (its axis labels). A headline value
takes the direction of its metric class (``Metric.higher_is_better``; ``tests/test_report.py``
checks the two agree for every registered metric); derived rates share it; counts, image tallies
and labels (``ocr_a_regions``, ``ocr_f1_tp``, ``char_ref_chars``, ``ocr_a_ref`` …) have no better
direction, so they get no arrow — more regions is not a better result. A key missing here also
gets None: no arrow is better than a wrong one.
"""
from __future__ import annotations

HIGHER, LOWER = "higher", "lower"

DIRECTIONS: dict[str, str | None] = {
    # fidelity (evalkit/metrics/fidelity.py)
    "psnr": HIGHER, "ssim": HIGHER, "text_psnr": HIGHER, "text_ssim": HIGHER,
    # pyiqa (evalkit/metrics/iqa.py): distances and NIQE/PIQE are lower-better, MOS predictors higher
    "lpips": LOWER, "text_lpips": LOWER, "dists": LOWER, "fid": LOWER, "niqe": LOWER, "piqe": LOWER,
    "musiq": HIGHER, "maniqa": HIGHER, "clipiqa": HIGHER,
    # OCR-A (evalkit/metrics/ocr.py OCRAccuracy)
    "ocr_a": HIGHER, "ocr_a_ci": HIGHER, "ocr_a_image_mean": HIGHER, "ocr_a_ci_image_mean": HIGHER,
    "ocr_a_regions": None, "ocr_a_images": None, "ocr_a_skipped": None, "ocr_a_ref": None,
    # OCR-F1 (OCRF1): P/R/F1 higher; TP and the counts they are made of have no direction
    "ocr_f1": HIGHER, "ocr_f1_precision": HIGHER, "ocr_f1_recall": HIGHER,
    "ocr_f1_cs": HIGHER, "ocr_f1_cs_precision": HIGHER, "ocr_f1_cs_recall": HIGHER,
    "ocr_f1_tp": None, "ocr_f1_n_pred": None, "ocr_f1_n_gt": None, "ocr_f1_n_ignored": None,
    "ocr_f1_cs_tp": None, "ocr_f1_cs_n_pred": None, "ocr_f1_images": None,
    "ocr_f1_images_pseudo_gt": None, "ocr_f1_gt": None,
    "ocr_a_evidence": None, "ocr_f1_evidence": None,  # per-image lists of regions, not values
    # character edits (CharHallucination): every rate is a share of reference characters gone
    # wrong, so lower is better — insertions included (extra glyphs are hallucinations too)
    "char_hallucination": LOWER, "char_loss_rate": LOWER, "char_insertion_rate": LOWER,
    "char_substitutions": None, "char_deletions": None, "char_insertions": None,
    "char_ref_chars": None, "char_regions": None, "char_images": None, "char_skipped": None,
    # text spotting (evalkit/metrics/spotting.py, TAIR): detection and end-to-end P/R/F1
    **{f"spot_{k}_f1{s}": HIGHER for k in ("det", "e2e") for s in ("", "_precision", "_recall")},
    **{f"spot_{k}_f1_{c}": None for k in ("det", "e2e")
       for c in ("tp", "n_pred", "n_gt", "n_ignored", "images", "images_pseudo_gt", "gt", "evidence")},
    # per-group OCR (evalkit/metrics/ocr_groups.py): keys <key>_<group> take <key>'s direction (below)
    "ocr_by_level": HIGHER, "word_acc": HIGHER,
    "ocr_group_unlisted": None, "ocr_group_images": None, "ocr_group_images_unannotated": None,
    # predicted text masks (evalkit/metrics/mask.py)
    "mask_iou": HIGHER, "mask_iou_image_mean": HIGHER, "mask_f1": HIGHER, "mask_f1_image_mean": HIGHER,
    "mask_precision": HIGHER, "mask_recall": HIGHER, "mask_images": None,
    # run tallies
    "images": None, "skipped": None,
}


def direction(key: str) -> str | None:
    """``"higher"``, ``"lower"`` or None (a count, a label, or a key this table does not know). A
    per-group key of ``ocr_by_level`` (``<key>_<group>``: ``ocr_a_perception``,
    ``char_hallucination_reasoning``) has its ``<key>``'s direction."""
    if key in DIRECTIONS:
        return DIRECTIONS[key]
    base = key.rpartition("_")[0]
    return DIRECTIONS.get(base) if base else None


def arrow(key: str) -> str:
    """"↑" / "↓" for a value with a better direction, "" otherwise."""
    return {HIGHER: "↑", LOWER: "↓"}.get(direction(key), "")


def better_phrase(key: str) -> str:
    """"higher is better" / "lower is better" / "" for axis labels and table headers."""
    d = direction(key)
    return f"{d} is better" if d else ""
