"""evalkit score end to end on a small synth corpus: real OCR, real metrics, the run directory."""
import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from helpers import text_corpus

METRICS = "psnr,ssim,niqe,ocr_a,ocr_f1,text_psnr,char_hallucination"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6 samples, 256² HR, ×4, bicubic LR, large clean rendered English text (OCR-readable HR)."""
    return text_corpus(tmp_path_factory.mktemp("corpus"), 6)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TEXTSR_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _evalkit(*args, env=None):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bicubic_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "bicubic"
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(out), "--metrics", METRICS,
                 "--no-progress", env={"TEXTSR_CACHE": str(tmp_path_factory.getbasetemp() / "cache")})
    assert r.returncode == 0, r.stderr
    return out


def test_run_directory_schema(bicubic_run):
    out = bicubic_run
    assert sorted(p.name for p in (out / "sr").iterdir()) == [f"ftsr-{i:09d}.png" for i in range(6)]
    sr = cv2.imread(str(out / "sr" / "ftsr-000000000.png"))
    assert sr.shape == (256, 256, 3)
    recs = [json.loads(ln) for ln in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(recs) == 6
    for r in recs:
        for k in ("psnr", "ssim", "niqe", "ocr_a", "text_psnr"):
            assert k in r, (k, r)
    s = json.loads((out / "summary.json").read_text())
    assert s["images"] == 6 and s["model"] == "bicubic" and s["scale"] == 4
    for k in ("psnr", "ssim", "niqe", "ocr_a", "ocr_f1", "text_psnr", "char_hallucination"):
        assert k in s["metrics"], k
    assert 15 < s["metrics"]["psnr"] < 40 and 0 < s["metrics"]["ssim"] < 1
    assert "crop_border" in json.dumps(s["settings"]["psnr"])
    assert s["versions"]["torch"] and s["bench_info"]["recipe"] == "ftsr"
    md = (out / "report.md").read_text()
    assert "| psnr |" in md and "ocr_a" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 3 and "SR reads:" in html


def test_ocr_a_is_one_for_hr_and_lower_for_bicubic(corpus, bicubic_run, tmp_path):
    """HR scored against itself reads perfectly; bicubic ×4 from LR of small text does not."""
    from synth.export import iter_samples

    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir()
    lr_dir.mkdir()
    for key, f in iter_samples(corpus):
        (hr_dir / f"{key}.png").write_bytes(f["hr.png"])
        (lr_dir / f"{key}.png").write_bytes(f["lr.png"])
    r = _evalkit("score", "--sr-dir", str(hr_dir), "--hr-dir", str(hr_dir), "--out", str(tmp_path / "self"),
                 "--metrics", "psnr,ocr_a", "--no-progress")
    assert r.returncode == 0, r.stderr
    s_self = json.loads((tmp_path / "self" / "summary.json").read_text())
    s_bic = json.loads((bicubic_run / "summary.json").read_text())
    assert s_self["metrics"]["psnr"] == float("inf") or s_self["metrics"]["psnr"] > 99
    assert s_self["metrics"]["ocr_a"] >= 0.99
    assert s_bic["metrics"]["ocr_a"] < 0.9 and s_bic["metrics"]["ocr_a"] < s_self["metrics"]["ocr_a"] - 0.1


def _folders(corpus, root, n=None):
    """The corpus's HR and LR as two folders of PNGs named by key (a benchmark without annotations)."""
    from synth.export import iter_samples

    hr_dir, lr_dir = root / "hr", root / "lr"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir()
    for i, (key, f) in enumerate(iter_samples(corpus)):
        if n is not None and i >= n:
            break
        (hr_dir / f"{key}.png").write_bytes(f["hr.png"])
        (lr_dir / f"{key}.png").write_bytes(f["lr.png"])
    return hr_dir, lr_dir


