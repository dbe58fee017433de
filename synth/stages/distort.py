"""Stage: text distortion for the text-degraded subsets of the GLYPH-SR corpus (P⁻).

Each placed text patch gets at least one of: character substitution with a visually confusable
glyph (rendered text only: the same font, size, colours and pose drawn again with the new string,
fitted to the old patch), stroke erosion or dilation, a local Gaussian blur, or a smooth random
warp. The operations act on the patch's coverage (alpha) and colour before compositing; the result
is then kept only within ``reach_px`` of the patch's clean glyph mask, so the distorted scene equals
the clean one, byte for byte, everywhere else.
"""
from __future__ import annotations

import cv2
import numpy as np

from synth.recipe import TextDistortConfig
from synth.types import TextPatch

# Visually confusable single characters (one direction each; the table is applied as written).
CONFUSABLE = {
    "O": "0", "0": "O", "o": "0", "D": "O", "Q": "O", "l": "1", "1": "l", "I": "1", "i": "j",
    "j": "i", "S": "5", "5": "S", "s": "5", "B": "8", "8": "B", "Z": "2", "2": "Z", "z": "2",
    "G": "6", "6": "G", "b": "6", "g": "9", "9": "g", "q": "g", "e": "c", "c": "e", "a": "o",
    "n": "h", "h": "n", "u": "v", "v": "u", "U": "V", "V": "U", "E": "F", "F": "E", "P": "R",
    "R": "P", "C": "G", "T": "7", "7": "T", "t": "f", "f": "t", "m": "n", "r": "n", "A": "4",
    "4": "A", "3": "8", "M": "N", "N": "M", "K": "X", "X": "K", "y": "v",
    # CJK pairs that differ by one short stroke or its length
    "己": "已", "已": "己", "未": "末", "末": "未", "土": "士", "士": "土", "日": "曰", "曰": "日",
    "人": "入", "入": "人", "大": "太", "太": "大", "天": "夫", "夫": "天", "王": "玉", "玉": "王",
    "目": "自", "自": "目", "干": "千", "千": "干", "午": "牛", "牛": "午", "免": "兔", "兔": "免",
    "由": "甲", "甲": "由", "刀": "力", "力": "刀", "儿": "几", "几": "儿", "问": "间", "间": "问",
    "今": "令", "令": "今", "体": "休", "休": "体", "木": "本", "本": "木", "白": "百", "百": "白",
}


