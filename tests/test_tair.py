"""TAIR: the Real-Text / SA-Text-test loaders on fixtures in the published layouts, the text-spotting
metrics (spot_det_f1 / spot_e2e_f1) on hand-counted cases, and `evalkit score --protocol tair` end to
end on real pixels with real OCR."""
import json

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import skimage.data
from PIL import Image, ImageDraw

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.tair import RealText, SATextTest
from evalkit.metrics.registry import create_metric
from evalkit.metrics.spotting import SpotDetF1, SpotE2EF1
from evalkit.protocols import get_protocol
from evalkit.sample import EvalSample, TextInstance
from models.datasets import DatasetEntry
from models.ocr import OCRLine, create_ocr
from tests.helpers import dejavu

# ---------------------------------------------------------------- fixtures in the published layouts

def poly16(x0, y0, x1, y1):
    """A 16-point polygon as TAIR's annotations hold them: 8 points along the top edge left to
    right, 8 along the bottom edge right to left (int32 x, y)."""
    xs = np.linspace(x0, x1, 8).round().astype(int)
    return [[int(x), y0] for x in xs] + [[int(x), y1] for x in xs[::-1]]


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def scene(seed: int, words=(("HOTEL", (40, 40)), ("MARKET", (40, 380)))):
    """A real photo (512² crop of skimage's astronaut / coffee) with large rendered words on light
    plates; returns (HR uint8 512x512x3, [(word, [x1, y1, x2, y2])])."""
    base = skimage.data.astronaut() if seed % 2 == 0 else cv2.resize(skimage.data.coffee()[:, :400], (512, 512))
    img = Image.fromarray(np.ascontiguousarray(base))
    d = ImageDraw.Draw(img)
    boxes = []
    for word, (x, y) in words:
        f = dejavu(72)
        x0, y0, x1, y1 = f.getbbox(word)
        d.rectangle([x - 12, y - 12, x + x1 + 12, y + y1 + 12], fill=(250, 250, 250))
        d.text((x, y), word, font=f, fill=(10, 10, 10))
        boxes.append((word, [x + x0 - 4, y + y0 - 4, x + x1 + 4, y + y1 + 4]))
    return np.asarray(img).copy(), boxes


def lr_of(hr: np.ndarray, level: int) -> np.ndarray:
    """A 128² LR: area downsampling, blurred more at higher levels (so each level differs)."""
    lr = cv2.resize(hr, (128, 128), interpolation=cv2.INTER_AREA)
    return lr if level == 1 else cv2.GaussianBlur(lr, (0, 0), 0.3 * level)


def write_satext(root, rows_per_group=1):
    """SA-Text-test as on Hugging Face: data/test-00000-of-00001.parquet, columns id, hq_img,
    lq_img_lv1..3 (datasets Image structs), text, bbox (2x2), poly (16x2)."""
    rows = []
    for i, sid in enumerate(["sa_101_crop_0", "sa_7_crop_1"]):
        hr, boxes = scene(i)
        rows.append({"id": sid, "hq_img": {"bytes": png(hr), "path": f"{sid}.png"},
                     **{f"lq_img_lv{lv}": {"bytes": png(lr_of(hr, lv)), "path": f"{sid}.png"} for lv in (1, 2, 3)},
                     "text": [w for w, _ in boxes],
                     "bbox": [[[b[0], b[1]], [b[2], b[3]]] for _, b in boxes],
                     "poly": [poly16(*b) for _, b in boxes]})
    img = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("id", pa.string()), ("hq_img", img), ("lq_img_lv1", img), ("lq_img_lv2", img),
                        ("lq_img_lv3", img), ("text", pa.list_(pa.string())),
                        ("bbox", pa.list_(pa.list_(pa.list_(pa.int32())))),
                        ("poly", pa.list_(pa.list_(pa.list_(pa.int32()))))])
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data" / "test-00000-of-00001.parquet",
                   row_group_size=rows_per_group)
    return rows