def test_hr_ocr_cache_is_keyed_by_the_hr_pixels(corpus, bicubic_run, tmp_path):
    """A second model on the same HR reuses the OCR of HR; an HR edited in place is read again; a
    benchmark with text annotations never reads HR (its reference is the annotation)."""
    s = json.loads((bicubic_run / "summary.json").read_text())
    assert s["hr_ocr_cache"]["misses"] == 0 and s["hr_ocr_cache"]["hits"] == 0  # annotated corpus
    hr_dir, lr_dir = _folders(corpus, tmp_path / "f", n=3)
    env = {"TEXTSR_CACHE": str(tmp_path / "cache")}
    base = ["score", "--hr-dir", str(hr_dir), "--lr-dir", str(lr_dir), "--metrics", "ocr_a", "--no-progress"]
    r = _evalkit(*base, "--model", "bicubic", "--out", str(tmp_path / "a"), env=env)
    assert r.returncode == 0, r.stderr
    first = json.loads((tmp_path / "a" / "summary.json").read_text())["hr_ocr_cache"]
    assert (first["hits"], first["misses"]) == (0, 3)
    r = _evalkit(*base, "--model", "nearest", "--out", str(tmp_path / "b"), env=env)
    second = json.loads((tmp_path / "b" / "summary.json").read_text())["hr_ocr_cache"]
    assert (second["hits"], second["misses"]) == (3, 0) and second["path"] == first["path"]
    victim = sorted(hr_dir.iterdir())[0]
    img = cv2.imread(str(victim))
    cv2.imwrite(str(victim), np.ascontiguousarray(img[:, ::-1]))  # mirrored text: another reading
    r = _evalkit(*base, "--model", "nearest", "--out", str(tmp_path / "c"), env=env)
    assert r.returncode == 0, r.stderr
    third = json.loads((tmp_path / "c" / "summary.json").read_text())["hr_ocr_cache"]
    assert (third["hits"], third["misses"]) == (2, 1)


def test_missing_weights_is_null_with_reason_or_an_error_with_strict(corpus, tmp_path):
    env = {"TORCH_HOME": str(tmp_path / "torch"), "TEXTSR_WEIGHTS": str(tmp_path / "w"), "HF_HOME": str(tmp_path / "hf")}
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(tmp_path / "a"),
                 "--metrics", "psnr,lpips", "--limit", "2", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["metrics"]["lpips"] is None and s["unavailable"]["lpips"].startswith("weights-missing:")
    assert s["metrics"]["psnr"] is not None
    assert sum("lpips reported as null" in ln for ln in r.stderr.splitlines()) == 1
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(tmp_path / "b"),
                 "--metrics", "psnr,lpips", "--strict", "--no-progress", env=env)
    assert r.returncode == 2 and "weights-missing" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_killed_run_resumes_to_the_same_numbers(corpus, bicubic_run, tmp_path, tmp_path_factory):
    out = tmp_path / "k"
    args = [sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", "score", "--model",
            "bicubic", "--bench", str(corpus), "--out", str(out), "--metrics", METRICS, "--batch-size", "1",
            "--no-progress"]
    env = {**os.environ, "TEXTSR_CACHE": str(tmp_path_factory.getbasetemp() / "cache")}
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        st = out / "state.json"
        if st.exists() and json.loads(st.read_text())["done"] >= 2:
            break
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists()
    r = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    got = json.loads((out / "summary.json").read_text())["metrics"]
    want = json.loads((bicubic_run / "summary.json").read_text())["metrics"]
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    keys = [json.loads(ln)["key"] for ln in (out / "per_image.jsonl").read_text().splitlines()]
    assert keys == [f"ftsr-{i:09d}" for i in range(6)]


