"""Batch jobs on Ray (#13): ftsr build with 1 and 2 workers on a realistic background pool, with and
without ``synth prefilter`` verdicts, and ``evalkit score`` images/s with 1 and 2 Ray workers against
the single-process run — all measured in the same run, each configuration in its own process.

The pool: ``--pool`` (default 240) distinct JPEG files, 700–1400 px on the long side, cut from the
embedded photos (scikit-image's and matplotlib's) by a seeded random crop, 1–2.2× bicubic
enlargement, flip and colour/brightness jitter — so every file is a new image to OCR, as a folder of
LSDIR photos is, and about a quarter of them hold text (crops of the astronaut's badge and Grace
Hopper's name plate), as a web-photo pool does.

    .venv/bin/python benchmarks/bench_cluster.py [--num 64] [--pool 240] [--eval 16]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_pool(root: Path, n: int, seed: int = 0) -> Path:
    import cv2
    import numpy as np

    from synth.sources.images import SkimagePhotos
    from synth.imageio import decode_image

    src = SkimagePhotos()
    photos = [decode_image(src.load(i), stage="pool", what=src.item_id(i), allow_gray=False) for i in range(len(src))]
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        ch, cw = int(rng.uniform(0.6, 1.0) * h), int(rng.uniform(0.6, 1.0) * w)
        y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        s = float(np.clip(rng.uniform(700, 1400) / max(ch, cw), 1.0, 2.2))
        crop = cv2.resize(crop, (round(cw * s), round(ch * s)), interpolation=cv2.INTER_CUBIC)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gain = rng.uniform(0.85, 1.15, 3) * rng.uniform(0.9, 1.1)
        crop = np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"bg{k:04d}.jpg"), crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    return root


def _recipe_sets(pool: Path, verdicts: str | None, per_shard: int) -> list[str]:
    sets = [f"backgrounds.sources=[{{path: '{pool}', format: image-folder}}]", f"samples_per_shard={per_shard}"]
    return sets + ([f"backgrounds.verdicts={verdicts}"] if verdicts else [])


def _build(num: int, workers: int, pool: str, verdicts: str, per_shard: int) -> dict:
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.ray_executor import RayExecutor
    from synth.recipe import load_recipe

    recipe = load_recipe("ftsr", _recipe_sets(Path(pool), verdicts or None, per_shard))
    ex = RayExecutor(recipe, catalog=load_catalog(), workers=workers)
    t0 = time.perf_counter()
    ex.start()
    ready = time.perf_counter()
    ex.start = lambda: None  # already started: build() calls start() itself
    with tempfile.TemporaryDirectory() as out:
        m = build(recipe, out, num, executor=ex, progress=False)
    t1 = time.perf_counter()
    return {"workers": workers, "verdicts": bool(verdicts), "setup_s": ready - t0, "run_s": t1 - ready,
            "rate": m["counts"]["kept"] / (t1 - ready), "kept": m["counts"]["kept"],
            "rejected_bg": m["counts"]["rejected"].get("background", {}),
            "driver_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _prefilter(pool: str, out: str, workers: int) -> dict:
    from pipelines.prefilter import prefilter
    from synth.recipe import load_recipe

    recipe = load_recipe("ftsr", _recipe_sets(Path(pool), None, 256))
    t0 = time.perf_counter()
    s = prefilter(recipe, None, out, workers=workers, progress=False)
    return {**s, "wall_s": time.perf_counter() - t0}


def _score(corpus: str, workers: int, out: str) -> dict:
    from evalkit.runner import ScoreConfig, score

    cfg = ScoreConfig(out=Path(out), model="bicubic", bench=corpus, metrics=["psnr", "ssim", "ocr_a", "ocr_f1"],
                      progress=False, batch_size=2)
    ex = None
    if workers:
        from pipelines.score_ray import RayScoring

        ex = RayScoring(cfg, workers=workers)
    t0 = time.perf_counter()
    s = score(cfg, ex)
    wall = time.perf_counter() - t0
    return {"workers": workers, "images": s["images"], "wall_s": wall, "loop_s": s["seconds"],
            "rate": s["images"] / s["seconds"], "metrics": s["metrics"]}


def _spawn(*args) -> dict:
    r = subprocess.run([sys.executable, __file__, "--one", *map(str, args)], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=64, help="ftsr samples per build")
    ap.add_argument("--pool", type=int, default=240, help="distinct background files")
    ap.add_argument("--per-shard", type=int, default=8)
    ap.add_argument("--eval", type=int, default=16, help="images scored by evalkit")
    ap.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        kind, *rest = a.one
        if kind == "build":
            print(json.dumps(_build(int(rest[0]), int(rest[1]), rest[2], rest[3] if len(rest) > 3 else "", a.per_shard)))
        elif kind == "prefilter":
            print(json.dumps(_prefilter(rest[0], rest[1], int(rest[2]))))
        else:
            print(json.dumps(_score(rest[0], int(rest[1]), rest[2])))
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; local Ray; "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool = make_pool(tmp / "pool", a.pool)
        verdicts = tmp / "verdicts.jsonl"
        pf = _spawn("prefilter", pool, verdicts, 2)
        print(f"\nbackground pool: {a.pool} distinct files; synth prefilter with 2 workers: {pf['images']} images "
              f"in {pf['wall_s']:.1f} s wall ({pf['images_per_s']:.2f} images/s OCR'd), verdicts {pf['counts']}")
        print(f"\nftsr build, --num {a.num}, 512² ×4, samples_per_shard {a.per_shard} (set-up = Ray start + one "
              "worker's models; rate after set-up):")
        print("| verdicts | workers | set-up s | samples/s | background rejections | driver peak RSS MiB |")
        print("|---|---|---|---|---|---|", flush=True)
        builds = []
        for v in (False, True):
            for w in (1, 2):
                r = _spawn("build", a.num, w, pool, verdicts if v else "")
                builds.append(r)
                print(f"| {'prefilter file' if r['verdicts'] else 'OCR in build'} | {r['workers']} | "
                      f"{r['setup_s']:.1f} | {r['rate']:.2f} | {r['rejected_bg']} | {r['driver_peak_mib']:.0f} |",
                      flush=True)
        b = {(r["verdicts"], r["workers"]): r["rate"] for r in builds}
        print(f"2 workers vs 1: {b[False, 2] / b[False, 1]:.2f}x without verdicts, {b[True, 2] / b[True, 1]:.2f}x "
              f"with; verdicts vs OCR in the build: {b[True, 1] / b[False, 1]:.2f}x (1 worker), "
              f"{b[True, 2] / b[False, 2]:.2f}x (2)", flush=True)
        from bench_evalkit import make_corpus  # the same 512² rendered-text corpus as bench_evalkit

        corpus = make_corpus(tmp / "corpus", a.eval)
        print(f"\nevalkit score, bicubic on {a.eval} images 512² ×4, psnr ssim ocr_a ocr_f1, batch 2 (rate over "
              "the scoring loop, after set-up; wall includes set-up):")
        print("| executor | images/s | wall s | vs single process |")
        print("|---|---|---|---|", flush=True)
        scores = []
        for w in (0, 1, 2):
            r = _spawn("score", corpus, w, tmp / f"run{w}")
            scores.append(r)
            name = "single process" if not r["workers"] else f"Ray, {r['workers']} worker(s)"
            print(f"| {name} | {r['rate']:.2f} | {r['wall_s']:.1f} | {r['rate'] / scores[0]['rate']:.2f}x |",
                  flush=True)
    same = all(r["metrics"] == scores[0]["metrics"] for r in scores)
    print(f"metrics identical across executors: {same}")


if __name__ == "__main__":
    main()
