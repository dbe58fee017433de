"""``evalkit compare RUN RUN…``: one table of every run's metrics and a scatter plot of text
legibility (OCR-A) against perceptual distance (LPIPS, or PSNR when LPIPS is unavailable)."""
from __future__ import annotations

import json
from pathlib import Path


def load_summaries(runs: list[str]) -> list[dict]:
    out = []
    for r in runs:
        p = Path(r) / "summary.json"
        if not p.is_file():
            raise FileNotFoundError(f"{r}: no summary.json — not an `evalkit score` run directory")
        s = json.loads(p.read_text(encoding="utf-8"))
        s["_run"] = str(r)
        out.append(s)
    return out


def headline_keys(summary: dict) -> list[str]:
    """The metrics asked for (psnr, ocr_a …), not their detail counts (ocr_f1_tp …)."""
    asked = set(summary.get("settings", {})) | set(summary.get("unavailable", {}))
    return [k for k in summary["metrics"] if k in asked]


def table(summaries: list[dict]) -> str:
    keys = []
    for s in summaries:
        keys += [k for k in headline_keys(s) if k not in keys]
    head = "| run | model | bench | " + " | ".join(keys) + " |"
    rows = [head, "|" + "---|" * (len(keys) + 3)]
    for s in summaries:
        vals = [s["metrics"].get(k) for k in keys]
        rows.append(f"| {Path(s['_run']).name} | {s['model']} | {s['bench']} | "
                    + " | ".join("null" if v is None else f"{v:.4f}" for v in vals) + " |")
    return "\n".join(rows) + "\n"


def scatter(summaries: list[dict], png: Path) -> tuple[Path, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xkey = "lpips" if all(s["metrics"].get("lpips") is not None for s in summaries) else "psnr"
    fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
    for s in summaries:
        x, y = s["metrics"].get(xkey), s["metrics"].get("ocr_a")
        if x is None or y is None:
            continue
        ax.scatter([x], [y], s=40)
        ax.annotate(s["model"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(f"{xkey.upper()} ({'lower' if xkey == 'lpips' else 'higher'} is better)")
    ax.set_ylabel("OCR-A (higher is better)")
    ax.set_title("Text legibility vs " + ("perceptual distance" if xkey == "lpips" else "fidelity"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
    return png, xkey


def compare(runs: list[str], out: Path | None = None) -> tuple[Path, Path]:
    sums = load_summaries(runs)
    out = Path(out) if out else Path(runs[0]).parent / "compare"
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(table(sums), encoding="utf-8")
    png, _ = scatter(sums, out / "ocr_a_vs_quality.png")
    return out / "compare.md", png
