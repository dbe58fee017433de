"""Verbalised OCR prompts: text lines -> "HSBC is displayed at the center; OPEN is displayed at the top left."

GLYPH-SR conditions its Text-ControlNet on OCR strings with verbalised positions ("HSBC is
displayed at the center", several instances joined in reading order) plus a scene caption. The
glyph corpus (``synth.stages.guidance``) writes these prompts and ``glyph-sr`` builds them at
inference, so both use this one definition:

- a position is the cell of a 3×3 grid over the image that holds the line's centroid (mean of its
  polygon's corners), named ``top left``, ``top``, ``top right``, ``left``, ``center``, …;
- reading order is grid row first, then the centroid's x, then its y;
- phrases are ``"<text> is displayed at the <position>"`` joined with "; " and closed with ".".
"""
from __future__ import annotations

import numpy as np

_ROWS = ("top", "", "bottom")
_COLS = ("left", "", "right")


def grid_position(polygon, width: int, height: int) -> tuple[str, int, int]:
    """The 3×3 grid cell of a polygon's centroid -> (name, row, col). Centroids on a cell border
    go to the later cell; the right/bottom image edge belongs to the last cell."""
    pts = np.asarray(polygon, np.float64).reshape(-1, 2)
    cx, cy = pts.mean(0)
    col = min(2, max(0, int(cx * 3 // width)))
    row = min(2, max(0, int(cy * 3 // height)))
    name = " ".join(w for w in (_ROWS[row], _COLS[col]) if w) or "center"
    return name, row, col


def describe(items: list[dict], width: int, height: int) -> tuple[list[dict], str]:
    """Items with "text" and "polygon" (image pixels) -> (items in reading order, each with its
    "position", and the verbalised prompt; "" when there is no text)."""
    rows = []
    for it in items:
        name, row, _ = grid_position(it["polygon"], width, height)
        c = np.asarray(it["polygon"], np.float64).reshape(-1, 2).mean(0)
        rows.append(((row, float(c[0]), float(c[1])), {**it, "position": name}))
    ordered = [it for _, it in sorted(rows, key=lambda r: r[0])]
    phrases = [f"{it['text']} is displayed at the {it['position']}" for it in ordered if it["text"].strip()]
    return ordered, ("; ".join(phrases) + "." if phrases else "")


def read_prompt(ocr, image: np.ndarray, min_score: float) -> dict:
    """OCR of an RGB uint8 image -> {"lines": [every line, reading order, with "text", "score",
    "polygon" and "position"], "prompt": the verbalised prompt of the lines scoring >= min_score}."""
    h, w = image.shape[:2]
    lines = [{"text": ln.text, "score": round(float(ln.score), 4),
              "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(ln.polygon).reshape(-1, 2)]}
             for ln in ocr.readtext(image)]
    ordered, _ = describe(lines, w, h)
    _, prompt = describe([ln for ln in ordered if ln["score"] >= min_score], w, h)
    return {"lines": ordered, "prompt": prompt}
