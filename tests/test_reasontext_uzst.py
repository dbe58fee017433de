"""ReasonText and UZ-ST loaders on fixtures in their (unverified, see the loaders) layouts, and the
per-level OCR metric ``ocr_by_level`` on real PP-OCR readings with hand-computed expectations."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.reasontext import LevelledText, ReasonText
from evalkit.loaders.uzst import UZST
from evalkit.metrics.ocr import OCRAccuracy
from evalkit.metrics.ocr_groups import OCRByGroup
from evalkit.sample import EvalSample, TextInstance
from models.datasets import DatasetEntry
from models.ocr import create_ocr
from tests.helpers import dejavu, write_png


def entry(root: Path, fmt: str, name: str = "bench", **extra) -> DatasetEntry:
    return DatasetEntry(name=name, format=fmt, root=str(root), extra=extra)


def render(words, size=(512, 512), photo=True, font=56):
    """A real photo (astronaut) or a plain canvas with ``words`` = [(text, x, y)] drawn on white
    boxes; returns the RGB image and each word's ink box + 4 px as [x1, y1, x2, y2] (HR px)."""
    base = skimage.data.astronaut()[: size[1], : size[0]] if photo else np.full((size[1], size[0], 3), 235, np.uint8)
    im = Image.fromarray(np.ascontiguousarray(base))
    d = ImageDraw.Draw(im)
    boxes = []
    for text, x, y in words:
        x0, y0, x1, y1 = d.textbbox((x, y), text, font=dejavu(font))
        d.rectangle([x0 - 10, y0 - 10, x1 + 10, y1 + 10], fill=(250, 250, 250))
        d.text((x, y), text, font=dejavu(font), fill=(10, 10, 10))
        boxes.append([x0 - 4, y0 - 4, x1 + 4, y1 + 4])
    return np.asarray(im).copy(), boxes


