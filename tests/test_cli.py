"""The command lines cannot report success that did not happen.

Real `synth build` processes on real photos and real rendered text; exit codes, messages, the
manifest and the shard bytes are checked from outside, as a user or a scheduler sees them.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import skimage.data

from models.files import sha256_file
from pipelines.cli import evalkit_main, synth_main
from tests.helpers import png_bytes, word_crop, write_ctr_lmdb, write_png

SYNTH = "from pipelines.cli import main_synth; main_synth()"

# A user's own SR model, registered the way a user registers one (`SR_MODELS.register` from their
# script), with a genuine bug that its second image runs into. The recipe's crop upscaler is the
# one stage a user plugs in by name, so this is the same path a bug in any stage takes; no
# component of ours is replaced. Set BUGGY_FIXED=1 for the same model with the bug fixed.
BUGGY_SCRIPT = textwrap.dedent("""
    import os, cv2
    from models.sr import SR_MODELS
    from pipelines.cli import main_synth

    class BuggyUpscaler:
        scale = 2

        def __init__(self):
            self.calls = 0

        def upscale_image(self, img):
            self.calls += 1
            if self.calls > 1 and not os.environ.get("BUGGY_FIXED"):
                h, w = img.shape[:2] + 2  # the bug: a TypeError
            return cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)

    def build_buggy(name, *, tiny=False, weights=None, device=None, dtype=None, **options):
        return BuggyUpscaler()

    SR_MODELS.register("buggy-upscaler", "__main__:build_buggy")
    main_synth()