def _fill_colours(rgb: np.ndarray, alpha: np.ndarray, radius: int) -> np.ndarray:
    """Colours for pixels a dilation adds: the alpha-weighted mean colour of nearby glyph pixels
    (normalised convolution), so new stroke pixels take the stroke's colour, not the backdrop's."""
    k = 2 * radius + 3
    w = cv2.blur(alpha, (k, k))
    num = cv2.blur(rgb.astype(np.float32) * alpha[..., None], (k, k))
    out = rgb.astype(np.float32)
    ok = w > 1e-4
    out[ok] = num[ok] / w[ok][:, None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


class DistortStage:
    def __init__(self, cfg: TextDistortConfig, renderer=None):
        self.cfg = cfg
        self.renderer = renderer  # synth.sources.rendered.TextRenderer, for substitutions
        r = cfg.reach_px
        self.region_kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))

    # -- operations ------------------------------------------------------------------------
    def _substitute(self, p: TextPatch, rng) -> tuple[np.ndarray, np.ndarray, str, dict] | None:
        if self.renderer is None or p.source.get("kind") != "rendered":
            return None
        spots = [i for i, ch in enumerate(p.text) if ch in CONFUSABLE]
        if not spots:
            return None
        n = min(len(spots), int(rng.integers(1, self.cfg.max_substitutions + 1)))
        chosen = sorted(int(i) for i in rng.choice(spots, size=n, replace=False))
        chars = list(p.text)
        for i in chosen:
            chars[i] = CONFUSABLE[chars[i]]
        new_text = "".join(chars)
        q = self.renderer.rerender(p, new_text)
        if q is None:
            return None
        h, w = p.alpha.shape
        alpha = cv2.resize(q.alpha, (w, h), interpolation=cv2.INTER_AREA)
        rgb = cv2.resize(q.rgb, (w, h), interpolation=cv2.INTER_AREA)
        return rgb, alpha, new_text, {"op": "substitute", "positions": chosen,
                                      "from": [p.text[i] for i in chosen], "to": [chars[i] for i in chosen]}

    def _morph(self, rgb, alpha, rng):
        r = int(rng.integers(self.cfg.morph_px[0], self.cfg.morph_px[1] + 1))
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        if rng.random() < 0.5:
            return rgb, cv2.erode(alpha, k), {"op": "erode", "radius_px": r}
        return _fill_colours(rgb, alpha, r), cv2.dilate(alpha, k), {"op": "dilate", "radius_px": r}

    def _blur(self, rgb, alpha, rng):
        sigma = float(rng.uniform(*self.cfg.blur_sigma))
        a = cv2.GaussianBlur(alpha, (0, 0), sigma)
        pre = cv2.GaussianBlur(rgb.astype(np.float32) * alpha[..., None], (0, 0), sigma)
        out = rgb.astype(np.float32)
        ok = a > 1e-4
        out[ok] = pre[ok] / a[ok][:, None]
        return np.clip(np.round(out), 0, 255).astype(np.uint8), a, {"op": "blur", "sigma_px": round(sigma, 4)}

    def _warp(self, rgb, alpha, rng):
        amp = float(rng.uniform(*self.cfg.warp_px))
        h, w = alpha.shape
        cell = max(4, min(h, w) // 2)   # the field varies over about half the text height
        gh, gw = h // cell + 2, w // cell + 2
        field = rng.standard_normal((2, gh, gw)).astype(np.float32)
        dx, dy = (cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in field)
        peak = max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1e-6)
        dx, dy = dx * (amp / peak), dy * (amp / peak)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        mx, my = xs + dx, ys + dy
        a = cv2.remap(alpha, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        c = cv2.remap(rgb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return c, a, {"op": "warp", "amplitude_px": round(amp, 4)}

    # -- one scene -------------------------------------------------------------------------
    def distort(self, p: TextPatch, rng: np.random.Generator) -> tuple[TextPatch, dict]:
        """One patch -> (its distorted patch, {"text_distorted", "ops"})."""
        cfg = self.cfg
        rgb, alpha, text, ops = p.rgb, p.alpha, p.text, []
        if rng.random() < cfg.substitute_prob:
            sub = self._substitute(p, rng)
            if sub is not None:
                rgb, alpha, text, op = sub
                ops.append(op)
        chosen = [f for f, prob in ((self._morph, cfg.morph_prob), (self._blur, cfg.blur_prob),
                                    (self._warp, cfg.warp_prob)) if rng.random() < prob]
        if not ops and not chosen:
            chosen = [(self._morph, self._blur, self._warp)[int(rng.integers(3))]]
        for f in chosen:
            rgb, alpha, op = f(rgb, alpha, rng)
            ops.append(op)
        # keep the distortion within reach of the clean glyphs: elsewhere the clean patch, exactly
        region = cv2.dilate(p.mask, self.region_kernel) > 0
        alpha = np.where(region, np.clip(alpha, 0.0, 1.0), p.alpha).astype(np.float32)
        rgb = np.where(region[..., None], rgb, p.rgb).astype(np.uint8)
        mask = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
        out = TextPatch(rgb=rgb, alpha=alpha, mask=mask, quad=p.quad, text=text, language=p.language,
                        source=p.source)
        return out, {"text_distorted": text, "ops": ops}

    def process(self, placed: list, rng: np.random.Generator) -> tuple[list, list[dict]]:
        """Placed patches [(x, y, patch)] -> (distorted placed patches, one record per patch)."""
        out, records = [], []
        for x, y, p in placed:
            q, rec = self.distort(p, rng)
            out.append((x, y, q))
            records.append(rec)
        return out, records