def write_realtext(root):
    """Real-Text as in TAIR's README (Google Drive): HQ/, LQ/, real_benchmark_dataset.json in the
    authors' nested format {id: {"0": {"text_instances": [{text, bbox, polygon}]}}}."""
    (root / "HQ").mkdir(parents=True)
    (root / "LQ").mkdir()
    ann = {}
    for i, rid in enumerate(["Canon_012", "DSC_1454_x1"]):
        hr, boxes = scene(i)
        cv2.imwrite(str(root / "HQ" / f"{rid}.png"), hr[:, :, ::-1])
        cv2.imwrite(str(root / "LQ" / f"{rid}.png"), lr_of(hr, 1)[:, :, ::-1])
        inst = [{"text": w, "bbox": b, "polygon": poly16(*b)} for w, b in boxes]
        ann[rid] = {"0": {"text_instances": inst}}
    del ann["DSC_1454_x1"]["0"]["text_instances"][1]["polygon"]  # TAIR reads it with .get: bbox then
    (root / "real_benchmark_dataset.json").write_text(json.dumps(ann, indent=2), encoding="utf-8")
    return ann


def entry(root, fmt, name="bench", **extra):
    return DatasetEntry(name=name, format=fmt, root=str(root), extra=extra)


# ---------------------------------------------------------------- loaders

def test_satext_loader_reads_the_hf_parquet_layout(tmp_path):
    rows = write_satext(tmp_path / "SA-Text-test")
    by_id = {r["id"]: r for r in rows}
    for level in (1, 2, 3):
        ld = SATextTest(entry(tmp_path / "SA-Text-test", "tair-satext", level=level, scale=4))
        assert ld.keys() == ["sa_101_crop_0", "sa_7_crop_1"] and ld.has_lr and ld.has_texts
        items = list(ld.items())
        for it in items:
            r = by_id[it.key]
            assert it.hr.shape == (512, 512, 3) and it.lr.shape == (128, 128, 3)
            want_lr = cv2.imdecode(np.frombuffer(r[f"lq_img_lv{level}"]["bytes"], np.uint8), cv2.IMREAD_COLOR)
            assert np.array_equal(it.lr, want_lr[:, :, ::-1])  # the level's column, RGB, lossless
            assert [t.text for t in it.texts] == r["text"] and not any(t.dont_care for t in it.texts)
            for t, p in zip(it.texts, r["poly"]):
                assert t.polygon.shape == (16, 2) and t.polygon.dtype == np.float32
                assert np.array_equal(t.polygon, np.array(p, np.float32))
            assert it.meta == {"scale": 4, "level": level}
    assert SATextTest(entry(tmp_path / "SA-Text-test", "tair-satext")).level == 1  # default level
    with pytest.raises(ValueError, match="level must be 1, 2 or 3"):
        SATextTest(entry(tmp_path / "SA-Text-test", "tair-satext", level=4))
    # a wrong scale is named, not silently resized
    ld = SATextTest(entry(tmp_path / "SA-Text-test", "tair-satext", scale=2), skip_bad=True)
    assert list(ld.items()) == [] and len(ld.skipped) == 2 and "expected LR x2 == HR" in ld.skipped[0]
    with pytest.raises(AnnotationError, match="no data/\\*.parquet"):
        SATextTest(entry(tmp_path, "tair-satext")).keys()


def test_realtext_loader_reads_the_drive_layout(tmp_path):
    root = tmp_path / "Real-Text"
    ann = write_realtext(root)
    ld = RealText(entry(root, "tair-realtext", scale=4))
    assert ld.keys() == ["Canon_012", "DSC_1454_x1"]
    items = {it.key: it for it in ld.items()}
    for k, it in items.items():
        assert it.hr.shape == (512, 512, 3) and it.lr.shape == (128, 128, 3)
        assert [t.text for t in it.texts] == [t["text"] for t in ann[k]["0"]["text_instances"]]
        assert it.hr_path.name == f"{k}.png" and it.meta["scale"] == 4
    assert items["Canon_012"].texts[0].polygon.shape == (16, 2)
    x1, y1, x2, y2 = ann["DSC_1454_x1"]["0"]["text_instances"][1]["bbox"]
    assert np.array_equal(items["DSC_1454_x1"].texts[1].polygon,   # no polygon: the bbox rectangle
                          np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32))
    # an annotated image without its LQ file: named, skipped and counted with skip_bad
    (root / "LQ" / "Canon_012.png").unlink()
    with pytest.raises(AnnotationError, match="'Canon_012' is annotated but has no file in LQ"):
        RealText(entry(root, "tair-realtext")).keys()
    ld = RealText(entry(root, "tair-realtext"), skip_bad=True)
    assert ld.keys() == ["DSC_1454_x1"] and len(ld.skipped) == 1


