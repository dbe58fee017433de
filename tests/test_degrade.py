"""synth.degrade: kernels and filtering checked against basicsr, the chain's contract, presets."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import skimage.data

from synth.degrade import (
    KERNEL_SIZE,
    KERNEL_TYPES,
    PRESETS,
    DegradeConfig,
    UnknownPresetError,
    degrade,
    get_preset,
)
from synth.degrade import kernels as K
from synth.degrade import pipeline as P


@pytest.fixture(scope="module")
def bsr():
    """basicsr's degradation helpers (imported once: basicsr pulls in torch)."""
    from models.compat import import_basicsr

    import_basicsr()
    import torch
    from basicsr.data import degradations
    from basicsr.utils import DiffJPEG
    from basicsr.utils.img_process_util import USMSharp, filter2D

    return {"torch": torch, "deg": degradations, "filter2D": filter2D, "USMSharp": USMSharp, "DiffJPEG": DiffJPEG}


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage.data.astronaut()[64:320, 128:384])  # 256x256 RGB uint8


@pytest.fixture(scope="module")
def chelsea():
    return np.ascontiguousarray(skimage.data.chelsea()[:256, 100:356])


def _to_t(torch, img):
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()


def _psnr(a, b):
    return 10 * math.log10(1 / float(np.mean((a.astype(np.float64) - b) ** 2)))


def _from_t(t):
    return t[0].detach().permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("kind", KERNEL_TYPES + ("sinc",))
def test_every_kernel_type_is_21x21_and_sums_to_one(kind):
    rng = np.random.default_rng(0)
    for _ in range(20):
        k, p = K.sample_blur_kernel(
            rng, kernel_range=tuple(range(7, 22, 2)), kernel_list=(kind,) if kind != "sinc" else ("iso",),
            kernel_prob=(1.0,), sinc_prob=1.0 if kind == "sinc" else 0.0, sigma_range=(0.2, 3.0),
            betag_range=(0.5, 4.0), betap_range=(1.0, 2.0))
        assert k.shape == (KERNEL_SIZE, KERNEL_SIZE)
        assert p["type"] == kind
        assert abs(k.sum() - 1.0) < 1e-9
        # zero outside the sampled support, centred
        r = p["size"] // 2
        c = KERNEL_SIZE // 2
        outside = k.copy()
        outside[c - r:c + r + 1, c - r:c + r + 1] = 0
        assert not outside.any()
        assert np.all(np.isfinite(k))


def test_final_sinc_and_identity_kernels():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(30):
        k, p = K.sample_final_sinc(rng, prob=0.5, kernel_range=(7, 9, 21))
        seen.add(p["type"])
        assert k.shape == (KERNEL_SIZE, KERNEL_SIZE) and abs(k.sum() - 1) < 1e-9
        if p["type"] == "identity":
            assert k[10, 10] == 1.0 and np.count_nonzero(k) == 1
        else:
            assert math.pi / 3 <= p["omega"] <= math.pi
    assert seen == {"sinc", "identity"}


