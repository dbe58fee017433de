"""Rendered text source: exact masks, quads, glyph coverage, determinism, and a real OCR read-back."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from synth.sources import (
    FontNotFoundError,
    RenderConfig,
    TextRenderer,
    discover_fonts,
    fonts_for,
    sample_text,
    vocabulary,
)
from synth.sources.words import PhraseConfig, is_cjk
from synth.types import TextPatch


@pytest.fixture(scope="module")
def fonts_by_name():
    return {f.name: f for f in discover_fonts()}


def _patches(cfg: RenderConfig, n: int, seed: int) -> list[TextPatch]:
    r = TextRenderer(cfg)
    rng = np.random.default_rng(seed)
    return [r.sample(rng) for _ in range(n)]


def _check_patch(p: TextPatch, fonts_by_name) -> None:
    h, w = p.alpha.shape
    assert p.rgb.shape == (h, w, 3) and p.rgb.dtype == np.uint8
    assert p.alpha.dtype == np.float32 and p.mask.dtype == np.uint8
    assert 0.0 <= p.alpha.min() and p.alpha.max() <= 1.0
    np.testing.assert_array_equal(
        p.mask, np.where(p.alpha >= 0.5, 255, 0).astype(np.uint8)
    )
    assert p.mask.any(), p.text

    # quad: a clockwise rectangle whose first edge runs along the reading direction
    q = p.quad.astype(np.float64)
    x, y = q[:, 0], q[:, 1]
    assert np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y) > 0, (
        "quad not clockwise"
    )
    a = math.radians(p.source["rotation_deg"])
    e0 = q[1] - q[0]
    assert np.dot(e0 / np.linalg.norm(e0), [math.cos(a), -math.sin(a)]) > math.cos(
        math.radians(45)
    )
    # the quad is convex, so containing the mask's hull means containing every mask pixel
    hull = cv2.convexHull(cv2.findNonZero(p.mask)).reshape(-1, 2)
    poly = p.quad.reshape(-1, 1, 2)
    for px, py in hull:
        assert cv2.pointPolygonTest(poly, (float(px), float(py)), True) >= 0, (
            p.text,
            p.source,
        )

    font = fonts_by_name[p.source["font"]]
    missing = [c for c in p.text if not c.isspace() and ord(c) not in font.codepoints]
    assert not missing, f"{font.name} lacks {missing} for {p.text!r}"
    if p.language == "zh":
        assert font.is_cjk and any(is_cjk(c) for c in p.text), (p.text, font.name)
    json.loads(json.dumps(p.source))


def test_default_patches_are_exact(fonts_by_name):
    patches = _patches(RenderConfig(), 200, seed=0)
    langs = {p.language for p in patches}
    assert langs == {"en", "zh"}
    for p in patches:
        _check_patch(p, fonts_by_name)
    assert any(p.source["outline_px"] for p in patches)
    assert any(p.source["curvature"] for p in patches) and any(
        p.source["rotation_deg"] for p in patches
    )


def test_warped_patches_are_exact(fonts_by_name):
    """Every sample rotated and bent, with outlines: the remap / minAreaRect path."""
    cfg = RenderConfig(rotation_zero_prob=0.0, curvature_prob=1.0, outline_prob=1.0)
    for p in _patches(cfg, 60, seed=1):
        assert p.source["curvature"] != 0.0 and p.source["outline_rgb"] is not None
        _check_patch(p, fonts_by_name)


def test_outline_contrast():
    cfg = RenderConfig(outline_prob=1.0, min_contrast=0.4)
    w = np.array([0.2126, 0.7152, 0.0722])
    for p in _patches(cfg, 40, seed=2):
        f, o = np.array(p.source["fill_rgb"]), np.array(p.source["outline_rgb"])
        assert abs(f @ w - o @ w) / 255 >= 0.4 - 1e-9


def test_deterministic():
    cfg = RenderConfig()
    a, b = _patches(cfg, 30, seed=7), _patches(cfg, 30, seed=7)
    for p, q in zip(a, b):
        assert p.text == q.text and p.language == q.language and p.source == q.source
        for name in ("rgb", "alpha", "mask", "quad"):
            np.testing.assert_array_equal(getattr(p, name), getattr(q, name))
    assert [p.text for p in _patches(cfg, 30, seed=8)] != [p.text for p in a]


def test_setup_idempotent_and_sources_json():
    r = TextRenderer()
    r.setup()
    fonts = r.fonts
    r.setup()
    assert r.fonts is fonts
    p = r.sample(np.random.default_rng(3))
    src = json.loads(json.dumps(p.source))
    assert src == p.source
    assert {
        "font",
        "font_size_px",
        "fill_rgb",
        "outline_rgb",
        "outline_px",
        "rotation_deg",
        "curvature",
    } <= set(src)


def test_fonts_found_and_coverage_filter():
    fonts = discover_fonts()
    assert any(f.family.startswith("DejaVu") for f in fonts)
    cjk = [f for f in fonts if f.is_cjk]
    assert cjk, "no CJK font found (pip install paperang-p2-fonts-cjk)"
    latin_only = [f for f in fonts if not f.is_cjk]
    assert fonts_for("中文字", latin_only) == []
    assert set(fonts_for("中文字", fonts)) == set(cjk)
    assert fonts_for("Hello $12.99", fonts)
    # a code point no font maps (private use area) excludes every font
    assert fonts_for("A\ue000", fonts) == []
    assert all("lastresort" not in f.name.lower() for f in fonts)


def test_missing_font_path_is_named(tmp_path):
    missing = tmp_path / "NoSuchFont.ttf"
    with pytest.raises(FontNotFoundError, match="NoSuchFont.ttf"):
        TextRenderer(RenderConfig(fonts=(str(missing),))).setup()


def test_explicit_font_without_cjk_rejects_zh():
    latin = next(
        f for f in discover_fonts() if f.family == "DejaVu Sans" and not f.is_cjk
    )
    with pytest.raises(FontNotFoundError, match="zh"):
        TextRenderer(RenderConfig(fonts=(latin.path,))).setup()
    r = TextRenderer(RenderConfig(fonts=(latin.path,), languages={"en": 1.0}))
    rng = np.random.default_rng(0)
    assert {r.sample(rng).source["font"] for _ in range(10)} == {latin.name}


def test_config_validation():
    with pytest.raises(ValueError, match="unsupported"):
        RenderConfig(languages={"xx": 1.0})
    with pytest.raises(ValueError, match="font_size_px"):
        RenderConfig(font_size_px=(50, 10))
    assert RenderConfig(words=[1, 2]).words == (1, 2)


def test_words():
    en, zh = vocabulary("en", 5000), vocabulary("zh", 5000)
    assert len(en) > 4000 and len(zh) > 4000
    assert all(w.isascii() and w.isprintable() for w in en)
    assert all(all(is_cjk(c) for c in w) for w in zh)
    rng = np.random.default_rng(0)
    cfg = PhraseConfig(digit_prob=0.5, punct_prob=0.5)
    en_s = [sample_text(rng, "en", cfg) for _ in range(300)]
    zh_s = [sample_text(rng, "zh", cfg) for _ in range(300)]
    assert all(1 <= len(s.split()) <= 4 and s.isprintable() for s in en_s)
    assert any(s.isupper() for s in en_s) and any(s.islower() for s in en_s)
    assert any(any(c.isdigit() for c in s) for s in en_s)
    assert any(c in s for s in en_s for c in "-'&.!:,")
    assert all(" " not in s and any(is_cjk(c) for c in s) for s in zh_s)
    plain = [
        sample_text(rng, "zh", PhraseConfig(digit_prob=0, punct_prob=0))
        for _ in range(300)
    ]
    lengths = np.array([len(s) for s in plain])
    assert lengths.min() >= 2 and np.mean((lengths >= 2) & (lengths <= 8)) > 0.9


# -- real OCR reads what was rendered ---------------------------------------------------------------


def _similarity(pred: str, gt: str) -> float:
    """1 - Levenshtein(pred, gt) / max(len), case-insensitive, spaces ignored (PP-OCR drops them)."""
    a, b = pred.lower().replace(" ", ""), gt.lower().replace(" ", "")
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


@pytest.fixture(scope="module")
def ocr():
    rapidocr = pytest.importorskip("rapidocr_onnxruntime")
    return rapidocr.RapidOCR()


def _read_rate(ocr, language: str, n: int, seed: int) -> tuple[float, list[float]]:
    cfg = RenderConfig(
        languages={language: 1.0}, rotation_zero_prob=1.0, curvature_prob=0.0
    )
    sims = []
    for p in _patches(cfg, n, seed):
        a = p.alpha[..., None]
        img = (p.rgb * a + 255.0 * (1.0 - a)).round().astype(np.uint8)  # on white
        img = np.pad(img, ((8, 8), (8, 8), (0, 0)), constant_values=255)
        # one text line per patch: recognition only (the detector costs ~1 s an image on CPU)
        res, _ = ocr(
            np.ascontiguousarray(img[..., ::-1]),
            use_det=False,
            use_cls=False,
            use_rec=True,
        )
        sims.append(_similarity(res[0][0] if res else "", p.text))
    return float(np.mean(np.array(sims) >= 0.8)), sims


def test_ocr_reads_english(ocr):
    rate, sims = _read_rate(ocr, "en", 20, seed=11)
    print(f"en: {rate:.0%} of 20 read with similarity >= 0.8, mean {np.mean(sims):.3f}")
    assert rate >= 0.8, sims


def test_ocr_reads_chinese(ocr):
    rate, sims = _read_rate(ocr, "zh", 10, seed=12)
    print(f"zh: {rate:.0%} of 10 read with similarity >= 0.8, mean {np.mean(sims):.3f}")
    assert np.mean(np.array(sims) >= 0.6) >= 0.6, sims
