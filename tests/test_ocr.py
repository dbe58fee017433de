"""OCR engines on real pixels (rendered DejaVu words, skimage photos and a scanned page), offline."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.ocr import (
    OCRLine,
    create_ocr,
    levenshtein_ratio,
    list_ocr,
    normalize_text,
    text_similarity,
)
from models.registry import UnknownNameError

skdata = pytest.importorskip("skimage.data")
mpl = pytest.importorskip("matplotlib")

FONT = Path(mpl.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
RAPID = list_ocr("rapidocr-*")


def draw_words(canvas: np.ndarray, words: list[tuple[str, int, int, int]],
               fg: tuple[int, int, int]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Draw ``(text, x, y, size)`` words onto a copy of an RGB canvas; returns the image and each
    word's exact ink box ``(x0, y0, x1, y1)`` (from the alpha > 127 mask)."""
    img = canvas.copy()
    boxes = []
    for text, x, y, size in words:
        mask = Image.new("L", (img.shape[1], img.shape[0]), 0)
        ImageDraw.Draw(mask).text((x, y), text, font=ImageFont.truetype(str(FONT), size), fill=255)
        a = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
        img = (img * (1 - a) + np.float32(fg) * a).round().astype(np.uint8)
        ys, xs = np.nonzero(a[..., 0] > 0.5)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return img, boxes


def word_crop(text: str, size: int, bg, fg) -> np.ndarray:
    """A tight-ish word crop (a third of the font size of margin) on a flat colour or photo."""
    font = ImageFont.truetype(str(FONT), size)
    l, t, r, b = font.getbbox(text)
    m = size // 3
    w, h = r - l + 2 * m, b - t + 2 * m
    canvas = np.asarray(Image.fromarray(bg).resize((w, h))) if isinstance(bg, np.ndarray) \
        else np.full((h, w, 3), bg, np.uint8)
    img, _ = draw_words(canvas, [(text, m - l, m - t, size)], fg)
    return img


def rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


@pytest.fixture(scope="module", params=RAPID)
def engine(request):
    return create_ocr(request.param, num_threads=2)


def find(lines: list[OCRLine], text: str) -> OCRLine | None:
    best = max(lines, key=lambda ln: text_similarity(ln.text, text, ignore_space=True), default=None)
    if best is not None and text_similarity(best.text, text, ignore_space=True) >= 0.8:
        return best
    return None


def overlaps(line: OCRLine, box: tuple[int, int, int, int]) -> bool:
    x0, y0, x1, y1 = line.bbox
    ix = min(x1, box[2]) - max(x0, box[0])
    iy = min(y1, box[3]) - max(y0, box[1])
    return ix > 0.5 * (box[2] - box[0]) and iy > 0.5 * (box[3] - box[1])


# -- registry ------------------------------------------------------------------------------------
def test_registry_lists_engines():
    assert set(list_ocr()) == {"rapidocr-ppocrv4", "rapidocr-ppocrv6", "paddleocr", "openocr-mobile"}
    assert RAPID == ["rapidocr-ppocrv4", "rapidocr-ppocrv6"]


def test_unknown_engine_suggests_close_name():
    with pytest.raises(UnknownNameError, match="did you mean rapidocr-ppocrv4"):
        create_ocr("rapidocr-ppocr4")


def test_import_is_light():
    code = ("import sys, models.ocr, models.seg; "
            "print([m for m in ('onnxruntime', 'rapidocr', 'rapidocr_onnxruntime', 'cv2', "
            "'paddleocr') if m in sys.modules])")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_paddleocr_engine_needs_package_or_local_dirs(tmp_path):
    try:
        import paddleocr  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install paddleocr") as e:
            create_ocr("paddleocr", det_model_dir=tmp_path, rec_model_dir=tmp_path)
        assert "local" in str(e.value)
    else:  # installed: an empty dir is not a model dir
        with pytest.raises(FileNotFoundError, match="inference.pdiparams"):
            create_ocr("paddleocr", det_model_dir=tmp_path, rec_model_dir=tmp_path)


@pytest.mark.parametrize("kw", [{"num_threads": 0}, {"det_limit_type": "middle"}])
def test_bad_constructor_arguments(kw):
    with pytest.raises(ValueError):
        create_ocr("rapidocr-ppocrv4", **kw)


