"""End-to-end builds: real OCR, real fonts, real photos; shards read back with plain webdataset."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import webdataset as wds

from models.datasets import DatasetError, load_catalog
from models.files import sha256_file
from pipelines.build import BuildError, build
from pipelines.executors import LocalExecutor
from synth.recipe import load_recipe
from tests.helpers import background_folder_with_bad_inputs, png_bytes, word_crop, write_ctr_lmdb

NUM, PER_SHARD = 5, 3


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A background folder with good photos and every kind of bad input, and a CTR LMDB of real
    rendered word crops with an empty label and a corrupt image among them."""
    root = tmp_path_factory.mktemp("src")
    bg = background_folder_with_bad_inputs(root / "bg")
    words = ["STATION", "Coffee", "EXIT", "2024"]
    items = [(png_bytes(word_crop(w, size=36)), w) for w in words]
    items += [(png_bytes(word_crop("LOST")), ""), (b"corrupt", "BROKEN")]
    ctr = write_ctr_lmdb(root / "ctr", items)
    return bg, ctr


def _recipe(sources, **extra):
    bg, ctr = sources
    sets = [f"backgrounds.sources=[{{path: '{bg}', format: image-folder}}]",
            f"text.crops.sources=[{{path: '{ctr}', format: ctr-lmdb}}]",
            "backgrounds.hr_size=256", "text.instances=[1, 3]", "text.rendered_prob=0.5",
            f"samples_per_shard={PER_SHARD}", "text.rendered.font_size_px=[20, 48]"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return load_recipe("ftsr", sets)


@pytest.fixture(scope="module")
def local_build(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    recipe = _recipe(sources)
    m = build(recipe, out, NUM, executor=LocalExecutor(recipe, catalog=load_catalog()), progress=False)
    return out, m


def _shas(m):
    return [(s["file"], s["sha256"]) for s in m["shards"]]


def test_shards_read_back_with_plain_webdataset(local_build):
    out, m = local_build
    urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    assert [p.rsplit("/", 1)[1] for p in urls] == ["ftsr-000000.tar", "ftsr-000001.tar"]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("rgb8"))
    assert len(samples) == NUM == m["counts"]["kept"]
    assert [s["__key__"] for s in samples] == [f"ftsr-{i:09d}" for i in range(NUM)]
    for s in samples:
        hr, lr, mask, meta = s["hr.png"], s["lr.png"], s["mask.png"], s["json"]
        assert hr.shape == (256, 256, 3) and lr.shape == (64, 64, 3) and hr.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and (mask > 0).any()
        assert meta["recipe_hash"] == m["recipe_hash"] and meta["scale"] == 4
        assert 1 <= len(meta["texts"]) <= 3
        inside = np.zeros(mask.shape[:2], np.uint8)
        for t in meta["texts"]:
            poly = np.array(t["polygon"], np.float32)
            assert poly.shape == (4, 2) and t["text"] and t["language"] in ("en", "zh")
            assert (poly >= 0).all() and (poly <= 256).all()
            cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 1)
        # glyph pixels lie in the recorded polygons (a pixel of slack for rounding)
        on = mask[..., 0] > 0
        assert (cv2.dilate(inside, np.ones((5, 5), np.uint8))[on] > 0).mean() > 0.99
        deg = meta["degradation"]
        assert deg["preset"] == "realesrgan" and "jpeg" in json.dumps(deg).lower()


def test_manifest_counts_every_bad_input_with_its_reason(local_build):
    _, m = local_build
    rej = m["counts"]["rejected"]
    # which bad files a 5-sample build draws is up to the seed; test_stages covers each reason
    assert rej["background"] and set(rej["background"]) <= {"grayscale", "transparent", "unreadable", "too-small"}
    assert m["complete"] and m["counts"]["failed"] == 0
    assert all(s["count"] for s in m["shards"])


