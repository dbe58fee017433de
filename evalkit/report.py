"""report.md (the numbers) and report.html (the worst images by OCR-A: LR | SR | HR crops of
their text regions, with what OCR reads in SR and HR under each)."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import numpy as np

_LOWER_BETTER = {"lpips", "dists", "fid", "niqe", "piqe", "text_lpips", "char_hallucination", "char_loss_rate"}


def _fmt(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def markdown(summary: dict) -> str:
    lines = [f"# evalkit score: {summary['model']} on {summary['bench']}", "",
             f"{summary['images']} images, ×{summary['scale']}, OCR engine {summary['ocr_engine']}, "
             f"{summary['seconds']} s" + (f", {summary['errors']} skipped (see per_image.jsonl)" if summary["errors"] else ""),
             "", "| metric | value | |", "|---|---|---|"]
    from evalkit.compare import headline_keys

    head = headline_keys(summary)
    for k in head + [k for k in summary["metrics"] if k not in head]:
        v = summary["metrics"][k]
        arrow = "↓" if k in _LOWER_BETTER else "↑"
        note = summary["unavailable"].get(k, "")
        lines.append(f"| {k} | {_fmt(v)} | {arrow} {note} |")
    lines += ["", "Settings:", ""]
    for name, s in summary["settings"].items():
        lines.append(f"- **{name}**: " + "; ".join(f"{k}={v}" for k, v in s.items()))
    w = summary.get("weights") or {}
    if w.get("sha256"):
        lines += ["", f"Weights: {w.get('path')} (sha256 {w['sha256']})"]
    return "\n".join(lines) + "\n"


def _png_b64(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", img[:, :, ::-1])
    return base64.b64encode(buf.tobytes()).decode()


def _crop(img: np.ndarray, poly: np.ndarray, height: int = 48) -> np.ndarray:
    """Axis-aligned crop around ``poly`` with a few px of margin, scaled to ``height``."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int) - 3
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
    c = img[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    if c.size == 0:
        return np.zeros((height, height, 3), np.uint8)
    s = height / c.shape[0]
    return cv2.resize(c, (max(1, round(c.shape[1] * s)), height), interpolation=cv2.INTER_NEAREST if s > 2 else cv2.INTER_AREA)


def html_report(out: Path, summary: dict, bench_reopen, engine, worst: int = 8) -> str:
    recs = [json.loads(ln) for ln in (out / "per_image.jsonl").read_text(encoding="utf-8").splitlines()]
    scored = [r for r in recs if r.get("ocr_a") is not None]
    scored.sort(key=lambda r: r["ocr_a"])
    pick = {r["key"]: r for r in scored[:worst]}
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(summary['model'])}</title>"
             "<style>body{font-family:sans-serif} td{padding:4px;vertical-align:top} img{image-rendering:pixelated}"
             " .s{font-family:monospace}</style></head><body>",
             f"<h1>{html.escape(summary['model'])} on {html.escape(summary['bench'])}</h1>",
             "<pre>" + html.escape(markdown(summary)) + "</pre>"]
    if not pick:
        parts.append("<p>No image has OCR-A (no text regions or ocr_a not requested).</p>")
    else:
        parts.append(f"<h2>Worst {len(pick)} images by OCR-A</h2>")
        bench = bench_reopen()
        for it in bench.items:
            if it.key not in pick:
                continue
            r = pick[it.key]
            sr_path = out / "sr" / f"{it.key}.png"
            sr = cv2.imread(str(sr_path if sr_path.is_file() else it.sr_path))[:, :, ::-1]
            if it.texts:
                regions = [(t.polygon, t.text) for t in it.texts if not t.dont_care]
            else:
                regions = [(np.asarray(ln.polygon), ln.text) for ln in engine.readtext(it.hr)]
            parts.append(f"<h3>{html.escape(it.key)} — OCR-A {r['ocr_a']:.3f}</h3><table>")
            parts.append("<tr><th>LR (nearest ×s)</th><th>SR</th><th>HR</th></tr>")
            from evalkit.metrics.ocr import crop_polygon  # the crop OCR-A recognises

            srs = [_crop(sr, p) for p, _ in regions[:6]]
            reads = engine.recognize([crop_polygon(sr, p) for p, _ in regions[:6]]) if srs else []
            for (poly, ref), sr_c, (read, _) in zip(regions[:6], srs, reads):
                lr_c = _crop(cv2.resize(it.lr, (it.hr.shape[1], it.hr.shape[0]), interpolation=cv2.INTER_NEAREST), poly) \
                    if it.lr is not None else np.zeros_like(sr_c)
                hr_c = _crop(it.hr, poly)
                parts.append("<tr>" + "".join(f"<td><img src='data:image/png;base64,{_png_b64(c)}'></td>"
                                              for c in (lr_c, sr_c, hr_c)) + "</tr>")
                parts.append(f"<tr><td></td><td class=s>SR reads: {html.escape(read)}</td>"
                             f"<td class=s>reference: {html.escape(ref)}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(out: Path, summary: dict, bench_reopen, engine, worst: int = 8) -> None:
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    (out / "report.html").write_text(html_report(out, summary, bench_reopen, engine, worst), encoding="utf-8")
