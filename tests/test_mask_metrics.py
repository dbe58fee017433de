"""Text-mask metrics (mask_iou, mask_f1) and how evalkit feeds them predicted masks."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from evalkit.metrics.mask import MaskF1, MaskIoU, mask_counts
from evalkit.sample import EvalSample
from helpers import text_corpus


def _rect(h, w, y0, y1, x0, x1, value=255):
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = value
    return m


def test_counts_iou_and_f1_on_rectangles_of_known_overlap():
    gt = _rect(64, 64, 10, 20, 10, 30)                    # 10 x 20 = 200 px
    pred = _rect(64, 64, 10, 20, 20, 40).astype(np.float32) / 255 * 0.9  # 200 px, 100 shared, p = 0.9
    assert mask_counts(pred, gt) == (100, 100, 100)
    assert mask_counts(pred, gt, threshold=0.95) == (0, 0, 200)  # the threshold decides
    s = EvalSample(key="a", sr=np.zeros((64, 64, 3), np.uint8), mask=gt, pred_mask=pred)
    iou, f1 = MaskIoU(), MaskF1()
    assert iou.update(s)["mask_iou"] == pytest.approx(100 / 300)
    assert f1.update(s)["mask_f1"] == pytest.approx(2 * 100 / 400)
    # a second image, perfect: micro (pixel sums) and image means differ as their definitions say
    gt2 = _rect(64, 64, 0, 40, 0, 40)                       # 1600 px
    s2 = EvalSample(key="b", sr=s.sr, mask=gt2, pred_mask=gt2.astype(np.float32) / 255)
    iou.update(s2)
    f1.update(s2)
    assert iou.compute()["mask_iou"] == pytest.approx((100 + 1600) / (300 + 1600))
    assert iou.compute()["mask_iou_image_mean"] == pytest.approx((1 / 3 + 1) / 2)
    c = f1.compute()
    assert c["mask_f1"] == pytest.approx(2 * 1700 / (2 * 1700 + 100 + 100))
    assert c["mask_precision"] == pytest.approx(1700 / 1800) and c["mask_recall"] == pytest.approx(1700 / 1800)


def test_images_without_gt_or_prediction_are_skipped_with_the_reason():
    sr = np.zeros((8, 8, 3), np.uint8)
    m = MaskIoU()
    assert m.update(EvalSample(key="a", sr=sr, mask=None, pred_mask=np.ones((8, 8), np.float32)))["mask_iou"] is None
    assert m.compute()["mask_iou"] is None and "no ground-truth text masks" in m.why_null()
    m = MaskF1()
    m.update(EvalSample(key="a", sr=sr, mask=np.zeros((8, 8), np.uint8), pred_mask=None))
    assert "no predicted text mask" in m.why_null()
    m = MaskIoU()  # both empty: undefined, skipped
    assert m.update(EvalSample(key="a", sr=sr, mask=np.zeros((8, 8), np.uint8),
                               pred_mask=np.zeros((8, 8), np.float32)))["mask_iou"] is None
    with pytest.raises(ValueError, match="differ in size"):
        mask_counts(np.zeros((8, 8)), np.zeros((8, 9), np.uint8))


def _evalkit(*args, env=None):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return text_corpus(tmp_path_factory.mktemp("corpus"), 3)


def test_masks_made_elsewhere_are_scored_against_the_benchmark_masks(corpus, tmp_path):
    """--bench with --sr-dir and --mask-dir: the corpus's own GT masks score 1; the same masks
    dilated by a 5x5 square score exactly what pixel counting on the GT says."""
    from synth.export import iter_samples

    sr_dir, same, fat = tmp_path / "sr", tmp_path / "m_same", tmp_path / "m_fat"
    for d in (sr_dir, same, fat):
        d.mkdir()
    tp = fp = 0
    for key, f in iter_samples(corpus):
        (sr_dir / f"{key}.png").write_bytes(f["hr.png"])
        (same / f"{key}.png").write_bytes(f["mask.png"])
        gt = cv2.imdecode(np.frombuffer(f["mask.png"], np.uint8), cv2.IMREAD_GRAYSCALE)
        grown = cv2.dilate(gt, np.ones((5, 5), np.uint8))
        cv2.imwrite(str(fat / f"{key}.png"), grown)
        tp += int(np.count_nonzero(gt > 127))
        fp += int(np.count_nonzero((grown > 127) & (gt <= 127)))
    env = {"TEXTSR_CACHE": str(tmp_path / "cache")}
    base = ["score", "--bench", str(corpus), "--sr-dir", str(sr_dir), "--no-progress"]
    r = _evalkit(*base, "--mask-dir", str(same), "--metrics", "psnr,mask_iou,mask_f1", "--out", str(tmp_path / "a"), env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["metrics"]["mask_iou"] == 1.0 and s["metrics"]["mask_f1"] == 1.0 and s["metrics"]["mask_images"] == 3
    assert s["settings"]["mask_iou"]["threshold"] == "prediction >= 0.5"
    r = _evalkit(*base, "--mask-dir", str(fat), "--out", str(tmp_path / "b"), env=env)  # default metrics: + masks
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["metrics"]["mask_iou"] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert s["metrics"]["mask_f1"] == pytest.approx(2 * tp / (2 * tp + fp), rel=1e-12)
    rec = json.loads((tmp_path / "b" / "per_image.jsonl").read_text().splitlines()[0])
    assert rec["mask_path"].startswith(str(fat))


def test_mask_metrics_are_null_with_a_reason_where_they_cannot_be_computed(corpus, tmp_path):
    env = {"TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--metrics", "psnr,mask_iou",
                 "--out", str(tmp_path / "a"), "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["metrics"]["mask_iou"] is None and "no predicted text mask" in s["unavailable"]["mask_iou"]
    assert not (tmp_path / "a" / "mask").exists()
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(tmp_path / "b"),
                 "--mask-dir", str(tmp_path), env=env)
    assert r.returncode == 2 and "--mask-dir" in r.stderr, r.stderr


def test_a_model_with_a_text_mask_writes_and_scores_it(corpus, tmp_path):
    """TADiSR (tiny, random weights) predicts a text mask beside the SR: evalkit writes it per image at
    HR size and scores it; the numbers equal plain pixel counting on the written PNGs."""
    from synth.export import iter_samples

    out = tmp_path / "run"
    r = _evalkit("score", "--model", "tadisr-kolors-tiny", "--bench", str(corpus), "--metrics", "psnr,mask_iou,mask_f1",
                 "--out", str(out), "--no-progress", env={"TEXTSR_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    inter = union = 0
    for key, f in iter_samples(corpus):
        gt = cv2.imdecode(np.frombuffer(f["mask.png"], np.uint8), cv2.IMREAD_GRAYSCALE) > 127
        pred = cv2.imread(str(out / "mask" / f"{key}.png"), cv2.IMREAD_GRAYSCALE)
        assert pred.shape == gt.shape
        pred = pred >= 128  # round(p * 255) >= 128  <=>  p >= 0.5
        inter += int((pred & gt).sum())
        union += int((pred | gt).sum())
    s = json.loads((out / "summary.json").read_text())
    assert s["metrics"]["mask_iou"] == pytest.approx(inter / union, rel=1e-12) and s["metrics"]["mask_images"] == 3
    assert 0 <= s["metrics"]["mask_f1"] <= 1 and "mask_iou" not in s["unavailable"]
