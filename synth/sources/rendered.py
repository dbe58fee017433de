"""Rendered text patches: a sampled phrase drawn with a real font, optional outline, rotation and arc.

The coverage (how much of each pixel the glyphs — fill and outline — cover) comes straight from
FreeType through PIL, so ``alpha`` and ``mask`` are exact, not estimated. Warps are applied to the
coverage maps and the colours are composed afterwards, which is the same as warping premultiplied
colour: no dark or light fringes at the glyph edges.

Conventions: pixel centres sit at integer coordinates (OpenCV's), quads are (x, y) float32;
``rotation_deg > 0`` turns the text counter-clockwise as displayed (``cv2.getRotationMatrix2D``'s
sign); ``curvature`` bends the line along a circular arc through its two ends and is the tangent of
the arc's angle at those ends (0.25 ≈ 14°, sagitta ≈ 6% of the ink width) — scale-free, and it bounds
the shear the column-wise shift gives the outermost glyphs; > 0 bends the middle of the line
downwards (a smile), < 0 upwards.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from synth.sources.fonts import (
    Font,
    FontNotFoundError,
    font_search_locations,
    fonts_for,
    resolve_fonts,
)
from synth.sources.words import SUPPORTED_LANGUAGES, sample_text, vocabulary
from synth.types import Rejected, TextPatch

# Characters a font must cover before a language counts as renderable at all.
_LANGUAGE_PROBES = {"en": "AaZz09", "zh": "的是中国人我们有大年"}
_INSTALL_HINT = {
    "en": "`pip install matplotlib` (ships DejaVu) or `apt-get install fonts-dejavu-core`",
    "zh": "`pip install paperang-p2-fonts-cjk` or `apt-get install fonts-noto-cjk` (or fonts-wqy-microhei)",
}


def _range(
    name: str, v: Any, lo: float | None = None, hi: float | None = None
) -> tuple:
    t = tuple(v)
    if len(t) != 2 or t[0] > t[1]:
        raise ValueError(
            f"RenderConfig.{name} must be a (low, high) pair with low <= high, got {v!r}"
        )
    if (lo is not None and t[0] < lo) or (hi is not None and t[1] > hi):
        raise ValueError(f"RenderConfig.{name} must lie within [{lo}, {hi}], got {v!r}")
    return t


@dataclass(frozen=True)
class RenderConfig:
    """How rendered text is sampled. Ranges are inclusive (low, high) pairs sampled uniformly.

    languages: language -> sampling weight (supported: "en", "zh").
    vocab_size: top-N wordfreq words per language; words: words per phrase.
    font_size_px: font size in pixels (integer).
    outline_prob: chance of an outline; outline_width: outline width as a fraction of the font size
        (at least 1 px).
    rotation_deg: rotation range; rotation_zero_prob: chance the rotation is exactly 0.
    curvature: |tan| of the bent baseline's angle at its ends (see the module docstring);
        curvature_prob: chance of any curvature (the sign is random).
    digit_prob / punct_prob: chance a phrase gets a number / punctuation (see ``words.sample_text``).
    min_contrast: minimum |luma(fill) - luma(outline)| (Rec.709 weights on 0..1 sRGB values).
    margin_px: transparent margin kept around the ink after the tight crop.
    fonts: font files to use instead of the discovered ones (.ttc: every face).
    max_attempts: phrases tried per sample before giving up (a phrase no font covers is redrawn).
    """

    languages: dict[str, float] = field(default_factory=lambda: {"en": 0.7, "zh": 0.3})
    vocab_size: int = 20000
    words: tuple[int, int] = (1, 3)
    font_size_px: tuple[int, int] = (24, 96)
    outline_prob: float = 0.3
    outline_width: tuple[float, float] = (0.03, 0.10)
    rotation_deg: tuple[float, float] = (-15.0, 15.0)
    rotation_zero_prob: float = 0.5
    curvature: tuple[float, float] = (0.0, 0.25)
    curvature_prob: float = 0.2
    digit_prob: float = 0.15
    punct_prob: float = 0.15
    min_contrast: float = 0.35
    margin_px: int = 4
    fonts: tuple[str, ...] | None = None
    max_attempts: int = 20

    def __post_init__(self) -> None:
        # YAML gives lists; keep tuples so the config stays immutable and comparable.
        set_ = functools.partial(object.__setattr__, self)
        langs = dict(self.languages)
        unknown = sorted(set(langs) - set(SUPPORTED_LANGUAGES))
        if unknown:
            raise ValueError(
                f"RenderConfig.languages: unsupported {unknown}; expected keys from {SUPPORTED_LANGUAGES}"
            )
        if any(w < 0 for w in langs.values()) or sum(langs.values()) <= 0:
            raise ValueError(
                f"RenderConfig.languages weights must be >= 0 with a positive sum, got {langs}"
            )
        set_("languages", langs)
        set_("words", _range("words", self.words, 1))
        set_("font_size_px", _range("font_size_px", self.font_size_px, 4))
        set_("outline_width", _range("outline_width", self.outline_width, 0.0, 1.0))
        set_("rotation_deg", _range("rotation_deg", self.rotation_deg, -180.0, 180.0))
        set_("curvature", _range("curvature", self.curvature, 0.0, 1.0))
        for name in (
            "outline_prob",
            "rotation_zero_prob",
            "curvature_prob",
            "digit_prob",
            "punct_prob",
            "min_contrast",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"RenderConfig.{name} must be in [0, 1], got {v!r}")
        if self.vocab_size < 1 or self.margin_px < 0 or self.max_attempts < 1:
            raise ValueError(
                "RenderConfig: vocab_size and max_attempts must be >= 1 and margin_px >= 0"
            )
        if self.fonts is not None:
            set_("fonts", tuple(str(p) for p in self.fonts))


@functools.lru_cache(maxsize=4096)
def _pil_font(path: str, index: int, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: identical output whether or not libraqm is installed (reproducible across hosts).
    return ImageFont.truetype(
        path, size, index=index, layout_engine=ImageFont.Layout.BASIC
    )


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.2126, 0.7152, 0.0722])) / 255.0


def _order_quad(pts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Corners of a rectangle, clockwise (in image coordinates) starting at the reading-direction
    top-left: the first edge is the one most aligned with ``direction``."""
    pts = np.asarray(pts, np.float64)
    x, y = pts[:, 0], pts[:, 1]
    # shoelace area: positive for clockwise order in y-down image coordinates
    if float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) < 0:
        pts = pts[::-1]
    edges = np.roll(pts, -1, axis=0) - pts
    score = edges @ direction / np.maximum(np.linalg.norm(edges, axis=1), 1e-9)
    return np.roll(pts, -int(np.argmax(score)), axis=0).astype(np.float32)


