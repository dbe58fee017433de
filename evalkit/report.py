"""``report.md`` and ``report.html`` of an ``evalkit score`` run, read back from its files.

Both say the same things in the same order: the headline metrics (those the run asked for, see
:func:`evalkit.compare.headline_keys`), every other value folded away, the settings and the weights'
origin, the images that were skipped and why, every scored image sorted by OCR-A (worst first,
images without a value last) and, for the worst ones, each scored text region with its reference,
what OCR read in SR and its score. report.html adds LR | SR | HR crops of each region, embedded as
base64 PNG thumbnails, so the page is one self-contained file.

What is shown is what was scored: the regions, readings and scores come from the
``ocr_a_evidence`` that the OCR-A metric wrote into ``per_image.jsonl``. Nothing is recognised
again here (no OCR engine is built); the pixels for the crops are read from the paths each
per-image line records (``sr_path``, ``hr_path``, ``lr_path``), from ``<run>/sr/<key>.png``, or
from the benchmark re-opened through ``bench_reopen`` when those are absent.
"""
from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from evalkit.directions import arrow
from models.errors import TextsrError

THUMB_HEIGHT = 48      # px: a text line tall enough to read glyph shapes
THUMB_MAX_WIDTH = 480  # px: a long line shrinks instead of widening the page
MAX_CROP_REGIONS = 32  # regions with crops per image; the rest are listed as text only


class ReportError(TextsrError, ValueError):
    """A run directory whose files cannot be reported; the message names the file and problem."""


# -- reading the run ---------------------------------------------------------------------------------


def read_per_image(path: Path) -> list[dict]:
    """Every line of ``per_image.jsonl`` as a dict (each has ``key``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror})") from None
    recs = []
    for i, ln in enumerate(text.splitlines(), 1):
        if not ln.strip():
            continue
        try:
            rec = json.loads(ln)
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}:{i}: not a JSON line ({e.msg}); was the run cut short? "
                              "finish it with `evalkit score … --resume`") from None
        if not isinstance(rec, dict) or "key" not in rec:
            raise ReportError(f"{path}:{i}: expected an object with a 'key'")
        recs.append(rec)
    return recs


def _reason(r: dict) -> str:
    """``"sr-missing: no file …"``: the runner's reason code (when recorded) and its detail."""
    code = r.get("skipped")
    return f"{code}: {r['error']}" if isinstance(code, str) else str(r["error"])


def worst_first(recs: list[dict]) -> list[dict]:
    """Scored records (no ``error``) by per-image OCR-A ascending; those without OCR-A last, each
    group in key order."""
    ok = [r for r in recs if "error" not in r]
    return sorted(ok, key=lambda r: (r.get("ocr_a") is None, r.get("ocr_a") or 0.0, r["key"]))


def factor_text(f: float) -> str:
    """``4`` for 4.0, ``3.75`` for 3.75: an LR factor as people write it."""
    return str(round(f)) if abs(f - round(f)) < 1e-6 else f"{f:.2f}"


def scale_text(summary: dict) -> str:
    s = summary.get("scale")
    return f"×{factor_text(float(s))}" if s else "scale not fixed (folder run)"


def fmt(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4f}"
    return str(v)


def _value_rows(summary: dict) -> tuple[list[tuple], list[tuple]]:
    """(headline rows, detail rows), each ``(key, value text, arrow, note)``."""
    from evalkit.compare import headline_keys

    head = headline_keys(summary)
    unavailable = summary.get("unavailable") or {}

    def row(k):
        return k, fmt(summary["metrics"][k]), arrow(k), unavailable.get(k, "")

    return [row(k) for k in head], [row(k) for k in summary["metrics"] if k not in head]


def _per_image_columns(summary: dict, recs: list[dict]) -> list[str]:
    """OCR-A and its region count first, then the other headline values images carry."""
    from evalkit.compare import headline_keys

    cols = [k for k in ("ocr_a", "ocr_a_regions") if any(k in r for r in recs)]
    for k in headline_keys(summary):
        if k not in cols and any(isinstance(r.get(k), (int, float)) for r in recs):
            cols.append(k)
    return cols


def _weights_rows(summary: dict) -> list[tuple[str, str]]:
    w = summary.get("weights") or {}
    return [(k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)) for k, v in w.items()]


# -- pixels for the crops ----------------------------------------------------------------------------


@dataclass
class _Pixels:
    """HR/SR/LR of one image (RGB uint8) or the reason they are missing."""

    sr: np.ndarray | None = None
    hr: np.ndarray | None = None
    lr: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def _read(path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR) if path and Path(path).is_file() else None
    return None if img is None else np.ascontiguousarray(img[:, :, ::-1])