def test_crop_source_rejections_are_counted(sources, tmp_path):
    recipe = _recipe(sources, **{"text.rendered_prob": 0.0, "text.instances": "[5, 5]"})
    m = build(recipe, tmp_path, 3, executor=LocalExecutor(recipe), progress=False)
    rej = m["counts"]["rejected"]
    assert m["counts"]["kept"] == 3
    assert rej["ocr-filter"]["empty-label"] > 0 and rej["crop-source"]["unreadable"] > 0, rej
    texts = [t for s in wds.WebDataset(str(tmp_path / "shards" / "ftsr-000000.tar"), shardshuffle=False).decode()
             for t in s["json"]["texts"]]
    crops = [t for t in texts if t["source"]["kind"] == "crop"]
    assert crops and all(t["text"] in {"STATION", "Coffee", "EXIT", "2024"} for t in crops)
    assert all(t["source"]["sim_glyphs"] >= 0.8 for t in crops)


def test_same_seed_same_bytes_and_ray_matches_local(sources, local_build, tmp_path):
    from pipelines.ray_executor import RayExecutor

    _, m_local = local_build
    recipe = _recipe(sources)
    m_ray = build(recipe, tmp_path, NUM, executor=RayExecutor(recipe, catalog=load_catalog(), workers=2),
                  progress=False)
    assert _shas(m_ray) == _shas(m_local)


def test_other_seed_other_bytes(sources, local_build, tmp_path):
    recipe = _recipe(sources, seed=1)
    m = build(recipe, tmp_path, PER_SHARD, executor=LocalExecutor(recipe), progress=False)
    assert m["shards"][0]["sha256"] != local_build[1]["shards"][0]["sha256"]


def test_interrupted_build_resumes_without_loss_or_duplicates(sources, local_build, tmp_path):
    recipe = _recipe(sources)
    m1 = build(recipe, tmp_path, NUM, executor=LocalExecutor(recipe), progress=False, stop_after_shards=1)
    assert not m1["complete"] and len(m1["shards"]) == 1
    # a killed run also leaves a half-written temp shard behind
    (tmp_path / "shards" / ".ftsr-000001.tar.k1ll3d.tmp").write_bytes(b"half a shard")
    with pytest.raises(BuildError, match="--resume"):
        build(recipe, tmp_path, NUM, executor=LocalExecutor(recipe), progress=False)
    m2 = build(recipe, tmp_path, NUM, executor=LocalExecutor(recipe), progress=False, resume=True)
    assert m2["complete"] and _shas(m2) == _shas(local_build[1])
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (tmp_path / "shards").glob("*.tar")),
                                                  shardshuffle=False)]
    assert keys == [f"ftsr-{i:09d}" for i in range(NUM)]
    assert not list((tmp_path / "shards").glob("*.tmp")) and not list((tmp_path / "shards").glob(".*"))
    other = _recipe(sources, seed=3)
    with pytest.raises(BuildError, match="different recipe"):
        build(other, tmp_path, NUM, executor=LocalExecutor(other), progress=False, resume=True)
    # a build started by an older synth whose samples differ (no sample_version: version 1)
    man = json.loads((tmp_path / "manifest.json").read_text())
    del man["sample_version"]
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(BuildError, match="another version of synth"):
        build(recipe, tmp_path, NUM, executor=LocalExecutor(recipe), progress=False, resume=True)


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_synth; main_synth()", *args],
                          capture_output=True, text=True, timeout=600, **kw)


