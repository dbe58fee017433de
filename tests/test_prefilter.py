"""synth prefilter: background verdicts computed once (Ray), and builds that use them instead of OCR.

Real OCR on real photos. The reference for every verdict is BackgroundStage deciding by itself
(running OCR on the image), never the prefilter's own code."""
import json

import numpy as np
import pytest

from models.ocr import create_ocr
from pipelines.build import build
from pipelines.executors import LocalExecutor
from synth.factory import check_recipe
from synth.imageio import decode_image
from synth.prefilter import (
    FORMAT,
    VerdictsError,
    make_header,
    read_jsonl,
    read_verdicts,
    source_identity,
    write_verdicts,
)
from synth.recipe import load_recipe
from synth.sources.images import ImageFolder, SkimagePhotos
from synth.stages.background import BackgroundStage
from synth.types import Rejected
from tests.helpers import background_folder_with_bad_inputs

SKIMAGE = {"astronaut": "has-text", "grace_hopper": "has-text",  # mission badge, name plate
           "hubble_deep_field": "ok", "retina": "ok", "immunohistochemistry": "ok",
           "coffee": "too-small", "chelsea": "too-small", "rocket": "too-small", "colorwheel": "too-small",
           "stereo_motorcycle": "too-small"}
BAD = {"astronaut.png": "too-small", "retina.png": "too-small", "ihc.png": "too-small", "deep16.png": "too-small",
       "small.png": "too-small", "grey.png": "unreadable", "transparent.png": "unreadable",
       "corrupt.png": "unreadable"}


@pytest.fixture(scope="module")
def ray_2cpus():
    from pipelines.ray_session import RaySession

    with RaySession(num_cpus=2) as s:  # one Ray for the module; prefilter joins it
        yield s


@pytest.fixture(scope="module")
def bg(tmp_path_factory):
    return background_folder_with_bad_inputs(tmp_path_factory.mktemp("bg") / "bg")


def _recipe(bg, *sets):
    return load_recipe("ftsr", [f"backgrounds.sources=[{{name: skimage-photos}}, {{path: '{bg}', format: image-folder}}]",
                                "text.rendered_prob=1.0", "text.instances=[1, 2]", "samples_per_shard=2", *sets])


@pytest.fixture(scope="module")
def prefiltered(ray_2cpus, bg, tmp_path_factory):
    """Both sources of the recipe (hr_size 512: the labels' thresholds) in one file, by Ray."""
    from pipelines.prefilter import prefilter

    out = tmp_path_factory.mktemp("pf") / "verdicts.jsonl"
    summary = prefilter(_recipe(bg), None, out, workers=2, block=3, progress=False)
    return out, summary


def _seen(stage, seeds):
    """What the stage does on each seed: the crop's bytes and facts, or the rejection."""
    out = []
    for seed in seeds:
        try:
            crop, info = stage.sample(np.random.default_rng(seed))
            out.append(("kept", info, crop.tobytes()))
        except Rejected as r:
            out.append((r.reason, r.detail))
    return out


def test_ray_prefilter_writes_the_stage_verdicts_of_every_image(prefiltered, bg):
    out, summary = prefiltered
    v = read_verdicts(out)
    assert v.header["format"] == FORMAT and [s["name"] for s in v.header["sources"]] == ["skimage-photos", str(bg)]
    assert v.header["sources"][0] == source_identity(SkimagePhotos())
    expect = {f"skimage:{k}": x for k, x in SKIMAGE.items()} | {f"{bg}:{k}": x for k, x in BAD.items()}
    assert {i: r["verdict"] for i, r in v.rows.items()} == expect
    # rows in item order, source by source
    assert list(v.rows) == ([SkimagePhotos().item_id(i) for i in range(10)]
                            + [ImageFolder(bg, str(bg)).item_id(i) for i in range(8)])
    assert summary["counts"] == {"ok": 3, "has-text": 2, "too-small": 10, "unreadable": 3}
    assert summary["images"] == 18 and summary["resumed"] == 0 and not out.with_name(out.name + ".partial.jsonl").exists()
    for r in v.rows.values():
        assert r["score"] == max((s for _, s in r["texts"]), default=None)
        assert all(any(c.isalnum() for c in t) for t, _ in r["texts"])
        assert (r["error"] is None) == (r["verdict"] != "unreadable")
    assert v.rows[f"{bg}:grey.png"]["error"].startswith("grayscale")
    assert v.rows[f"{bg}:retina.png"]["width"] == 320
    # the labels are what the stage decides by itself, OCR and all, at the same thresholds
    ocr = create_ocr("rapidocr-ppocrv4")
    stage = BackgroundStage(_recipe(bg).backgrounds, [(1.0, SkimagePhotos())], ocr=ocr)
    src = SkimagePhotos()
    for i, name in enumerate(src.names):
        want = SKIMAGE[name]
        img = decode_image(src.load(i), stage="background", what=name, allow_gray=False)
        try:
            stage._check(img, name)
            got = "ok"
        except Rejected as r:
            got = r.reason
        assert got == want, name