class _PixelSource:
    def __init__(self, out: Path, bench_reopen: Callable | None):
        self.out = out
        self.bench_reopen = bench_reopen
        self._items: dict | None = None
        self._bench_error = ""

    def _bench_item(self, key: str, want: set[str]):
        if self._items is None:
            self._items = {}
            if self.bench_reopen is None:
                self._bench_error = "the benchmark is not re-opened here"
            else:
                try:
                    for it in self.bench_reopen().items:
                        if it.key in want:  # keep only the few images the report shows
                            self._items[it.key] = it
                except (TextsrError, OSError) as e:
                    self._bench_error = f"benchmark could not be re-opened: {e}"
        return self._items.get(key)

    def get(self, rec: dict, want: set[str]) -> _Pixels:
        key = rec["key"]
        px = _Pixels(sr=_read(rec.get("sr_path")), hr=_read(rec.get("hr_path")), lr=_read(rec.get("lr_path")))
        if px.sr is None:
            px.sr = _read(self.out / "sr" / f"{key}.png")
        if px.sr is None or px.hr is None or (px.lr is None and "lr_path" not in rec):
            it = self._bench_item(key, want)
            if it is not None:
                px.hr = px.hr if px.hr is not None else it.hr
                px.lr = px.lr if px.lr is not None else it.lr
                if px.sr is None and it.sr_path is not None:
                    px.sr = _read(it.sr_path)
            elif self._bench_error:
                px.notes.append(self._bench_error)
        for name in ("sr", "hr"):
            if getattr(px, name) is None:
                px.notes.append(f"{name.upper()} image not found")
        return px


def _thumb(img: np.ndarray) -> np.ndarray:
    """``img`` scaled to :data:`THUMB_HEIGHT` (nearest when enlarging a lot, so pixels stay
    pixels), shrunk further to :data:`THUMB_MAX_WIDTH`."""
    h, w = img.shape[:2]
    s = min(THUMB_HEIGHT / h, THUMB_MAX_WIDTH / w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if s > 2 else cv2.INTER_AREA)


