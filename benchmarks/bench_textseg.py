"""Text segmentation quality: IoU / F-score of registered segmenters against exact glyph masks.

Usage: .venv/bin/python benchmarks/bench_textseg.py [--segmenters ppocr-db-glyph,sam-ts]
           [--n 40] [--seed 0] [--textseg DIR] [--max-textseg 200] [--set NAME.KEY=VALUE ...]

Sources:
  rendered  word crops drawn by synth's ``TextRenderer`` (English, the ftsr recipe's renderer with
            its defaults: 24-96 px fonts, outlines, rotation, bends), alpha-composited on a plain
            random colour (half) or a random crop of a skimage colour photo (half); the ground
            truth is the renderer's own glyph mask (``TextPatch.mask``, outline included).
  textseg   (``--textseg DIR``) word crops of a TextSeg folder (``image/``, ``semantic_label/``,
            ``annotation/``: ``synth.sources.images.TextSegWords``) with the dataset's masks.

Per crop: IoU = |P ∩ G| / |P ∪ G| and F = 2|P ∩ G| / (|P| + |G|) of the text pixels (1.0 when both
are empty); the table gives their mean and median over crops, the share of crops with IoU < 0.5,
and seconds per crop (building the segmenter not counted). ``--set sam-ts.window=512`` passes
constructor keyword arguments (values parsed as YAML). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.seg import create_segmenter


def iou_f(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    p, g = pred > 0, gt > 0
    inter, union, total = (p & g).sum(), (p | g).sum(), p.sum() + g.sum()
    if union == 0:
        return 1.0, 1.0
    return float(inter / union), float(2 * inter / total)


def _photos() -> list[np.ndarray]:
    import skimage.data

    return [getattr(skimage.data, n)() for n in ("astronaut", "coffee", "chelsea", "rocket")]


def rendered_crops(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (RGB crop, glyph mask) pairs of rendered English text on colour or photo backgrounds."""
    from synth.sources.rendered import RenderConfig, TextRenderer

    renderer = TextRenderer(RenderConfig(languages={"en": 1.0}))
    photos = _photos()
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        p = renderer.sample(rng)
        h, w = p.mask.shape
        if rng.random() < 0.5:
            bg = np.empty((h, w, 3), np.float32)
            bg[:] = rng.integers(0, 256, 3)
        else:
            ph = photos[int(rng.integers(len(photos)))]
            if ph.shape[0] < h or ph.shape[1] < w:
                continue
            y, x = rng.integers(ph.shape[0] - h + 1), rng.integers(ph.shape[1] - w + 1)
            bg = ph[y:y + h, x:x + w].astype(np.float32)
        a = p.alpha[..., None]
        rgb = np.clip(a * p.rgb + (1 - a) * bg + 0.5, 0, 255).astype(np.uint8)
        out.append((rgb, p.mask))
    return out


def textseg_crops(root: Path, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from synth.sources.images import TextSegWords

    src = TextSegWords(root)
    out = []
    for i in range(min(limit, len(src))):
        img, m = src.load(i), src.mask(i)
        if isinstance(img, np.ndarray) and m is not None and img.size:
            out.append((img, m))
    return out


def run(seg, crops) -> dict:
    scores, t = [], 0.0
    for rgb, gt in crops:
        t0 = time.perf_counter()
        pred = seg.segment(rgb)
        t += time.perf_counter() - t0
        scores.append(iou_f(pred, gt))
    s = np.array(scores)
    return {"n": len(s), "iou": s[:, 0].mean(), "iou_med": np.median(s[:, 0]), "f": s[:, 1].mean(),
            "low": (s[:, 0] < 0.5).mean(), "sec": t / max(1, len(s))}


def _kwargs(sets: list[str]) -> dict[str, dict]:
    import yaml

    out: dict[str, dict] = {}
    for item in sets:
        key, _, value = item.partition("=")
        name, _, arg = key.rpartition(".")
        if not name or not arg or not _:
            raise SystemExit(f"--set wants NAME.KEY=VALUE, got {item!r}")
        out.setdefault(name, {})[arg] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--segmenters", default="ppocr-db-glyph")
    ap.add_argument("--n", type=int, default=40, help="rendered crops")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--textseg", type=Path, default=None, help="a TextSeg-format folder")
    ap.add_argument("--max-textseg", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], metavar="NAME.KEY=VALUE")
    args = ap.parse_args(argv)
    kw = _kwargs(args.set)
    sources = {"rendered": rendered_crops(args.n, args.seed)} if args.n > 0 else {}
    if args.textseg is not None:
        sources["textseg"] = textseg_crops(args.textseg, args.max_textseg)
    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}; seed {args.seed}\n")
    print("| segmenter | source | crops | mean IoU | median IoU | mean F | IoU < 0.5 | s / crop |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in [s.strip() for s in args.segmenters.split(",") if s.strip()]:
        seg = create_segmenter(name, **kw.get(name, {}))
        for src, crops in sources.items():
            r = run(seg, crops)
            print(f"| {name} | {src} | {r['n']} | {r['iou']:.3f} | {r['iou_med']:.3f} | {r['f']:.3f} | "
                  f"{100 * r['low']:.0f} % | {r['sec']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
