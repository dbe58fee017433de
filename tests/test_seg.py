"""Text segmenters on rendered words whose exact glyph mask is known (alpha > 127), offline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.registry import UnknownNameError
from models.seg import TextSegmenter, create_segmenter, list_segmenters
from models.weights import WeightsMissingError

skdata = pytest.importorskip("skimage.data")
mpl = pytest.importorskip("matplotlib")

FONT = Path(mpl.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
FONT_BOLD = FONT.with_name("DejaVuSans-Bold.ttf")


def render_word(text: str, size: int, bg, fg, font: Path = FONT, margin: float = 0.35):
    """A word crop on a flat colour or a (resized) photo, and its exact glyph mask (alpha > 127)."""
    f = ImageFont.truetype(str(font), size)
    l, t, r, b = f.getbbox(text)
    m = int(size * margin)
    w, h = r - l + 2 * m, b - t + 2 * m
    alpha = Image.new("L", (w, h), 0)
    ImageDraw.Draw(alpha).text((m - l, m - t), text, font=f, fill=255)
    a = np.asarray(alpha)
    canvas = np.asarray(Image.fromarray(bg).resize((w, h), Image.BICUBIC)) \
        if isinstance(bg, np.ndarray) else np.full((h, w, 3), bg, np.uint8)
    af = a[..., None].astype(np.float32) / 255.0
    img = (canvas * (1 - af) + np.float32(fg) * af).round().astype(np.uint8)
    return img, a > 127


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return float((pred & gt).sum() / max(1, (pred | gt).sum()))


@pytest.fixture(scope="module")
def seg():
    return create_segmenter("ppocr-db-glyph", num_threads=2)


def gray3(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=-1)


# name, text, size, background, foreground, font. Measured IoUs (rapidocr-ppocrv4) in comments.
CASES = [
    ("dark-on-light", "Segment", 48, (250, 250, 245), (20, 20, 30), FONT),           # 0.99
    ("light-on-dark", "Segment", 48, (15, 20, 40), (240, 240, 230), FONT),           # 0.98
    ("dark-on-light-small", "hello", 24, (255, 255, 255), (0, 0, 0), FONT),          # 0.99
    ("light-on-dark-small", "World", 24, (0, 0, 0), (255, 255, 255), FONT),          # 0.97
    ("dots-and-punct", "jiffy iguana!", 40, (255, 255, 255), (0, 0, 0), FONT),       # 0.99
    ("low-contrast", "Subtle", 40, (150, 150, 150), (90, 90, 90), FONT),             # 1.00
    ("colour-bold", "Stop", 70, (200, 200, 200), (200, 20, 20), FONT_BOLD),          # 0.96
    ("tall-crop", "Big", 100, (240, 240, 255), (10, 10, 80), FONT),                  # 0.99
    ("yellow-on-coffee", "Coffee", 40, "coffee", (255, 230, 0), FONT),              # 0.96
    ("white-on-chelsea", "Kitten", 56, "chelsea", (255, 255, 255), FONT),           # 0.97
    ("black-on-chelsea", "Kitten", 56, "chelsea", (0, 0, 0), FONT),                 # 0.68
    ("black-on-gravel", "Gravel", 40, "gravel", (0, 0, 0), FONT),                   # 0.87
    ("blue-on-astronaut", "Astronaut", 36, "astronaut", (30, 60, 250), FONT),       # 0.81
    ("white-on-rocket", "Launch 2024", 32, "rocket", (250, 250, 250), FONT),        # 0.89
]
PHOTOS = {
    "coffee": lambda: skdata.coffee()[50:150, 100:400],
    "chelsea": lambda: skdata.chelsea()[100:200, 50:400],
    "gravel": lambda: gray3(skdata.gravel())[:120, :400],
    "astronaut": lambda: skdata.astronaut()[300:420, 100:500],
    "rocket": lambda: skdata.rocket()[200:300, 100:500],
}


@pytest.mark.parametrize("name, text, size, bg, fg, font", CASES, ids=[c[0] for c in CASES])
def test_glyph_mask_iou_with_exact_mask(seg, name, text, size, bg, fg, font):
    bg = PHOTOS[bg]() if isinstance(bg, str) else bg
    img, gt = render_word(text, size, bg, fg, font)
    mask = seg.segment(img)
    assert mask.shape == img.shape[:2] and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    score = iou(mask == 255, gt)
    print(f"{name}: IoU {score:.3f}")
    assert score >= 0.5, f"{name}: IoU {score:.3f}"


def test_scene_with_both_polarities(seg):
    """Two lines of opposite polarity in one image: polarity is decided per text region."""
    top, gt_top = render_word("Dark words", 40, (245, 245, 245), (10, 10, 10))
    bottom, gt_bottom = render_word("Light words", 40, (20, 30, 60), (250, 250, 250))
    w = max(top.shape[1], bottom.shape[1])
    pad = lambda a, v: np.pad(a, ((0, 0), (0, w - a.shape[1])) + ((0, 0),) * (a.ndim - 2),
                              constant_values=v)
    img = np.concatenate([pad(top, 245), pad(bottom, 20)])
    gt = np.concatenate([pad(gt_top, False), pad(gt_bottom, False)])
    assert iou(seg.segment(img) == 255, gt) >= 0.8


def test_scanned_page_mask_is_dark_ink(seg):
    page = skdata.page()
    mask = seg.segment(gray3(page)) == 255
    assert 0.01 < mask.mean() < 0.2
    assert (page[mask] < 100).mean() > 0.9  # what is marked is ink


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_photos_without_text_give_empty_masks(seg, name):
    assert (seg.segment(getattr(skdata, name)()) == 255).mean() < 0.002


def test_line_mask_covers_the_word(seg):
    img, gt = render_word("Region", 48, (255, 255, 255), (0, 0, 0))
    lines = seg.line_mask(img) == 255
    assert lines[gt].mean() > 0.95 and lines.mean() < 0.9


def test_accepts_a_built_engine_and_validates_input():
    from models.ocr import create_ocr

    s = create_segmenter("ppocr-db-glyph", engine=create_ocr("rapidocr-ppocrv6", num_threads=2))
    assert isinstance(s, TextSegmenter) and s.ocr.name == "rapidocr-ppocrv6"
    img, gt = render_word("Engine", 40, (255, 255, 255), (0, 0, 0))
    assert iou(s.segment(img) == 255, gt) >= 0.5
    for bad in (np.zeros((20, 20), np.uint8), np.zeros((20, 20, 3), np.float64)):
        with pytest.raises(ValueError, match="HxWx3 uint8"):
            s.segment(bad)
    assert s.segment(np.full((40, 120, 3), 128, np.uint8)).max() == 0  # flat: no text


def test_registry():
    assert list_segmenters() == ["hi-sam", "hi-sam-tiny", "ppocr-db-glyph", "sam-ts", "sam-ts-tiny"]
    with pytest.raises(UnknownNameError, match="did you mean"):
        create_segmenter("ppocr-db-glyf")


@pytest.mark.parametrize("name, kw, filename", [
    ("hi-sam", {}, "hi_sam_l.pth"),
    ("hi-sam", {"model_type": "vit_b"}, "hi_sam_b.pth"),
    ("sam-ts", {}, "sam_tss_l_hiertext.pth"),
    ("sam-ts", {"model_type": "vit_h", "dataset": "textseg"}, "sam_tss_h_textseg.pth"),
])
def test_sam_slots_raise_weights_missing(isolated_weights, name, kw, filename):
    with pytest.raises(WeightsMissingError) as e:
        create_segmenter(name, **kw)
    msg = str(e.value)
    assert filename in msg and str(isolated_weights) in msg
    assert "GoGiants1/Hi-SAM" in msg and "ymy-k/Hi-SAM" in msg and "huggingface-cli download" in msg


@pytest.mark.parametrize("name, files", [
    ("hi-sam", ["hi_sam_l.pth", "sam_vit_l_0b3195.pth"]),
    ("sam-ts", ["sam_tss_l_hiertext.pth", "sam_vit_l_0b3195.pth"]),
])
def test_sam_models_with_unreadable_weights_name_the_file(isolated_weights, name, files):
    from models.sr.checkpoint import CheckpointError

    isolated_weights.mkdir()
    with pytest.raises(WeightsMissingError, match="sam_vit_l_0b3195.pth"):
        create_segmenter(name, weights=_touch(isolated_weights / files[0]))  # encoder still missing
    _touch(isolated_weights / files[1])
    with pytest.raises(CheckpointError, match="cannot read"):  # empty placeholder files
        create_segmenter(name)


def test_sam_slots_reject_bad_options(isolated_weights):
    with pytest.raises(ValueError, match="model_type"):
        create_segmenter("hi-sam", model_type="vit_x")
    with pytest.raises(ValueError, match="dataset"):
        create_segmenter("sam-ts", dataset="icdar")


def _touch(p: Path) -> Path:
    p.write_bytes(b"")
    return p