# -- engines on pixels ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad, what", [
    (np.zeros((32, 32), np.uint8), r"\(32, 32\)"),
    (np.zeros((32, 32, 3), np.float32), "float32"),
    (np.zeros((32, 32, 4), np.uint8), r"\(32, 32, 4\)"),
    ([[0, 0, 0]], "list"),
])
def test_bad_input_raises_value_error(bad, what):
    eng = create_ocr("rapidocr-ppocrv4")  # validation happens before any session is built
    for call in (eng.readtext, eng.detect_prob, lambda x: eng.recognize([x])):
        with pytest.raises(ValueError, match=what):
            call(bad)


def test_readtext_words_on_plain_and_photo_backgrounds(engine):
    words = [("Hello World", 40, 60, 44), ("TEXT 2024", 40, 200, 56)]
    plain, boxes = draw_words(np.full((512, 512, 3), 245, np.uint8), words, (15, 15, 25))
    photo = np.asarray(Image.fromarray(skdata.chelsea()).resize((512, 512)))
    on_photo, _ = draw_words(photo, words, (255, 255, 255))
    for img in (plain, on_photo):
        lines = engine.readtext(img)
        assert all(isinstance(ln, OCRLine) and ln.polygon.shape == (4, 2)
                   and ln.polygon.dtype == np.float32 and 0 <= ln.score <= 1 for ln in lines)
        for (text, *_), box in zip(words, boxes):
            hit = find(lines, text)
            assert hit is not None, (text, [ln.text for ln in lines])
            assert overlaps(hit, box), (text, hit.bbox, box)


def test_recognize_crops_batch(engine):
    cases = [("Segment", (250, 250, 245), (20, 20, 30)),
             ("Kitten", (15, 20, 40), (240, 240, 230)),
             ("Coffee", skdata.coffee()[40:160, 100:420], (255, 230, 0)),
             ("Launch 2024", skdata.rocket()[200:300, 100:500], (250, 250, 250))]
    crops = [word_crop(text, 40, bg, fg) for text, bg, fg in cases]
    out = engine.recognize(crops)
    assert len(out) == len(cases)
    for (text, *_), (pred, score) in zip(cases, out):
        assert isinstance(pred, str) and 0 <= score <= 1
        assert text_similarity(pred, text, ignore_space=True) >= 0.8, (text, pred)
    assert engine.recognize([]) == []


def test_readtext_scanned_page():
    lines_read = {}
    known = ["Region-based segmentation",
             "Let us first determine markers of the coins and the",
             "background. These markers are pixels that we can label",
             "the markers are found at the two extreme parts of the",
             "histogram of grey values:",
             ">>> markers = np.zeros_like(coins)"]
    page = rgb(skdata.page())
    for name in RAPID:
        lines = create_ocr(name, num_threads=2).readtext(page)
        lines_read[name] = [k for k in known if find(lines, k)]
        assert find(lines, "Region-based segmentation").text.replace(" ", "") == \
            "Region-basedsegmentation"
    # Measured: PP-OCRv4 reads 4 of the 6 lines of this unevenly lit scan, PP-OCRv6-small 3
    # (it garbles the two faint ones); one line of slack for numeric drift across onnxruntime.
    assert len(lines_read["rapidocr-ppocrv4"]) >= 3, lines_read
    assert len(lines_read["rapidocr-ppocrv6"]) >= 2, lines_read


def test_no_text_in_photos(engine):
    for name in ("astronaut", "chelsea", "rocket"):
        assert engine.readtext(getattr(skdata, name)()) == [], name
    # The coffee cup seen from above reads as a single "O"/"8" at some detector scales; no words.
    assert all(len(ln.text.strip()) <= 1 for ln in engine.readtext(skdata.coffee()))


def test_detect_prob_high_on_text_low_elsewhere(engine):
    img, boxes = draw_words(np.full((200, 480, 3), 250, np.uint8), [("probability", 30, 70, 48)],
                            (10, 10, 10))
    prob = engine.detect_prob(img)
    assert prob.shape == img.shape[:2] and prob.dtype == np.float32
    assert 0.0 <= prob.min() and prob.max() <= 1.0
    x0, y0, x1, y1 = boxes[0]
    inside = np.zeros(prob.shape, bool)
    inside[y0:y1, x0:x1] = True
    far = np.ones(prob.shape, bool)
    far[max(0, y0 - 20):y1 + 20, max(0, x0 - 20):x1 + 20] = False
    assert prob[inside].mean() > 0.3
    assert prob[far].max() < 0.1
    # odd sizes and a small crop come back at their own size
    crop = img[60:130, 20:200]
    assert engine.detect_prob(crop).shape == crop.shape[:2]
    assert engine.detect_prob(photo := skdata.astronaut()[:301, :157]).shape == photo.shape[:2]


