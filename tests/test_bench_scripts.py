"""The benchmark scripts still run (their tiny/smoke modes): a benchmark that rots unnoticed is
worse than none. Wall-clock numbers are never asserted."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_diffusion_smoke(tmp_path):
    png = tmp_path / "speed.png"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_diffusion.py"), "--tiny", "--size", "32",
                          "--tiled-size", "64", "--cpu-tile", "4", "--repeat", "1", "--seesr-steps", "2",
                          "--methods", "osediff,pisa-sr,codsr,seesr,glyph-sr", "--tiled-methods",
                          "osediff,pisa-sr,codsr,seesr", "--glyph-steps", "2", "--plot", str(png)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [ln for ln in out.stdout.splitlines() if ln.startswith("| ") and "×" in ln]
    names = {ln.split("|")[2].strip() for ln in rows}
    assert {"osediff", "pisa-sr", "codsr", "seesr (2 steps, CFG)",
            "osediff (LoRA unmerged, official default)", "bare SDXL (VAE enc + 1 UNet call + VAE dec)",
            "glyph-sr (2 EDM steps, CFG, ping-pong τ=1)"} <= names, out.stdout
    assert sum("64²" in ln for ln in rows) == 5  # bare + the four methods, tiled
    for ln in rows:
        assert re.search(r"\| \d+\.\d{3} \|", ln), ln
    assert png.stat().st_size > 10_000


def test_bench_textseg_smoke(tmp_path):
    import json

    import cv2
    import numpy as np

    # a one-word TextSeg-format folder: dark glyph-like bars on white, the bars as the mask
    for d in ("image", "semantic_label", "annotation"):
        (tmp_path / d).mkdir()
    img = np.full((60, 120, 3), 255, np.uint8)
    mask = np.zeros((60, 120), np.uint8)
    for x in (20, 45, 70):
        img[20:40, x:x + 8] = 20
        mask[20:40, x:x + 8] = 255
    cv2.imwrite(str(tmp_path / "image" / "a.jpg"), img)
    cv2.imwrite(str(tmp_path / "semantic_label" / "a_maskfg.png"), mask)
    (tmp_path / "annotation" / "a_anno.json").write_text(json.dumps(
        {"0000": {"text": "III", "bbox": [15, 15, 85, 15, 85, 45, 15, 45]}}))
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_textseg.py"), "--segmenters",
                          "sam-ts-tiny", "--n", "3", "--textseg", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [ln.split("|") for ln in out.stdout.splitlines() if ln.startswith("| sam-ts-tiny")]
    assert [(r[2].strip(), r[3].strip()) for r in rows] == [("rendered", "3"), ("textseg", "1")], out.stdout
    for r in rows:
        assert 0.0 <= float(r[4]) <= 1.0 and 0.0 <= float(r[6]) <= 1.0