@pytest.mark.parametrize("args, needle", [
    (["--set", "degrade.scal=8"], "did you mean 'scale'"),
    (["--set", "degrade.scale=x"], "expected an integer"),
    (["--set", "degrade.preset=realesrgn"], "realesrgan"),
    (["--recipe", "nope"], "unknown recipe"),
    (["--set", "backgrounds.sources=[{name: div2k-train-hr}]"], "TEXTSR_DATA"),
])
def test_cli_usage_errors_are_one_line_exit_2(args, needle, tmp_path):
    r = _cli("build", "--num", "1", "--out", str(tmp_path / "o"), *args,
             env={**__import__("os").environ, "TEXTSR_DATA": str(tmp_path)})
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_cli_list_inspect_export(local_build, tmp_path):
    out, m = local_build
    r = _cli("list")
    assert r.returncode == 0 and "ftsr" in r.stdout and "realesrgan" in r.stdout and "rapidocr-ppocrv4" in r.stdout
    r = _cli("inspect", str(out), "--png", str(tmp_path / "sheet.png"), "-n", "3")
    assert r.returncode == 0, r.stderr
    assert f"{NUM} kept" in r.stdout
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[0] >= 3 * 256 and sheet.shape[1] >= 3 * 256
    r = _cli("export", str(out), "--layout", "tadisr", "--dest", str(tmp_path / "td"))
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in (tmp_path / "td" / "gt").iterdir())
    assert names == [f"{i:07d}.png" for i in range(1, NUM + 1)]
    gt = cv2.imread(str(tmp_path / "td" / "gt" / "0000001.png"))
    up = cv2.imread(str(tmp_path / "td" / "sr_bicubic" / "0000001.png"))
    mk = cv2.imread(str(tmp_path / "td" / "mask" / "0000001.png"), cv2.IMREAD_UNCHANGED)
    assert gt.shape == up.shape == (256, 256, 3) and mk.shape == (256, 256)


