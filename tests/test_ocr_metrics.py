"""OCR metrics: OCR-A and character hallucination with real PP-OCR on rendered DejaVu words, OCR-F1
matching on hand-built cases, exact merge/reset."""
from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from evalkit.metrics.ocr import OCRF1, CharHallucination, OCRAccuracy
from evalkit.metrics.ocr_match import (
    char_edit_counts,
    crop_polygon,
    match_end_to_end,
    norm_cs,
    polygon_iou,
    prf1,
    quad_from_polygon,
)
from evalkit.sample import EvalSample, TextInstance
from models.ocr import OCREngine, OCRLine, create_ocr, levenshtein_ratio

pytest.importorskip("matplotlib")
from helpers import dejavu

# (text, x, y, font size): 16-20 px DejaVu Sans Bold, ink ~12-15 px tall, on a 256x256 canvas.
WORDS = [("OPEN", 16, 20, 20), ("Coffee Shop", 16, 60, 18), ("EXIT 42", 120, 20, 18),
         ("Parking", 30, 110, 16), ("Bakery", 140, 110, 18), ("SALE today", 20, 170, 20),
         ("Hotel", 150, 215, 16)]


def render(words=WORDS, bg=(235, 232, 225)) -> tuple[np.ndarray, list[TextInstance]]:
    """HR image with the words drawn, and their GT instances (ink box + 3 px, as a quad)."""
    im = Image.new("RGB", (256, 256), bg)
    d = ImageDraw.Draw(im)
    texts = []
    for text, x, y, size in words:
        font = dejavu(size)
        d.text((x, y), text, font=font, fill=(20, 20, 30))
        x0, y0, x1, y1 = d.textbbox((x, y), text, font=font)
        x0, y0, x1, y1 = x0 - 3, y0 - 3, x1 + 3, y1 + 3
        texts.append(TextInstance(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32),
                                  text))
    return np.asarray(im).copy(), texts


