"""Stage tests on real pixels: the OCR background filter, paste geometry, upscaling."""
import cv2
import numpy as np
import pytest
import skimage.data

from models.ocr import create_ocr
from synth.recipe import BackgroundConfig, TextConfig, UpscaleConfig
from synth.sources.images import ImageFolder
from synth.stages.background import BackgroundStage
from synth.stages.paste import PasteStage
from synth.stages.upscale import UpscaleStage
from synth.types import Rejected, TextPatch
from tests.helpers import background_folder_with_bad_inputs, photo_with_text, write_png


@pytest.fixture(scope="module")
def ocr():
    return create_ocr("rapidocr-ppocrv4")


def test_background_filter_rejects_text_and_keeps_clean_photo(tmp_path, ocr):
    write_png(tmp_path / "clean.png", skimage.data.immunohistochemistry())
    write_png(tmp_path / "sign.png", photo_with_text())
    write_png(tmp_path / "deep16.png", skimage.data.immunohistochemistry().astype(np.uint16) * 257)
    # the astronaut's mission badge: ~8 px letters PP-OCR reads only on the enlarged image
    write_png(tmp_path / "badge.png", skimage.data.astronaut())
    stage = BackgroundStage(BackgroundConfig(hr_size=256), [(1.0, ImageFolder(tmp_path, "t"))], ocr=ocr)
    verdicts = {}
    for seed in range(30):
        try:
            crop, info = stage.sample(np.random.default_rng(seed))
            assert crop.shape == (256, 256, 3) and crop.dtype == np.uint8
            verdicts[info["id"]] = "kept"
        except Rejected as r:
            assert r.stage == "background"
            verdicts[r.detail.split(":")[0] + ":" + r.detail.split(":")[1]] = r.reason
            if r.reason == "has-text" and "sign" in r.detail:
                assert "OPEN" in r.detail.upper() or "HOURS" in r.detail.upper()
    assert verdicts == {"t:clean.png": "kept", "t:sign.png": "has-text", "t:deep16.png": "kept",
                        "t:badge.png": "has-text"}
    # at native size (the enlargement off) the badge passes as text-free: why min_side_for_ocr exists
    native = BackgroundStage(BackgroundConfig(hr_size=256, min_side_for_ocr=0),
                             [(1.0, ImageFolder(tmp_path, "t"))], ocr=ocr)
    native._check(skimage.data.astronaut(), "t:badge.png")


def test_every_bad_background_is_skipped_with_its_reason(tmp_path, ocr):
    folder = ImageFolder(background_folder_with_bad_inputs(tmp_path), "t")
    stage = BackgroundStage(BackgroundConfig(hr_size=256), [(1.0, folder)], ocr=ocr)
    seen = {}
    for seed in range(80):
        try:
            seen[stage.sample(np.random.default_rng(seed))[1]["id"]] = "kept"
        except Rejected as r:
            seen[r.detail.split(":")[0] + ":" + r.detail.split(":")[1].split()[0]] = r.reason
    assert seen == {"t:astronaut.png": "kept", "t:retina.png": "kept", "t:ihc.png": "kept",
                    "t:deep16.png": "kept", "t:grey.png": "grayscale", "t:small.png": "too-small",
                    "t:transparent.png": "transparent", "t:corrupt.png": "unreadable"}


def test_background_crop_is_reproducible(ocr):
    from synth.sources.images import SkimagePhotos

    stage = BackgroundStage(BackgroundConfig(hr_size=128, ocr_reject=False), [(1.0, SkimagePhotos())])
    a = stage.sample(np.random.default_rng(5))
    b = stage.sample(np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def _patch(text, w, h):
    rgb = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[2:-2, 2:-2] = 255
    return TextPatch(rgb=rgb, alpha=mask.astype(np.float32) / 255, mask=mask,
                     quad=np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32), text=text, language="en",
                     source={"kind": "crop"})


def test_paste_never_overlaps_and_records_polygons():
    stage = PasteStage(TextConfig(), hr_size=256)
    bg = np.full((256, 256, 3), 200, np.uint8)
    for seed in range(20):
        patches = [_patch(f"w{i}", 60, 30) for i in range(5)]
        hr, mask, inst, skipped = stage.process(bg, patches, np.random.default_rng(seed))
        assert len(inst) + skipped == 5
        canvas = np.zeros((256, 256), np.int32)
        for t in inst:
            one = np.zeros((256, 256), np.uint8)
            cv2.fillPoly(one, [np.round(np.array(t["polygon"])).astype(np.int32)], 1)
            canvas += one
        assert canvas.max() == 1  # polygons disjoint
        assert ((mask > 0) <= (canvas > 0)).all()
        assert (hr[mask > 0] == 0).all()  # black glyphs composited where the mask says
        assert (hr[canvas == 0] == 200).all()  # background untouched elsewhere


def test_paste_shrinks_patches_wider_than_the_limit():
    stage = PasteStage(TextConfig(max_fraction=0.5), hr_size=256)
    hr, mask, inst, _ = stage.process(np.zeros((256, 256, 3), np.uint8), [_patch("wide", 400, 40)],
                                      np.random.default_rng(0))
    poly = np.array(inst[0]["polygon"])
    assert poly[:, 0].max() - poly[:, 0].min() <= 128 + 1
    assert inst[0]["source"]["paste_scale"] == pytest.approx(0.32, abs=1e-3)


def test_paste_skips_what_does_not_fit_and_rejects_when_nothing_does():
    stage = PasteStage(TextConfig(max_fraction=1.0, place_tries=5), hr_size=64)
    bg = np.zeros((64, 64, 3), np.uint8)
    _, _, inst, skipped = stage.process(bg, [_patch("a", 64, 64), _patch("b", 64, 64)], np.random.default_rng(0))
    assert len(inst) == 1 and skipped == 1
    with pytest.raises(Rejected, match="no-room"):
        stage.process(bg, [], np.random.default_rng(0))


def test_upscale_small_crop_to_min_height():
    stage = UpscaleStage(UpscaleConfig(model="bicubic", min_height=32))
    crop = np.random.default_rng(0).integers(0, 255, (16, 40, 3), dtype=np.uint8)
    mask = np.zeros((16, 40), np.uint8)
    mask[4:12, 5:35] = 255
    up, m, f = stage.process(crop, mask)
    assert up.shape == (32, 80, 3) and m.shape == (32, 80) and f == 2.0
    assert set(np.unique(m)) <= {0, 255}
    same = stage.process(up, m)
    assert same[2] == 1.0 and same[0] is up


def test_upscale_with_a_learned_model_by_name():
    stage = UpscaleStage(UpscaleConfig(model="realesrgan-x4plus-tiny", min_height=32))
    crop = np.random.default_rng(1).integers(0, 255, (12, 30, 3), dtype=np.uint8)
    mask = np.zeros((12, 30), np.uint8)
    mask[3:9, 4:26] = 255
    up, m, f = stage.process(crop, mask)
    assert up.shape == (32, 80, 3) and m.shape == (32, 80) and f == pytest.approx(32 / 12, abs=1e-3)
