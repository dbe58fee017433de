"""The GLYPH-SR corpus recipe end to end: real fonts, real photos, real OCR; shards read back with
plain webdataset; the four subsets, the guidance and the caption checked against what they claim."""
import json

import cv2
import numpy as np
import pytest
import webdataset as wds

from models.datasets import load_catalog
from models.ocr import create_ocr
from pipelines.build import build
from pipelines.executors import LocalExecutor
from synth.recipe import load_recipe
from synth.stages.distort import CONFUSABLE
from synth.stages.guidance import describe, grid_position

REACH = 8
MEMBERS = {"hr.png", "lr.png", "mask.png", "hr_tdist.png", "lr_tdist.png", "lr_x8.png", "json"}


def _recipe(*extra):
    return load_recipe("glyph", ["backgrounds.hr_size=256", "text.instances=[2, 3]", "samples_per_shard=2",
                                 "text.rendered.font_size_px=[28, 56]", f"glyph.distort.reach_px={REACH}", *extra])


def _build(out, recipe, num):
    build(recipe, out, num, executor=LocalExecutor(recipe, catalog=load_catalog()), progress=False)
    urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False))


@pytest.fixture(scope="module", autouse=True)
def no_caption_weights(tmp_path_factory):
    """Whatever the developer's caches hold, these tests see no BLIP (the metadata fallback)."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("weights")
        mp.setenv("TEXTSR_WEIGHTS", str(root / "textsr"))
        mp.setenv("HF_HUB_CACHE", str(root / "hf"))
        mp.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("glyph"), _recipe(), 3)


def _img(sample, member, flags=cv2.IMREAD_COLOR):
    return cv2.imdecode(np.frombuffer(sample[member], np.uint8), flags)


def test_members_and_sizes(corpus):
    assert len(corpus) == 3
    for s in corpus:
        assert MEMBERS <= set(s), sorted(s)
        meta = json.loads(s["json"])
        assert meta["glyph"]["subsets"] == {
            "text_clean/image_clean": "hr.png", "text_clean/image_degraded": "lr.png",
            "text_distorted/image_clean": "hr_tdist.png", "text_distorted/image_degraded": "lr_tdist.png"}
        assert _img(s, "hr.png").shape == _img(s, "hr_tdist.png").shape == (256, 256, 3)
        assert _img(s, "lr.png").shape == _img(s, "lr_tdist.png").shape == (64, 64, 3)
        assert _img(s, "lr_x8.png").shape == (32, 32, 3)
        assert meta["glyph"]["extra_degradations"]["x8"]["scale"] == 8


def test_text_distortion_only_within_reach_of_the_mask(corpus):
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * REACH + 1, 2 * REACH + 1))
    for s in corpus:
        hr, td = _img(s, "hr.png").astype(int), _img(s, "hr_tdist.png").astype(int)
        region = cv2.dilate(_img(s, "mask.png", cv2.IMREAD_GRAYSCALE), kernel) > 0
        changed = np.abs(hr - td).max(2) > 0
        assert changed.any(), "the distorted variant equals the clean one"
        assert not (changed & ~region).any(), "distortion leaked outside the text's reach"
        # every instance is distorted: something changes inside each instance's own box
        for t in json.loads(s["json"])["texts"]:
            assert t["distortion"], t
            poly = np.round(np.asarray(t["polygon"])).astype(np.int32)
            box = np.zeros(changed.shape, np.uint8)
            cv2.fillPoly(box, [poly], 1)
            box = cv2.dilate(box, kernel) > 0
            assert (changed & box).any(), t["text"]


def test_distorted_strings_follow_the_substitutions(corpus):
    seen_sub = 0
    for s in corpus:
        for t in json.loads(s["json"])["texts"]:
            subs = [op for op in t["distortion"] if op["op"] == "substitute"]
            if not subs:
                assert t["text_distorted"] == t["text"]
                continue
            seen_sub += 1
            (op,) = subs
            expect = list(t["text"])
            for i, a, b in zip(op["positions"], op["from"], op["to"]):
                assert t["text"][i] == a and CONFUSABLE[a] == b
                expect[i] = b
            assert t["text_distorted"] == "".join(expect) != t["text"]
    assert seen_sub, "no substitution in the whole corpus (substitute_prob 0.6): check the table/fonts"


def test_degradation_only_in_the_degraded_variants(corpus):
    from scipy.ndimage import distance_transform_edt

    for s in corpus:
        meta = json.loads(s["json"])
        mask = _img(s, "mask.png", cv2.IMREAD_GRAYSCALE)
        # image-clean variants: the HR pixels away from text are the clean scene's, untouched
        hr, td = _img(s, "hr.png"), _img(s, "hr_tdist.png")
        far_hr = distance_transform_edt(mask == 0) > 2 * REACH
        assert np.array_equal(hr[far_hr], td[far_hr])
        # image-degraded variants: one degradation draw for both, so away from the text (beyond the
        # chain's reach: blur kernels, resizes, JPEG blocks) the two LR images are identical
        lr, lt = _img(s, "lr.png"), _img(s, "lr_tdist.png")
        dist_lr = distance_transform_edt(cv2.resize(mask, (64, 64), interpolation=cv2.INTER_AREA) == 0)
        changed = (lr != lt).any(2)
        assert changed.any() and changed.mean() < 0.85
        assert dist_lr[changed].max() <= 40, "LR variants differ far from any text (160 HR px)"
        assert meta["degradation"]["preset"] == "realesrgan"
        # and they are degraded: LR is not a plain downscale of HR
        plain = cv2.resize(hr, (64, 64), interpolation=cv2.INTER_AREA)
        assert np.abs(plain.astype(int) - lr.astype(int)).mean() > 1.0


def test_prompts_name_each_position(corpus):
    names = {(0, 0): "top left", (0, 1): "top", (0, 2): "top right", (1, 0): "left", (1, 1): "center",
             (1, 2): "right", (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right"}
    for s in corpus:
        meta = json.loads(s["json"])
        g = meta["glyph"]["guidance"]
        expect = []
        for t in meta["texts"]:
            cx, cy = np.asarray(t["polygon"]).mean(0)
            row, col = int(cy // (256 / 3)), int(cx // (256 / 3))
            expect.append(((row, cx), t["text"], names[(row, col)]))
        expect.sort()
        assert [(it["text"], it["position"]) for it in g["true"]] == [(t, p) for _, t, p in expect]
        assert g["prompt_true"] == "; ".join(f"{t} is displayed at the {p}" for _, t, p in expect) + "."


def test_grid_positions_and_reading_order():
    assert grid_position([[0, 0], [10, 0], [10, 10], [0, 10]], 300, 300)[0] == "top left"
    assert grid_position([[140, 140], [160, 140], [160, 160], [140, 160]], 300, 300)[0] == "center"
    assert grid_position([[280, 150], [300, 150], [300, 160], [280, 160]], 300, 300)[0] == "right"
    assert grid_position([[120, 290], [180, 290], [180, 300], [120, 300]], 300, 300)[0] == "bottom"
    items = [{"text": "B", "polygon": [[200, 20], [240, 20], [240, 40], [200, 40]]},
             {"text": "C", "polygon": [[10, 250], [60, 250], [60, 270], [10, 270]]},
             {"text": "A", "polygon": [[20, 30], [60, 30], [60, 50], [20, 50]]}]
    ordered, prompt = describe(items, 300, 300)
    assert [i["text"] for i in ordered] == ["A", "B", "C"]
    assert prompt == ("A is displayed at the top left; B is displayed at the top right; "
                      "C is displayed at the bottom left.")
    assert describe([], 300, 300) == ([], "")


def test_lr_ocr_strings_are_the_engines_reading(corpus):
    ocr = create_ocr("rapidocr-ppocrv4")
    for s in corpus:
        g = json.loads(s["json"])["glyph"]["guidance"]
        for scale, member in ((4, "lr.png"), (8, "lr_x8.png")):
            lr = cv2.cvtColor(_img(s, member), cv2.COLOR_BGR2RGB)
            up = cv2.resize(lr, (256, 256), interpolation=cv2.INTER_CUBIC)
            assert sorted(ln.text for ln in ocr.readtext(up)) == sorted(ln["text"] for ln in g["ocr_lr"][f"x{scale}"]["lines"])
        assert g["prompt"].startswith(g["caption"])


def test_large_clean_text_is_read_in_the_lr(tmp_path):
    """With a mild (bicubic) degradation and large words, the OCR guidance reads the true strings."""
    r = _recipe("degrade.preset=cv2-bicubic", "text.rendered_prob=1.0", "text.instances=[1, 1]",
                "text.rendered.languages={en: 1.0}", "text.rendered.font_size_px=[64, 72]",
                "text.rendered.words=[1, 1]", "text.rendered.rotation_deg=[0, 0]",
                "text.rendered.curvature=[0, 0]", "text.rendered.outline_prob=0.0")
    from models.ocr.textsim import text_similarity

    from shapely.geometry import Polygon

    sims = []
    for s in _build(tmp_path, r, 2):
        g = json.loads(s["json"])["glyph"]["guidance"]
        truth = g["true"][0]
        best = max(g["ocr_lr"]["x4"]["lines"], default=None,
                   key=lambda ln: text_similarity(ln["text"], truth["text"], ignore_case=True))
        sims.append(0.0 if best is None else text_similarity(best["text"], truth["text"], ignore_case=True))
        if sims[-1] >= 0.8:
            # found where the word is, and the prompt says where OCR found it (a word on a cell
            # border may land in the next cell by its OCR box: the prompt follows the reading)
            a, b = Polygon(best["polygon"]), Polygon(truth["polygon"])
            assert a.intersection(b).area / a.union(b).area > 0.5
            if best["score"] >= 0.5:
                assert f"{best['text']} is displayed at the {best['position']}" in g["prompt"]
    assert max(sims) >= 0.8, sims


def test_same_seed_same_bytes(corpus, tmp_path):
    again = _build(tmp_path, _recipe(), 2)
    for a, b in zip(corpus[:2], again):
        assert a["__key__"] == b["__key__"]
        for m in MEMBERS:
            assert a[m] == b[m], m


def test_caption_falls_back_to_metadata_and_says_so(corpus):
    for s in corpus:
        meta = json.loads(s["json"])
        g = meta["glyph"]["guidance"]
        assert g["caption_source"] == "metadata"
        assert "blip-image-captioning-base" in g["caption_note"]
        name = meta["background"]["id"].split(":", 1)[1]
        if name != "grace_hopper":
            import skimage.data

            assert g["caption"] == getattr(skimage.data, name).__doc__.strip().splitlines()[0].strip()


def test_caption_error_when_fallback_is_error(tmp_path):
    from models.weights import WeightsMissingError

    r = _recipe("glyph.caption.fallback=error")
    with pytest.raises(WeightsMissingError, match="Salesforce/blip-image-captioning-base"):
        build(r, tmp_path, 1, executor=LocalExecutor(r, catalog=load_catalog()), progress=False)


def write_tiny_blip(folder):
    """A random BLIP captioner in the Hub layout (config.json, model.safetensors,
    preprocessor_config.json, tokenizer files)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor

    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "the", "cat",
             "sign", "street", "with", "text"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    cfg = BlipConfig(text_config=dict(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                                      bos_token_id=5, pad_token_id=0, sep_token_id=3),
                     vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=8), projection_dim=16)
    BlipForConditionalGeneration(cfg).save_pretrained(folder)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]").save_pretrained(folder)
    return folder