""")


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    """One text-free real photo (Hubble deep field) and a CTR LMDB of four real rendered words."""
    root = tmp_path_factory.mktemp("cli-src")
    write_png(root / "bg" / "hubble.png", skimage.data.hubble_deep_field()[:300, :300])
    write_png(root / "small" / "chelsea.png", skimage.data.chelsea()[:64, :64])
    write_ctr_lmdb(root / "ctr", [(png_bytes(word_crop(w, size=20)), w) for w in ["STATION", "Coffee", "EXIT", "2024"]])
    return root


def _rendered_args(src, out, num, hr=128):
    """A fast recipe: rendered text on one photo, background OCR off, one sample per shard."""
    return ["build", "--num", str(num), "--out", str(out), "--executor", "local", "--no-progress",
            "--set", f"backgrounds.sources=[{{path: '{src / 'bg'}', format: image-folder}}]",
            "--set", "backgrounds.ocr_reject=false", "--set", f"backgrounds.hr_size={hr}",
            "--set", "text.rendered_prob=1.0", "--set", "samples_per_shard=1"]


def _run(code, *args, env=None):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _manifest(out):
    return json.loads((Path(out) / "manifest.json").read_text())


def _shards_match_manifest(out, m):
    """Every listed shard is on disk with its sha256 and no temp file is left. Under Ray a worker
    writes its shard itself, so one that finished while the driver was being stopped may be on disk
    but not listed: whole (atomic), and --resume writes it again with the same bytes."""
    out = Path(out)
    on_disk = {p.name for p in (out / "shards").iterdir()}
    assert all(n.endswith(".tar") and not n.startswith(".") for n in on_disk), on_disk  # no temp files
    assert {Path(s["file"]).name for s in m["shards"]} <= on_disk
    for s in m["shards"]:
        assert sha256_file(out / s["file"]) == s["sha256"]


def _lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


# -- a bug is not a rejection ---------------------------------------------------------------------
def test_bug_in_a_stage_stops_the_build_with_its_traceback_and_resume_after_the_fix(src, tmp_path):
    out = tmp_path / "bug"
    args = ["build", "--num", "8", "--out", str(out), "--executor", "local", "--no-progress",
            "--set", f"backgrounds.sources=[{{path: '{src / 'bg'}', format: image-folder}}]",
            "--set", f"text.crops.sources=[{{path: '{src / 'ctr'}', format: ctr-lmdb}}]",
            "--set", "backgrounds.ocr_reject=false", "--set", "backgrounds.hr_size=128",
            "--set", "text.rendered_prob=0.0", "--set", "text.instances=[1, 1]", "--set", "samples_per_shard=1",
            "--set", "upscale.model=buggy-upscaler", "--set", "upscale.min_height=48"]
    r = _run(BUGGY_SCRIPT, *args)
    assert r.returncode == 1, r.stderr
    # the traceback of the bug itself, down to the user's line, and the reason the build stopped
    assert "Traceback (most recent call last)" in r.stderr and "in upscale_image" in r.stderr
    assert "TypeError: can only concatenate tuple" in r.stderr
    assert "SampleError: 3 sample(s) raised an unexpected exception" in r.stderr
    m = _manifest(out)
    assert m["complete"] is False and m["error"]["errors"] == 3 and "TypeError" in m["error"]["traceback"]
    assert m["counts"]["kept"] >= 1  # sample 0 used the upscaler's first (working) call
    _shards_match_manifest(out, m)
    r = _run(SYNTH, "inspect", str(out), "--png", str(tmp_path / "sheet.png"), "-n", "1")
    assert r.returncode == 0 and "INCOMPLETE" in r.stdout and "lost to unexpected errors (TypeError" in r.stdout

    # the bug fixed, --resume rebuilds the shards that lost samples to it: the bytes of a clean build
    r = _run(BUGGY_SCRIPT, *args, "--resume", env={"BUGGY_FIXED": "1"})
    assert r.returncode == 0, r.stderr
    fresh = _run(BUGGY_SCRIPT, *[str(tmp_path / "fresh") if a == str(out) else a for a in args],
                 env={"BUGGY_FIXED": "1"})
    assert fresh.returncode == 0, fresh.stderr
    resumed, clean = _manifest(out), _manifest(tmp_path / "fresh")
    assert resumed["complete"] and resumed["counts"]["kept"] == 8 and "error" not in resumed
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in clean["shards"]]


def test_incomplete_build_exits_3_and_says_what_is_missing(src, tmp_path):
    """Every background too small: each key is rejected at every attempt. The build finishes, but
    0 of 2 is not a corpus: complete is false and the exit code says so."""
    out = tmp_path / "short"
    args = _rendered_args(src, out, 2)
    args[args.index(f"backgrounds.sources=[{{path: '{src / 'bg'}', format: image-folder}}]")] = \
        f"backgrounds.sources=[{{path: '{src / 'small'}', format: image-folder}}]"
    r = _run(SYNTH, *args, "--set", "max_attempts=2")
    assert r.returncode == 3, r.stderr
    assert "build incomplete: 2 of 2 requested samples are missing: 2 rejected at every attempt" in r.stderr
    m = _manifest(out)
    assert m["complete"] is False and m["counts"]["kept"] == 0 and m["counts"]["failed"] == 2
    assert m["counts"]["rejected"]["background"]["no-usable-image"] == 4
    assert "exit codes: 0 complete" in _run(SYNTH, "build", "--help").stdout


# -- SIGTERM is handled like Ctrl-C -----------------------------------------------------------------
def _terminate_after_first_shard(cmd, out, timeout=300):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        mf = out / "manifest.json"  # written atomically: a read never sees half a file
        if mf.exists() and json.loads(mf.read_text())["shards"]:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be terminated"
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sigterm_keeps_finished_shards_and_resume_gives_the_same_bytes(src, tmp_path, executor):
    out = tmp_path / "term"
    num = 24
    args = _rendered_args(src, out, num, hr=256)
    if executor == "ray":
        args[args.index("local")] = "ray"
        args += ["--workers", "1"]
    # --resume on a directory with no build: said, then a new build starts
    rc, stderr = _terminate_after_first_shard([sys.executable, "-c", SYNTH, *args, "--resume"], out)
    assert rc == 143, stderr
    assert _lines(stderr) == [f"synth: no build in {out} to resume; starting a new one",
                              "synth build: terminated (SIGTERM); finished shards are kept — continue with --resume"]
    m = _manifest(out)
    assert not m["complete"] and 1 <= len(m["shards"]) < num
    _shards_match_manifest(out, m)
    local = [a if a != "ray" else "local" for a in args]  # Ray and local give the same bytes (test_build)
    r = _run(SYNTH, *local, "--resume")
    assert r.returncode == 0, r.stderr
    fresh = tmp_path / "fresh"
    r = _run(SYNTH, *_rendered_args(src, fresh, num, hr=256))
    assert r.returncode == 0, r.stderr
    resumed = _manifest(out)
    assert resumed["complete"] and resumed["counts"]["kept"] == num
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in _manifest(fresh)["shards"]]
    _shards_match_manifest(out, resumed)


# -- usage errors: one line, exit 2, nothing written ----------------------------------------------
@pytest.mark.parametrize("flag", ["--workers", "--threads", "--num", "--max-errors"])
@pytest.mark.parametrize("value", ["0", "-2"])
def test_non_positive_counts_are_usage_errors_before_anything_is_written(flag, value, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["build", "--num", "4", "--out", str(out), flag, value]
    with pytest.raises(SystemExit) as e:
        synth_main(argv)
    assert e.value.code == 2
    assert f"argument {flag}: must be at least 1, got {value}" in capsys.readouterr().err
    assert not out.exists()


def test_out_naming_a_file_is_a_one_line_error(src, tmp_path, capsys):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    for argv, needle in [(["build", "--num", "1", "--out", str(f)], f"--out {f} is a file"),
                         (["inspect", str(f)], f"synth inspect: {f} is a file"),
                         (["export", str(f), "--layout", "tadisr"], f"synth export: {f} is a file")]:
        assert synth_main(argv) == 2
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and needle in err[0], err
    assert f.read_text() == "not a directory"


def test_export_or_inspect_of_a_missing_build_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert synth_main(["export", str(missing), "--layout", "tadisr"]) == 2
    assert synth_main(["export", str(missing), "--layout", "tadisr", "--dest", str(tmp_path / "td")]) == 2
    assert synth_main(["inspect", str(missing)]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 3 and all(f"{missing}: does not exist" in ln for ln in err), err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth_main(["export", str(empty), "--layout", "tadisr"]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"] and not any(empty.iterdir())


def test_only_project_errors_are_one_line(tmp_path, capsys):
    """A TextsrError is the user's to fix: one line, exit 2. Anything else is a bug and keeps its
    traceback (exit 1): here a real TypeError from inside the CLI's own code path."""
    from pipelines.cli import UsageError, _run as run

    def usage(a):
        raise UsageError("--thing: bad")

    def bug(a):
        return {}["x"] + 1  # a KeyError from a bug must not look like a usage error

    assert run("synth", usage, None) == 2
    assert _lines(capsys.readouterr().err) == ["synth: error: --thing: bad"]
    with pytest.raises(KeyError):
        run("synth", bug, None)