def _png_b64(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    return base64.b64encode(buf.tobytes()).decode() if ok else ""


def lr_factor(hr: np.ndarray | None, lr: np.ndarray | None, summary: dict) -> float | None:
    """HR/LR width ratio when both images are here (the true factor), else the run's scale."""
    if hr is not None and lr is not None:
        return hr.shape[1] / lr.shape[1]
    s = summary.get("scale")
    return float(s) if s else None


def region_crops(px: _Pixels, polygon) -> dict[str, np.ndarray]:
    """LR/SR/HR thumbnails of one region (polygon in HR px). SR and HR are cropped exactly as
    OCR-A cropped SR for the recogniser (:func:`evalkit.metrics.ocr_match.crop_polygon`); LR is first
    enlarged to HR size by nearest neighbour, so its pixels show as blocks."""
    from evalkit.metrics.ocr_match import crop_polygon

    out = {}
    for name in ("sr", "hr"):
        img = getattr(px, name)
        if img is not None:
            out[name] = _thumb(crop_polygon(img, polygon))
    if px.lr is not None:
        ref = px.hr if px.hr is not None else px.sr
        if ref is not None:
            big = cv2.resize(px.lr, (ref.shape[1], ref.shape[0]), interpolation=cv2.INTER_NEAREST)
            out["lr"] = _thumb(crop_polygon(big, polygon))
    return out


# -- Markdown ----------------------------------------------------------------------------------------


def _md_cell(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_code(s: str) -> str:
    return f"`` {s} ``" if s else "(empty)"


def protocol_text(summary: dict) -> str:
    """``"protocol osediff v1"`` (runs made before protocols existed: ``"protocol basicsr"``)."""
    pr = summary.get("protocol") or {"name": "basicsr"}
    return f"protocol {pr['name']}" + (f" v{pr['version']}" if pr.get("version") else "")


def markdown(summary: dict, recs: list[dict] | None = None, worst: int = 8) -> str:
    """The report as Markdown; ``recs`` are the per-image lines (None: values and settings only)."""
    recs = recs or []
    skipped = [r for r in recs if "error" in r]
    head, details = _value_rows(summary)
    lines = [f"# evalkit score: {summary['model']} on {summary['bench']}", "",
             f"{summary['images']} images, {scale_text(summary)}, {protocol_text(summary)}, "
             f"OCR engine {summary.get('ocr_engine')}, "
             f"{summary.get('seconds')} s" + (f", {len(skipped)} skipped" if skipped else ""),
             "", "## Headline", "", "| metric | value | better | note |", "|---|---|---|---|"]
    lines += [f"| {k} | {v} | {a} | {_md_cell(n)} |" for k, v, a, n in head]
    lines += ["", "<details><summary>All values</summary>", "", "| key | value | better |", "|---|---|---|"]
    lines += [f"| {k} | {v} | {a} |" for k, v, a, _ in details]
    lines += ["", "</details>", "", "## Settings", ""]
    for name, s in (summary.get("settings") or {}).items():
        lines.append(f"- **{name}**: " + "; ".join(
            f"{k}={_md_cell(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}" for k, v in s.items()))
    w = _weights_rows(summary)
    if w:
        lines += ["", "## Weights", ""] + [f"- {k}: {_md_cell(v)}" for k, v in w]
    if skipped:
        lines += ["", f"## Skipped images ({len(skipped)})", "", "| image | reason |", "|---|---|"]
        lines += [f"| {_md_cell(r['key'])} | {_md_cell(_reason(r))} |" for r in skipped]
    ranked = worst_first(recs)
    if ranked:
        cols = _per_image_columns(summary, ranked)
        lines += ["", "## Images by OCR-A, worst first", "", "<details><summary>all scored images</summary>", "",
                  "| image | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {_md_cell(r['key'])} | " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in ranked]
        lines += ["", "</details>"]
        shown = [r for r in ranked if r.get("ocr_a") is not None][:worst]
        if shown:
            lines += ["", f"## Worst {len(shown)} images: what OCR read (crops in report.html)"]
        for r in shown:
            ev = r.get("ocr_a_evidence")
            lines += ["", f"### {r['key']} — OCR-A {fmt(r['ocr_a'])}", ""]
            if ev is None:
                lines.append("(no region evidence in per_image.jsonl: a run from before evidence was recorded)")
                continue
            lines += ["| # | reference | SR reads | score |", "|---|---|---|---|"]
            lines += [f"| {i} | {_md_cell(_md_code(e.get('ref', '')))} | {_md_cell(_md_code(e.get('read', '')))} "
                      f"| {fmt(e.get('score'))} |" for i, e in enumerate(ev, 1)]
    return "\n".join(lines) + "\n"


# -- HTML --------------------------------------------------------------------------------------------

_CSS = """body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 8px;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;image-rendering:pixelated}code{background:#f4f4f4;padding:0 3px}
table.regions td{max-width:""" + str(THUMB_MAX_WIDTH) + """px}.note{color:#a00}details{margin:.5em 0}"""


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _table(cls: str, header: list[str], rows: list[list[str]], num_cols: set[int] = frozenset()) -> str:
    """A table whose cells are already-escaped HTML."""
    out = [f"<table class='{cls}'><thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td class='num'>{c}</td>" if i in num_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _img(img: np.ndarray | None, alt: str) -> str:
    if img is None:
        return "<span class='note'>—</span>"
    return f"<img alt='{_e(alt)}' width='{img.shape[1]}' height='{img.shape[0]}' src='data:image/png;base64,{_png_b64(img)}'>"


def _code(s: str) -> str:
    return f"<code>{_e(s)}</code>" if s else "<em>(empty)</em>"


def _image_section(r: dict, px: _Pixels | None, summary: dict) -> str:
    key, ev = r["key"], r.get("ocr_a_evidence")
    parts = [f"<section class='image' id='img-{_e(key)}'><h3>{_e(key)} — OCR-A {_e(fmt(r.get('ocr_a')))}"
             f" ({_e(r.get('ocr_a_regions', len(ev or [])))} regions)</h3>"]
    if ev is None:
        parts.append("<p class='note'>No region evidence in per_image.jsonl (a run from before evidence "
                     "was recorded): nothing to show without recognising again.</p></section>")
        return "".join(parts)
    if px is not None and px.notes:
        parts.append("<p class='note'>" + _e("; ".join(px.notes)) + "</p>")
    has_lr = px is not None and px.lr is not None
    factor = lr_factor(px.hr, px.lr, summary) if has_lr else None
    header = ([f"LR (nearest ×{_e(factor_text(factor))})" if factor else "LR (nearest)"] if has_lr else []) \
        + ["SR", "HR", "evidence"]
    rows = []
    for i, e in enumerate(ev):
        crops = region_crops(px, e["polygon"]) if (px is not None and i < MAX_CROP_REGIONS) else {}
        cells = ([_img(crops.get("lr"), "LR crop")] if has_lr else []) + \
            [_img(crops.get("sr"), "SR crop"), _img(crops.get("hr"), "HR crop")]
        cells.append(f"<div class='ref'>reference: {_code(e.get('ref', ''))}</div>"
                     f"<div class='read'>SR reads: {_code(e.get('read', ''))}</div>"
                     f"<div class='score'>score {_e(fmt(e.get('score')))}</div>")
        rows.append(cells)
    parts.append(_table("regions", header, rows))
    if len(ev) > MAX_CROP_REGIONS:
        parts.append(f"<p>Crops shown for the first {MAX_CROP_REGIONS} of {len(ev)} regions.</p>")
    parts.append("</section>")
    return "".join(parts)


def html_report(out: Path, summary: dict, recs: list[dict] | None = None,
                bench_reopen: Callable | None = None, worst: int = 8) -> str:
    """The report as one HTML page (text escaped, crops embedded). ``recs``: the per-image lines
    (None: read from ``out/per_image.jsonl``)."""
    out = Path(out)
    if recs is None:
        recs = read_per_image(out / "per_image.jsonl")
    skipped = [r for r in recs if "error" in r]
    head, details = _value_rows(summary)
    title = f"{summary['model']} on {summary['bench']}"
    p = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
         f"<style>{_CSS}</style></head><body>", f"<h1>{_e(title)}</h1>",
         f"<p class='run'>{_e(summary['images'])} images, {_e(scale_text(summary))}, "
         f"{_e(protocol_text(summary))}, OCR engine "
         f"{_e(summary.get('ocr_engine'))}, {_e(summary.get('seconds'))} s"
         + (f", <a href='#skipped'>{len(skipped)} skipped</a>" if skipped else "") + "</p>",
         "<h2>Headline</h2>",
         _table("headline", ["metric", "value", "better", "note"],
                [[_e(k), _e(v), _e(a), _e(n)] for k, v, a, n in head], {1}),
         f"<details><summary>All values ({len(details)})</summary>",
         _table("details", ["key", "value", "better"], [[_e(k), _e(v), _e(a)] for k, v, a, _ in details], {1}),
         "</details><details><summary>Settings</summary>",
         _table("settings", ["metric", "setting", "value"],
                [[_e(m), _e(k), _e(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))]
                 for m, s in (summary.get("settings") or {}).items() for k, v in s.items()]),
         "</details>"]
    w = _weights_rows(summary)
    if w:
        p += ["<h2>Weights</h2>", _table("weights", ["", ""], [[_e(k), _e(v)] for k, v in w])]
    if skipped:
        p += [f"<h2 id='skipped'>Skipped images ({len(skipped)})</h2>",
              _table("skipped", ["image", "reason"], [[_e(r["key"]), _e(_reason(r))] for r in skipped])]
    ranked = worst_first(recs)
    if ranked:
        cols = _per_image_columns(summary, ranked)
        p += ["<h2>Images by OCR-A, worst first</h2><details><summary>all scored images</summary>",
              _table("per-image", ["image"] + [_e(c) for c in cols],
                     [[_e(r["key"])] + [_e(fmt(r.get(c))) for c in cols] for r in ranked],
                     set(range(1, len(cols) + 1))),
              "</details>"]
    shown = [r for r in ranked if r.get("ocr_a") is not None][:worst]
    if not shown:
        p.append("<p>No image has OCR-A (no text regions, or ocr_a was not asked for).</p>")
    else:
        p.append(f"<h2>Worst {len(shown)} images by OCR-A: what OCR read</h2>")
        source = _PixelSource(out, bench_reopen)
        want = {r["key"] for r in shown}
        for r in shown:
            px = source.get(r, want) if r.get("ocr_a_evidence") is not None else None
            p.append(_image_section(r, px, summary))
    p.append("</body></html>")
    return "\n".join(p) + "\n"


def write_reports(out: Path, summary: dict | None = None, bench_reopen: Callable | None = None,
                  worst: int = 8) -> tuple[Path, Path]:
    """Write ``out/report.md`` and ``out/report.html`` from the run's files.

    summary: the run's summary (None: read ``out/summary.json``). bench_reopen: a callable that
    re-opens the benchmark, used only to fetch HR/LR pixels that per_image.jsonl does not point
    to. The report never recognises text again. Returns the two paths."""
    from models.files import atomic_write

    out = Path(out)
    if summary is None:
        try:
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        except OSError as e:
            raise ReportError(f"{out / 'summary.json'}: cannot read ({e.strerror}); not a finished "
                              "`evalkit score` run") from None
        except json.JSONDecodeError as e:
            raise ReportError(f"{out / 'summary.json'}: not valid JSON ({e.msg})") from None
    recs = read_per_image(out / "per_image.jsonl")
    md, page = out / "report.md", out / "report.html"
    atomic_write(md, markdown(summary, recs, worst))
    atomic_write(page, html_report(out, summary, recs, bench_reopen, worst))
    return md, page
