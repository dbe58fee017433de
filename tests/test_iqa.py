"""Fidelity and pyiqa metrics checked against basicsr and pyiqa on real photos.

Pairs: crops of skimage's astronaut / chelsea / coffee (HR) and the same crops degraded by Gaussian
blur, JPEG q=30, and bicubic ×4 down-up (SR-like). All offline: the weights caches are pointed at
empty temporary folders.
"""
from __future__ import annotations

import socket
import time

import cv2
import numpy as np
import pytest
import torch

from evalkit.metrics import fidelity as F
from evalkit.metrics.base import MetricUnavailable
from evalkit.sample import EvalSample, TextInstance

# ----------------------------------------------------------------------------- fixtures


def _degrade(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), 1.2)
    if kind == "jpeg":
        buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 30])[1]
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, sr, hr): RGB uint8, 256×256 / 256×288 — big enough for NIQE (>= 192 px)."""
    import skimage.data

    hrs = {"astronaut": skimage.data.astronaut()[:256, 128:384],
           "chelsea": skimage.data.chelsea()[:256, :288],
           "coffee": skimage.data.coffee()[50:306, 100:356]}
    return [(f"{n}-{k}", _degrade(hr, k), np.ascontiguousarray(hr))
            for n, hr in hrs.items() for k in ("blur", "jpeg", "bicubic")]


@pytest.fixture(scope="module")
def offline_caches(tmp_path_factory):
    """TORCH_HOME, TEXTSR_WEIGHTS and the HF cache pointed at fresh empty folders."""
    root = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(root / "torch"))
        mp.setenv("TEXTSR_WEIGHTS", str(root / "weights"))
        mp.setenv("HF_HUB_CACHE", str(root / "hf"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
        yield root


@pytest.fixture(scope="module")
def basicsr_metrics():
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.metrics import calculate_niqe, calculate_psnr, calculate_ssim

    return calculate_psnr, calculate_ssim, calculate_niqe


def _t(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


# ----------------------------------------------------------------------------- Y, PSNR, SSIM vs basicsr

def test_rgb_to_y_is_bt601_limited_unrounded(basicsr_metrics):
    from basicsr.utils.color_util import rgb2ycbcr

    assert F.rgb_to_y(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)) == pytest.approx(
        np.array([[16 / 255, 235 / 255]]), abs=1e-12)
    rng = np.random.default_rng(0)
    img = rng.random((7, 9, 3))
    expect = (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2] + 16) / 255
    np.testing.assert_allclose(F.rgb_to_y(img), expect, atol=1e-12)
    np.testing.assert_allclose(F.rgb_to_y(img), rgb2ycbcr(img.astype(np.float32), y_only=True), atol=1e-6)
    y = F.rgb_to_y((img * 255).astype(np.uint8)) * 255
    assert not np.allclose(y, np.round(y))  # not rounded


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_ssim_equal_basicsr(pairs, basicsr_metrics, crop_border):
    calculate_psnr, calculate_ssim, _ = basicsr_metrics
    for name, sr, hr in pairs:
        bgr_sr, bgr_hr = sr[:, :, ::-1], hr[:, :, ::-1]  # basicsr reads HWC BGR uint8
        ref_p = calculate_psnr(bgr_sr, bgr_hr, crop_border, test_y_channel=True)
        ref_s = calculate_ssim(bgr_sr, bgr_hr, crop_border, test_y_channel=True)
        assert F.psnr_y(sr, hr, crop_border) == pytest.approx(ref_p, abs=1e-6), name
        assert F.ssim_y(sr, hr, crop_border) == pytest.approx(ref_s, abs=1e-6), name
        # float input in [0, 1] gives the same numbers
        assert F.psnr_y(sr / 255.0, hr / 255.0, crop_border) == pytest.approx(ref_p, abs=1e-6)


def test_psnr_identical_is_inf_and_bad_inputs_raise(pairs):
    _, sr, hr = pairs[0]
    assert F.psnr_y(hr, hr) == float("inf")
    assert F.ssim_y(hr, hr) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        F.psnr_y(sr[:-1], hr)
    with pytest.raises(ValueError, match="at least 11x11"):
        F.ssim_y(sr[:10, :10], hr[:10, :10])
    with pytest.raises(ValueError, match="RGB HxWx3"):
        F.psnr_y(sr[..., 0], hr[..., 0])


# Measured on the 9 pairs (pyiqa 0.1.16, ycbcr, test_y_channel, crop 0 and 4): PSNR ours - pyiqa in
# [+2.6e-5, +1.4e-4] dB (pyiqa adds eps=1e-8 to the [0,1]-scale MSE, and works in float32);
# SSIM ours - pyiqa in [+7.6e-4, +1.6e-3] (pyiqa rounds Y to integers and clips negative cs terms).
PYIQA_PSNR_TOL = 5e-4   # dB
PYIQA_SSIM_TOL = 3e-3


@pytest.mark.parametrize("crop_border", [0, 4])
def test_psnr_ssim_close_to_pyiqa_ycbcr(pairs, crop_border):
    import pyiqa

    kw = {"device": "cpu", "test_y_channel": True, "color_space": "ycbcr", "crop_border": crop_border}
    p_psnr, p_ssim = pyiqa.create_metric("psnr", **kw), pyiqa.create_metric("ssim", **kw)
    d_psnr, d_ssim = [], []
    for _, sr, hr in pairs:
        d_psnr.append(F.psnr_y(sr, hr, crop_border) - float(p_psnr(_t(sr), _t(hr))))
        d_ssim.append(F.ssim_y(sr, hr, crop_border) - float(p_ssim(_t(sr), _t(hr))))
    assert max(map(abs, d_psnr)) < PYIQA_PSNR_TOL, d_psnr
    assert max(map(abs, d_ssim)) < PYIQA_SSIM_TOL, d_ssim
    assert min(d_ssim) > 0  # the rounding/clipping biases pyiqa's SSIM down on these pairs


def test_metric_classes_and_settings(pairs):
    from evalkit.metrics.fidelity import PSNR, SSIM

    psnr, ssim = PSNR(crop_border=4, device="cpu", ocr=None, allow_download=False), SSIM(crop_border=4)
    for name, sr, hr in pairs:
        s = EvalSample(key=name, sr=sr, hr=hr)
        assert psnr.update(s) == {"psnr": pytest.approx(F.psnr_y(sr, hr, 4))}
        ssim.update(s)
    assert psnr.compute()["psnr"] == pytest.approx(np.mean([F.psnr_y(sr, hr, 4) for _, sr, hr in pairs]))
    assert ssim.count == len(pairs)
    st = psnr.settings()
    assert st["color_space"] == "Y (BT.601 limited, basicsr)" and st["crop_border"] == 4
    assert "implementation" in st and ssim.settings()["crop_border"] == 4
    assert psnr.update(EvalSample(key="nr", sr=pairs[0][1])) == {"psnr": None} and psnr.skipped == 1


# ----------------------------------------------------------------------------- masked / text region

def test_masked_full_mask_equals_unmasked(pairs):
    for name, sr, hr in pairs:
        full = np.full(hr.shape[:2], 255, np.uint8)
        assert F.psnr_y_masked(sr, hr, full) == pytest.approx(F.psnr_y(sr, hr), abs=1e-12), name
        # the SSIM map exists on the valid region only, so a full mask is exactly the plain SSIM
        assert F.ssim_y_masked(sr, hr, full) == pytest.approx(F.ssim_y(sr, hr), abs=1e-12), name
    assert F.psnr_y_masked(sr, hr, np.zeros(hr.shape[:2], bool)) is None
    border_only = np.zeros(hr.shape[:2], bool)
    border_only[:5] = True
    assert F.ssim_y_masked(sr, hr, border_only) is None and F.psnr_y_masked(sr, hr, border_only) is not None


def test_masked_ignores_pixels_outside_the_mask(pairs):
    _, sr, hr = pairs[2]
    mask = np.zeros(hr.shape[:2], np.uint8)
    mask[80:150, 60:200] = 255
    p0, s0 = F.psnr_y_masked(sr, hr, mask), F.ssim_y_masked(sr, hr, mask)
    assert p0 != pytest.approx(F.psnr_y(sr, hr), abs=1e-3)

    noise = np.random.default_rng(1).integers(0, 256, sr.shape, dtype=np.uint8)
    outside = mask == 0
    sr_all = np.where(outside[..., None], noise, sr)  # every outside pixel changed
    assert F.psnr_y_masked(sr_all, hr, mask) == p0
    # SSIM at a region pixel sees its 11x11 window: pixels more than 5 px from the region cannot
    # move it, those within 5 px can (documented in ssim_y_masked)
    near = cv2.dilate(mask, np.ones((11, 11), np.uint8)) > 0
    sr_far = np.where((outside & ~near)[..., None], noise, sr)
    assert F.ssim_y_masked(sr_far, hr, mask) == s0
    assert F.ssim_y_masked(sr_all, hr, mask) != pytest.approx(s0, abs=1e-6)
    assert F.ssim_y(sr_far, hr) != pytest.approx(F.ssim_y(sr, hr), abs=1e-3)


def test_text_region_sources_in_order(pairs):
    from models.ocr.base import OCRLine

    _, sr, hr = pairs[0]
    h, w = hr.shape[:2]
    quad = np.array([[40, 50], [120, 50], [120, 80], [40, 80]], np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 10:60] = 255
    texts = [TextInstance(polygon=quad, text="OPEN"), TextInstance(polygon=quad + 100, text="###", dont_care=True)]
    ocr = [OCRLine(polygon=quad + 50, text="X", score=0.9)]

    r, src = F.text_region(EvalSample(key="a", sr=sr, hr=hr, mask=mask, texts=texts, ocr_hr=ocr))
    assert src == "mask" and r.sum() == 20 * 50
    r, src = F.text_region(EvalSample(key="a", sr=sr, hr=hr, texts=texts, ocr_hr=ocr))
    assert src == "texts" and r[60, 80] and r[160, 180] and not r[10, 10]  # don't-care text counts
    r, src = F.text_region(EvalSample(key="a", sr=sr, hr=hr, ocr_hr=ocr))
    assert src == "ocr_hr" and r[110, 130] and not r[60, 80]
    assert F.text_region(EvalSample(key="a", sr=sr, hr=hr)) == (None, "none")
    assert F.text_region(EvalSample(key="a", sr=sr, hr=hr, texts=[], ocr_hr=ocr)) == (None, "texts")

    tp, ts = F.TextPSNR(crop_border=4, device="cpu"), F.TextSSIM()
    s = EvalSample(key="a", sr=sr, hr=hr, texts=texts)
    region = F.polygons_mask([t.polygon for t in texts], (h, w))
    assert tp.update(s)["text_psnr"] == pytest.approx(F.psnr_y_masked(sr, hr, region))
    assert ts.update(s)["text_ssim"] == pytest.approx(F.ssim_y_masked(sr, hr, region))
    assert tp.update(EvalSample(key="b", sr=sr, hr=hr)) == {"text_psnr": None}
    assert (tp.count, tp.skipped) == (1, 1)


def test_text_box_grows_to_32_and_stays_inside():
    from evalkit.metrics.iqa import text_box

    region = np.zeros((100, 200), bool)
    region[40:45, 100:110] = True
    x0, y0, x1, y1 = text_box(region)
    assert (x1 - x0, y1 - y0) == (32, 32) and x0 <= 100 and x1 >= 110 and y0 <= 40 and y1 >= 45
    region[:] = False
    region[0:3, 195:200] = True  # a corner: shifted inside, not clipped below 32
    assert text_box(region) == (168, 0, 200, 32)
    region[50:90, 10:150] = True  # already large: the plain bounding box
    assert text_box(region) == (10, 0, 200, 90)
    assert text_box(np.ones((20, 40), bool)) == (0, 0, 40, 20)  # image side < 32: taken whole


# ----------------------------------------------------------------------------- NIQE

def test_niqe_params_written_once_from_basicsr(offline_caches):
    import scipy.io

    from evalkit.metrics.iqa import basicsr_niqe_npz, niqe_params_path

    path, source = niqe_params_path()
    assert path == offline_caches / "weights" / "niqe_modelparameters.mat" and "written from" in source
    mtime = path.stat().st_mtime_ns
    again, source2 = niqe_params_path()
    assert again == path and source2 == "found" and path.stat().st_mtime_ns == mtime
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    mat, npz = scipy.io.loadmat(path), np.load(basicsr_niqe_npz())
    np.testing.assert_array_equal(np.ravel(mat["mu_prisparam"]), np.ravel(npz["mu_pris_param"]))
    np.testing.assert_array_equal(mat["cov_prisparam"], npz["cov_pris_param"])


# pyiqa's NIQE and basicsr's do not agree to 1e-3. Even on the same rounded Y (color_space="ycbcr")
# they differ: pyiqa builds its 7x7 Gaussian in float32 (sum 1 + 1.1e-8, which in flat areas moves the
# local std by a few hundredths of a grey level and with it the grid-searched AGGD shapes) and treats
# zero-variance blocks differently. Measured |pyiqa(ycbcr) - basicsr| on these crops: 1e-5 .. 0.03 on
# the originals, blurred and bicubic images; 0.08 .. 0.38 on JPEG q=30 (flat 8x8 blocks). pyiqa's
# default YIQ luma adds up to ~0.3 on blurred images. So: equal to pyiqa exactly, close to basicsr on
# non-JPEG images only.
NIQE_BASICSR_TOL = 0.05


def test_niqe_adapter_equals_pyiqa_and_is_close_to_basicsr(pairs, offline_caches, basicsr_metrics):
    import pyiqa

    from evalkit.metrics.iqa import NIQE

    _, _, calculate_niqe = basicsr_metrics
    ours_yiq, ours_ycc = NIQE(device="cpu"), NIQE(color_space="ycbcr")
    params = ours_yiq.weights["niqe_modelparameters.mat"]
    ref_yiq = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=params)
    ref_ycc = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=params, color_space="ycbcr")
    diffs = {}
    for name, sr, hr in pairs:
        for tag, img in ((name, sr), (name.split("-")[0], hr)):
            if tag in diffs:
                continue
            assert ours_yiq.score(img) == pytest.approx(float(ref_yiq(_t(img))), abs=1e-9), tag
            v = ours_ycc.score(img)
            assert v == pytest.approx(float(ref_ycc(_t(img))), abs=1e-9), tag
            diffs[tag] = v - calculate_niqe(img[:, :, ::-1], 0)
    close = {k: d for k, d in diffs.items() if not k.endswith("jpeg")}
    assert max(map(abs, close.values())) < NIQE_BASICSR_TOL, diffs
    st = ours_yiq.settings()
    assert st["pyiqa_metric"] == "niqe" and st["lower_is_better"] and st["pyiqa_version"] == pyiqa.__version__
    assert st["color_space"].startswith("Y of YIQ") and "[0, 1]" in st["input_range"]


def test_niqe_crop_border_matches_pyiqa(pairs, offline_caches):
    import pyiqa

    from evalkit.metrics.iqa import NIQE

    m = NIQE(crop_border=4)
    ref = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=m.weights["niqe_modelparameters.mat"],
                              crop_border=4)
    img = pairs[3][1]
    assert m.score(img) == pytest.approx(float(ref(_t(img))), abs=1e-9)
    assert m.settings()["crop_border"] == 4


# ----------------------------------------------------------------------------- merging

@pytest.mark.parametrize("name", ["psnr", "niqe"])
def test_merge_of_two_halves_equals_one_pass(pairs, offline_caches, name):
    from evalkit.metrics.registry import create_metric

    samples = [EvalSample(key=n, sr=sr, hr=hr) for n, sr, hr in pairs]
    samples.append(EvalSample(key="no-hr", sr=pairs[0][1]))  # psnr skips it
    one, a, b = (create_metric(name, crop_border=0, device="cpu", ocr=None, allow_download=False)
                 for _ in range(3))
    for s in samples:
        one.update(s)
    for s in samples[:4]:
        a.update(s)
    for s in samples[4:]:
        b.update(s)
    a.merge(b)
    assert a.compute()[name] == pytest.approx(one.compute()[name], rel=1e-12)
    assert (a.count, a.skipped) == (one.count, one.skipped)


# ----------------------------------------------------------------------------- missing weights

def test_missing_weights_raise_fast_and_download_nothing(offline_caches, monkeypatch):
    from evalkit.metrics.iqa import WeightsUnavailable
    from evalkit.metrics.registry import create_metric

    attempts = []

    def no_network(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    before = sorted(p for p in offline_caches.rglob("*") if p.is_file())
    t0 = time.perf_counter()
    with pytest.raises(MetricUnavailable) as err:
        create_metric("lpips", device="cpu", allow_download=False)
    elapsed = time.perf_counter() - t0
    reason = err.value.reason
    assert reason.startswith("weights-missing: ")
    assert "alexnet-owt-7be5be79.pth (https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)" in reason
    assert ("LPIPS_v0.1_alex-df73285e.pth (huggingface.co/chaofengc/IQA-PyTorch-Weights "
            "(LPIPS_v0.1_alex-df73285e.pth))") in reason
    assert str(offline_caches / "torch" / "hub" / "checkpoints") in reason
    assert isinstance(err.value, WeightsUnavailable) and len(err.value.files) == 2
    assert attempts == [] and sorted(p for p in offline_caches.rglob("*") if p.is_file()) == before
    assert elapsed < 5.0  # the files are checked before pyiqa is built: no retries, no timeouts


@pytest.mark.parametrize("name,files", [
    ("text_lpips", {"alexnet-owt-7be5be79.pth", "LPIPS_v0.1_alex-df73285e.pth"}),
    ("dists", {"vgg16-397923af.pth", "DISTS_weights-f5e65c96.pth"}),
    ("musiq", {"musiq_koniq_ckpt-e95806b9.pth"}),
    ("maniqa", {"model.safetensors", "MANIQA_PIPAL-ae6d356b.pth"}),
    ("fid", {"pt_inception-2015-12-05-6726825d.pth"}),
])
def test_every_weighted_metric_names_its_files(offline_caches, name, files):
    from evalkit.metrics.iqa import WeightsUnavailable
    from evalkit.metrics.registry import create_metric

    with pytest.raises(WeightsUnavailable) as err:
        create_metric(name, device="cpu")
    assert {f for f, _ in err.value.files} == files


def test_failed_download_is_reported_not_raised(offline_caches):
    """allow_download=True on a machine that cannot download (HF_HUB_OFFLINE=1 here)."""
    from evalkit.metrics.registry import create_metric

    with pytest.raises(MetricUnavailable) as err:
        create_metric("musiq", allow_download=True)
    assert err.value.reason.startswith("weights-unusable: musiq_koniq_ckpt-e95806b9.pth (huggingface.co/")


def test_clipiqa_unavailable_names_its_cause(offline_caches):
    from evalkit.metrics.registry import create_metric

    with pytest.raises(MetricUnavailable) as err:
        create_metric("clipiqa")
    assert err.value.reason.startswith(("package-missing: openai-clip", "weights-missing: RN50.pt"))


def test_weights_in_textsr_dir_are_linked_where_their_loader_reads(offline_caches, monkeypatch, tmp_path):
    """torchvision reads only $TORCH_HOME/hub/checkpoints; a file in TEXTSR_WEIGHTS is linked there.
    timm reads only the HF cache; a copy elsewhere is reported, not used."""
    from evalkit.metrics.iqa import REQUIRED, WeightsUnavailable, locate

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "w"))
    (tmp_path / "w").mkdir()
    alex, lpips_lin = REQUIRED["lpips"]
    (tmp_path / "w" / alex.file.filename).write_bytes(b"stand-in")
    (tmp_path / "w" / lpips_lin.file.filename).write_bytes(b"stand-in")
    linked = locate(alex)
    assert linked == tmp_path / "torch" / "hub" / "checkpoints" / alex.file.filename
    assert linked.is_symlink() and linked.read_bytes() == b"stand-in"
    assert locate(lpips_lin) == tmp_path / "w" / lpips_lin.file.filename  # handed to pyiqa as a path

    vit = REQUIRED["maniqa-pipal"][0]
    (tmp_path / "w" / vit.file.filename).write_bytes(b"stand-in")
    with pytest.raises(WeightsUnavailable, match="Hugging Face cache"):
        locate(vit)


# ----------------------------------------------------------------------------- PIQE, FID, registry

def test_piqe_offline_equals_pyiqa(pairs, offline_caches):
    import pyiqa

    from evalkit.metrics.iqa import PIQE

    m, ref = PIQE(crop_border=4, ocr=None), pyiqa.create_metric("piqe", device="cpu")
    _, sr, _ = pairs[0]
    assert m.update(EvalSample(key="a", sr=sr))["piqe"] == pytest.approx(float(ref(_t(sr))), abs=1e-9)
    assert m.settings()["weights"] == {} and m.settings()["lower_is_better"]


def test_registry_names_and_uniform_construction(offline_caches):
    from evalkit.metrics.registry import DEFAULT_METRICS, METRICS, create_metric, list_metrics
    from models.registry import UnknownNameError

    names = {"psnr", "ssim", "text_psnr", "text_ssim", "lpips", "text_lpips", "dists", "fid", "niqe", "musiq",
             "maniqa", "clipiqa", "piqe", "ocr_a", "ocr_f1", "char_hallucination", "mask_iou", "mask_f1",
             "ocr_by_level", "spot_det_f1", "spot_e2e_f1"}
    assert set(list_metrics()) == names and set(DEFAULT_METRICS) <= names
    assert METRICS.target("ocr_f1") == "evalkit.metrics.ocr:OCRF1"
    with pytest.raises(UnknownNameError, match="did you mean"):
        create_metric("psnr_y")
    kw = {"crop_border": 2, "device": "cpu", "allow_download": False, "ocr": None}
    ocr_metrics = {"ocr_a", "ocr_f1", "char_hallucination", "ocr_by_level", "spot_det_f1", "spot_e2e_f1"}
    for name in sorted(names - ocr_metrics):  # OCR metrics: tests/test_ocr_metrics.py, test_tair, test_reasontext_uzst
        try:
            m = create_metric(name, **kw)
        except MetricUnavailable as e:
            assert e.reason.split(":")[0] in ("weights-missing", "package-missing"), (name, e.reason)
            continue
        assert m.name == name and isinstance(m.settings(), dict)


@pytest.fixture(scope="module")
def standin_lpips_weights(tmp_path_factory):
    """Random-valued stand-ins in the real files' layouts: torchvision's AlexNet state dict in
    $TORCH_HOME/hub/checkpoints, LPIPS heads (lin0..lin4) in TEXTSR_WEIGHTS. No network needed."""
    import torchvision

    root = tmp_path_factory.mktemp("lpips")
    ckpt = root / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), ckpt / "alexnet-owt-7be5be79.pth")
    (root / "weights").mkdir()
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate([64, 192, 384, 256, 256])}
    torch.save(heads, root / "weights" / "LPIPS_v0.1_alex-df73285e.pth")
    return root


def test_lpips_builds_from_local_files_only_and_equals_pyiqa(pairs, standin_lpips_weights, monkeypatch):
    import pyiqa

    from evalkit.metrics.iqa import LPIPS, TextLPIPS, text_box

    root = standin_lpips_weights
    monkeypatch.setenv("TORCH_HOME", str(root / "torch"))
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(root / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf"))

    def no_network(self, address, *a, **k):
        raise AssertionError(f"network access to {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    ours, text = LPIPS(device="cpu"), TextLPIPS(device="cpu", crop_border=4, ocr=None)
    lin = str(root / "weights" / "LPIPS_v0.1_alex-df73285e.pth")
    ref = pyiqa.create_metric("lpips", device="cpu", pretrained_model_path=lin)
    assert ours.weights == {"alexnet-owt-7be5be79.pth": str(root / "torch/hub/checkpoints/alexnet-owt-7be5be79.pth"),
                            "LPIPS_v0.1_alex-df73285e.pth": lin}
    _, sr, hr = pairs[1]
    s = EvalSample(key="a", sr=sr, hr=hr)
    assert ours.update(s)["lpips"] == pytest.approx(float(ref(_t(sr), _t(hr))), abs=1e-6)
    assert ours.update(EvalSample(key="b", sr=sr)) == {"lpips": None}

    mask = np.zeros(hr.shape[:2], np.uint8)
    mask[100:110, 40:60] = 255  # 20x10 px of "text": scored on a 32x32 crop around it
    x0, y0, x1, y1 = text_box(mask > 0)
    expect = float(ref(_t(np.ascontiguousarray(sr[y0:y1, x0:x1])), _t(np.ascontiguousarray(hr[y0:y1, x0:x1]))))
    assert text.update(EvalSample(key="c", sr=sr, hr=hr, mask=mask))["text_lpips"] == pytest.approx(expect, abs=1e-6)
    assert text.update(EvalSample(key="d", sr=sr, hr=hr))["text_lpips"] is None
    st = ours.settings()
    assert st["pyiqa_metric"] == "lpips" and st["lower_is_better"] and st["color_space"] == "RGB"


def test_weights_unavailable_pickles():
    import pickle

    from evalkit.metrics.iqa import WeightsUnavailable

    e = WeightsUnavailable([("a.pth", "https://x/a.pth")], ["/tmp/w"], "fetch it")
    back = pickle.loads(pickle.dumps(e))
    assert back.reason == e.reason and back.files == e.files and isinstance(back, MetricUnavailable)