def test_compare_writes_table_and_plot(bicubic_run, tmp_path, tmp_path_factory, corpus):
    other = tmp_path / "lanczos"
    r = _evalkit("score", "--model", "lanczos", "--bench", str(corpus), "--out", str(other), "--metrics", "psnr,ocr_a",
                 "--no-progress", env={"TEXTSR_CACHE": str(tmp_path_factory.getbasetemp() / "cache")})
    assert r.returncode == 0, r.stderr
    r = _evalkit("compare", str(bicubic_run), str(other), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| bicubic |" in md and "| lanczos |" in md
    png = cv2.imread(str(tmp_path / "cmp" / "ocr_a_vs_quality.png"))
    assert png is not None and png.shape[0] > 200


@pytest.mark.parametrize("args, needle", [
    (["--bench", "nope-bench"], "neither a directory"),
    (["--bench", "div2k-train-hr"], "not a benchmark"),
    (["--hr-dir", "/nonexistent"], "not a directory"),
])
def test_usage_errors_exit_2(args, needle, tmp_path):
    r = _evalkit("score", "--model", "bicubic", "--out", str(tmp_path / "o"), *args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


def test_split_runs_merge_to_the_single_run(corpus):
    """What a Ray split relies on: metrics updated on two halves and merged give the one-pass numbers."""
    from evalkit.benches import open_bench
    from evalkit.metrics.registry import create_metric
    from evalkit.sample import EvalSample
    from models import create_sr
    from models.ocr import create_ocr

    ocr = create_ocr()
    sr_model = create_sr("bicubic", scale=4)
    samples = []
    for it in open_bench(str(corpus)).items:
        s = EvalSample(key=it.key, sr=sr_model.upscale_image(it.lr), hr=it.hr, lr=it.lr, mask=it.mask, texts=it.texts)
        s.ocr_hr, s.ocr_sr = ocr.readtext(it.hr), ocr.readtext(s.sr)
        samples.append(s)
    for name in METRICS.split(","):
        one, a, b = (create_metric(name, ocr=ocr) for _ in range(3))
        for s in samples:
            one.update(s)
        for s in samples[:3]:
            a.update(s)
        for s in samples[3:]:
            b.update(s)
        a.merge(b)
        got, want = a.compute(), one.compute()
        for k in want:
            assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), (name, k)


def test_resume_refuses_a_run_with_other_inputs(corpus, tmp_path):
    """Resuming a run on srA with --sr-dir srB would report srA's numbers under srB's name."""
    hr_dir, lr_dir = _folders(corpus, tmp_path / "f", n=3)
    sr_b = tmp_path / "srB"
    sr_b.mkdir()
    for p in hr_dir.iterdir():  # another set of outputs: the HR blurred
        cv2.imwrite(str(sr_b / p.name), cv2.GaussianBlur(cv2.imread(str(p)), (5, 5), 2))
    out = tmp_path / "run"
    base = ["score", "--hr-dir", str(hr_dir), "--out", str(out), "--metrics", "psnr", "--no-progress"]
    r = _evalkit(*base, "--sr-dir", str(hr_dir))
    assert r.returncode == 0, r.stderr
    before = (out / "summary.json").read_bytes()
    r = _evalkit(*base, "--sr-dir", str(sr_b), "--resume")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--resume refused" in r.stderr and "sr_dir" in r.stderr and "srB" in r.stderr
    r = _evalkit(*base, "--sr-dir", str(hr_dir), "--metrics", "psnr,ssim", "--resume")
    assert r.returncode == 2 and "metrics.ssim" in r.stderr, r.stderr
    r = _evalkit(*base, "--sr-dir", str(hr_dir), "--crop-border", "4", "--resume")
    assert r.returncode == 2 and "crop_border" in r.stderr, r.stderr
    assert (out / "summary.json").read_bytes() == before  # nothing of the first run was touched
    r = _evalkit(*base, "--sr-dir", str(hr_dir), "--resume")  # the same run resumes (nothing left to do)
    assert r.returncode == 0, r.stderr


def test_unreadable_images_are_skipped_counted_and_strict_fails(corpus, tmp_path):
    hr_dir, _ = _folders(corpus, tmp_path / "f", n=4)
    sr_dir = tmp_path / "sr"
    sr_dir.mkdir()
    names = sorted(p.name for p in hr_dir.iterdir())
    for n in names:
        (sr_dir / n).write_bytes((hr_dir / n).read_bytes())
    (sr_dir / names[1]).write_bytes((hr_dir / names[1]).read_bytes()[:200])    # truncated SR
    (hr_dir / names[2]).write_bytes(b"not a png")                                # corrupt HR
    small = cv2.imread(str(sr_dir / names[3]))[:-4]
    cv2.imwrite(str(sr_dir / names[3]), small)                                   # wrong size
    args = ["score", "--sr-dir", str(sr_dir), "--hr-dir", str(hr_dir), "--metrics", "psnr", "--no-progress"]
    r = _evalkit(*args, "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert s["images"] == 1 and s["skipped"] == 3
    assert s["skipped_reasons"] == {"hr-unreadable": 1, "size-mismatch": 1, "sr-unreadable": 1}
    assert "(1 images)" in r.stdout
    recs = {json.loads(ln)["key"]: json.loads(ln) for ln in (tmp_path / "a" / "per_image.jsonl").read_text().splitlines()}
    assert recs[names[1][:-4]]["skipped"] == "sr-unreadable" and names[1] in recs[names[1][:-4]]["error"]
    assert "psnr" not in recs[names[2][:-4]] and recs[names[0][:-4]]["psnr"] == float("inf")
    r = _evalkit(*args, "--out", str(tmp_path / "b"), "--strict")
    assert r.returncode == 2 and "--strict" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_outputs_made_elsewhere_are_scored_on_the_benchmark(corpus, bicubic_run, tmp_path):
    """--bench with --sr-dir: outputs paired by key, scored against the benchmark's HR *and* its text
    annotations (OCR-A from GT polygons), with the benchmark's scale recorded."""
    sr_dir = tmp_path / "elsewhere"
    sr_dir.mkdir()
    made = sorted((bicubic_run / "sr").iterdir())
    for p in made[:-1]:  # the last output is missing
        (sr_dir / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "run"
    r = _evalkit("score", "--bench", str(corpus), "--sr-dir", str(sr_dir), "--out", str(out),
                 "--metrics", "psnr,ocr_a", "--no-progress")
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    ref = json.loads((bicubic_run / "summary.json").read_text())
    assert s["images"] == len(made) - 1 and s["skipped_reasons"] == {"sr-missing": 1}
    assert s["scale"] == 4 and s["bench"] == ref["bench"]
    recs = [json.loads(ln) for ln in (out / "per_image.jsonl").read_text().splitlines()]
    want = {json.loads(ln)["key"]: json.loads(ln) for ln in (bicubic_run / "per_image.jsonl").read_text().splitlines()}
    for rec in recs:
        if "skipped" in rec:
            assert rec["key"] == made[-1].stem
            continue
        assert rec["psnr"] == want[rec["key"]]["psnr"] and rec["ocr_a"] == want[rec["key"]]["ocr_a"]
        assert rec["ocr_a_ref"] == "annotations"


def test_out_naming_a_file_is_a_usage_error(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    r = _evalkit("score", "--model", "bicubic", "--hr-dir", str(tmp_path), "--lr-dir", str(tmp_path),
                 "--out", str(f))
    assert r.returncode == 2 and "is a file" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_split_across_ray_workers_equals_the_single_process_run(corpus, bicubic_run, tmp_path, tmp_path_factory):
    """`--workers 2` on a local Ray: two actors each hold the model and score batches of 2; every
    per-image row (metric values, OCR readings, evidence) and every dataset metric is identical to
    the single-process run's, and so are the SR files."""
    out = tmp_path / "split"
    r = _evalkit("score", "--model", "bicubic", "--bench", str(corpus), "--out", str(out), "--metrics", METRICS,
                 "--no-progress", "--workers", "2", "--batch-size", "2",
                 env={"TEXTSR_CACHE": str(tmp_path_factory.getbasetemp() / "cache")})
    assert r.returncode == 0, r.stderr
    rows = lambda run: [json.loads(ln) for ln in (run / "per_image.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in x.items() if not k.endswith("_path")} for x in rs]  # noqa: E731
    assert strip(rows(out)) == strip(rows(bicubic_run))
    got, want = (json.loads((run / "summary.json").read_text()) for run in (out, bicubic_run))
    assert got["metrics"] == want["metrics"] and got["images"] == want["images"] == 6
    assert got["executor"]["executor"] == "ray" and got["executor"]["workers"] == 2
    for p in (bicubic_run / "sr").iterdir():
        assert (out / "sr" / p.name).read_bytes() == p.read_bytes()