def test_stage_from_verdicts_decides_as_ocr_would_at_other_thresholds(prefiltered, bg):
    """hr_size 256 instead of the file's 512: no new prefilter run, and every draw — crops, and the
    rejections of unreadable, grey and transparent files — is identical to the stage OCR-ing."""
    out, _ = prefiltered
    cfg = _recipe(bg, "backgrounds.hr_size=256").backgrounds
    ocr = create_ocr("rapidocr-ppocrv4")
    sources = [(1.0, SkimagePhotos()), (1.0, ImageFolder(bg, str(bg)))]
    own = BackgroundStage(cfg, sources, ocr=ocr)
    filed = BackgroundStage(cfg, sources, ocr=ocr, verdicts=read_verdicts(out))
    filed.setup()
    seeds = range(120)
    seen = _seen(filed, seeds)
    assert seen == _seen(own, seeds)
    reasons = {s[0] for s in seen}
    # at 256 the motorcycle's "YAMRMA" counts: a too-small label in the file is no verdict for the build
    assert {"kept", "has-text", "too-small", "unreadable", "grayscale", "transparent"} <= reasons
    assert any(s[0] == "has-text" and "stereo_motorcycle" in s[1] for s in seen)


def test_build_with_verdicts_is_byte_identical(prefiltered, bg, tmp_path):
    out, _ = prefiltered
    plain = _recipe(bg, "backgrounds.hr_size=256")
    filed = _recipe(bg, "backgrounds.hr_size=256", f"backgrounds.verdicts={out}")
    assert filed.hash() == plain.hash() and filed.backgrounds.verdicts == str(out)
    check_recipe(filed)
    m1 = build(plain, tmp_path / "a", 4, executor=LocalExecutor(plain), progress=False)
    m2 = build(filed, tmp_path / "b", 4, executor=LocalExecutor(filed), progress=False)
    assert m1["complete"] and m2["complete"]
    assert [(s["file"], s["sha256"]) for s in m1["shards"]] == [(s["file"], s["sha256"]) for s in m2["shards"]]
    assert m1["counts"] == m2["counts"] and m1["counts"]["rejected"]["background"]
    assert m2["recipe"]["backgrounds"]["verdicts"] == str(out)


def test_a_forged_verdicts_file_is_obeyed(prefiltered, bg, tmp_path):
    """The file, not OCR, decides: the astronaut (text on its badge) marked clean is used, and
    every other image marked too small is never drawn into a crop."""
    out, _ = prefiltered
    v = read_verdicts(out)
    rows = []
    for r in v.rows.values():
        if r["id"] == "skimage:astronaut":
            r = {**r, "verdict": "ok", "texts": [], "score": None}
        elif r["verdict"] != "unreadable":
            r = {**r, "verdict": "too-small", "width": 10, "height": 10}
        rows.append(r)
    forged = write_verdicts(tmp_path / "forged.jsonl", v.header, rows)
    cfg = _recipe(bg).backgrounds
    stage = BackgroundStage(cfg, [(1.0, SkimagePhotos()), (1.0, ImageFolder(bg, str(bg)))],
                            ocr=create_ocr("rapidocr-ppocrv4"), verdicts=read_verdicts(forged))
    stage.setup()
    seen = _seen(stage, range(200))  # ~1 draw in 20 is the astronaut
    kept = {s[1]["id"] for s in seen if s[0] == "kept"}
    assert kept == {"skimage:astronaut"}
    assert {s[0] for s in seen} - {"kept"} <= {"too-small", "unreadable", "grayscale", "transparent"}


