"""evalkit score throughput and its overhead over calling pyiqa and RapidOCR directly.

On N synth samples at 512² (×4 bicubic LR, rendered text), scores a folder of SR outputs with the
default metric set available offline (psnr, ssim, niqe, ocr_a, ocr_f1, text_psnr, text_ssim,
char_hallucination; lpips needs downloaded weights) and, in the same process, runs the same
computations as direct library calls: pyiqa psnr/ssim (Y, ycbcr) and niqe, RapidOCR detection +
recognition on HR and SR, recognition of the GT regions cropped from SR. Prints images/s of both
and the overhead ratio (target ≤ 10 %), excluding the one-off report.html (timed separately). The
direct path is warmed up first; ours pays its own start-up (OCR sessions, NIQE parameters).

    .venv/bin/python benchmarks/bench_evalkit.py [--num 16]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402


def make_corpus(root: Path, num: int) -> Path:
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from synth.recipe import load_recipe

    recipe = load_recipe("ftsr", ["text.rendered_prob=1.0", "text.rendered.languages={en: 1.0}",
                                  "degrade.preset=cv2-bicubic", "text.instances=[3, 5]"])
    build(recipe, root, num, executor=LocalExecutor(recipe), progress=False)
    return root


def direct(items, srs) -> float:
    """The same numbers through pyiqa and RapidOCR called directly; returns seconds."""
    import pyiqa
    import torch
    from rapidocr_onnxruntime import RapidOCR

    from evalkit.metrics.iqa import niqe_params_path  # the offline NIQE parameters pyiqa needs
    from evalkit.metrics.ocr_match import crop_polygon

    psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    niqe = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(niqe_params_path()[0]))
    ocr = RapidOCR(det_limit_side_len=960, det_limit_type="max")

    def t(img):
        return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255

    a = t(srs[0])  # warm-up: sessions and first-call costs are not counted for the direct path
    psnr(a, a), ssim(a, a), niqe(a)
    ocr(np.ascontiguousarray(srs[0][:, :, ::-1]))
    t0 = time.perf_counter()
    for it, sr in zip(items, srs):
        a, b = t(sr), t(it.hr)
        psnr(a, b), ssim(a, b), niqe(a)
        m = it.mask > 0
        _ = 10 * np.log10(255.0**2 / max(np.mean((sr[m].astype(float) - it.hr[m]) ** 2), 1e-10))
        ocr(np.ascontiguousarray(it.hr[:, :, ::-1]))
        ocr(np.ascontiguousarray(sr[:, :, ::-1]))
        crops = [np.ascontiguousarray(crop_polygon(sr, t_.polygon)[:, :, ::-1]) for t_ in it.texts]
        ocr.text_rec(crops)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num", type=int, default=16)
    a = ap.parse_args()
    import cv2

    from evalkit.benches import open_bench
    from evalkit.runner import ScoreConfig, score

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TEXTSR_CACHE"] = str(tmp / "cache")
        corpus = make_corpus(tmp / "corpus", a.num)
        items = list(open_bench(str(corpus)).items)
        sr_dir, hr_dir = tmp / "sr", tmp / "hr"
        sr_dir.mkdir()
        hr_dir.mkdir()
        srs = []
        for it in items:
            sr = cv2.resize(it.lr, (it.hr.shape[1], it.hr.shape[0]), interpolation=cv2.INTER_CUBIC)
            srs.append(sr)
            cv2.imwrite(str(sr_dir / f"{it.key}.png"), sr[:, :, ::-1])
            cv2.imwrite(str(hr_dir / f"{it.key}.png"), it.hr[:, :, ::-1])
        metrics = ["psnr", "ssim", "niqe", "ocr_a", "ocr_f1", "text_psnr", "text_ssim", "char_hallucination"]
        t_direct = direct(items, srs)
        # ours on the corpus (GT polygons and masks, like the direct loop), SR given as a folder
        cfg = ScoreConfig(out=tmp / "run", bench=None, sr_dir=str(sr_dir), hr_dir=str(hr_dir), metrics=metrics,
                          progress=False, report_worst=0)
        import evalkit.report as report

        t_rep = [0.0]
        orig = report.write_reports

        def timed(*args, **kw):
            t = time.perf_counter()
            orig(*args, **kw)
            t_rep[0] = time.perf_counter() - t

        report.write_reports = timed
        t0 = time.perf_counter()
        score(cfg)
        t_ours = time.perf_counter() - t0 - t_rep[0]
    n = len(items)
    print(f"images: {n} at 512², metrics: {', '.join(metrics)}")
    print(f"| path | s total | images/s |\n|---|---|---|")
    print(f"| direct pyiqa + RapidOCR calls | {t_direct:.1f} | {n / t_direct:.2f} |")
    print(f"| evalkit score (excl. report, {t_rep[0]:.1f} s) | {t_ours:.1f} | {n / t_ours:.2f} |")
    print(f"overhead: {100 * (t_ours / t_direct - 1):+.1f} %")


if __name__ == "__main__":
    main()
