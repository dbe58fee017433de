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