@pytest.mark.parametrize("argv, needle", [
    (["--model-opt", "timestep"], "--model-opt 'timestep': expected KEY=VALUE"),
    (["--metric-opt", "ssim=3"], "--metric-opt 'ssim=3': expected METRIC.KEY=VALUE"),
    (["--metric-opt", "ssim.test_y_channel=[1"], "the value is not valid YAML"),
])
def test_evalkit_option_syntax_errors_are_one_line(argv, needle, tmp_path, capsys):
    assert evalkit_main(["score", "--out", str(tmp_path / "run"), "--sr-dir", str(tmp_path), "--hr-dir",
                         str(tmp_path), *argv]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "run").exists()


def test_metric_opt_parses_yaml_values_per_metric():
    from pipelines.cli import _metric_options

    assert _metric_options(["ssim.color_space=ycbcr", "ssim.test-y-channel=true", "psnr.crop_border=4"]) == {
        "ssim": {"color_space": "ycbcr", "test_y_channel": True}, "psnr": {"crop_border": 4}}


def test_evalkit_protocols_lists_each_protocol(capsys):
    protocols = pytest.importorskip("evalkit.protocols")
    assert evalkit_main(["protocols"]) == 0
    out = capsys.readouterr().out
    for name in protocols.list_protocols():
        p = protocols.get_protocol(name)
        assert f"{p.name} (version {p.version}): {p.description}" in out
        for metric in p.metrics:
            assert f"\n  {metric}" in out