# ---------------------------------------------------------------- spotting metrics, counted by hand

def box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


def pred(text, *xyxy):
    return OCRLine(box(*xyxy), text, 0.9)


def gt(text, *xyxy, dont_care=False, n16=False):
    return TextInstance(np.array(poly16(*xyxy), np.float32) if n16 else box(*xyxy), text, dont_care)


def sample(preds, gts, key="k"):
    return EvalSample(key=key, sr=np.zeros((300, 300, 3), np.uint8), texts=gts, ocr_sr=preds)


@pytest.fixture(scope="module")
def engine():
    return create_ocr("rapidocr-ppocrv4", num_threads=1)  # not called where ocr_sr / texts are given


# (TP, FP, FN) counted by hand from the rectangles: IoU of axis-aligned boxes is
# overlap area / (area_a + area_b - overlap).
CASES = [
    pytest.param([pred("Hello", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30, n16=True)],
                 (1, 0, 0), (1, 0, 0), id="perfect-16pt-gt"),
    pytest.param([pred("Hallo", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (1, 0, 0), (0, 1, 1), id="right-box-wrong-text"),
    # overlap 20x20 = 400, union 1000 + 1000 - 400 = 1600: IoU 0.25
    pytest.param([pred("Hello", 40, 10, 90, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (0, 1, 1), (0, 1, 1), id="iou-0.25"),
    # pred 50x20 inside GT 100x20: IoU 1000 / 2000 = 0.5 exactly: a match here (TESTR needs > 0.5)
    pytest.param([pred("AB", 0, 0, 50, 20)], [gt("ab", 0, 0, 100, 20)],
                 (1, 0, 0), (1, 0, 0), id="iou-exactly-0.5"),
    # case and punctuation ignored end to end, no lexicon
    pytest.param([pred("HELLO!", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)],
                 (1, 0, 0), (1, 0, 0), id="case-punct"),
    # '###' GT: not counted; a prediction over it is set aside (neither TP nor FP)
    pytest.param([pred("Hello", 10, 10, 60, 30), pred("xyz", 100, 100, 150, 120)],
                 [gt("Hello", 10, 10, 60, 30), gt("###", 100, 100, 150, 120)],
                 (1, 0, 0), (1, 0, 0), id="dont-care-###"),
    # the dont_care flag too; the other GT is missed
    pytest.param([pred("abc", 100, 100, 150, 120)],
                 [gt("Hello", 10, 10, 60, 30), gt("abc", 100, 100, 150, 120, dont_care=True)],
                 (0, 0, 1), (0, 0, 1), id="dont-care-flag"),
    # one line over two word boxes: IoU 0.5 - ... each word box 40x20 inside 100x20: 800/2000 = 0.4
    pytest.param([pred("OPEN NOW", 0, 0, 100, 20)], [gt("OPEN", 0, 0, 40, 20), gt("NOW", 60, 0, 100, 20)],
                 (0, 1, 2), (0, 1, 2), id="line-over-two-words"),
    # two predictions on one GT: one TP, one FP
    pytest.param([pred("Hello", 10, 10, 60, 30), pred("Hello", 12, 10, 60, 30)],
                 [gt("Hello", 10, 10, 60, 30)], (1, 1, 0), (1, 1, 0), id="duplicate"),
    pytest.param([], [gt("Hello", 10, 10, 60, 30)], (0, 0, 1), (0, 0, 1), id="nothing-spotted"),
]


def tp_fp_fn(out, name):
    return out[f"{name}_tp"], out[f"{name}_n_pred"] - out[f"{name}_tp"], out[f"{name}_n_gt"] - out[f"{name}_tp"]


@pytest.mark.parametrize("preds, gts, det, e2e", CASES)
def test_spot_counts_by_hand(engine, preds, gts, det, e2e):
    # the matching rule on given line predictions (units="lines": ocr_sr as injected)
    d = SpotDetF1(ocr=engine, units="lines").update(sample(preds, gts))
    e = SpotE2EF1(ocr=engine, units="lines").update(sample(preds, gts))
    assert tp_fp_fn(d, "spot_det_f1") == det and tp_fp_fn(e, "spot_e2e_f1") == e2e
    for out, name, (tp, fp, fn) in ((d, "spot_det_f1", det), (e, "spot_e2e_f1", e2e)):
        p = tp / (tp + fp) if tp + fp else None
        r = tp / (tp + fn) if tp + fn else None
        assert out[f"{name}_precision"] == p and out[f"{name}_recall"] == r
        assert out[name] == (2 * p * r / (p + r) if p and r else 0.0)
        assert out[f"{name}_gt"] == "annotations" and len(out[f"{name}_evidence"]) == len(preds)


def test_spot_dataset_is_micro_and_halves_merge_exactly(engine):
    s1 = sample([pred("Hello", 10, 10, 60, 30)], [gt("Hello", 10, 10, 60, 30)], "s1")
    s2 = sample([pred("aa", 10, 10, 60, 30), pred("bb", 10, 50, 60, 70), pred("cc", 200, 200, 260, 220)],
                [gt("aa", 10, 10, 60, 30), gt("yy", 10, 50, 60, 70), gt("zz", 10, 90, 60, 110)], "s2")
    s3 = sample([pred("q", 100, 100, 150, 120)], [gt("###", 100, 100, 150, 120)], "s3")
    # by hand: det TP 1+2+0, #pred 1+3+0 (s3's is ignored), #GT 1+3+0; e2e TP 1+1+0
    for cls, tp in ((SpotDetF1, 3), (SpotE2EF1, 2)):
        whole = cls(ocr=engine, units="lines")
        for s in (s1, s2, s3):
            whole.update(s)
        res = whole.compute()
        n = cls.name
        assert (res[f"{n}_tp"], res[f"{n}_n_pred"], res[f"{n}_n_gt"], res[f"{n}_n_ignored"]) == (tp, 4, 4, 1)
        assert res[n] == 2 * tp / 8 and res[f"{n}_precision"] == tp / 4 and res[f"{n}_recall"] == tp / 4
        assert res[f"{n}_images"] == 3
        a, b = cls(ocr=engine, units="lines"), cls(ocr=engine, units="lines")
        a.update(s1)
        b.update(s2)
        b.update(s3)
        a.merge_state(json.loads(json.dumps(b.state())))  # as a Ray worker's state arrives
        assert a.compute() == res
    with pytest.raises(ValueError, match="different settings"):
        SpotDetF1(ocr=engine).merge(SpotDetF1(ocr=engine, iou_threshold=0.7))


def test_spot_settings_name_the_engine_and_the_rule(engine):
    st = SpotE2EF1(ocr=engine).settings()
    assert st["engine"] == "rapidocr-ppocrv4" and "readwords" in st["spotter"] and st["units"] == "words"
    assert "IoU >= 0.5" in st["matching"] and "no lexicon" in st["text"] and "> 0.5" in st["vs_testr"]
    assert "ignored" in SpotDetF1(ocr=engine).settings()["text"]


def test_tair_protocol():
    p = get_protocol("tair")
    assert p.version == "1" and {"spot_det_f1", "spot_e2e_f1", "psnr", "ssim", "lpips"} <= set(p.metrics)
    assert "5f0365f4bf37d7ea1bad2544e988b28f838b0c08" in p.source and "not released" in p.source
    assert any("TESTR" in n and "not comparable" in n for n in p.notes)
    m = create_metric("spot_e2e_f1", ocr="rapidocr-ppocrv4", **p.metric_kwargs("spot_e2e_f1"))
    assert m.iou_threshold == 0.5


# ---------------------------------------------------------------- end to end

def _evalkit(*args, env):
    from helpers import run_evalkit

    return run_evalkit(*args, env=env)


def test_datasets_lists_them_and_score_satext_with_the_tair_protocol(tmp_path):
    data = tmp_path / "data"
    write_satext(data / "SA-Text-test")
    write_realtext(data / "Real-Text")
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n"
                    "  satext-mini: {format: tair-satext, root: SA-Text-test, level: 2, scale: 4, count: 2}\n"
                    "  realtext-mini: {format: tair-realtext, root: Real-Text, scale: 4, count: 2}\n",
                    encoding="utf-8")
    env = {"TEXTSR_DATA": str(data), "TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("datasets", "--datasets", str(mine), env=env)
    assert r.returncode == 0, r.stderr
    status = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip()}
    assert "found: 2 items" in status["satext-mini"] and "found: 2 items" in status["realtext-mini"]
    # the project's own entries read the same roots (their published counts differ from the fixture's)
    assert "found: 2 items" in status["realtext-test"]
    for name in ("satext-test", "satext-test-lv2", "satext-test-lv3"):
        assert "count mismatch: 2 found, 1000 expected" in status[name], status.get(name)

    run = tmp_path / "run"
    r = _evalkit("score", "--model", "bicubic", "--bench", "satext-mini", "--datasets", str(mine),
                 "--protocol", "tair", "--metrics", "psnr,spot_det_f1,spot_e2e_f1", "--limit", "1",
                 "--out", str(run), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["images"] == 1 and s["protocol"]["name"] == "tair" and s["protocol"]["version"] == "1"
    assert s["settings"]["spot_e2e_f1"]["engine"] == "rapidocr-ppocrv4"
    (rec,) = [json.loads(ln) for ln in (run / "per_image.jsonl").read_text().splitlines()]
    assert rec["key"] == "sa_101_crop_0"
    # both 72 px words survive x4 bicubic: PP-OCR spots HOTEL and MARKET on their GT polygons
    for n in ("spot_det_f1", "spot_e2e_f1"):
        assert (rec[f"{n}_tp"], rec[f"{n}_n_pred"], rec[f"{n}_n_gt"]) == (2, 2, 2), rec[f"{n}_evidence"]
        assert rec[n] == rec[f"{n}_precision"] == rec[f"{n}_recall"] == 1.0
        assert s["metrics"][n] == 1.0 and s["metrics"][f"{n}_precision"] == 1.0
    assert 15 < s["metrics"]["psnr"] < 40


def test_words_spot_word_level_gt_where_lines_cannot(engine):
    """One rendered line "OPEN NOW 24" against word-level GT boxes (each word's own ink box): the
    engine's line covers all three and matches none; its words (PP-OCRv4's character positions)
    match each GT word, text included."""
    from helpers import words_on_one_line

    img, boxes = words_on_one_line()
    gts = [gt(word, *b[0], *b[2]) for word, b in zip(("OPEN", "NOW", "24"), boxes)]
    assert [ln.text for ln in engine.readtext(img)] == ["OPEN NOW 24"]
    words = EvalSample(key="w", sr=img, texts=gts)
    d, e = SpotDetF1(ocr=engine).update(words), SpotE2EF1(ocr=engine).update(words)
    assert tp_fp_fn(d, "spot_det_f1") == tp_fp_fn(e, "spot_e2e_f1") == (3, 0, 0)
    lines = EvalSample(key="l", sr=img, texts=gts)
    assert tp_fp_fn(SpotDetF1(ocr=engine, units="lines").update(lines), "spot_det_f1") == (0, 1, 3)
    assert "CTC positions" in SpotE2EF1(ocr=engine).settings()["spotter"]


def test_proportional_word_split_of_a_line():
    from models.ocr import OCRLine
    from models.ocr.base import split_line_proportionally

    line = OCRLine(np.array([[0, 0], [100, 0], [100, 20], [0, 20]], np.float32), "AB CD", 0.9)
    a, b = split_line_proportionally(line)
    assert (a.text, b.text) == ("AB", "CD") and a.score == b.score == 0.9
    np.testing.assert_allclose(a.polygon, [[0, 0], [40, 0], [40, 20], [0, 20]])
    np.testing.assert_allclose(b.polygon, [[60, 0], [100, 0], [100, 20], [60, 20]])
    one = OCRLine(line.polygon, "ABCD", 0.5)
    assert split_line_proportionally(one) == [one]  # no whitespace: the line itself