def test_caption_from_a_blip_model_in_the_hub_layout(tmp_path):
    folder = write_tiny_blip(tmp_path / "blip")
    r = _recipe(f"glyph.caption.weights={folder}", "text.instances=[1, 1]")
    (s,) = _build(tmp_path / "out", r, 1)
    g = json.loads(s["json"])["glyph"]["guidance"]
    assert g["caption_source"] == "blip-base" and "caption_note" not in g
    words = g["caption"].split()
    assert words and set(words) <= {"a", "photo", "of", "the", "cat", "sign", "street", "with", "text"}



@pytest.mark.parametrize("op", ["erode", "dilate", "blur", "warp", "substitute"])
def test_each_distortion_on_a_rendered_word(op):
    """Each operation alone, on a real rendered word: it does what its name says, stays within
    reach of the glyphs, and records itself."""
    from synth.recipe import TextDistortConfig
    from synth.sources.rendered import RenderConfig, TextRenderer
    from synth.stages.distort import DistortStage

    r = TextRenderer(RenderConfig(languages={"en": 1.0}, font_size_px=(48, 48), rotation_deg=(0.0, 0.0),
                                  curvature=(0.0, 0.0), outline_prob=0.0))
    r.setup()
    patch = None
    for seed in range(50):
        p = r.sample(np.random.default_rng(seed))
        if any(c in CONFUSABLE for c in p.text):
            patch = p
            break
    probs = {k: 0.0 for k in ("substitute_prob", "morph_prob", "blur_prob", "warp_prob")}
    probs[{"erode": "morph_prob", "dilate": "morph_prob", "blur": "blur_prob", "warp": "warp_prob",
           "substitute": "substitute_prob"}[op]] = 1.0
    stage = DistortStage(TextDistortConfig(**probs, reach_px=6), r)
    for seed in range(20):
        q, rec = stage.distort(patch, np.random.default_rng(seed))
        if [o["op"] for o in rec["ops"]] == [op]:
            break
    else:
        pytest.fail(f"{op} never drawn")
    region = cv2.dilate(patch.mask, cv2.getStructuringElement(cv2.MORPH_RECT, (13, 13))) > 0
    assert np.array_equal(q.alpha[~region], patch.alpha[~region])
    if op == "erode":
        assert q.alpha.sum() < 0.9 * patch.alpha.sum()
    elif op == "dilate":
        assert q.alpha.sum() > 1.1 * patch.alpha.sum()
        new = (q.alpha > 0.5) & (patch.alpha < 0.01)
        assert np.abs(q.rgb[new].astype(int) - patch.source["fill_rgb"]).max() <= 1  # stroke colour
    elif op == "blur":
        assert abs(q.alpha.sum() - patch.alpha.sum()) < 0.05 * patch.alpha.sum()
        assert ((q.alpha > 0.05) & (q.alpha < 0.95)).sum() > 1.5 * ((patch.alpha > 0.05) & (patch.alpha < 0.95)).sum()
    elif op == "warp":
        assert not np.array_equal(q.alpha, patch.alpha)
        assert abs(q.alpha.sum() - patch.alpha.sum()) < 0.15 * patch.alpha.sum()
    else:
        assert rec["text_distorted"] != patch.text and len(rec["text_distorted"]) == len(patch.text)
        assert q.alpha.shape == patch.alpha.shape and not np.array_equal(q.mask, patch.mask)
