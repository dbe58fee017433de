"""VOSR's data (issue #14): the ScreenSR benchmark loader, and a synth corpus read by VOSR's own
webdataset pipeline (cswry/VOSR dataloaders/realsr_dataset.py, rebuilt here from plain webdataset
calls) after ``synth export --layout vosr``."""
from __future__ import annotations

import glob
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageDraw

from evalkit.loaders.base import AnnotationError
from evalkit.loaders.screensr import ScreenSR
from models.datasets import DatasetEntry
from tests.helpers import dejavu, text_corpus, write_png

# ---------------------------------------------------------------- ScreenSR


def _screen_photo(name: str, word: str) -> np.ndarray:
    """A 256² crop of a real photo with a large rendered word (OCR reads it on the HR)."""
    im = Image.fromarray(np.ascontiguousarray(getattr(skimage.data, name)()[:256, :256]))
    d = ImageDraw.Draw(im)
    d.rectangle([10, 90, 246, 160], fill=(245, 245, 245))
    d.text((20, 100), word, font=dejavu(44), fill=(10, 10, 10))
    return np.asarray(im).copy()


def _lr(hr: np.ndarray, scale: int = 4) -> np.ndarray:
    """A stand-in for the re-photographed LR: area-downscaled, then a JPEG round trip."""
    small = cv2.resize(hr, (hr.shape[1] // scale, hr.shape[0] // scale), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


PHOTOS = {"0001": ("astronaut", "HOTEL"), "0002": ("coffee", "MENU")}


def _write_screensr(root: Path, hr_dir="HR", lr_dir="LR", lr_ext=".png") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for stem, (photo, word) in PHOTOS.items():
        hr = _screen_photo(photo, word)
        lr = _lr(hr)
        write_png(root / hr_dir / f"{stem}.png", hr)
        p = root / lr_dir / f"{stem}{lr_ext}"
        p.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(p), lr[:, :, ::-1])
        out[stem] = (hr, lr if lr_ext == ".png" else cv2.imread(str(p))[:, :, ::-1])
    return out


def _entry(root: Path, **extra) -> DatasetEntry:
    return DatasetEntry(name="screensr-mini", format="screensr", root=str(root), extra=extra)


@pytest.mark.parametrize("hr_dir,lr_dir,nested", [("HR", "LR", False), ("GT", "LQ", False), ("hr", "lr", True)])
def test_screensr_finds_its_folders_and_pairs_by_name(tmp_path, hr_dir, lr_dir, nested):
    root = tmp_path / "ScreenSR"
    data = _write_screensr(root / "ScreenSR" if nested else root, hr_dir, lr_dir, lr_ext=".jpg")
    sr = ScreenSR(_entry(root))
    assert sr.keys() == ["0001", "0002"] and sr.has_lr and not sr.has_texts and sr.scale == 4
    for it in sr.items():
        hr, lr = data[it.key]
        np.testing.assert_array_equal(it.hr, hr)
        np.testing.assert_array_equal(it.lr, lr)  # 0001.jpg pairs 0001.png: by stem, as VOSR names SR by the LR
        assert it.lr.shape == (64, 64, 3) and it.hr.dtype == np.uint8 and it.meta["scale"] == 4
        assert it.texts is None


def test_screensr_explicit_folders_suffixes_and_bad_pairs(tmp_path):
    root = tmp_path / "ScreenSR"
    data = _write_screensr(root, "gt_images", "lq_images")
    sr = ScreenSR(_entry(root, hr_dir="gt_images", lr_dir="lq_images"))
    np.testing.assert_array_equal(sr.item("0002").hr, data["0002"][0])

    for stem in PHOTOS:  # 0001_HR.png / 0001_LR.png
        (root / "gt_images" / f"{stem}.png").rename(root / "gt_images" / f"{stem}_HR.png")
        (root / "lq_images" / f"{stem}.png").rename(root / "lq_images" / f"{stem}_LR.png")
    sr = ScreenSR(_entry(root, hr_dir="gt_images", lr_dir="lq_images", hr_suffix="_HR", lr_suffix="_LR"))
    assert sr.keys() == ["0001", "0002"]

    # an LR that is not HR/scale: named, with both sizes; skipped and counted with skip_bad
    write_png(root / "lq_images" / "0001_LR.png", data["0001"][1][:50])
    e = _entry(root, hr_dir="gt_images", lr_dir="lq_images", hr_suffix="_HR", lr_suffix="_LR")
    with pytest.raises(AnnotationError, match=r"0001_LR\.png.*LR is 64x50, HR is 256x256"):
        list(ScreenSR(e).items())
    sr = ScreenSR(e, skip_bad=True)
    assert [it.key for it in sr.items()] == ["0002"] and len(sr.skipped) == 1
    # a scale that does not fit says so
    with pytest.raises(AnnotationError, match="is the scale right"):
        ScreenSR(_entry(root, hr_dir="gt_images", lr_dir="lq_images", hr_suffix="_HR", lr_suffix="_LR",
                        scale=2)).item("0002")


def test_screensr_unknown_or_ambiguous_layout_is_a_clear_error(tmp_path):
    root = tmp_path / "ScreenSR"
    (root / "originals").mkdir(parents=True)
    (root / "captures").mkdir()
    with pytest.raises(AnnotationError, match=r"no HR and LR folder pair.*captures, originals.*set hr_dir and lr_dir"):
        ScreenSR(_entry(root)).keys()
    (root / "HR").mkdir()
    (root / "GT").mkdir()
    (root / "LR").mkdir()
    with pytest.raises(AnnotationError, match=r"several HR/LR folder candidates \(GT, HR"):
        ScreenSR(_entry(root)).keys()
    with pytest.raises(AnnotationError, match="folder not found"):
        ScreenSR(_entry(tmp_path / "absent")).keys()


def _evalkit(*args, env):
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()", *args],
                          check=False, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def _psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR on BT.601 limited-range Y (the usual SR convention), from the formula."""
    def y(img):
        img = img.astype(np.float64) / 255.0
        return (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2] + 16.0) / 255.0
    from skimage.metrics import peak_signal_noise_ratio

    return peak_signal_noise_ratio(y(a), y(b), data_range=1.0)


def test_catalog_lists_screensr():
    from evalkit.loaders.registry import create_loader
    from models.datasets import load_catalog

    e = load_catalog()["screensr-test"]
    assert e.format == "screensr" and e.extra["scale"] == 4 and "CSWRY/ScreenSR" in e.description
    assert isinstance(create_loader(e), ScreenSR)


def test_evalkit_score_screensr_end_to_end(tmp_path):
    """`evalkit score --model bicubic --bench <a screensr entry>`: the real LR is read, the OCR metric
    uses OCR of the HR as its reference (no annotations), per-image PSNR matches the formula."""
    data = _write_screensr(tmp_path / "data" / "ScreenSR")
    mine = tmp_path / "mine.yaml"
    mine.write_text("datasets:\n  screensr-mini: {format: screensr, root: ScreenSR, scale: 4, count: 2}\n")
    env = {"TEXTSR_DATA": str(tmp_path / "data"), "TEXTSR_CACHE": str(tmp_path / "cache")}
    r = _evalkit("datasets", "--datasets", str(mine), env=env)
    assert r.returncode == 0, r.stderr
    assert "found: 2 items" in next(ln for ln in r.stdout.splitlines() if ln.startswith("screensr-mini"))
    run = tmp_path / "run"
    r = _evalkit("score", "--model", "bicubic", "--bench", "screensr-mini", "--datasets", str(mine), "--out", str(run),
                 "--metrics", "psnr,ocr_a", "--no-progress", env=env)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["images"] == 2 and s["scale"] == 4 and s["bench"] == "screensr-mini"
    assert "synthesised_lr" not in s["bench_info"] and not (tmp_path / "cache" / "fixed-lr").exists()
    assert s["metrics"]["ocr_a"] is not None and 0 <= s["metrics"]["ocr_a"] <= 1
    rows = {json.loads(ln)["key"]: json.loads(ln) for ln in (run / "per_image.jsonl").read_text().splitlines()}
    assert sorted(rows) == ["0001", "0002"]
    for key, (hr, _) in data.items():
        sr = cv2.imread(str(run / "sr" / f"{key}.png"))[:, :, ::-1]
        assert sr.shape == hr.shape
        assert rows[key]["psnr"] == pytest.approx(_psnr_y(sr, hr), abs=1e-6)


# ---------------------------------------------------------------- VOSR's webdataset pipeline


VOSR_IMAGE_KEYS = ("jpg", "png", "jpeg", "bmp", "webp")


def _vosr_stream(folder: Path):
    """VOSR's build_webdataset_pipeline for one folder (its default shuffle buffer), then its
    DegradationMapper's key selection: the first sample key equal to one of VOSR_IMAGE_KEYS.
    Yields (sample key, selected image or None — VOSR drops those)."""
    import webdataset as wds

    tar_files = sorted(glob.glob(os.path.join(str(folder), "*.tar")))
    assert tar_files, f"no tar files in {folder}"
    ds = wds.DataPipeline(
        wds.ResampledShards(tar_files, deterministic=False),
        wds.split_by_node,
        wds.split_by_worker,
        wds.tarfile_to_samples(handler=wds.warn_and_continue),
        wds.shuffle(5000),
        wds.decode("rgb8", handler=wds.warn_and_continue),
    )
    for sample in ds:
        k = next((k for k in sample if k in VOSR_IMAGE_KEYS), None)
        yield sample["__key__"], (None if k is None else sample[k])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A real `synth build` corpus: 5 samples in 2 shards (4 + 1)."""
    return text_corpus(tmp_path_factory.mktemp("vosr") / "corpus", 5)


def _our_hr(corpus: Path) -> dict[str, np.ndarray]:
    """Each sample's HR as RGB uint8, decoded with OpenCV straight from our shards."""
    from synth.export import iter_samples

    return {k: cv2.imdecode(np.frombuffer(f["hr.png"], np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
            for k, f in iter_samples(corpus)}


def test_vosr_pipeline_selects_nothing_from_a_build_as_is(corpus):
    """Our members are <key>.hr.png: VOSR's key selection finds no image in any sample."""
    seen = list(itertools.islice(_vosr_stream(corpus / "shards"), 20))
    assert len(seen) == 20 and all(img is None for _, img in seen)


def test_vosr_pipeline_reads_our_hr_pixel_identical_after_export(corpus, tmp_path):
    from synth.export import export

    dest, n = export(corpus, "vosr", tmp_path / "vosr")
    hr = _our_hr(corpus)
    assert n == len(hr) == 5
    assert sorted(p.name for p in dest.glob("*.tar")) == ["ftsr-000000.tar", "ftsr-000001.tar"]
    got: dict[str, np.ndarray] = {}
    for key, img in itertools.islice(_vosr_stream(dest), 400):  # resampled: draw until every key is seen
        assert img is not None, key
        got.setdefault(key, img)
        if len(got) == len(hr):
            break
    assert sorted(got) == sorted(hr)
    for key, img in got.items():
        assert img.dtype == np.uint8 and img.shape == hr[key].shape and img.shape[2] == 3
        np.testing.assert_array_equal(img, hr[key])

    # exporting again over its own output is fine; over foreign shards or a file it is refused
    assert export(corpus, "vosr", dest)[1] == 5
    (dest / "other-000000.tar").write_bytes((dest / "ftsr-000001.tar").read_bytes())
    from synth.shards import CorpusError

    with pytest.raises(CorpusError, match="other-000000.tar.*VOSR would read too"):
        export(corpus, "vosr", dest)
    (tmp_path / "f").write_text("x")
    with pytest.raises(CorpusError, match="is a file"):
        export(corpus, "vosr", tmp_path / "f")
    with pytest.raises(CorpusError, match="own shard folder"):
        export(corpus, "vosr", corpus / "shards")
    (tmp_path / "not-a-build").mkdir()
    with pytest.raises(CorpusError, match="no manifest.json"):
        export(tmp_path / "not-a-build", "vosr")
