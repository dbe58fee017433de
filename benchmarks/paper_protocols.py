"""Each evaluation protocol's numbers on the published third-party data, beside the published ones.

    .venv/bin/python benchmarks/paper_protocols.py [--paper ../shared/paper] [--out table.md]

For every protocol (``evalkit.protocols``) and each OSEDiff set in ``<paper>/osediff/{realsr,drealsr}``
(OSEDiff's outputs ``results_osediff/`` vs ``test_HR/``), the metrics that run offline (PSNR, SSIM,
NIQE) are computed with the metric classes, built exactly as the runner builds them
(``create_metric(name, crop_border=..., **protocol.metrics[name])``). "published" is the mean of the
per-image values OSEDiff's ``test_metrics.py`` logged for the images of the subset; those are pyiqa
numbers, so only the ``osediff`` protocol is expected to match them — the other rows show how far
each convention is from them. Every other metric of a protocol is listed with the reason it is null
here (weights missing offline, or an OCR metric with no published value on these sets).

Then pyiqa's calibration set (``<paper>/iqa-pytorch``): NIQE and PIQE of the five distorted images
beside the official (MATLAB) values and pyiqa's own. The official PSNR/SSIM there are RGB / rgb2gray
values, a convention no protocol here uses, so they are left out.
"""
from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalkit.benches import read_rgb  # noqa: E402  (cv2, BGR -> RGB: as test_metrics.py reads)
from evalkit.published import read_metrics_log  # noqa: E402

OFFLINE = ("psnr", "ssim", "niqe")
LOGGED = {"psnr": "PSNR", "ssim": "SSIM", "niqe": "NIQE"}
OCR_METRICS = {"ocr_a", "ocr_f1", "char_hallucination", "text_psnr", "text_ssim"}


def why_null(name: str, kwargs: dict) -> str:
    from evalkit.metrics.base import MetricUnavailable
    from evalkit.metrics.registry import create_metric

    if name in OCR_METRICS:
        return "OCR metric: no text annotations or published value on these sets"
    try:
        create_metric(name, device="cpu", allow_download=False, ocr=None, **kwargs)
    except MetricUnavailable as e:
        # the file names are enough here; the runner records the full reason (sources, places looked)
        return re.sub(r" \([^()]*(\([^()]*\))?[^()]*\)", "", e.reason.split(";")[0])
    return "runs here, not scored by this script"


def score_osediff_sets(paper: Path) -> tuple[list[tuple], dict[str, dict[str, str]]]:
    from evalkit.metrics.registry import create_metric
    from evalkit.protocols import get_protocol, list_protocols
    from evalkit.sample import EvalSample

    sets = {}
    for s in ("realsr", "drealsr"):
        (log,) = (paper / "osediff" / s).glob("test_METRICS_*.log")
        logged = read_metrics_log(log)
        names = sorted(p.name for p in (paper / "osediff" / s / "results_osediff").glob("*.png"))
        sets[s] = [(n, read_rgb(paper / "osediff" / s / "results_osediff" / n),
                    read_rgb(paper / "osediff" / s / "test_HR" / n), logged[n]) for n in names]
    rows, nulls = [], {}
    for pname in list_protocols():
        proto = get_protocol(pname)
        nulls[pname] = {m: why_null(m, proto.metric_kwargs(m)) for m in proto.metrics if m not in OFFLINE}
        for s, items in sets.items():
            for mname in (m for m in OFFLINE if m in proto.metrics):
                metric = create_metric(mname, device="cpu", allow_download=False, ocr=None,
                                       **proto.metric_kwargs(mname))
                for n, sr, hr, _ in items:
                    metric.update(EvalSample(key=n, sr=sr, hr=hr))
                ours = metric.compute()[mname]
                pub = float(np.mean([log[LOGGED[mname]] for *_, log in items]))
                conv = metric.settings().get("convention", metric.settings().get("color_space", ""))
                rows.append((pname, f"{s} ({len(items)})", mname, str(conv), ours, pub))
    return rows, nulls


def calibration(paper: Path) -> list[tuple]:
    from evalkit.metrics.registry import create_metric

    root = paper / "iqa-pytorch"
    official = {r["Method"]: r for r in csv.DictReader((root / "results_official.csv").open())}
    summary = {r["Method"]: r for r in csv.DictReader((root / "calibration_summary.csv").open())}
    rows = []
    for mname in ("niqe", "piqe"):
        metric = create_metric(mname, device="cpu", allow_download=False)
        for img in sorted(k for k in official[mname] if k != "Method"):
            ours = metric.score(read_rgb(root / "dist_dir" / img))
            rows.append((mname, img, ours, float(official[mname][img]), float(summary[f"{mname}(ours)"][img])))
    return rows


def fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "null"
    return f"{v:.4f}" if metric in ("psnr", "niqe", "piqe") else f"{v:.5f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paper", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "paper")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # NIQE writes its parameter file from basicsr's npz; keep the user's caches out of it unless set
    os.environ.setdefault("TEXTSR_WEIGHTS", tempfile.mkdtemp(prefix="textsr-weights-"))

    rows, nulls = score_osediff_sets(args.paper)
    out = ["| protocol | set (images) | metric | convention | ours | published | diff |",
           "|---|---|---|---|---:|---:|---:|"]
    for pname, s, m, conv, ours, pub in rows:
        diff = "" if ours is None else f"{ours - pub:+.{4 if m in ('psnr', 'niqe') else 5}f}"
        out.append(f"| {pname} | {s} | {m} | {conv} | {fmt(ours, m)} | {fmt(pub, m)} | {diff} |")
    out += ["", "Null here (the reason the runner would record):", ""]
    for pname, reasons in nulls.items():
        for m, why in reasons.items():
            out.append(f"- {pname} / {m}: {why}")
    cal = calibration(args.paper)
    out += ["", "| metric | image (iqa-pytorch dist_dir) | ours | official | pyiqa (calibration_summary) |",
            "|---|---|---:|---:|---:|"]
    for m, img, ours, off, py in cal:
        out.append(f"| {m} | {img} | {ours:.4f} | {off:.4f} | {py:.4f} |")
    text = "\n".join(out)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