def down4(img):
    return cv2.resize(img, (img.shape[1] // 4, img.shape[0] // 4), interpolation=cv2.INTER_AREA)


def write_reasontext(root: Path, n: int = 2) -> dict:
    """``HR/<name>.png`` 512², ``LR/<name>.png`` 128², ``annotations.json`` {name: [words]} with
    one polygon word and one bbox word per image (levels perception / reasoning)."""
    ann = {}
    for i in range(n):
        hr, boxes = render([("OPEN", 40, 60 + 40 * i), ("HOTEL", 40, 330)])
        write_png(root / "HR" / f"{i:04d}.png", hr)
        write_png(root / "LR" / f"{i:04d}.png", down4(hr))
        (x1, y1, x2, y2), b = boxes
        ann[f"{i:04d}.png"] = [
            {"text": "OPEN", "polygon": [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], "level": "perception"},
            {"text": "HOTEL", "bbox": b, "level": "Reasoning"}]
    (root / "annotations.json").write_text(json.dumps(ann), encoding="utf-8")
    return ann


# -- loaders -----------------------------------------------------------------------------------


def test_reasontext_reads_pairs_words_and_levels(tmp_path):
    ann = write_reasontext(tmp_path)
    ld = ReasonText(entry(tmp_path, "reasontext"))
    assert ld.keys() == ["0000", "0001"] and ld.has_lr and ld.has_texts and ld.scale == 4
    it = ld.item("0001")
    assert it.hr.shape == (512, 512, 3) and it.lr.shape == (128, 128, 3) and it.meta["scale"] == 4
    assert [(t.text, t.level, t.language, t.dont_care) for t in it.texts] == [
        ("OPEN", "perception", "en", False), ("HOTEL", "reasoning", "en", False)]
    assert all(isinstance(t, LevelledText) and t.polygon.shape == (4, 2) for t in it.texts)
    x1, y1, x2, y2 = ann["0001.png"][1]["bbox"]
    np.testing.assert_array_equal(it.texts[1].polygon, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    np.testing.assert_array_equal(it.texts[0].polygon, ann["0001.png"][0]["polygon"])
    # annotations drawn on LR: annotation_scale maps them to HR pixels
    scaled = ReasonText(entry(tmp_path, "reasontext", annotation_scale=4)).item("0001")
    np.testing.assert_array_equal(scaled.texts[1].polygon, it.texts[1].polygon * 4)


def test_reasontext_bad_level_named_and_skipped(tmp_path):
    write_reasontext(tmp_path)
    ann = json.loads((tmp_path / "annotations.json").read_text())
    ann["0001.png"][1]["level"] = "semantic"
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    with pytest.raises(AnnotationError, match=r"annotations.json: image '0001.png': word 1 \('HOTEL'\): level 'semantic'"):
        ReasonText(entry(tmp_path, "reasontext")).keys()
    ld = ReasonText(entry(tmp_path, "reasontext"), skip_bad=True)
    assert ld.keys() == ["0000"] and len(ld.skipped) == 1  # the whole image, never part of its words
    (tmp_path / "annotations.json").unlink()
    with pytest.raises(AnnotationError, match="annotations file not found"):
        ReasonText(entry(tmp_path, "reasontext")).keys()


def test_uzst_split_folder_pairs_and_hr_sized_lr(tmp_path):
    hr = np.ascontiguousarray(skimage.data.coffee()[:256, :256])
    for name in ("a", "b"):
        write_png(tmp_path / "UZ-ST" / "test" / "HR" / f"{name}.png", hr)
    write_png(tmp_path / "UZ-ST" / "test" / "LR" / "a.png", down4(hr))
    write_png(tmp_path / "UZ-ST" / "test" / "LR" / "b.png", cv2.resize(down4(hr), (256, 256)))  # stored at HR size
    ld = UZST(entry(tmp_path / "UZ-ST", "uzst", scale=4))
    assert ld.split == "test" and ld.keys() == ["a", "b"] and not ld.has_texts
    a, b = ld.item("a"), ld.item("b")
    assert a.lr.shape == (64, 64, 3) and a.hr.shape == (256, 256, 3) and not a.meta.get("lr_is_hr_size")
    assert b.lr.shape == (256, 256, 3) and b.meta["lr_is_hr_size"] is True
    write_png(tmp_path / "UZ-ST" / "test" / "LR" / "a.png", hr[:100, :100])
    with pytest.raises(AnnotationError, match="expected LR x4 == HR"):
        UZST(entry(tmp_path / "UZ-ST", "uzst")).item("a")
    (tmp_path / "flat" / "GT").mkdir(parents=True)  # no split folder, other folder names: found by name
    (tmp_path / "flat" / "LQ").mkdir()
    write_png(tmp_path / "flat" / "GT" / "c.png", hr)
    write_png(tmp_path / "flat" / "LQ" / "c.png", down4(hr))
    assert UZST(entry(tmp_path / "flat", "uzst")).keys() == ["c"]


# -- ocr_by_level on real PP-OCR readings --------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    return create_ocr("rapidocr-ppocrv4", num_threads=2)


@pytest.fixture(scope="module")
def scenes(engine):
    """Two clean canvases (SR = HR, so PP-OCR reads the rendered words) whose annotations give
    some *wrong* references on purpose, so every expected value is known by hand."""
    hr1, b1 = render([("OPEN", 30, 30), ("HOTEL", 30, 150), ("BAKERY", 30, 270), ("EXIT", 30, 390)], photo=False)
    hr2, b2 = render([("PARKING", 30, 30), ("SALE", 30, 150), ("CAFE", 30, 270)], photo=False)

    def quad(b):
        x1, y1, x2, y2 = b
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)

    t1 = [LevelledText(quad(b1[0]), "OPEN", level="perception"),
          LevelledText(quad(b1[1]), "H0TEL", level="perception"),     # rendered HOTEL: one substitution
          LevelledText(quad(b1[2]), "BAKERY", level="reasoning"),
          LevelledText(quad(b1[3]), "EXIT", True, level="reasoning"),  # don't care: not scored
          TextInstance(quad(b1[3]), "EXIT")]                           # no level: unlisted
    t2 = [LevelledText(quad(b2[0]), "PARKINQ", level="reasoning"),    # rendered PARKING: one substitution
          LevelledText(quad(b2[1]), "SALE", level="reasoning"),
          LevelledText(quad(b2[2]), "CAFE", level="reasoning")]
    readings = [t for t, _ in engine.recognize([crop for crop in _crops(hr1, t1[:3]) + _crops(hr2, t2)])]
    assert readings == ["OPEN", "HOTEL", "BAKERY", "PARKING", "SALE", "CAFE"], readings  # premise
    return [EvalSample(key="one", sr=hr1, hr=hr1, texts=t1), EvalSample(key="two", sr=hr2, hr=hr2, texts=t2)]


def _crops(img, texts):
    from evalkit.metrics.ocr_match import crop_polygon

    return [crop_polygon(img, t.polygon) for t in texts]


def indel_ratio(p: str, r: str) -> float:
    """(|p| + |r| - indel distance) / (|p| + |r|), by hand for one substitution (indel cost 2)."""
    return (len(p) + len(r) - 2) / (len(p) + len(r))


def test_ocr_by_level_hand_computed(engine, scenes):
    m = OCRByGroup(ocr=engine)
    one, two = m.update(scenes[0]), m.update(scenes[1])
    # image one: perception = OPEN (1), H0TEL vs HOTEL (0.8); reasoning = BAKERY (1); EXIT don't care
    assert one["ocr_a_perception"] == pytest.approx((1 + indel_ratio("HOTEL", "H0TEL")) / 2, abs=1e-15)
    assert indel_ratio("HOTEL", "H0TEL") == 0.8
    assert one["word_acc_perception"] == 0.5 and one["ocr_a_regions_perception"] == 2
    assert one["ocr_a_reasoning"] == 1.0 and one["word_acc_reasoning"] == 1.0
    assert one["char_hallucination_perception"] == pytest.approx(1 / 9, abs=1e-15)  # 1 sub / (4 + 5) chars
    assert one["ocr_group_unlisted"] == 1 and not any(k.endswith("_evidence") for k in one)
    # image two: no perception word (None, not 0), reasoning = PARKINQ vs PARKING, SALE, CAFE
    assert two["ocr_a_perception"] is None and two["word_acc_perception"] is None
    assert two["ocr_a_reasoning"] == pytest.approx((indel_ratio("PARKING", "PARKINQ") + 2) / 3, abs=1e-15)
    res = m.compute()
    # dataset: micro over regions — reasoning has 4 regions (BAKERY, PARKINQ, SALE, CAFE)
    assert res["ocr_a_reasoning"] == pytest.approx((3 + 12 / 14) / 4, abs=1e-15)
    assert res["ocr_a_image_mean_reasoning"] == pytest.approx((1 + (12 / 14 + 2) / 3) / 2, abs=1e-15)
    assert res["word_acc_reasoning"] == 3 / 4 and res["word_acc_perception"] == 1 / 2
    assert res["char_hallucination_reasoning"] == pytest.approx(1 / (6 + 7 + 4 + 4), abs=1e-15)
    assert res["ocr_a_regions_perception"] == 2 and res["ocr_a_images_perception"] == 1
    assert res["ocr_group_unlisted"] == 1 and res["ocr_group_images"] == 2
    # the overall OCR-A is the region-weighted mix of the two levels plus the unlisted EXIT (read right)
    overall = OCRAccuracy(ocr=engine)
    for s in scenes:
        overall.update(s)
    assert overall.compute()["ocr_a"] == pytest.approx(
        (2 * res["ocr_a_perception"] + 4 * res["ocr_a_reasoning"] + 1) / 7, abs=1e-15)


def test_ocr_by_level_recognises_each_region_once(engine, scenes):
    from tests.test_ocr_metrics import CountingEngine

    counting = CountingEngine(engine)
    OCRByGroup(ocr=counting).update(scenes[0])
    assert counting.recognize_calls == 1  # one batch call for the whole image, shared by both levels


def test_ocr_by_level_exact_merge_and_state_round_trip(engine, scenes):
    whole = OCRByGroup(ocr=engine)
    for s in scenes:
        whole.update(s)
    before = whole.compute()
    copy.copy(whole).reset()  # what the runner does to make its accumulators: must not touch `whole`
    assert whole.compute() == before
    a, b = OCRByGroup(ocr=engine), OCRByGroup(ocr=engine)
    a.update(scenes[0])
    b.update(scenes[1])
    a.merge(b)
    assert a.compute() == whole.compute()
    c = OCRByGroup(ocr=engine)
    c.update(scenes[1])
    c.merge_state(json.loads(json.dumps(OCRByGroup(ocr=engine).state())))  # an empty worker
    st = OCRByGroup(ocr=engine)
    st.update(scenes[0])
    c.merge_state(json.loads(json.dumps(st.state())))  # JSON as --resume / Ray send it
    assert c.compute() == whole.compute()
    unannotated = OCRByGroup(ocr=engine)
    out = unannotated.update(EvalSample(key="x", sr=scenes[0].sr, hr=scenes[0].hr))
    assert out["ocr_a_reasoning"] is None and unannotated.compute()["ocr_group_images_unannotated"] == 1


# -- end to end ---------------------------------------------------------------------------------


def _evalkit(*args, env):
    from helpers import run_evalkit

    return run_evalkit(*args, env=env)


def test_score_reasontext_per_level_and_datasets_lists_both(tmp_path):
    data = tmp_path / "data"
    write_reasontext(data / "ReasonText")
    hr = np.ascontiguousarray(skimage.data.coffee()[:256, :256])
    write_png(data / "UZ-ST" / "test" / "HR" / "0001.png", hr)
    write_png(data / "UZ-ST" / "test" / "LR" / "0001.png", down4(hr))
    env = {"TEXTSR_DATA": str(data), "TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("datasets", env=env)
    assert r.returncode == 0, r.stderr
    status = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip() and not ln[0].isdigit()}
    # the project catalog's entries, read from the fixtures (reasontext's count is the published 513)
    assert "count mismatch: 2 found, 513 expected" in status["reasontext"], status["reasontext"]
    assert "found: 1 item" in status["uzst-test"], status["uzst-test"]

    run = tmp_path / "run"
    r = _evalkit("score", "--model", "bicubic", "--bench", "reasontext", "--out", str(run), "--metrics",
                 "ocr_a,ocr_by_level", "--limit", "1", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / "summary.json").read_text())
    rows = [json.loads(ln) for ln in (run / "per_image.jsonl").read_text().splitlines()]
    assert s["images"] == 1 and [row["key"] for row in rows] == ["0000"]
    m, row = s["metrics"], rows[0]
    for level in ("perception", "reasoning"):
        assert m[f"ocr_a_regions_{level}"] == 1 and 0 <= m[f"ocr_a_{level}"] <= 1
        assert m[f"ocr_a_{level}"] == row[f"ocr_a_{level}"] and m[f"word_acc_{level}"] in (0.0, 1.0)
    # the two levels together are the overall OCR-A over the same two words
    assert m["ocr_a"] == pytest.approx((m["ocr_a_perception"] + m["ocr_a_reasoning"]) / 2, abs=1e-12)
    assert {e["ref"] for e in row["ocr_a_evidence"]} == {"OPEN", "HOTEL"}
    print("bicubic x4 on the fixture:", {k: m[k] for k in ("ocr_a", "ocr_a_perception", "ocr_a_reasoning")})
