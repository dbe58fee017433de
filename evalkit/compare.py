"""``evalkit compare RUN RUN…``: one table of every run's headline metrics with bootstrap 95%
intervals, and a scatter plot of text legibility (OCR-A) against perceptual distance (LPIPS, or
PSNR when LPIPS is unavailable) with those intervals as error bars.

Why intervals: on a 16-image benchmark two models 0.02 OCR-A apart are usually within each
other's noise; a table of bare means makes that look like a result. Each interval resamples the
run's *images* with replacement (``numpy.random.default_rng(seed)``, :data:`N_RESAMPLES`
resamples, percentile interval) and recomputes the headline exactly as the metric defines it:
the mean of per-image values for mean metrics (PSNR, LPIPS …), and for the ratio metrics a ratio of
sums over the resampled images — OCR-A is Σ region scores / Σ regions (per-region mean, from each
image's ``ocr_a_evidence``), OCR-F1 is 2·ΣTP / (Σ#pred + Σ#GT), the character rates are
Σ edits / Σ reference characters. Metrics without per-image values (FID) get no interval.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalkit.directions import better_phrase
from models.errors import TextsrError

N_RESAMPLES = 1000
LEVEL = 0.95


class CompareError(TextsrError, ValueError):
    """A run directory that cannot be compared; the message names it and the problem."""


def load_summaries(runs: list[str]) -> list[dict]:
    """Each run's summary.json, with ``_run`` (the directory) and ``_per_image`` (its
    per_image.jsonl lines, [] when the file is absent) added."""
    from evalkit.report import ReportError, read_per_image

    out = []
    for r in runs:
        p = Path(r) / "summary.json"
        if not p.is_file():
            raise CompareError(f"{r}: no summary.json — not a finished `evalkit score` run directory")
        try:
            s = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CompareError(f"{p}: not valid JSON ({e.msg})") from None
        s["_run"] = str(r)
        pi = Path(r) / "per_image.jsonl"
        try:
            s["_per_image"] = read_per_image(pi) if pi.is_file() else []
        except ReportError as e:
            raise CompareError(str(e)) from None
        out.append(s)
    return out


def headline_keys(summary: dict) -> list[str]:
    """The metrics asked for (psnr, ocr_a …), not their detail counts (ocr_f1_tp …)."""
    asked = set(summary.get("settings", {})) | set(summary.get("unavailable", {}))
    return [k for k in summary["metrics"] if k in asked]


# -- bootstrap ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """``value`` (the statistic on all images), the percentile interval ``[lo, hi]`` of its
    bootstrap distribution, and ``n`` images it was computed over."""

    value: float
    lo: float
    hi: float
    n: int


def bootstrap_ratio(num, den, n_resamples: int = N_RESAMPLES, seed: int = 0,
                    level: float = LEVEL) -> Interval | None:
    """Interval of ``Σnum / Σden`` over images resampled with replacement.

    num, den: 1-D float arrays, one entry per image (den >= 0; an image with den 0 still takes
    part in the resampling, as it does in the run). A mean is ``den = 1``. None when there is no
    image, the total ``den`` is 0, or a value is not finite (PSNR of an identical image is inf).
    Resamples whose ``Σden`` is 0 are dropped."""
    num = np.asarray(num, np.float64).reshape(-1)
    den = np.asarray(den, np.float64).reshape(-1)
    if num.shape != den.shape:
        raise ValueError(f"num and den differ in length: {num.shape} vs {den.shape}")
    n = num.size
    if n == 0 or den.sum() <= 0 or not (np.isfinite(num).all() and np.isfinite(den).all()):
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    tn, td = num[idx].sum(1), den[idx].sum(1)
    stats = tn[td > 0] / td[td > 0]
    a = (1.0 - level) / 2
    lo, hi = np.quantile(stats, [a, 1 - a])
    return Interval(float(num.sum() / den.sum()), float(lo), float(hi), n)


def bootstrap_mean(values, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = LEVEL) -> Interval | None:
    """Interval of the mean of ``values`` (one per image); see :func:`bootstrap_ratio`."""
    v = np.asarray(values, np.float64).reshape(-1)
    return bootstrap_ratio(v, np.ones_like(v), n_resamples, seed, level)


def _ocr_a_terms(r: dict, key: str) -> tuple[float, float] | None:
    """(Σ region scores, #regions) of one image: from its evidence when recorded, else from the
    per-image mean × region count (the same numbers: the per-image value is their ratio)."""
    ev = r.get("ocr_a_evidence")
    if key == "ocr_a" and ev is not None:
        return math.fsum(float(e["score"]) for e in ev), float(len(ev))
    n = r.get("ocr_a_regions")
    if n is None:
        return None
    return (float(r[key]) * n if r.get(key) is not None else 0.0), float(n)


def _ratio_terms(key: str, r: dict) -> tuple[float, float] | None:
    if key in ("ocr_a", "ocr_a_ci"):
        return _ocr_a_terms(r, key)
    if key == "ocr_f1":
        if r.get("ocr_f1_tp") is None:
            return None
        return 2.0 * r["ocr_f1_tp"], float(r["ocr_f1_n_pred"] + r["ocr_f1_n_gt"])
    edits = {"char_hallucination": "char_substitutions", "char_loss_rate": "char_deletions",
             "char_insertion_rate": "char_insertions"}
    if key in edits:
        if r.get(edits[key]) is None:
            return None
        return float(r[edits[key]]), float(r["char_ref_chars"])
    raise KeyError(key)


RATIO_KEYS = ("ocr_a", "ocr_a_ci", "ocr_f1", "char_hallucination", "char_loss_rate", "char_insertion_rate")


def interval(summary: dict, key: str, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval | None:
    """The bootstrap interval of dataset value ``key`` from the run's per-image lines, or None
    when the run has no per-image values for it. Skipped images (``error``) are not part of it."""
    recs = [r for r in summary.get("_per_image", []) if "error" not in r]
    if key in RATIO_KEYS:
        terms = [t for t in (_ratio_terms(key, r) for r in recs) if t is not None]
        if not terms:
            return None
        num, den = np.array(terms).T
        return bootstrap_ratio(num, den, n_resamples, seed)
    vals = [r[key] for r in recs if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return bootstrap_mean(vals, n_resamples, seed) if vals else None


# -- outputs -----------------------------------------------------------------------------------------


def _cell(v, iv: Interval | None) -> str:
    if v is None:
        return "null"
    if iv is None:
        return f"{v:.4f}"
    return f"{v:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] n={iv.n}"


def table(summaries: list[dict]) -> str:
    """compare.md: one row per run, each headline value as ``value [lo, hi] n=images``."""
    keys = []
    for s in summaries:
        keys += [k for k in headline_keys(s) if k not in keys]
    head = "| run | model | bench | images | " + " | ".join(
        f"{k} ({better_phrase(k)})" if better_phrase(k) else k for k in keys) + " |"
    rows = [head, "|" + "---|" * (len(keys) + 4)]
    for s in summaries:
        cells = [_cell(s["metrics"].get(k), interval(s, k) if s["metrics"].get(k) is not None else None)
                 for k in keys]
        rows.append(f"| {Path(s['_run']).name} | {s['model']} | {s['bench']} | {s.get('images')} | "
                    + " | ".join(cells) + " |")
    notes = ["", f"Intervals: {LEVEL:.0%} percentile bootstrap over images ({N_RESAMPLES} resamples, "
             "numpy default_rng(0)); OCR-A = Σ region scores / Σ regions, OCR-F1 = 2ΣTP/(Σ#pred+Σ#GT), "
             "character rates = Σ edits / Σ reference chars over the resampled images; other metrics the "
             "mean of per-image values. Overlapping intervals mean the runs are not told apart by these images."]
    benches = {s["bench"] for s in summaries}
    if len(benches) > 1:
        notes.append(f"Warning: the runs scored different benchmarks ({', '.join(sorted(benches))}); "
                     "their numbers are not comparable.")
    return "\n".join(rows + notes) + "\n"


def scatter(summaries: list[dict], png: Path) -> tuple[Path, str]:
    """OCR-A (y) against LPIPS or PSNR (x), one point per run with bootstrap 95% error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xkey = "lpips" if all(s["metrics"].get("lpips") is not None for s in summaries) else "psnr"
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    ns = []
    for s in summaries:
        x, y = s["metrics"].get(xkey), s["metrics"].get("ocr_a")
        if x is None or y is None:
            continue
        ix, iy = interval(s, xkey), interval(s, "ocr_a")
        # a percentile interval may sit just off a skewed point estimate: never a negative bar
        xerr = [[max(0.0, x - ix.lo)], [max(0.0, ix.hi - x)]] if ix else None
        yerr = [[max(0.0, y - iy.lo)], [max(0.0, iy.hi - y)]] if iy else None
        ax.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", ms=6, capsize=3, elinewidth=1)
        ax.annotate(s["model"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        if iy:
            ns.append(iy.n)
    ax.set_xlabel(f"{xkey.upper()} ({better_phrase(xkey)})")
    ax.set_ylabel(f"OCR-A ({better_phrase('ocr_a')})")
    n_txt = f"n={min(ns)}" if ns and min(ns) == max(ns) else (f"n={min(ns)}–{max(ns)}" if ns else "")
    ax.set_title(("Text legibility vs " + ("perceptual distance" if xkey == "lpips" else "fidelity"))
                 + f"\nbars: {LEVEL:.0%} bootstrap intervals over images {n_txt}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png, xkey


def compare(runs: list[str], out: Path | None = None) -> tuple[Path, Path]:
    from models.files import atomic_write

    sums = load_summaries(runs)
    out = Path(out) if out else Path(runs[0]).parent / "compare"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "compare.md", table(sums))
    png, _ = scatter(sums, out / "ocr_a_vs_quality.png")
    return out / "compare.md", png