def test_engine_pickles_without_sessions(engine):
    import pickle

    crop = word_crop("pickle", 40, (255, 255, 255), (0, 0, 0))
    before = engine.recognize([crop])
    clone = pickle.loads(pickle.dumps(engine))
    assert clone.name == engine.name and clone.num_threads == 2
    assert clone.recognize([crop]) == before


def test_ocrline_bbox():
    line = OCRLine(np.array([[1.2, 2], [10.5, 2], [10.5, 7.1], [1.2, 7.1]], np.float32), "a", 0.9)
    assert line.bbox == (1, 2, 11, 8)


# -- text similarity -----------------------------------------------------------------------------
def test_text_similarity_known_values():
    assert text_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert text_similarity("", "") == 1.0
    assert text_similarity("abc", "") == 0.0
    assert text_similarity("", "abc") == 0.0
    assert text_similarity("abc", "abc") == 1.0
    assert text_similarity("Hello", "hello") == pytest.approx(0.8)
    assert text_similarity("Hello", "hello", ignore_case=True) == 1.0
    assert text_similarity("a b c", "abc", ignore_space=True) == 1.0
    assert text_similarity("Hello, world!", "Hello world", ignore_punct=True) == 1.0
    assert text_similarity("你好，世界", "你好世界", ignore_punct=True) == 1.0
    assert text_similarity("ＡＢＣ", "ABC") == 1.0  # NFKC: full-width letters
    assert text_similarity("!!", "", ignore_punct=True) == 1.0
    assert normalize_text(" A,b ", ignore_case=True, ignore_space=True, ignore_punct=True) == "ab"


def test_levenshtein_ratio_is_levenshtein_ratio_by_default():
    """Default = python-Levenshtein's ``ratio`` (indel distance): a same-length wrong word is 0."""
    import Levenshtein

    assert levenshtein_ratio("HOTEL", "XQZJW") == 0.0
    assert levenshtein_ratio("HOTEL", "XQZJW", distance="levenshtein") == 0.5
    assert levenshtein_ratio("kitten", "sitting") == pytest.approx(8 / 13, abs=1e-15)
    assert levenshtein_ratio("abc", "abc") == 1.0
    assert levenshtein_ratio("", "") == 1.0
    assert levenshtein_ratio("abc", "") == 0.0
    rng = np.random.default_rng(0)
    alphabet = list("abcdeHOTEL 0O1l,.你好世界")
    pairs = [("".join(rng.choice(alphabet, rng.integers(0, 12))),
              "".join(rng.choice(alphabet, rng.integers(0, 12)))) for _ in range(500)]
    pairs += [("Region-based", "Regicn-based"), ("segmentation", "segmentaton"), ("H0TEL", "HOTEL")]
    for a, b in pairs:
        assert levenshtein_ratio(a, b) == pytest.approx(Levenshtein.ratio(a, b), abs=1e-12), (a, b)
        n = len(a) + len(b)
        unit = 1.0 if n == 0 else (n - Levenshtein.distance(a, b)) / n
        assert levenshtein_ratio(a, b, distance="levenshtein") == pytest.approx(unit, abs=1e-12)
    with pytest.raises(ValueError, match="distance must be one of"):
        levenshtein_ratio("a", "b", distance="hamming")


