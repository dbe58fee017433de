"""Harvesting text crops from real photos: scikit-image's scanned page, RealSR scene photos with signs,
a rotated page; the project cache; a `synth build` whose crop source is a photo folder."""
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from skimage.filters import threshold_otsu

from models.ocr import create_ocr
from pipelines.harvest import harvest_source, local_blocks
from synth.harvest import Harvester, line_tilt_deg
from synth.recipe import RecipeError, SourceSpec, load_recipe
from synth.sources.harvested import HarvestedCrops
from tests.helpers import write_png

# RealSR HR photos (OSEDiff's test set copy, see ../shared/paper/README.md) with legible signs
REALSR = Path(__file__).resolve().parents[2] / "shared" / "paper" / "osediff" / "realsr" / "test_HR"
SCENES = {"Canon_001_LR4.png": "eduroam", "Canon_045_LR4.png": "36"}


def _norm(s: str) -> str:
    return "".join(s.split()).lower()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("cache")
        mp.setenv("TEXTSR_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def ocr():
    return create_ocr("rapidocr-ppocrv4", num_threads=2)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """The scanned page (grey PNG), the scene photos that exist here, and a file that is no image."""
    root = tmp_path_factory.mktemp("photos")
    cv2.imwrite(str(root / "page.png"), skimage.data.page())
    for name in SCENES:
        if (REALSR / name).is_file():
            shutil.copy(REALSR / name, root / name)
    (root / "zz-broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return root


def _spec(photos):
    return SourceSpec(path=str(photos), format="image-folder", harvest=True)


@pytest.fixture(scope="module")
def harvested(cache, photos, tmp_path_factory):
    recipe = load_recipe("ftsr")
    out = tmp_path_factory.mktemp("h1")
    summary = harvest_source(recipe, _spec(photos), out, run_blocks=local_blocks, block=2)
    return out, summary, HarvestedCrops(out)


def test_kept_crops_are_read_the_same_by_an_independent_ocr_run(harvested, ocr):
    _, summary, crops = harvested
    assert len(crops) == summary["kept"] >= 4
    for i in range(len(crops)):
        rgb = cv2.imdecode(np.frombuffer(crops.load(i), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        mask = crops.mask(i)
        assert mask.shape == rgb.shape[:2] and set(np.unique(mask)) <= {0, 255}
        assert 0.02 <= (mask > 0).mean() <= 0.7
        text, score = ocr.recognize([rgb])[0]
        # the OCR filter's reading is stored with the crop; a fresh engine reads the same string
        assert text == crops.rows[i]["checks"]["ocr_crop"], crops.item_id(i)
        assert _norm(text) == _norm(crops.label(i)) and score > 0.8, (crops.item_id(i), text, score)


def test_page_crops_are_words_of_the_page(harvested, ocr):
    _, _, crops = harvested
    page = np.repeat(skimage.data.page()[:, :, None], 3, axis=2)
    lines = [line.text for line in ocr.readtext(page)]
    words = {w for t in lines for w in t.split()} | set(lines)
    page_labels = [crops.label(i) for i in range(len(crops)) if crops.rows[i]["image"].endswith("page.png")]
    assert len(page_labels) >= 3 and set(page_labels) <= words
    assert {"Region-based", "segmentation"} <= set(page_labels)


def test_scene_photo_signs_are_harvested(harvested, photos):
    _, _, crops = harvested
    present = {n: t for n, t in SCENES.items() if (photos / n).is_file()}
    if not present:
        pytest.skip(f"no RealSR photos at {REALSR}")
    by_image = {}
    for i in range(len(crops)):
        by_image.setdefault(crops.rows[i]["image"].rsplit(":", 1)[-1], []).append(crops.label(i))
    for name, text in present.items():
        assert text in by_image.get(name, []), (name, by_image)


def test_every_line_has_a_verdict_and_a_bad_image_is_counted(harvested, photos):
    out, summary, crops = harvested
    rows = [json.loads(x) for x in (out / "images.jsonl").read_text().splitlines()]
    assert [r["id"].rsplit(":", 1)[-1] for r in rows] == sorted(p.name for p in photos.iterdir())
    broken = [r for r in rows if r["id"].endswith("zz-broken.jpg")]
    assert broken[0]["error"] and broken[0]["lines"] == []
    verdicts = [v["verdict"] for r in rows for v in r["lines"]]
    assert all(v == "kept" or "/" in v for v in verdicts)
    assert verdicts.count("kept") == len(crops) == summary["counts"]["kept"]
    assert summary["counts"]["harvest/unreadable"] == 1 and summary["images"] == len(rows)
    assert sum(v.startswith("ocr-filter/") for v in verdicts) >= 1  # the page's long lines: label-length
    ident = summary["identity"]
    assert ident["segmenter"]["name"] == "ppocr-db-glyph" and ident["segmenter"]["ocr"] == ident["ocr"]


def _ink_angle(rgb: np.ndarray) -> float:
    """Orientation (degrees from horizontal) of the dark pixels' principal axis."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    ys, xs = np.nonzero(grey < threshold_otsu(grey))
    cov = np.cov(np.stack([xs, ys]).astype(np.float64))
    _, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, -1]
    a = np.degrees(np.arctan2(vy, vx))
    return (a + 90) % 180 - 90


def test_rotated_page_gives_rectified_horizontal_crops(cache, ocr):
    page = np.repeat(skimage.data.page()[:, :, None], 3, axis=2)
    h, w = page.shape[:2]
    rot = cv2.warpAffine(page, cv2.getRotationMatrix2D((w / 2, h / 2), 12, 1.0), (w, h),
                         flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    res = Harvester(load_recipe("ftsr"), ocr=ocr).harvest(rot, "rotated-page")
    upright = {wd for line in ocr.readtext(page) for wd in line.text.split()}
    assert len(res.crops) >= 3
    for c in res.crops:
        assert c.rectified
        text, score = ocr.recognize([c.rgb])[0]
        assert _norm(text) == _norm(c.label), (c.label, text)
        if len(c.label) >= 4:  # two-letter words score ~0.7-0.9 even upright
            assert score >= 0.9, (c.label, score)
    # a long crop's ink runs horizontally (descenders tilt short words' principal axis, so only
    # crops over 5x wider than tall are measured); the same line cut on its axis-aligned box is tilted
    long = [c for c in res.crops if c.rgb.shape[1] > 5 * c.rgb.shape[0]]
    assert long and all(abs(_ink_angle(c.rgb)) < 2.0 for c in long), [_ink_angle(c.rgb) for c in long]
    assert all(abs(abs(line_tilt_deg(np.array(c.polygon))) - 12) < 3 for c in long)  # …cut from tilted lines
    assert len({c.label for c in res.crops} & upright) >= 3  # the same words as on the upright page


def test_second_harvest_is_cache_hits_and_byte_identical(harvested, photos, tmp_path):
    out1, s1, _ = harvested
    recipe = load_recipe("ftsr")
    s2 = harvest_source(recipe, _spec(photos), tmp_path, run_blocks=local_blocks, block=3)
    assert s1["cache"] == {"hits": 0, "misses": s1["images"]}
    assert s2["cache"] == {"hits": s2["images"], "misses": 0}
    files = sorted(p.relative_to(out1).as_posix() for p in out1.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all((out1 / f).read_bytes() == (tmp_path / f).read_bytes() for f in files)
    # another harvest setting or segmenter setting is another cache entry
    h = Harvester(recipe)
    other = Harvester(load_recipe("ftsr", ["text.crops.harvest.margin=5"]))
    assert h.cache_path("0" * 64) != other.cache_path("0" * 64)
    other.segmenter.thresh += 0.1
    other._identity = None
    assert other.identity()["segmenter"]["thresh"] != h.identity()["segmenter"]["thresh"]


def test_recipe_harvest_settings():
    src = "text.crops.sources=[{path: /photos, format: image-folder, harvest: true}]"
    base = load_recipe("ftsr")
    assert "harvest" not in base.to_dict()["text"]["crops"]
    assert "harvest" not in base.to_dict()["text"]["crops"]["sources"][0]
    # settings that no source uses change nothing; with a harvest source they are part of the hash
    assert load_recipe("ftsr", ["text.crops.harvest.margin=7"]).hash() == base.hash()
    r = load_recipe("ftsr", [src])
    assert r.text.crops.sources[0].harvest and r.hash() != base.hash()
    assert load_recipe("ftsr", [src, "text.crops.harvest.margin=7"]).hash() != r.hash()
    with pytest.raises(RecipeError, match="min_scor"):
        load_recipe("ftsr", [src, "text.crops.harvest.min_scor=0.5"])


def _texts(out: Path) -> list[dict]:
    texts = []
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                if m.name.endswith(".json"):
                    texts += json.load(io.BytesIO(t.extractfile(m).read()))["texts"]
    return texts


def test_synth_build_with_a_harvest_source(cache, photos, tmp_path):
    from pipelines.build import build
    from pipelines.executors import LocalExecutor

    write_png(tmp_path / "bg" / "hubble.png", skimage.data.hubble_deep_field()[:300, :300])
    sets = [f"text.crops.sources=[{{path: '{photos}', format: image-folder, harvest: true}}]",
            f"backgrounds.sources=[{{path: '{tmp_path / 'bg'}', format: image-folder}}]",
            "text.rendered_prob=0", "backgrounds.hr_size=256", "samples_per_shard=2", "text.instances=[1, 2]"]
    cmd = ["build", "--recipe", "ftsr", "--executor", "local", "--num", "3", "--out", str(tmp_path / "a"),
           "--no-progress"] + [x for s in sets for x in ("--set", s)]
    proc = subprocess.run([sys.executable, "-c", "from pipelines.cli import main_synth; main_synth()", *cmd],
                          check=False, capture_output=True, text=True, timeout=600, env={**os.environ},
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    m1 = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m1["complete"]
    (h1,) = m1["harvest"].values()
    assert h1["folder"] == f"harvest/{h1['folder'].split('/')[-1]}" and h1["kept"] >= 4
    assert h1["identity"]["segmenter"]["name"] == "ppocr-db-glyph"
    crop_ids = {r["id"] for r in HarvestedCrops(tmp_path / "a" / h1["folder"]).rows}
    texts = _texts(tmp_path / "a")
    assert texts and all(t["source"]["kind"] == "crop" and t["source"]["id"] in crop_ids for t in texts)
    assert all(t["source"]["origin"]["image"] == t["source"]["id"].split("#")[0] for t in texts)
    # the second build (same cache, in this process) harvests nothing anew and makes the same bytes
    recipe = load_recipe("ftsr", sets)
    m2 = build(recipe, tmp_path / "b", 3, executor=LocalExecutor(recipe), progress=False)
    (h2,) = m2["harvest"].values()
    assert h2["cache"] == {"hits": h1["images"], "misses": 0}
    assert [s["sha256"] for s in m2["shards"]] == [s["sha256"] for s in m1["shards"]]


@pytest.mark.slow
def test_ray_build_with_a_harvest_source_matches_local(cache, photos, tmp_path):
    from pipelines.build import build
    from pipelines.executors import LocalExecutor
    from pipelines.ray_executor import RayExecutor

    write_png(tmp_path / "bg" / "hubble.png", skimage.data.hubble_deep_field()[:300, :300])
    recipe = load_recipe("ftsr", [f"text.crops.sources=[{{path: '{photos}', format: image-folder, harvest: true}}]",
                                  f"backgrounds.sources=[{{path: '{tmp_path / 'bg'}', format: image-folder}}]",
                                  "text.rendered_prob=0", "backgrounds.hr_size=256", "samples_per_shard=1"])
    local = build(recipe, tmp_path / "local", 2, executor=LocalExecutor(recipe), progress=False)
    ray_m = build(recipe, tmp_path / "ray", 2, executor=RayExecutor(recipe, workers=2), progress=False)
    assert ray_m["complete"] and [s["sha256"] for s in ray_m["shards"]] == [s["sha256"] for s in local["shards"]]
    files = sorted(p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local" / "harvest").rglob("*")
                   if p.is_file())
    assert all((tmp_path / "local" / f).read_bytes() == (tmp_path / "ray" / f).read_bytes() for f in files)


def test_synth_harvest_command_and_recipe_checks(cache, harvested, photos, tmp_path):
    from synth.factory import check_recipe

    out1, s1, _ = harvested
    proc = subprocess.run([sys.executable, "-c", "from pipelines.cli import main_synth; main_synth()", "harvest",
                           "--source", str(photos), "--out", str(tmp_path / "h"), "--executor", "local",
                           "--no-progress"], check=False, capture_output=True, text=True, timeout=600, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"harvested {s1['kept']} text crops from {s1['images']} images" in proc.stdout
    assert (tmp_path / "h" / "crops.jsonl").read_bytes() == (out1 / "crops.jsonl").read_bytes()
    # harvest: true on a background source, or on something that is not a photo folder: one-line errors
    bad_bg = load_recipe("ftsr", [f"backgrounds.sources=[{{path: '{photos}', format: image-folder, harvest: true}}]"])
    with pytest.raises(RecipeError, match="harvest: true, which is for text.crops.sources"):
        check_recipe(bad_bg)
    with pytest.raises(RecipeError, match="out of range"):
        check_recipe(load_recipe("ftsr", ["text.crops.harvest.min_score=1.5", "text.rendered_prob=0.5"]))