@pytest.mark.parametrize("size,sx,sy,theta", [(7, 1.0, 1.0, 0.0), (21, 2.7, 0.6, 0.9), (13, 0.4, 2.2, -2.5)])
def test_kernels_equal_basicsr_for_fixed_parameters(bsr, size, sx, sy, theta):
    d = bsr["deg"]
    iso = sx == sy
    np.testing.assert_allclose(K.bivariate_gaussian(size, sx, sy, theta, isotropic=iso),
                               d.bivariate_Gaussian(size, sx, sy, theta, isotropic=iso), rtol=0, atol=1e-12)
    for beta in (0.6, 1.7):
        np.testing.assert_allclose(K.bivariate_generalized_gaussian(size, sx, sy, theta, beta, isotropic=iso),
                                   d.bivariate_generalized_Gaussian(size, sx, sy, theta, beta, isotropic=iso),
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(K.bivariate_plateau(size, sx, sy, theta, beta, isotropic=iso),
                                   d.bivariate_plateau(size, sx, sy, theta, beta, isotropic=iso), rtol=0, atol=1e-12)
    for omega in (math.pi / 5, 1.3, math.pi):
        np.testing.assert_allclose(K.circular_lowpass_kernel(omega, size),
                                   d.circular_lowpass_kernel(omega, size), rtol=0, atol=1e-12)
        np.testing.assert_allclose(K.pad_kernel(K.circular_lowpass_kernel(omega, size)),
                                   d.circular_lowpass_kernel(omega, size, pad_to=21), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- building blocks vs basicsr

@pytest.mark.parametrize("kernel", ["aniso", "aniso-axis", "iso", "sinc", "identity"])
def test_blur_equals_basicsr_filter2D(bsr, astronaut, kernel):
    torch = bsr["torch"]
    img = astronaut.astype(np.float32) / 255
    size = 17
    k = {"aniso": lambda: K.bivariate_gaussian(size, 2.5, 0.7, 0.6, isotropic=False),
         # rank 1, so they take the separable path; the axis-aligned one would catch swapped axes
         "aniso-axis": lambda: K.bivariate_gaussian(size, 2.5, 0.7, 0.0, isotropic=False),
         "iso": lambda: K.bivariate_gaussian(size, 1.8),
         "sinc": lambda: K.circular_lowpass_kernel(1.1, size),
         "identity": lambda: K.identity_kernel(size)}[kernel]()
    k21 = K.pad_kernel(k)
    ours = P._filter(img, k21, size)
    ref = _from_t(bsr["filter2D"](_to_t(torch, img), torch.from_numpy(k21).float()[None]))
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-4


def test_usm_close_to_basicsr_usmsharp(bsr, chelsea):
    torch = bsr["torch"]
    img = chelsea.astype(np.float32) / 255
    ref = _from_t(bsr["USMSharp"]()(_to_t(torch, img)))
    ours = P.usm_sharpen(img)
    # the threshold mask may flip on pixels sitting on the threshold; its blurred weight is tiny
    assert np.abs(ours - ref).max() < 2e-3
    assert np.abs(ours - ref).mean() < 1e-5


@pytest.mark.parametrize("gray", [False, True])
@pytest.mark.parametrize("noise", ["gaussian", "poisson"])
def test_noise_strength_matches_basicsr(bsr, astronaut, noise, gray):
    torch, d = bsr["torch"], bsr["deg"]
    img = (astronaut.astype(np.float32) / 255) * 0.8 + 0.1  # keep clipping out of the comparison
    rng = np.random.default_rng(3)
    if noise == "gaussian":
        ours, p = P._add_noise(img, rng, 1.0, (20.0, 20.0), (1.0, 1.0), 1.0 if gray else 0.0)
        torch.manual_seed(0)
        ref = _from_t(d.add_gaussian_noise_pt(_to_t(torch, img), sigma=20.0, gray_noise=float(gray)))
    else:
        ours, p = P._add_noise(img, rng, 0.0, (1.0, 1.0), (2.0, 2.0), 1.0 if gray else 0.0)
        torch.manual_seed(0)
        ref = _from_t(d.add_poisson_noise_pt(_to_t(torch, img), scale=2.0, gray_noise=float(gray)))
    assert p["type"] == noise and p["gray"] is gray
    n_ours, n_ref = ours - img, ref - img
    assert abs(n_ours.std() / n_ref.std() - 1) < 0.03
    assert abs(n_ours.mean() - n_ref.mean()) < 2e-3
    # gray noise is identical across channels, colour noise is not
    inside = np.all((ours > 0) & (ours < 1), axis=2)  # clipping breaks the equality
    same = np.allclose(n_ours[inside, 0], n_ours[inside, 1], atol=1e-6)
    assert same is gray


def test_jpeg_is_close_to_basicsr_diffjpeg(bsr, astronaut):
    torch = bsr["torch"]
    img = astronaut.astype(np.float32) / 255
    jpeger = bsr["DiffJPEG"](differentiable=False)
    for q in (30, 60, 95):
        ours = P._jpeg(img, q)
        ref = _from_t(jpeger(_to_t(torch, img), quality=float(q)))
        # Same codec design and quality scaling, so the same amount of loss (within 1 dB); the
        # outputs differ pixel-wise (rounding, libjpeg's integer DCT, chroma upsampling).
        assert abs(_psnr(ours, img) - _psnr(ref, img)) < 1.0, q
        assert _psnr(ours, ref) > 32, q
    assert np.mean(np.abs(P._jpeg(img, 30) - img)) > np.mean(np.abs(P._jpeg(img, 95) - img))


# ----------------------------------------------------------------------------- the chain

@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_output_shape_dtype_range(astronaut, preset, scale):
    lr, params = degrade(astronaut, scale, get_preset(preset), np.random.default_rng(scale))
    assert lr.shape == (256 // scale, 256 // scale, 3)
    assert lr.dtype == np.uint8
    assert lr.min() >= 0 and lr.max() <= 255 and lr.std() > 1  # not blank
    assert params["preset"] == preset and params["scale"] == scale
    assert params["lr_size"] == [256 // scale] * 2


def _plain(obj) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_plain(v) for v in obj)
    return obj is None or type(obj) in (bool, int, float, str)


KERNEL_KEYS = {"type", "size", "sigma_x", "sigma_y", "theta", "beta", "omega"}
RESIZE_KEYS = {"direction", "scale", "interpolation", "size"}
NOISE_KEYS = {"type", "sigma", "poisson_scale", "gray"}


@pytest.mark.parametrize("preset", ["realesrgan", "osediff", "seesr", "tadisr"])
def test_params_are_plain_json_with_every_sampled_value(chelsea, preset):
    cfg = get_preset(preset)
    for seed in range(6):
        _, p = degrade(chelsea, 4, cfg, np.random.default_rng(seed))
        assert _plain(p), p
        assert json.loads(json.dumps(p)) == p
        assert {"preset", "kind", "scale", "hr_size", "lr_size", "usm_sharpen", "stage1", "stage2", "final"} <= set(p)
        assert p["usm_sharpen"] is cfg.usm_sharpen
        s1, s2, f = p["stage1"], p["stage2"], p["final"]
        assert set(s1) == {"kernel", "resize", "noise", "jpeg_quality"}
        assert set(s2) == {"blur_applied", "kernel", "resize", "noise"}
        assert set(f) == {"order", "resize", "sinc", "jpeg_quality"}
        for k in (s1["kernel"], s2["kernel"], f["sinc"]):
            assert set(k) == KERNEL_KEYS
        assert s1["kernel"]["size"] in cfg.kernel_range1 and s2["kernel"]["size"] in cfg.kernel_range2
        for r in (s1["resize"], s2["resize"]):
            assert set(r) == RESIZE_KEYS and r["interpolation"] in cfg.resize_modes
        assert set(s1["noise"]) == NOISE_KEYS and set(s2["noise"]) == NOISE_KEYS
        assert cfg.jpeg_range1[0] <= s1["jpeg_quality"] <= cfg.jpeg_range1[1]
        assert cfg.jpeg_range2[0] <= f["jpeg_quality"] <= cfg.jpeg_range2[1]
        assert f["order"] in ("resize-sinc-jpeg", "jpeg-resize-sinc")
        assert f["sinc"]["type"] in ("sinc", "identity")
        assert s2["resize"]["size"] == [int(256 / 4 * s2["resize"]["scale"])] * 2


def test_cv2_bicubic_preset_is_a_plain_opencv_cubic_downscale(astronaut):
    lr, p = degrade(astronaut, 4, get_preset("cv2-bicubic"), np.random.default_rng(0))
    ref = cv2.resize(astronaut, (64, 64), interpolation=cv2.INTER_CUBIC)
    assert np.abs(lr.astype(int) - ref.astype(int)).max() <= 1
    assert p["kind"] == "cv2-bicubic" and p["interpolation"] == "cv2-inter-cubic" and json.dumps(p)
    # the MATLAB preset (checked against basicsr in test_matlab_resize.py) is another image
    mat, pm = degrade(astronaut, 4, get_preset("matlab-bicubic"), np.random.default_rng(0))
    assert pm["kind"] == "matlab-bicubic" and np.abs(mat.astype(int) - lr).max() > 20


def test_kinds_and_presets_agree():
    assert set(P.KINDS) == {c.kind for c in PRESETS.values()}
    with pytest.raises(ValueError, match="DegradeConfig.kind: got 'bicubic'"):
        DegradeConfig(kind="bicubic")


def test_same_seed_same_bytes_different_seed_different(astronaut):
    cfg = get_preset("realesrgan")
    a, pa = degrade(astronaut, 4, cfg, np.random.default_rng(1234))
    b, pb = degrade(astronaut, 4, cfg, np.random.default_rng(1234))
    assert a.tobytes() == b.tobytes() and pa == pb
    others = [degrade(astronaut, 4, cfg, np.random.default_rng(s))[0] for s in (1235, 7)]
    assert all(o.tobytes() != a.tobytes() for o in others)


def test_does_not_touch_global_random_state(astronaut):
    import random

    state_np, state_py = np.random.get_state(), random.getstate()
    degrade(astronaut, 4, get_preset("realesrgan"), np.random.default_rng(5))
    assert random.getstate() == state_py
    after = np.random.get_state()
    assert after[0] == state_np[0] and np.array_equal(after[1], state_np[1]) and after[2:] == state_np[2:]


def test_overrides_change_the_sampling(chelsea):
    cfg = get_preset("seesr", kernel_range2=[7, 9, 11], jpeg_range2=[90, 90])
    assert cfg.kernel_range2 == (7, 9, 11) and cfg.name == "seesr"
    for seed in range(8):
        _, p = degrade(chelsea, 4, cfg, np.random.default_rng(seed))
        assert p["stage2"]["kernel"]["size"] <= 11 and p["final"]["jpeg_quality"] == 90
    json.dumps(cfg.to_dict())


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("scale", [3, 1, 16, 4.0, True])
def test_unsupported_scale_is_a_clear_error(astronaut, scale):
    with pytest.raises(ValueError, match=r"scale must be one of \(2, 4, 8\)"):
        degrade(astronaut, scale, get_preset("realesrgan"), np.random.default_rng(0))


def test_size_not_divisible_by_scale_is_a_clear_error(astronaut):
    with pytest.raises(ValueError, match=r"252x256 is not divisible by scale 8.*crop it to 248x256"):
        degrade(astronaut[:252], 8, get_preset("realesrgan"), np.random.default_rng(0))


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8),
                                 np.zeros((64, 64, 3), np.float32)])