def bicubic_x4(hr: np.ndarray) -> np.ndarray:
    h, w = hr.shape[:2]
    lr = cv2.resize(hr, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(lr, (w, h), interpolation=cv2.INTER_CUBIC)


class CountingEngine(OCREngine):
    """The real engine, counting its calls (to check that reads are shared, not recomputed)."""

    def __init__(self, inner: OCREngine):
        self.inner, self.name = inner, inner.name
        self.readtext_calls = self.recognize_calls = 0

    def readtext(self, image):
        self.readtext_calls += 1
        return self.inner.readtext(image)

    def recognize(self, crops):
        self.recognize_calls += 1
        return self.inner.recognize(crops)


@pytest.fixture(scope="module")
def engine():
    return create_ocr("rapidocr-ppocrv4", num_threads=2)


@pytest.fixture(scope="module")
def scene(engine):
    hr, texts = render()
    return {"hr": hr, "texts": texts, "sr": bicubic_x4(hr), "ocr_hr": engine.readtext(hr)}


def sample(scene, which: str, with_texts: bool = False, key: str = "a") -> EvalSample:
    return EvalSample(key=key, sr=scene[which], hr=scene["hr"],
                      texts=scene["texts"] if with_texts else None, ocr_hr=scene["ocr_hr"])


# -- geometry ----------------------------------------------------------------------------------


def test_polygon_iou_known_values():
    a = np.array([[0, 0], [10, 0], [10, 10], [0, 10]])
    assert polygon_iou(a, a) == 1.0
    assert polygon_iou(a, a + [5, 0]) == pytest.approx(50 / 150)
    assert polygon_iou(a, a + [20, 0]) == 0.0
    bowtie = np.array([[0, 0], [10, 10], [10, 0], [0, 10]])  # self-intersecting: repaired
    assert 0.0 < polygon_iou(a, bowtie) <= 1.0


def test_quad_order_and_many_point_polygons():
    cw = np.array([[10, 5], [60, 5], [60, 25], [10, 25]], np.float32)
    ccw = cw[[0, 3, 2, 1]]
    np.testing.assert_array_equal(quad_from_polygon(ccw), cw)
    # an 8-point polygon of the same rectangle crops through its min-area rectangle
    eight = np.array([[10, 5], [35, 5], [60, 5], [60, 15], [60, 25], [35, 25], [10, 25],
                      [10, 15]], np.float32)
    np.testing.assert_allclose(quad_from_polygon(eight), cw, atol=1e-4)
    with pytest.raises(ValueError, match="K >= 4"):
        quad_from_polygon(cw[:3])


def test_crop_polygon_rectifies_a_rotated_word(engine):
    """A word rotated by 20° is read from its perspective-warped crop; a CCW quad reads the same."""
    from helpers import word_crop

    word = word_crop("MARKET", size=28)
    h, w = word.shape[:2]
    canvas = np.full((200, 260, 3), word[0, 0], np.uint8)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0)
    m[:, 2] += [130 - w / 2, 100 - h / 2]
    canvas = cv2.warpAffine(word, m, (260, 200), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
    quad = cv2.transform(np.array([[[0, 0], [w, 0], [w, h], [0, h]]], np.float32), m)[0]
    crop = crop_polygon(canvas, quad)
    assert crop.shape[1] > 2 * crop.shape[0]  # axis-aligned line, not the rotated bounding box
    (text, _), (text_ccw, _) = engine.recognize([crop, crop_polygon(canvas, quad[[0, 3, 2, 1]])])
    assert text == "MARKET" and text_ccw == "MARKET"


# -- OCR-A on real pixels ----------------------------------------------------------------------


def test_ocr_a_hr_vs_itself_is_one(engine, scene):
    m = OCRAccuracy(ocr=engine, crop_border=4, device="cpu", allow_download=False)
    out = m.update(sample(scene, "hr"))
    assert out["ocr_a_ref"] == "hr-ocr"
    assert out["ocr_a_regions"] == len(scene["ocr_hr"]) >= 6
    assert out["ocr_a"] == 1.0 and out["ocr_a_ci"] == 1.0
    assert m.compute()["ocr_a"] == 1.0


def test_ocr_a_bicubic_is_clearly_lower(engine, scene):
    hr_val = OCRAccuracy(ocr=engine).update(sample(scene, "hr"))["ocr_a"]
    m = OCRAccuracy(ocr=engine)
    out = m.update(sample(scene, "sr"))
    print(f"OCR-A (HR OCR refs): HR {hr_val:.4f}, bicubic x4 {out['ocr_a']:.4f} "
          f"(ci {out['ocr_a_ci']:.4f})")
    assert out["ocr_a"] < 0.9 and out["ocr_a"] < hr_val
    assert out["ocr_a"] <= out["ocr_a_ci"] <= 1.0


def test_ocr_a_with_gt_texts(engine, scene):
    vals = {}
    for which in ("hr", "sr"):
        m = OCRAccuracy(ocr=engine)
        s = sample(scene, which, with_texts=True)
        s.ocr_hr = None  # annotations are used: HR is not read at all
        counting = CountingEngine(engine)
        m.ocr = counting
        out = m.update(s)
        assert counting.readtext_calls == 0 and s.ocr_hr is None
        assert out["ocr_a_ref"] == "annotations" and out["ocr_a_regions"] == len(WORDS)
        vals[which] = out
    print(f"OCR-A (GT refs): HR {vals['hr']['ocr_a']:.4f} (ci {vals['hr']['ocr_a_ci']:.4f}), "
          f"bicubic x4 {vals['sr']['ocr_a']:.4f} (ci {vals['sr']['ocr_a_ci']:.4f})")
    assert vals["hr"]["ocr_a"] >= 0.97 and vals["hr"]["ocr_a_ci"] >= 0.99
    assert vals["sr"]["ocr_a"] < 0.9 and vals["sr"]["ocr_a"] < vals["hr"]["ocr_a"]


def test_ocr_a_skips_dont_care_and_images_without_regions(engine, scene):
    texts = [TextInstance(t.polygon, t.text, dont_care=(i % 2 == 1))
             for i, t in enumerate(scene["texts"])]
    texts.append(TextInstance(scene["texts"][0].polygon, "###"))
    m = OCRAccuracy(ocr=engine)
    out = m.update(EvalSample(key="dc", sr=scene["hr"], hr=scene["hr"], texts=texts))
    assert out["ocr_a_regions"] == 4  # indices 0, 2, 4, 6
    empty = m.update(EvalSample(key="none", sr=scene["hr"], hr=scene["hr"], texts=[]))
    assert empty == {"ocr_a": None, "ocr_a_ci": None, "ocr_a_regions": 0,
                     "ocr_a_ref": "annotations", "ocr_a_evidence": []}
    res = m.compute()
    assert res["ocr_a_skipped"] == 1 and res["ocr_a_images"] == 1 and res["ocr_a_regions"] == 4


def test_ocr_a_reads_hr_itself_when_runner_did_not(engine, scene):
    counting = CountingEngine(engine)
    s = EvalSample(key="a", sr=scene["hr"], hr=scene["hr"])
    out = OCRAccuracy(ocr=counting).update(s)
    assert counting.readtext_calls == 1 and s.ocr_hr is not None  # stored for the other metrics
    assert out["ocr_a"] == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        OCRAccuracy(ocr=engine).update(EvalSample(key="b", sr=scene["hr"][:128], hr=scene["hr"]))


def test_ocr_a_dataset_averaging_and_exact_merge(engine, scene):
    """Headline = per-region mean; image mean differs when images have different region counts;
    two merged halves give exactly the one-pass state."""
    few = scene["texts"][:2]
    samples = [sample(scene, "sr", key="s0"),
               EvalSample(key="s1", sr=scene["sr"], hr=scene["hr"], texts=few),
               sample(scene, "hr", key="s2", with_texts=True)]
    one = OCRAccuracy(ocr=engine)
    per_image = [one.update(s) for s in samples]
    res = one.compute()
    n = [p["ocr_a_regions"] for p in per_image]
    v = [p["ocr_a"] for p in per_image]
    assert res["ocr_a_regions"] == sum(n) and res["ocr_a_images"] == 3
    assert res["ocr_a"] == pytest.approx(sum(a * b for a, b in zip(v, n)) / sum(n), abs=1e-12)
    assert res["ocr_a_image_mean"] == pytest.approx(sum(v) / 3, abs=1e-12)
    assert res["ocr_a"] != pytest.approx(res["ocr_a_image_mean"], abs=1e-3)

    a, b = OCRAccuracy(ocr=engine), OCRAccuracy(ocr=engine)
    a.update(samples[0])
    for s in samples[1:]:
        b.update(s)
    a.merge(b)
    assert a.compute() == pytest.approx(res, abs=1e-12)
    a.reset()
    assert a.compute()["ocr_a"] is None and a.compute()["ocr_a_regions"] == 0
    with pytest.raises(TypeError):
        a.merge(OCRF1(ocr=engine))


def test_settings_state_engine_and_headline(engine):
    s = OCRAccuracy(ocr=engine).settings()
    assert s["engine"] == "rapidocr-ppocrv4"
    assert "per-region" in s["headline"] and "unpublished" in s["tadisr_averaging"]
    assert s["distance"] == "indel" and "distance='indel'" in s["score"]
    assert "Levenshtein.ratio" in s["score"] and "weights=(1, 1, 2)" in s["score"]
    assert "one crop per recogniser batch" in s["engine_settings"]["rec_batching"]
    unit = OCRAccuracy(ocr=engine, distance="levenshtein").settings()
    assert unit["distance"] == "levenshtein" and "Levenshtein.distance(p, r)" in unit["score"]
    with pytest.raises(ValueError, match="distance must be one of"):
        OCRAccuracy(ocr=engine, distance="unit")
    f = OCRF1(ocr=engine).settings()
    assert "micro" in f["averaging"] and "0.5" in f["matching"]
    assert "area(pred & dont-care GT) / area(pred) > 0.5" in f["dont_care"]
    assert "E2E_iou_1_1" in f["dont_care"] and f["engine_settings"]["engine"] == "rapidocr-ppocrv4"
    assert "case-folded" in f["text_ci"]
    assert "substitutions" in CharHallucination(ocr=engine).settings()["rates"]


# -- OCR-F1 on hand-built cases ------------------------------------------------------------------


def box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def line(text, *xyxy):
    return OCRLine(box(*xyxy), text, 0.99)


def gt(text, *xyxy, dont_care=False):
    return TextInstance(box(*xyxy), text, dont_care=dont_care)


def f1_sample(preds, gts, key="k"):
    return EvalSample(key=key, sr=np.zeros((200, 200, 3), np.uint8), texts=gts, ocr_sr=preds)


@pytest.fixture(scope="module")
def f1_engine():
    return create_ocr("rapidocr-ppocrv4", num_threads=1)  # never called: ocr_sr/texts are given


def counts(f1_engine, preds, gts):
    out = OCRF1(ocr=f1_engine).update(f1_sample(preds, gts))
    return (out["ocr_f1_tp"], out["ocr_f1_n_pred"] - out["ocr_f1_tp"],
            out["ocr_f1_n_gt"] - out["ocr_f1_tp"]), out


@pytest.mark.parametrize("preds, gts, tp_fp_fn, tp_fp_fn_cs", [
    pytest.param([line("Hello", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (1, 0, 0), (1, 0, 0), id="perfect"),
    pytest.param([line("Hallo", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (0, 1, 1), (0, 1, 1), id="right-box-wrong-text"),
    pytest.param([line("Hello", 40, 10, 90, 30)], [gt("Hello", 10, 10, 60, 30)],  # IoU 0.25
                 (0, 1, 1), (0, 1, 1), id="right-text-low-iou"),
    pytest.param([line("Hello", 10, 10, 60, 30), line("xyz", 100, 100, 150, 120)],
                 [gt("Hello", 10, 10, 60, 30), gt("###", 100, 100, 150, 120)],
                 (1, 0, 0), (1, 0, 0), id="dont-care-###"),
    pytest.param([line("abc", 100, 100, 150, 120)],
                 [gt("Hello", 10, 10, 60, 30), gt("abc", 100, 100, 150, 120, dont_care=True)],
                 (0, 0, 1), (0, 0, 1), id="dont-care-flag"),
    pytest.param([line("Hello", 10, 10, 60, 30), line("Hello", 12, 10, 60, 30)],
                 [gt("Hello", 10, 10, 60, 30)], (1, 1, 0), (1, 1, 0), id="two-preds-one-gt"),
    pytest.param([line("HELLO", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (1, 0, 0), (0, 1, 1), id="case"),
    pytest.param([line("Hello!", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (1, 0, 0), (0, 1, 1), id="punctuation"),
    pytest.param([line("EXIT42", 10, 10, 60, 30)], [gt("EXIT 42", 10, 10, 60, 30)],
                 (1, 0, 0), (1, 0, 0), id="whitespace"),
    pytest.param([], [gt("Hello", 10, 10, 60, 30)], (0, 0, 1), (0, 0, 1), id="no-preds"),
])
def test_ocr_f1_counts(f1_engine, preds, gts, tp_fp_fn, tp_fp_fn_cs):
    got, out = counts(f1_engine, preds, gts)
    assert got == tp_fp_fn
    assert (out["ocr_f1_cs_tp"], out["ocr_f1_cs_n_pred"] - out["ocr_f1_cs_tp"],
            out["ocr_f1_n_gt"] - out["ocr_f1_cs_tp"]) == tp_fp_fn_cs
    assert out["ocr_f1_gt"] == "annotations"


def test_ocr_f1_dont_care_prediction_is_ignored_not_fp(f1_engine):
    _, out = counts(f1_engine, [line("xyz", 100, 100, 150, 120)],
                    [gt("###", 100, 100, 150, 120)])
    assert out["ocr_f1_n_ignored"] == 1 and out["ocr_f1_n_pred"] == 0 and out["ocr_f1_n_gt"] == 0
    assert out["ocr_f1"] is None and out["ocr_f1_precision"] is None


def test_ocr_f1_correct_reading_not_blocked_by_a_closer_wrong_one(f1_engine):
    preds = [line("Hallo", 10, 10, 60, 30), line("Hello", 14, 10, 60, 30)]  # IoU 1.0 vs 0.92
    got, _ = counts(f1_engine, preds, [gt("Hello", 10, 10, 60, 30)])
    assert got == (1, 1, 0)


def test_match_end_to_end_greedy_by_iou():
    preds = [box(0, 0, 100, 20), box(5, 0, 100, 20)]
    gts = [box(0, 0, 100, 20), box(4, 0, 100, 20)]
    r = match_end_to_end(preds, ["a", "a"], gts, ["a", "a"])
    assert r.tp == 2 and r.matches == ((0, 0), (1, 1)) and r.fp == 0 and r.fn == 0
    with pytest.raises(ValueError, match="same length"):
        match_end_to_end(preds, ["a"], gts, ["a", "a"])
    assert norm_cs(" Ab c ") == "Abc"


def test_prf1_edge_cases():
    assert prf1(0, 0, 0) == (None, None, None)
    assert prf1(0, 3, 0) == (0.0, None, 0.0)   # only false readings
    assert prf1(0, 0, 4) == (None, 0.0, 0.0)   # text there, nothing read: the worst score, not null
    assert prf1(0, 2, 2) == (0.0, 0.0, 0.0)
    assert prf1(1, 2, 4) == pytest.approx((0.5, 0.25, 1 / 3))


def test_ocr_f1_micro_average_differs_from_image_mean_and_merges(f1_engine):
    s1 = f1_sample([line("Hello", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)], "s1")
    s2 = f1_sample([line("aa", 10, 10, 60, 30), line("bb", 10, 50, 60, 70),
                    line("cc", 10, 90, 60, 110)],
                   [gt("xx", 10, 10, 60, 30), gt("yy", 10, 50, 60, 70),
                    gt("zz", 10, 90, 60, 110)], "s2")
    one = OCRF1(ocr=f1_engine)
    per_image = [one.update(s)["ocr_f1"] for s in (s1, s2)]
    assert per_image == [1.0, 0.0]
    res = one.compute()
    assert (res["ocr_f1_tp"], res["ocr_f1_n_pred"], res["ocr_f1_n_gt"]) == (1, 4, 4)
    assert res["ocr_f1"] == pytest.approx(0.25)  # micro, not the image mean 0.5
    assert res["ocr_f1"] != pytest.approx(np.mean(per_image))
    a, b = OCRF1(ocr=f1_engine), OCRF1(ocr=f1_engine)
    a.update(s1)
    b.update(s2)
    a.merge(b)
    assert a.compute() == res
    a.reset()
    assert a.compute()["ocr_f1"] is None and a.compute()["ocr_f1_n_gt"] == 0
    with pytest.raises(ValueError, match="different settings"):
        a.merge(OCRF1(ocr=f1_engine, iou_threshold=0.7))


def test_ocr_f1_real_ocr_with_hr_pseudo_gt(engine, scene):
    m = OCRF1(ocr=engine)
    s_hr = EvalSample(key="hr", sr=scene["hr"], hr=scene["hr"], ocr_hr=scene["ocr_hr"])
    out = m.update(s_hr)
    assert out["ocr_f1_gt"] == "hr-ocr" and out["ocr_f1"] == 1.0 and s_hr.ocr_sr is not None
    out_sr = m.update(EvalSample(key="sr", sr=scene["sr"], hr=scene["hr"], ocr_hr=scene["ocr_hr"]))
    print(f"OCR-F1 (HR pseudo-GT): HR 1.0, bicubic x4 {out_sr['ocr_f1']}")
    assert out_sr["ocr_f1"] is None or out_sr["ocr_f1"] < 1.0
    assert m.compute()["ocr_f1_images_pseudo_gt"] == 2


# -- character hallucination ----------------------------------------------------------------------


@pytest.mark.parametrize("ref, pred, expected", [
    ("HOTEL", "HOTEL", (0, 0, 0)),
    ("HOTEL", "H0TEL", (1, 0, 0)),       # O -> 0: hallucinated
    ("HOTEL", "HTEL", (0, 1, 0)),        # O lost
    ("HOTEL", "HOTELS", (0, 0, 1)),      # S invented
    ("Parking", "Farkre", (3, 1, 0)),    # P->F, i->r, n->e, g lost
    ("abc", "", (0, 3, 0)),
    ("", "xy", (0, 0, 2)),
])
def test_char_edit_counts(ref, pred, expected):
    import Levenshtein

    assert char_edit_counts(ref, pred) == expected
    assert sum(expected) == Levenshtein.distance(ref, pred)


def test_char_hallucination_real_ocr_shares_reads_and_merges(engine, scene):
    counting = CountingEngine(engine)
    acc, hal = OCRAccuracy(ocr=counting), CharHallucination(ocr=counting)
    s_hr, s_sr = sample(scene, "hr", key="hr"), sample(scene, "sr", key="sr")
    for s in (s_hr, s_sr):
        acc.update(s)
        hal.update(s)
    assert counting.recognize_calls == 2  # CharHallucination reused OCR-A's recognitions
    res = hal.compute()
    assert res["char_regions"] == 2 * len(scene["ocr_hr"]) and res["char_images"] == 2
    hr_only = CharHallucination(ocr=engine)
    assert hr_only.update(s_hr)["char_hallucination"] == 0.0
    sr_only = CharHallucination(ocr=engine)
    out = sr_only.update(s_sr)
    print(f"char hallucination bicubic x4: subs {out['char_hallucination']:.3f}, "
          f"loss {out['char_loss_rate']:.3f}, ins {out['char_insertion_rate']:.3f}")
    assert out["char_hallucination"] > 0
    assert out["char_substitutions"] + out["char_deletions"] + out["char_insertions"] > 0
    hr_only.merge(sr_only)
    assert hr_only.compute() == res
    merged = copy.deepcopy(hr_only)
    merged.reset()
    assert merged.compute()["char_hallucination"] is None


def test_ocr_a_value_is_the_mean_levenshtein_ratio_of_the_regions(engine, scene):
    """Recompute the per-image OCR-A from the recognised strings with the REFERENCE formula."""
    import Levenshtein

    from evalkit.metrics.ocr import read_regions

    assert levenshtein_ratio("H0TEL", "HOTEL") == pytest.approx((5 + 5 - 2) / 10)
    s = sample(scene, "sr", key="lev")
    out = OCRAccuracy(ocr=engine).update(s)
    reads = read_regions(s, engine)
    assert reads.refs == tuple(ln.text for ln in scene["ocr_hr"])
    # reference: python-Levenshtein's own ratio, the function TADiSR's "Levenshtein ratio" names
    expected = np.mean([Levenshtein.ratio(p, r) for p, r in zip(reads.preds, reads.refs)])
    assert out["ocr_a"] == pytest.approx(expected, abs=1e-12)
    unit = OCRAccuracy(ocr=engine, distance="levenshtein").update(s)
    n = [len(p) + len(r) for p, r in zip(reads.preds, reads.refs)]
    expected_unit = np.mean([(k - Levenshtein.distance(p, r)) / k
                             for k, p, r in zip(n, reads.preds, reads.refs)])
    assert unit["ocr_a"] == pytest.approx(expected_unit, abs=1e-12)
    assert unit["ocr_a"] >= out["ocr_a"]
    print("bicubic reads:", list(zip(reads.refs, reads.preds)))


def test_state_is_plain_data_for_resume(engine, scene, f1_engine):
    """--resume saves ``state()`` as JSON and loads it into a fresh metric: every accumulator
    survives (the engine is rebuilt, not saved), and the fresh metric computes the same numbers."""
    s = sample(scene, "sr", key="resume")
    for cls in (OCRAccuracy, OCRF1, CharHallucination):
        m = cls(ocr=engine)
        m.update(s)
        state = m.state()
        assert set(vars(m)) - set(state) == {"ocr"}
        fresh = cls(ocr=engine)
        fresh.load_state(json.loads(json.dumps(state)))
        assert fresh.compute() == m.compute()


# -- OCR-A punishes hallucination; evidence ------------------------------------------------------


def test_ocr_a_hallucinated_word_scores_zero(engine):
    """GT "HOTEL", SR shows a different word of the same length in the same place: OCR reads it
    correctly, so the region scores 0 (indel), not the 0.5 the unit-cost ratio would give."""
    hr, texts = render([("HOTEL", 40, 40, 40)])
    sr, _ = render([("XQZJW", 40, 40, 40)])
    s = EvalSample(key="hal", sr=sr, hr=hr, texts=texts)
    out = OCRAccuracy(ocr=engine).update(s)
    (ev,) = out["ocr_a_evidence"]
    assert ev["ref"] == "HOTEL" and ev["read"] == "XQZJW", ev
    assert out["ocr_a"] == 0.0 and ev["score"] == 0.0
    assert OCRAccuracy(ocr=engine, distance="levenshtein").update(s)["ocr_a"] == 0.5


def test_ocr_a_evidence_is_what_was_scored(engine, scene):
    """One evidence row per scored region (don't-care / ### / empty refs not listed); the per-image
    OCR-A is the mean of the evidence scores; each read is the recognition of that crop alone."""
    texts = list(scene["texts"])
    texts[1] = TextInstance(texts[1].polygon, texts[1].text, dont_care=True)
    texts.append(TextInstance(texts[0].polygon + 0.004, "###"))
    texts.append(TextInstance(texts[2].polygon, "  "))
    s = EvalSample(key="ev", sr=scene["sr"], hr=scene["hr"], texts=texts)
    out = OCRAccuracy(ocr=engine).update(s)
    ev = out["ocr_a_evidence"]
    scored = [t for i, t in enumerate(scene["texts"]) if i != 1]
    assert len(ev) == out["ocr_a_regions"] == len(scored)
    assert [e["ref"] for e in ev] == [t.text for t in scored]
    assert out["ocr_a"] == pytest.approx(sum(e["score"] for e in ev) / len(ev), abs=1e-15)
    for e, t in zip(ev, scored):
        assert set(e) == {"polygon", "ref", "read", "score", "conf"}
        assert e["polygon"] == np.round(t.polygon.astype(np.float64), 2).tolist()
        assert 0.0 <= e["conf"] <= 1.0 and isinstance(e["score"], float)
        alone = engine.recognize([crop_polygon(scene["sr"], t.polygon)])[0]
        assert (e["read"], e["conf"]) == alone
        assert e["score"] == levenshtein_ratio(e["read"], e["ref"])
    json.dumps(out)  # goes into per_image.jsonl as it is


def test_ocr_a_hr_ocr_evidence_polygons_are_hr_lines(engine, scene):
    out = OCRAccuracy(ocr=engine).update(sample(scene, "hr", key="evhr"))
    assert [e["ref"] for e in out["ocr_a_evidence"]] == [ln.text for ln in scene["ocr_hr"]]
    assert all(e["read"] == e["ref"] and e["score"] == 1.0 for e in out["ocr_a_evidence"])
    np.testing.assert_allclose(np.array(out["ocr_a_evidence"][0]["polygon"]),
                               scene["ocr_hr"][0].polygon, atol=0.005)


# -- OCR-F1: ICDAR 2015 don't-care rule ----------------------------------------------------------


def test_dont_care_prediction_mostly_inside_is_ignored_despite_low_iou(f1_engine):
    """A small detection inside a large ### region: IoU 0.1 (< 0.5) but 100 % of its area is
    inside -> ignored (the old IoU rule counted it as a false positive)."""
    pred, dc = box(10, 10, 60, 30), box(0, 0, 100, 100)
    assert polygon_iou(pred, dc) == pytest.approx(1000 / 10000)
    got, out = counts(f1_engine, [line("xyz", 10, 10, 60, 30)],
                      [gt("###", 0, 0, 100, 100), gt("Hello", 120, 120, 170, 140)])
    assert got == (0, 0, 1) and out["ocr_f1_n_ignored"] == 1 and out["ocr_f1_n_pred"] == 0
    assert out["ocr_f1_evidence"] == [{"polygon": box(10, 10, 60, 30).tolist(), "text": "xyz",
                                       "conf": pytest.approx(0.99), "gt": None, "ignored": True}]


@pytest.mark.parametrize("x0, inside, ignored", [
    (40, 0.4, False),   # barely over it: 40 % of the detection inside -> a false positive
    (35, 0.5, False),   # exactly half: the script's test is '>' 0.5 -> still counted
    (34, 0.52, True),   # just over half -> ignored
])
def test_dont_care_area_fraction_threshold(f1_engine, x0, inside, ignored):
    """### region x in [0, 60]; a 50 px wide detection starting at x0 overlaps it by 60 - x0."""
    pred = box(x0, 0, x0 + 50, 20)
    r = match_end_to_end([pred], ["abc"], [box(0, 0, 60, 20)], ["###"])
    assert (60 - x0) / 50 == pytest.approx(inside)
    assert r.ignored == ((0,) if ignored else ()) and r.n_pred == (0 if ignored else 1)
    assert r.fp == (0 if ignored else 1)


def test_dont_care_is_decided_before_matching():
    """ICDAR 2015 sets don't-care detections aside before matching: a detection mostly inside a
    ### region is not a TP even when it would match a care GT with the same text."""
    pred = box(0, 0, 100, 20)
    r = match_end_to_end([pred], ["Hello"], [box(0, 0, 100, 20), box(0, 0, 100, 22)],
                         ["###", "Hello"])
    assert r.tp == 0 and r.ignored == (0,) and r.n_gt == 1 and r.fn == 1


def test_ocr_f1_evidence_lists_predictions_with_their_match(f1_engine):
    preds = [line("Hello", 10, 10, 60, 30), line("Wrold", 10, 50, 60, 70)]
    _, out = counts(f1_engine, preds, [gt("Hello", 10, 10, 60, 30), gt("World", 10, 50, 60, 70)])
    ev = out["ocr_f1_evidence"]
    assert [(e["text"], e["gt"], e["ignored"]) for e in ev] == [("Hello", 0, False),
                                                                ("Wrold", None, False)]
    json.dumps(out)