def test_header_mismatch_and_missing_rows_are_clear_errors(prefiltered, bg, tmp_path):
    out, _ = prefiltered
    with pytest.raises(VerdictsError, match=r"ocr\.max_side_for_ocr differs .*run `synth prefilter "
                                            r"--source skimage-photos --source .* --out .*` again"):
        check_recipe(_recipe(bg, "backgrounds.max_side_for_ocr=768", f"backgrounds.verdicts={out}"))
    with pytest.raises(VerdictsError, match=r"ocr\.\w+ differs"):
        check_recipe(_recipe(bg, "ocr_engine=rapidocr-ppocrv6", f"backgrounds.verdicts={out}"))
    v = read_verdicts(out)
    ocr = create_ocr("rapidocr-ppocrv4")
    fewer = SkimagePhotos(("astronaut", "retina"))
    with pytest.raises(VerdictsError, match=r"source 'skimage-photos' items differs .*listing changed"):
        v.check(_recipe(bg).backgrounds, [fewer], ocr.identity())
    other = ImageFolder(bg, "elsewhere")
    with pytest.raises(VerdictsError, match=r"no verdicts for background source 'elsewhere'"):
        v.check(_recipe(bg).backgrounds, [other], ocr.identity())
    short = write_verdicts(tmp_path / "short.jsonl", v.header, [r for r in v.rows.values()
                                                                if r["id"] != "skimage:retina"])
    with pytest.raises(VerdictsError, match=r"short\.jsonl: 1 of 10 items of source 'skimage-photos' have no row "
                                            r"\(first: skimage:retina\)"):
        check_recipe(_recipe(bg, f"backgrounds.verdicts={short}"))
    # a file that names an image unreadable which decodes now: stale, not silently OCR'd
    rows = [{**r, "verdict": "unreadable", "width": None, "height": None, "error": "unreadable: x"}
            if r["id"] == "skimage:retina" else r for r in v.rows.values()]
    stale = read_verdicts(write_verdicts(tmp_path / "stale.jsonl", v.header, rows))
    stage = BackgroundStage(_recipe(bg).backgrounds, [(1.0, SkimagePhotos(("retina",)))], ocr=ocr, verdicts=stale)
    with pytest.raises(VerdictsError, match="recorded as unreadable .* decodes now"):
        stage.sample(np.random.default_rng(0))


def test_jsonl_and_parquet_round_trip(prefiltered, tmp_path):
    import pyarrow.parquet as pq

    out, _ = prefiltered
    v = read_verdicts(out)
    pq_path = write_verdicts(tmp_path / "v.parquet", v.header, list(v.rows.values()))
    back = read_verdicts(pq_path)
    assert back.header == v.header and back.rows == v.rows and list(back.rows) == list(v.rows)
    # plain pyarrow reads it: one row per image, header in the schema metadata
    t = pq.read_table(pq_path)
    assert t.num_rows == 18 and json.loads(t.schema.metadata[b"textsr-bg-verdicts"])["format"] == FORMAT
    assert t.column("texts").to_pylist()[0] == [{"text": x, "score": s} for x, s in v.rows["skimage:astronaut"]["texts"]]
    again = read_verdicts(write_verdicts(tmp_path / "v2.jsonl", back.header, list(back.rows.values())))
    assert again.rows == v.rows and (tmp_path / "v2.jsonl").read_bytes() == out.read_bytes()


