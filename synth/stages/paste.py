"""Stage: paste text patches onto an HR background, without overlaps.

Each patch is alpha-composited through its alpha (rendered coverage, or the feathered glyph mask
of a real crop); the merged full-image mask is the union of the glyph masks; every instance keeps
its 4-point polygon in HR pixels, its transcription and its language. Two instances never share a
pixel of their polygons or glyphs (a margin apart), so OCR boxes of different words are disjoint.
"""
from __future__ import annotations

import cv2
import numpy as np

from synth.recipe import TextConfig
from synth.types import Rejected, TextPatch

STAGE = "paste"


def _resize_patch(p: TextPatch, f: float) -> TextPatch:
    h, w = p.rgb.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    alpha = cv2.resize(p.alpha, size, interpolation=cv2.INTER_AREA)
    return TextPatch(rgb=cv2.resize(p.rgb, size, interpolation=cv2.INTER_AREA), alpha=alpha,
                     mask=np.where(alpha >= 0.5, 255, 0).astype(np.uint8) if p.source.get("kind") == "rendered"
                     else np.where(cv2.resize(p.mask, size, interpolation=cv2.INTER_LINEAR) >= 128, 255, 0).astype(np.uint8),
                     quad=(p.quad * np.array([size[0] / w, size[1] / h], np.float32)).astype(np.float32),
                     text=p.text, language=p.language, source={**p.source, "paste_scale": round(f, 4)})


class PasteStage:
    def __init__(self, cfg: TextConfig, hr_size: int, margin: int = 4):
        self.cfg = cfg
        self.hr = hr_size
        self.m = margin
        self.kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))

    def _footprint(self, p: TextPatch) -> np.ndarray:
        """What the patch claims: glyphs and polygon, grown by the margin, on a canvas padded by
        ``margin`` (+1 for the polygon's far edge) on every side so the margin is not clipped."""
        m = self.m
        h, w = p.alpha.shape
        fp = np.zeros((h + 2 * m + 1, w + 2 * m + 1), np.uint8)
        fp[m:m + h, m:m + w] = p.alpha > 0.02
        cv2.fillPoly(fp, [np.round(p.quad + m).astype(np.int32)], 1)
        return cv2.dilate(fp, self.kernel) > 0

    def _clip(self, occ: np.ndarray, fp: np.ndarray, x: int, y: int):
        """The occupancy window under the padded footprint at (x, y), and the matching part of it."""
        y0, x0 = y - self.m, x - self.m
        ys, xs = max(0, -y0), max(0, -x0)
        y1, x1 = min(occ.shape[0], y0 + fp.shape[0]), min(occ.shape[1], x0 + fp.shape[1])
        return occ[y0 + ys:y1, x0 + xs:x1], fp[ys:ys + y1 - y0 - ys, xs:xs + x1 - x0 - xs]

    def process(self, bg: np.ndarray, patches: list[TextPatch], rng: np.random.Generator):
        """-> (hr RGB uint8, mask uint8 {0,255}, instances, n_skipped). Raises Rejected when no
        patch fits."""
        placed, instances, skipped = self.place(patches, rng)
        hr, mask = composite(bg, placed)
        return hr, mask, instances, skipped

    def place(self, patches: list[TextPatch], rng: np.random.Generator):
        """Choose where each patch goes. -> (placed [(x, y, patch)], instances, n_skipped);
        ``placed`` is what :func:`composite` draws, so variants of the same patches (distorted
        text, say) can be drawn at the same places. Raises Rejected when no patch fits."""
        occ = np.zeros((self.hr, self.hr), bool)
        placed, instances, skipped = [], [], 0
        limit = self.cfg.max_fraction * self.hr
        for p in patches:
            h, w = p.rgb.shape[:2]
            if max(h, w) > limit:
                p = _resize_patch(p, limit / max(h, w))
                h, w = p.rgb.shape[:2]
            fp = self._footprint(p)
            spot = None
            # keep the patch and its polygon (a rotated box may poke past the patch) on the canvas
            qx0, qy0 = np.minimum(p.quad.min(0), 0)
            qx1, qy1 = np.maximum(p.quad.max(0), (w, h))
            xlo, ylo = int(np.ceil(-qx0)), int(np.ceil(-qy0))
            xhi, yhi = int(np.floor(self.hr - qx1)), int(np.floor(self.hr - qy1))
            if xhi < xlo or yhi < ylo:
                skipped += 1
                continue
            for _ in range(self.cfg.place_tries):
                y = int(rng.integers(ylo, yhi + 1))
                x = int(rng.integers(xlo, xhi + 1))
                region, claim = self._clip(occ, fp, x, y)
                if not (region & claim).any():
                    spot = (x, y)
                    break
            if spot is None:
                skipped += 1
                continue
            x, y = spot
            region, claim = self._clip(occ, fp, x, y)
            region |= claim
            placed.append((x, y, p))
            quad = p.quad + np.array([x, y], np.float32)
            instances.append({"text": p.text, "language": p.language,
                              "polygon": [[round(float(u), 2), round(float(v), 2)] for u, v in quad],
                              "source": p.source})
        if not instances:
            raise Rejected(STAGE, "no-room", f"none of {len(patches)} patches fit")
        return placed, instances, skipped


def composite(bg: np.ndarray, placed: list[tuple[int, int, TextPatch]]) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite placed patches onto ``bg`` -> (RGB uint8, glyph mask uint8 {0,255}).
    Pixels no patch's alpha touches keep the background's exact values."""
    out = bg.astype(np.float32)
    mask = np.zeros(bg.shape[:2], np.uint8)
    for x, y, p in placed:
        h, w = p.rgb.shape[:2]
        a = p.alpha[:, :, None]
        out[y:y + h, x:x + w] = out[y:y + h, x:x + w] * (1.0 - a) + p.rgb.astype(np.float32) * a
        np.maximum(mask[y:y + h, x:x + w], p.mask, out=mask[y:y + h, x:x + w])
    hr = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return hr, mask
