"""Benchmarks named in datasets.yaml, end to end: `evalkit datasets` statuses, and `evalkit score
--bench NAME` on fixtures in the published layouts (an HR-only set gets a fixed, cached LR)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import skimage.data

from tests.helpers import dejavu


def _evalkit(*args, env):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def _svt(root):
    """SVT test.xml with two real photos carrying large rendered words."""
    from PIL import Image, ImageDraw

    (root / "img").mkdir(parents=True)
    recs = []
    for i, word in enumerate(["MARKET", "HOTEL"]):
        im = Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[:256, i * 200:i * 200 + 256]))
        d = ImageDraw.Draw(im)
        d.rectangle([20, 100, 236, 160], fill=(245, 245, 245))
        d.text((30, 108), word, font=dejavu(40), fill=(10, 10, 10))
        im.save(root / "img" / f"{i:02d}_00.jpg", quality=95)
        recs.append(f"""<image><imageName>img/{i:02d}_00.jpg</imageName><address/><lex>{word}</lex>
<Resolution x="256" y="256"/><taggedRectangles><taggedRectangle height="60" width="216" x="20" y="100">
<tag>{word}</tag></taggedRectangle></taggedRectangles></image>""")
    (root / "test.xml").write_text("<tagset>" + "".join(recs) + "</tagset>", encoding="utf-8")


def test_datasets_status_and_score_an_hr_only_benchmark(tmp_path):
    data = tmp_path / "data"
    _svt(data / "SVT")
    (data / "ICDAR2015" / "test_images").mkdir(parents=True)
    (data / "ICDAR2015" / "test_gts").mkdir(parents=True)
    cv2.imwrite(str(data / "ICDAR2015" / "test_images" / "img_1.jpg"), skimage.data.astronaut()[:64, :64])
    (data / "ICDAR2015" / "test_gts" / "gt_img_1.txt").write_text("1,2,3,oops\n", encoding="utf-8")
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n  svt-mini: {format: svt, root: SVT, split: test, count: 2}\n"
                    "  svt-wrong-count: {format: svt, root: SVT, split: test, count: 249}\n", encoding="utf-8")
    env = {"TEXTSR_DATA": str(data), "TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("datasets", "--datasets", str(mine), env=env)
    assert r.returncode == 0, r.stderr
    status = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln and not ln[0].isdigit()}
    assert "found: 2 items" in status["svt-mini"]
    assert "count mismatch: 2 found, 249 expected" in status["svt-wrong-count"]
    assert "unreadable annotation" in status["icdar2015-test"] and "gt_img_1.txt:1" in status["icdar2015-test"]
    assert "root missing" in status["textzoom-easy"]

    run = tmp_path / "run"
    args = ["score", "--model", "bicubic", "--bench", "svt-mini", "--datasets", str(mine), "--out", str(run),
            "--metrics", "psnr,ocr_a", "--scale", "4", "--no-progress"]
    r = _evalkit(*args, env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["images"] == 2 and s["bench"] == "svt-mini"
    assert s["bench_info"]["synthesised_lr"]["preset"] == "matlab-bicubic" and "preset_hash" in s["bench_info"]["synthesised_lr"] and s["bench_info"]["synthesised_lr"]["seed"] == 0
    assert s["metrics"]["ocr_a"] is not None and 0 <= s["metrics"]["ocr_a"] <= 1
    lr_files = sorted((tmp_path / "cache" / "fixed-lr").rglob("*.png"))
    assert len(lr_files) == 2
    first = [p.read_bytes() for p in lr_files]
    r = _evalkit(*args[:-1] + ["--no-progress"], env={**env})  # same out: refused without --resume
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _evalkit(*[a if a != str(run) else str(tmp_path / "run2") for a in args], env=env)
    assert r.returncode == 0, r.stderr
    assert [p.read_bytes() for p in sorted((tmp_path / "cache" / "fixed-lr").rglob("*.png"))] == first  # same LR reused
    s2 = json.loads((tmp_path / "run2" / "summary.json").read_text())
    assert s2["metrics"]["psnr"] == s["metrics"]["psnr"]


def test_score_a_paired_benchmark_with_real_lr(tmp_path):
    """sr-pairs (the diffusion-SR papers' RealSR/DRealSR layout): LR read, not synthesised."""
    root = tmp_path / "data" / "RealSRVal_crop128"
    (root / "test_HR").mkdir(parents=True)
    (root / "test_LR").mkdir()
    for i, name in enumerate(["astronaut", "coffee"]):
        hr = np.ascontiguousarray(getattr(skimage.data, name)()[:256, :256])
        cv2.imwrite(str(root / "test_HR" / f"{i:03d}.png"), hr[:, :, ::-1])
        cv2.imwrite(str(root / "test_LR" / f"{i:03d}.png"), cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA)[:, :, ::-1])
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n  realsr-mini: {format: sr-pairs, root: RealSRVal_crop128, scale: 4, count: 2}\n")
    env = {"TEXTSR_DATA": str(tmp_path / "data"), "TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("score", "--model", "bicubic", "--bench", "realsr-mini", "--datasets", str(mine),
                 "--out", str(tmp_path / "run"), "--metrics", "psnr,ssim", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["images"] == 2 and s["scale"] == 4 and "synthesised_lr" not in s["bench_info"]
    assert 18 < s["metrics"]["psnr"] < 40
    assert not (tmp_path / "cache" / "fixed-lr").exists()