def test_malformed_files_name_file_and_line(tmp_path, prefiltered):
    out, _ = prefiltered
    lines = out.read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:3] + ["{not json"] + lines[4:]) + "\n", encoding="utf-8")
    with pytest.raises(VerdictsError, match=r"bad\.jsonl:4: not valid JSON"):
        read_verdicts(bad)
    row = json.loads(lines[2])
    bad.write_text("\n".join([lines[0], lines[1], json.dumps({**row, "verdict": "maybe"})]) + "\n", encoding="utf-8")
    with pytest.raises(VerdictsError, match=r"bad\.jsonl:3: verdict 'maybe' is not one of"):
        read_verdicts(bad)
    bad.write_text("\n".join([lines[0], lines[1], lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(VerdictsError, match=r"bad\.jsonl:3: a second row for 'skimage:astronaut'"):
        read_verdicts(bad)
    bad.write_text(lines[1] + "\n", encoding="utf-8")
    with pytest.raises(VerdictsError, match=r"bad\.jsonl:1: not a verdicts header"):
        read_verdicts(bad)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["x"]}), tmp_path / "plain.parquet")
    with pytest.raises(VerdictsError, match=r"plain\.parquet: no textsr-bg-verdicts header"):
        read_verdicts(tmp_path / "plain.parquet")
    with pytest.raises(VerdictsError, match="does not exist"):
        read_verdicts(tmp_path / "nope.jsonl")


def test_resume_skips_the_rows_of_the_partial_file(ray_2cpus, prefiltered, tmp_path):
    from pipelines.prefilter import PrefilterError, partial_path, prefilter

    full = read_verdicts(prefiltered[0])
    recipe = load_recipe("ftsr")  # its one background source: skimage-photos
    out = tmp_path / "v.parquet"
    header = make_header(recipe.backgrounds, [source_identity(SkimagePhotos())],
                         create_ocr("rapidocr-ppocrv4").identity())
    # a killed run: three rows (one forged, to show it is kept, not redone) and a torn last line
    forged = {**full.rows["skimage:astronaut"], "verdict": "ok", "texts": [], "score": None}
    done = [forged, full.rows["skimage:coffee"], full.rows["skimage:retina"]]
    part = partial_path(out)
    text = "".join(json.dumps(x) + "\n" for x in [header, *done]) + '{"id": "skimage:chel'
    part.write_text(text, encoding="utf-8")
    with pytest.raises(PrefilterError, match="--resume"):
        prefilter(recipe, "skimage-photos", out, workers=2, progress=False)
    other = load_recipe("ftsr", ["backgrounds.min_side_for_ocr=0"])
    with pytest.raises(PrefilterError, match=r"ocr\.min_side_for_ocr"):
        prefilter(other, "skimage-photos", out, workers=2, resume=True, progress=False)
    # other thresholds need no new OCR: the resumed rows are relabelled, the new ones labelled alike
    at400 = load_recipe("ftsr", ["backgrounds.hr_size=400"])
    s = prefilter(at400, "skimage-photos", out, workers=2, block=4, resume=True, progress=False)
    assert s["resumed"] == 3 and s["images"] == 10 and not part.exists()
    got = read_verdicts(out)
    assert got.rows["skimage:astronaut"] == forged and got.header["thresholds"]["hr_size"] == 400
    assert {k.split(":")[1]: r["verdict"] for k, r in got.rows.items()} == {
        "astronaut": "ok", "coffee": "ok", "chelsea": "too-small", "rocket": "ok", "hubble_deep_field": "ok",
        "retina": "ok", "immunohistochemistry": "ok", "colorwheel": "too-small",
        "stereo_motorcycle": "has-text", "grace_hopper": "has-text"}
    assert got.rows["skimage:coffee"]["texts"] == full.rows["skimage:coffee"]["texts"]
    assert list(got.rows) == [SkimagePhotos().item_id(i) for i in range(10)]
    # a partial file read back keeps its complete lines only
    part.write_text(text, encoding="utf-8")
    assert list(read_jsonl(part, torn_tail_ok=True)[1]) == [r["id"] for r in done]
    with pytest.raises(VerdictsError, match=r":5: not valid JSON"):
        read_jsonl(part)