def test_killed_build_resumes_to_the_same_bytes(sources, tmp_path):
    """SIGKILL a real `synth build` after its first shard, then `--resume` it."""
    import os
    import signal
    import time

    bg, ctr = sources
    num, per = 12, 3
    out = tmp_path / "killed"
    args = ["build", "--num", str(num), "--out", str(out), "--executor", "local", "--no-progress",
            "--set", f"backgrounds.sources=[{{path: '{bg}', format: image-folder}}]",
            "--set", f"text.crops.sources=[{{path: '{ctr}', format: ctr-lmdb}}]",
            "--set", "backgrounds.hr_size=256", "--set", f"samples_per_shard={per}"]
    proc = subprocess.Popen([sys.executable, "-c", "from pipelines.cli import main_synth; main_synth()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        mf = out / "manifest.json"  # written atomically: a read never sees half a file
        if mf.exists() and json.loads(mf.read_text())["shards"]:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    m = json.loads((out / "manifest.json").read_text())
    assert not m["complete"] and 1 <= len(m["shards"]) < num // per
    r = _cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    resumed = json.loads((out / "manifest.json").read_text())
    fresh = _cli(*[a if a != str(out) else str(tmp_path / "fresh") for a in args])
    assert fresh.returncode == 0, fresh.stderr
    assert _shas(resumed) == _shas(json.loads((tmp_path / "fresh" / "manifest.json").read_text()))
    assert resumed["complete"] and resumed["counts"]["kept"] == num
    assert not list((out / "shards").glob("*.tmp"))


def test_crops_with_ground_truth_masks_skip_segmentation(sources, tmp_path):
    """TextSeg-style words and BTS-style image+mask regions: the dataset's mask is the glyph mask,
    the OCR filter still checks each crop, and the build records where each crop came from."""
    import json as _json

    from tests.helpers import word_crop

    bts = tmp_path / "bts"
    (bts / "image").mkdir(parents=True)
    (bts / "semantic_label").mkdir()
    ts = tmp_path / "textseg"
    for d in ("image", "semantic_label", "annotation"):
        (ts / d).mkdir(parents=True)
    for i, word in enumerate(["HARBOUR", "BAKERY", "TICKETS"]):
        img = word_crop(word, size=44)
        mask = np.where(img.mean(2) < 128, 255, 0).astype(np.uint8)
        cv2.imwrite(str(bts / "image" / f"b{i}.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(bts / "semantic_label" / f"b{i}.png"), mask)
        cv2.imwrite(str(ts / "image" / f"t{i}.jpg"), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
        cv2.imwrite(str(ts / "semantic_label" / f"t{i}_maskfg.png"), mask)
        h, w = mask.shape
        (ts / "annotation" / f"t{i}_anno.json").write_text(_json.dumps({"0000": {"text": word, "bbox": [0, 0, w - 1, 0, w - 1, h - 1, 0, h - 1]}}))
    bg, _ = sources
    recipe = load_recipe("ftsr", [f"backgrounds.sources=[{{path: '{bg}', format: image-folder}}]",
                                  f"text.crops.sources=[{{path: '{bts}', format: image-mask}}, {{path: '{ts}', format: textseg}}]",
                                  "backgrounds.hr_size=256", "text.rendered_prob=0.0", "text.instances=[2, 2]",
                                  "samples_per_shard=4"])
    m = build(recipe, tmp_path / "out", 4, executor=LocalExecutor(recipe), progress=False)
    assert m["counts"]["kept"] == 4 and "segment" not in m["counts"]["rejected"]
    texts = [t for s in wds.WebDataset(str(tmp_path / "out" / "shards" / "ftsr-000000.tar"), shardshuffle=False).decode()
             for t in s["json"]["texts"]]
    kinds = {t["source"]["id"].split(":")[0] for t in texts}
    assert kinds <= {str(bts), str(ts)} and len(kinds) == 2
    assert all(t["text"].upper() in {"HARBOUR", "BAKERY", "TICKETS"} for t in texts)


def test_a_build_that_cannot_start_writes_nothing(sources, tmp_path, isolated_weights):
    """Worker set-up fails (the hi-sam segmenter's weights are not here): the error is the
    project's own, and --out is left untouched, so the next run is not blocked by a manifest."""
    from models.weights import WeightsMissingError
    from pipelines.ray_executor import RayExecutor

    recipe = _recipe(sources, segmenter="hi-sam")
    out = tmp_path / "never"
    with pytest.raises(WeightsMissingError, match="hi_sam"):
        build(recipe, out, 2, executor=LocalExecutor(recipe), progress=False)
    assert not out.exists()
    with pytest.raises(BuildError, match="--workers must be at least 1, got 0"):
        RayExecutor(recipe, workers=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="is a file"):
        build(recipe, tmp_path / "file", 2, executor=LocalExecutor(recipe), progress=False)


def test_build_to_fsspec_urls_gives_the_same_bytes(sources, local_build, tmp_path):
    """fsspec's memory filesystem (in-process) and a file:// URL written by Ray workers: the same
    shards as the local build, each recorded sha256 that of the bytes stored, and no temp file."""
    import hashlib

    import fsspec

    from pipelines.ray_executor import RayExecutor

    _, want = local_build
    recipe = _recipe(sources)
    url = "memory://textsr-build-test/corpus"
    m = build(recipe, url, NUM, executor=LocalExecutor(recipe), progress=False)
    fs = fsspec.filesystem("memory")
    assert _shas(m) == _shas(want)
    for s in m["shards"]:
        assert hashlib.sha256(fs.cat_file(f"/textsr-build-test/corpus/{s['file']}")).hexdigest() == s["sha256"]
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/textsr-build-test/corpus/shards", detail=False)) == \
        [f"ftsr-{i:06d}.tar" for i in range(len(want["shards"]))]
    assert json.loads(fs.cat_file("/textsr-build-test/corpus/manifest.json"))["complete"]
    m = build(recipe, f"file://{tmp_path}/ray", NUM, executor=RayExecutor(recipe, workers=2), progress=False)
    assert _shas(m) == _shas(want) and m["executor"]["workers"] == 2
    assert sorted(p.name for p in (tmp_path / "ray" / "shards").iterdir()) == [Path(s["file"]).name for s in m["shards"]]


def test_resume_trusts_the_manifest_and_verify_rehashes(sources, local_build, tmp_path):
    """A finished shard corrupted in place (same size) is kept by --resume, which trusts the
    manifest, and rebuilt by --resume --verify; a shard of the wrong size is rebuilt either way."""
    import shutil

    src, want = local_build
    out = tmp_path / "b"
    shutil.copytree(src, out)
    man = json.loads((out / "manifest.json").read_text())
    man["shards"], man["complete"] = man["shards"][:1], False  # as if stopped after the first shard
    (out / "manifest.json").write_text(json.dumps(man))
    (out / "shards" / "ftsr-000001.tar").unlink()
    first = out / man["shards"][0]["file"]
    data = bytearray(first.read_bytes())
    data[700] ^= 0xFF
    first.write_bytes(bytes(data))
    recipe = _recipe(sources)
    m = build(recipe, out, NUM, executor=LocalExecutor(recipe), progress=False, resume=True)
    assert m["complete"] and m["shards"][0]["sha256"] == want["shards"][0]["sha256"]
    assert sha256_file(first) != want["shards"][0]["sha256"]  # trusted, not re-read
    m = build(recipe, out, NUM, executor=LocalExecutor(recipe), progress=False, resume=True, verify=True)
    assert sha256_file(first) == want["shards"][0]["sha256"] and _shas(m) == _shas(want)
    first.write_bytes(first.read_bytes()[:-512])
    m = build(recipe, out, NUM, executor=LocalExecutor(recipe), progress=False, resume=True)
    assert sha256_file(first) == want["shards"][0]["sha256"]


def test_background_source_behind_an_fsspec_url_gives_the_same_samples(sources, tmp_path):
    """The background folder copied to fsspec's memory filesystem (with a sub-folder, to check the
    listing order) and named alike: the build reads it through the URL and writes the same bytes
    as from the local folder (all but the recipe hash, which holds the path); a text-crop source
    behind a URL is refused with the reason."""
    import shutil

    import fsspec

    from synth.sources.images import ImageFolder

    bg, ctr = sources
    local = tmp_path / "bg"
    shutil.copytree(bg, local)
    (local / "sub").mkdir()
    shutil.copy(bg / "retina.png", local / "sub" / "a.png")
    fs = fsspec.filesystem("memory")
    for p in sorted(local.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"/bg-test/{p.relative_to(local).as_posix()}", p.read_bytes())
    assert ImageFolder("memory://bg-test").files == ImageFolder(local).files
    builds = []
    for where in (str(local), "memory://bg-test"):
        recipe = load_recipe("ftsr", [f"backgrounds.sources=[{{name: bgs, path: '{where}', format: image-folder}}]",
                                      f"text.crops.sources=[{{path: '{ctr}', format: ctr-lmdb}}]",
                                      "backgrounds.hr_size=256", "text.rendered_prob=1.0", "samples_per_shard=4"])
        builds.append(build(recipe, tmp_path / f"out{len(builds)}", 4, executor=LocalExecutor(recipe), progress=False))
    assert builds[0]["counts"] == builds[1]["counts"] and builds[0]["counts"]["kept"] == 4

    def samples(i):  # the recipe differs in the source's path, hence in recipe_hash; nothing else may
        for s in wds.WebDataset(str(tmp_path / f"out{i}" / "shards" / "ftsr-000000.tar"), shardshuffle=False):
            meta = json.loads(s["json"])
            del meta["recipe_hash"]
            yield s["__key__"], s["hr.png"], s["lr.png"], s["mask.png"], meta

    assert list(samples(0)) == list(samples(1))
    recipe = load_recipe("ftsr", ["text.crops.sources=[{path: 'memory://bg-test', format: ctr-lmdb}]",
                                  "text.rendered_prob=0.5"])
    with pytest.raises(DatasetError, match="only image-folder background sources may be fsspec URLs"):
        build(recipe, tmp_path / "refused", 1, executor=LocalExecutor(recipe), progress=False)