def test_wrong_image_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        degrade(bad, 4, get_preset("realesrgan"), np.random.default_rng(0))


def test_unknown_preset_says_did_you_mean():
    with pytest.raises(KeyError) as e:
        get_preset("realesgran")
    assert isinstance(e.value, UnknownPresetError)
    assert "did you mean 'realesrgan'" in str(e.value)
    assert "osediff" in str(e.value)  # lists what exists


def test_unknown_or_invalid_override_is_a_value_error():
    with pytest.raises(ValueError, match="'jpeg_rang2'.*did you mean 'jpeg_range2'"):
        get_preset("realesrgan", jpeg_rang2=(50, 60))
    with pytest.raises(ValueError, match="kernel_range2"):
        get_preset("realesrgan", kernel_range2=(8, 10))
    with pytest.raises(ValueError, match="resize_range1"):
        DegradeConfig(resize_range1=(1.2, 1.5))


def test_tiny_images_survive_every_draw(astronaut):
    hr = np.ascontiguousarray(astronaut[:16, :24])  # LR 2x3 at x8; stage-2 sizes drop to 1 px
    cfg = get_preset("realesrgan")
    for seed in range(25):
        lr, _ = degrade(hr, 8, cfg, np.random.default_rng(seed))
        assert lr.shape == (2, 3, 3)


@pytest.mark.parametrize("seed", range(4))
def test_one_draw_on_two_images_differs_only_near_their_difference(seed):
    """Two scenes that differ in one small patch, degraded with the same generator state, differ
    only within the chain's reach of that patch — Poisson noise included (its draws do not depend
    on pixel values), which is what lets GLYPH-SR's text variants share one degradation."""
    from scipy.ndimage import distance_transform_edt

    rng = np.random.default_rng(seed)
    a = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    a = cv2.GaussianBlur(a, (0, 0), 3)
    b = a.copy()
    b[20:40, 20:60] = 255 - b[20:40, 20:60]
    cfg = get_preset("realesrgan", gaussian_noise_prob1=0.0, gaussian_noise_prob2=0.0)  # Poisson only
    la, pa = degrade(a, 4, cfg, np.random.default_rng([seed, 1]))
    lb, pb = degrade(b, 4, cfg, np.random.default_rng([seed, 1]))
    assert pa == pb
    changed = (la != lb).any(2)
    assert changed.any()
    src = np.ones((64, 64), bool)
    src[5:10, 5:15] = False
    assert distance_transform_edt(src)[changed].max() <= 40
    assert changed.mean() < 0.5