# -- batch independence on real crops ------------------------------------------------------------
def _page_word_crops(eng) -> tuple[list[np.ndarray], np.ndarray]:
    """Word crops cut from the lines ``eng`` reads on skimage's scanned page (split at gaps of at
    least 6 ink-free columns), degraded (x3 area down, bicubic up: 23-30 px tall, blurry), and one
    very wide crop (a whole line repeated twice side by side)."""
    from evalkit.metrics.ocr_match import crop_polygon

    page = rgb(skdata.page())
    lines = [crop_polygon(page, ln.polygon) for ln in eng.readtext(page)]
    words = []
    for c in lines:
        g = c[..., 0].astype(np.float64)
        ink = np.flatnonzero((g < g.mean() - 25).any(axis=0))
        if ink.size == 0:
            continue
        cuts = np.flatnonzero(np.diff(ink) > 6)
        for a, b in zip(np.r_[ink[0], ink[cuts + 1]], np.r_[ink[cuts], ink[-1]]):
            if b - a > 12:
                words.append(np.ascontiguousarray(c[:, max(0, a - 3):b + 4]))
    degraded = []
    for w in words:
        h, wd = w.shape[:2]
        small = cv2.resize(w, (max(1, wd // 3), max(1, h // 3)), interpolation=cv2.INTER_AREA)
        degraded.append(np.ascontiguousarray(cv2.resize(small, (wd, h), interpolation=cv2.INTER_CUBIC)))
    longest = max(lines, key=lambda c: c.shape[1])
    return degraded, np.ascontiguousarray(np.concatenate([longest, longest], axis=1))


cv2 = pytest.importorskip("cv2")


def test_recognize_is_batch_independent_on_real_crops(engine):
    """Each crop's (text, score) alone == in any batch, exactly: five degraded word crops beside
    one very wide line (PP-OCR pads a batch to its widest crop), a tiny crop (< 30 px tall, which
    RapidOCR's front door would enlarge) and the whole set in shuffled order."""
    crops, wide = _page_word_crops(engine)
    assert len(crops) >= 10 and wide.shape[1] / wide.shape[0] > 20
    tiny = np.ascontiguousarray(cv2.resize(crops[0], (crops[0].shape[1] // 2, crops[0].shape[0] // 2),
                                           interpolation=cv2.INTER_AREA))
    assert tiny.shape[0] < 15
    crops = crops[:11] + [tiny]
    alone = [engine.recognize([c])[0] for c in crops]
    assert sum(text_similarity(t, "") < 1 for t, _ in alone) >= 6  # they do read something
    assert engine.recognize(crops[:5] + [wide])[:-1] == alone[:5]  # the measured failure case
    order = np.random.default_rng(1).permutation(len(crops))
    mixed = engine.recognize([wide] + [crops[i] for i in order])[1:]
    assert [mixed[j] for j in np.argsort(order)] == alone
    # the synth OCR filter's call shape: a crop and a same-size companion
    assert engine.recognize([crops[1], crops[1][::-1].copy()])[0] == alone[1]


def test_readtext_line_reading_equals_recognize_of_its_crop(engine):
    """readtext recognises each detected line alone too, so a line's reading in readtext is what
    recognize() gives for the same crop (the OCR-A reference on HR equals HR's own reading)."""
    from evalkit.metrics.ocr_match import crop_polygon

    img, _ = draw_words(np.full((256, 512, 3), 245, np.uint8),
                        [("Coffee Shop", 20, 20, 30), ("OPEN", 30, 90, 24),
                         ("a much longer line of text here", 20, 160, 26)], (15, 15, 25))
    lines = engine.readtext(img)
    assert len(lines) >= 3
    got = engine.recognize([crop_polygon(img, ln.polygon) for ln in lines])
    assert [t for t, _ in got] == [ln.text for ln in lines]
    assert [s for _, s in got] == pytest.approx([ln.score for ln in lines], abs=1e-6)


def test_engine_settings_record_batching(engine):
    s = engine.settings()
    assert s["engine"] == engine.name and "one crop per recogniser batch" in s["rec_batching"]
    assert all(m.endswith(".onnx") for m in s["models"])


@pytest.mark.parametrize("name", RAPID)
def test_readwords_cuts_lines_at_character_positions_and_leaves_readtext_alone(name):
    """A rendered line "OPEN NOW 24": readwords gives the three words, each quad over its own ink
    (IoU >= 0.5 with the drawn word box); readtext before and after is the same one line (the
    packages keep call options, so the word-box call must not leak into later reads)."""
    from helpers import words_on_one_line

    from evalkit.metrics.ocr_match import polygon_iou

    img, boxes = words_on_one_line()
    engine = create_ocr(name)
    before = engine.readtext(img)
    words = engine.readwords(img)
    after = engine.readtext(img)
    assert [ln.text for ln in before] == ["OPEN NOW 24"]
    assert [(a.text, a.score) for a in after] == [(b.text, b.score) for b in before]
    assert np.array_equal(after[0].polygon, before[0].polygon)
    assert [w.text for w in words] == ["OPEN", "NOW", "24"]
    for w, box in zip(words, boxes):
        assert polygon_iou(w.polygon, box) >= 0.5, (w.text, w.polygon.tolist(), box.tolist())
    assert "CTC positions" in engine.word_boxes