def _ink_box(cov: np.ndarray) -> tuple[int, int, int, int] | None:
    """(row_min, row_max, col_min, col_max) of pixels with coverage > 0, inclusive; None if empty."""
    rows = np.flatnonzero(cov.max(axis=1) > 0)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(cov.max(axis=0) > 0)
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


class TextRenderer:
    """Samples :class:`~synth.types.TextPatch` es of rendered text.

    ``setup()`` loads the fonts (cmaps) and vocabularies once; ``sample(rng)`` draws everything from
    ``rng`` only, so the same generator state gives identical arrays and ``source`` dict (on the same
    font files).
    """

    def __init__(self, cfg: RenderConfig | None = None) -> None:
        self.cfg = cfg or RenderConfig()
        self._fonts: tuple[Font, ...] | None = None
        self._langs: tuple[str, ...] = ()
        self._lang_p: np.ndarray | None = None

    @property
    def fonts(self) -> tuple[Font, ...]:
        self.setup()
        assert self._fonts is not None
        return self._fonts

    def setup(self) -> None:
        """Load fonts and vocabularies; idempotent. Raises FontNotFoundError when a requested font
        file is missing or no font can render a requested language."""
        if self._fonts is not None:
            return
        cfg = self.cfg
        fonts = resolve_fonts(cfg.fonts)
        langs = tuple(k for k, w in cfg.languages.items() if w > 0)
        for lang in langs:
            if not fonts_for(_LANGUAGE_PROBES[lang], fonts):
                where = (
                    ", ".join(cfg.fonts)
                    if cfg.fonts
                    else "; ".join(font_search_locations())
                )
                raise FontNotFoundError(
                    f"no font can render {lang!r} text (looked in: {where}); install {_INSTALL_HINT[lang]}, "
                    f"or drop {lang!r} from RenderConfig.languages"
                )
            vocabulary(lang, cfg.vocab_size)
        w = np.array([cfg.languages[k] for k in langs], np.float64)
        self._langs, self._lang_p = langs, w / w.sum()
        self._fonts = fonts

    # -- sampling ---------------------------------------------------------------------------------

    def _colours(
        self, rng: np.random.Generator, outline: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        fill = rng.integers(0, 256, 3)
        if not outline:
            return fill, None
        lf = _luma(fill)
        for _ in range(8):
            other = rng.integers(0, 256, 3)
            if abs(_luma(other) - lf) >= self.cfg.min_contrast:
                return fill, other
        # Black or white, whichever is farther; always reaches 0.5 of contrast.
        return fill, (np.zeros(3, np.int64) if lf >= 0.5 else np.full(3, 255, np.int64))

    def sample(self, rng: np.random.Generator) -> TextPatch:
        """One rendered text patch. Raises ``Rejected("render", ...)`` if ``max_attempts`` phrases
        in a row could not be rendered (no covering font, or no pixel reached coverage 0.5)."""
        self.setup()
        cfg = self.cfg
        assert self._lang_p is not None
        lang = self._langs[int(rng.choice(len(self._langs), p=self._lang_p))]
        last = ""
        for attempt in range(1, cfg.max_attempts + 1):
            text = sample_text(rng, lang, cfg)
            last = text
            candidates = fonts_for(text, self.fonts)
            if not candidates:
                continue
            font = candidates[int(rng.integers(len(candidates)))]
            patch = self._render(rng, text, lang, font)
            if patch is not None:
                patch.source["attempts"] = attempt
                return patch
        raise Rejected(
            "render",
            "no-renderable-text",
            f"{cfg.max_attempts} attempts, last {last!r} ({lang})",
        )

    def _render(
        self, rng: np.random.Generator, text: str, lang: str, font: Font
    ) -> TextPatch | None:
        cfg = self.cfg
        size = int(rng.integers(cfg.font_size_px[0], cfg.font_size_px[1] + 1))
        outline = bool(rng.random() < cfg.outline_prob)
        stroke = (
            max(1, round(float(rng.uniform(*cfg.outline_width)) * size))
            if outline
            else 0
        )
        fill_rgb, outline_rgb = self._colours(rng, outline)
        angle = (
            0.0
            if rng.random() < cfg.rotation_zero_prob
            else round(float(rng.uniform(*cfg.rotation_deg)), 3)
        )
        curv = 0.0
        if rng.random() < cfg.curvature_prob:
            curv = round(
                float(rng.uniform(*cfg.curvature))
                * (1.0 if rng.random() < 0.5 else -1.0),
                4,
            )

        return self._draw(text, lang, font, size, stroke, fill_rgb, outline_rgb, angle, curv)

    def rerender(self, patch: TextPatch, text: str) -> TextPatch | None:
        """A rendered ``patch`` drawn again with another ``text``: the same font, size, colours,
        outline, rotation and bend (read from ``patch.source``). None when the font has no glyph
        for a character of ``text`` or nothing could be drawn."""
        s = patch.source
        if s.get("kind") != "rendered":
            raise ValueError(f"rerender needs a rendered patch, got source kind {s.get('kind')!r}")
        font = next((f for f in self.fonts if f.name == s["font"]), None)
        if font is None or not font.covers(text):
            return None
        out = self._draw(text, patch.language, font, int(s["font_size_px"]), int(s["outline_px"]),
                         np.array(s["fill_rgb"]), None if s["outline_rgb"] is None else np.array(s["outline_rgb"]),
                         float(s["rotation_deg"]), float(s["curvature"]))
        if out is not None:
            out.source = {**s, **{k: v for k, v in out.source.items() if k not in s}}
        return out

    def _draw(self, text: str, lang: str, font: Font, size: int, stroke: int, fill_rgb: np.ndarray,
              outline_rgb: np.ndarray | None, angle: float, curv: float) -> TextPatch | None:
        cfg = self.cfg
        # 1. coverage in the flat text frame: `full` = fill ∪ outline, `fill` = fill only.
        pil = _pil_font(font.path, font.index, size)
        left, top, right, bottom = pil.getbbox(text, stroke_width=stroke)
        pad = 2
        wh = (right - left + 2 * pad, bottom - top + 2 * pad)
        origin = (pad - left, pad - top)
        img = Image.new("L", wh, 0)
        ImageDraw.Draw(img).text(
            origin, text, font=pil, fill=255, stroke_width=stroke, stroke_fill=255
        )
        full = np.asarray(img, np.float32) * (1.0 / 255.0)
        if stroke:
            img = Image.new("L", wh, 0)
            ImageDraw.Draw(img).text(origin, text, font=pil, fill=255)
            fill = np.minimum(np.asarray(img, np.float32) * (1.0 / 255.0), full)
        else:
            fill = full
        box = _ink_box(full)
        if box is None:
            return None
        r0, r1, c0, c1 = box

        # 2. warp (one interpolation for rotation and arc together) and the text's quad.
        m = cfg.margin_px + 2
        direction = np.array(
            [math.cos(math.radians(angle)), -math.sin(math.radians(angle))]
        )
        if angle == 0.0 and curv == 0.0:
            # pixel centres are integers, so the ink's edges are half a pixel outside them
            quad = np.array(
                [
                    [c0 - 0.5, r0 - 0.5],
                    [c1 + 0.5, r0 - 0.5],
                    [c1 + 0.5, r1 + 0.5],
                    [c0 - 0.5, r1 + 0.5],
                ],
                np.float32,
            )
        else:
            full, fill, quad = self._warp(
                full, fill, (r0, r1, c0, c1), angle, curv, m, direction
            )

        # 3. tight crop with margin.
        box = _ink_box(full)
        if box is None:
            return None
        r0, r1, c0, c1 = box
        mg = cfg.margin_px
        full = np.pad(full, mg)[r0 : r1 + 1 + 2 * mg, c0 : c1 + 1 + 2 * mg]
        fill = np.pad(fill, mg)[r0 : r1 + 1 + 2 * mg, c0 : c1 + 1 + 2 * mg]
        quad = quad - np.array([c0 - mg, r0 - mg], np.float32)

        alpha = np.ascontiguousarray(np.clip(full, 0.0, 1.0), dtype=np.float32)
        mask = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
        if not mask.any():
            return None
        # 4. colour: straight (non-premultiplied) RGB from the coverage of each colour.
        fc = fill_rgb.astype(np.float32)
        if outline_rgb is None:
            rgb = np.broadcast_to(fc.round().astype(np.uint8), (*alpha.shape, 3)).copy()
        else:
            oc = outline_rgb.astype(np.float32)
            t = np.divide(
                np.minimum(fill, alpha), alpha, out=np.ones_like(alpha), where=alpha > 0
            )
            rgb = (oc + (fc - oc) * t[..., None]).round().clip(0, 255).astype(np.uint8)

        source = {
            "kind": "rendered",
            "font": font.name,
            "font_family": font.family,
            "font_style": font.style,
            "font_size_px": size,
            "fill_rgb": [int(v) for v in fill_rgb],
            "outline_rgb": None
            if outline_rgb is None
            else [int(v) for v in outline_rgb],
            "outline_px": int(stroke),
            "rotation_deg": float(angle),
            "curvature": float(curv),
        }
        return TextPatch(
            rgb=rgb,
            alpha=alpha,
            mask=mask,
            quad=quad,
            text=text,
            language=lang,
            source=source,
        )

    @staticmethod
    def _warp(full, fill, box, angle, curv, pad, direction):
        """Rotate (about the ink centre) and/or bend the coverage maps onto a canvas that holds all of
        it; returns (full, fill, quad) in the new canvas's pixels."""
        r0, r1, c0, c1 = box
        cx, cy = (c0 + c1) / 2.0, (r0 + r1) / 2.0
        hw = (c1 - c0 + 1) / 2.0
        # signed sagitta in pixels of the arc whose end tangents make atan(curv) with the chord
        sag = hw * math.tan(math.atan(curv) / 2.0)
        a = math.radians(angle)
        cos, sin = math.cos(a), math.sin(a)

        def dy(x: np.ndarray) -> np.ndarray:
            # circular arc through the ink's left/right edges (dy = 0) with dy = sag at the centre
            if sag == 0.0:
                return np.zeros_like(x)
            rad = (hw * hw + sag * sag) / (2.0 * abs(sag))
            u = np.clip(x - cx, -hw, hw)
            return math.copysign(1.0, sag) * (
                abs(sag) - (rad - np.sqrt(rad * rad - u * u))
            )

        # Bounding box of the bent ink (half-pixel edges + slack for interpolation), then rotated.
        lo, hi = min(0.0, sag), max(0.0, sag)
        corners = np.array(
            [
                [c0 - 1, r0 - 1 + lo],
                [c1 + 1, r0 - 1 + lo],
                [c1 + 1, r1 + 1 + hi],
                [c0 - 1, r1 + 1 + hi],
            ]
        )
        rot = np.array([[cos, sin], [-sin, cos]])  # flat -> displayed, about (cx, cy)
        rc = (corners - [cx, cy]) @ rot.T
        x_min, y_min = np.floor(rc.min(axis=0)) - pad
        x_max, y_max = np.ceil(rc.max(axis=0)) + pad
        w, h = int(x_max - x_min) + 1, int(y_max - y_min) + 1
        # output pixel (X, Y) sits at rot @ (p - c) = (X + x_min, Y + y_min)
        # One channel per call: OpenCV's 1-channel float paths are ~10x faster than its 2-channel ones.
        planes = (full,) if fill is full else (full, fill)
        if sag == 0.0:
            m = np.hstack([rot, (-rot @ [cx, cy] - [x_min, y_min])[:, None]])
            out = [
                cv2.warpAffine(
                    p,
                    m,
                    (w, h),
                    flags=cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
                for p in planes
            ]
            # ink box by pixel edges, plus 0.25 px for OpenCV's 1/32-px fixed-point interpolation
            e = 0.75
            box_pts = np.array(
                [[c0 - e, r0 - e], [c1 + e, r0 - e], [c1 + e, r1 + e], [c0 - e, r1 + e]]
            )
            quad = ((box_pts - [cx, cy]) @ rot.T - [x_min, y_min]).astype(np.float32)
            return out[0], out[-1], quad
        gx = (np.arange(w, dtype=np.float32) + np.float32(x_min))[None, :]
        gy = (np.arange(h, dtype=np.float32) + np.float32(y_min))[:, None]
        # inverse rotation (rot is orthonormal: inverse = transpose) back to the bent flat frame
        fx = cos * gx - sin * gy + cx
        fy = sin * gx + cos * gy + cy
        fy = (fy - dy(fx)).astype(np.float32)
        fx = fx.astype(np.float32)
        out = [
            cv2.remap(
                p,
                fx,
                fy,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )
            for p in planes
        ]
        f_out, fill_out = out[0], out[-1]
        pts = cv2.findNonZero((f_out >= 0.5).view(np.uint8))
        if pts is None:
            return f_out, fill_out, np.zeros((4, 2), np.float32)
        # the hull has the same minimum-area rectangle as all the pixels, and is far fewer points
        (qx, qy), (qw, qh), qa = cv2.minAreaRect(cv2.convexHull(pts))
        # +1: the rectangle through pixel centres, grown to their edges
        pts = cv2.boxPoints(((qx, qy), (qw + 1.0, qh + 1.0), qa))
        return f_out, fill_out, _order_quad(pts, direction)
