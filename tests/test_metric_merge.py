"""Metrics merge exactly across workers: exact float sums (Shewchuk partials), the state protocol,
FID from streamed feature statistics (against pyiqa's folder FID), and OCR engines on a device.

References are independent of the code under test: ``math.fsum`` of the per-image values (the
correctly rounded exact sum), pyiqa's own folder-based FID with the same network, and the one-pass
run of the same metric.
"""
from __future__ import annotations

import json
import logging
import math
import random

import cv2
import numpy as np
import pytest
import torch

from evalkit.metrics.base import ExactSum
from evalkit.metrics.fidelity import PSNR, SSIM
from evalkit.metrics.mask import MaskF1, MaskIoU
from evalkit.metrics.ocr import OCRF1, CharHallucination, OCRAccuracy
from evalkit.sample import EvalSample, TextInstance
from models.ocr import OCREngine, create_ocr

# ----------------------------------------------------------------------------- helpers


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img[..., :3])


def _splits(n_items: int, seed: int) -> list[list[int]]:
    """A random order of ``range(n_items)`` cut into 2-5 non-empty parts."""
    rng = random.Random(seed)
    order = list(range(n_items))
    rng.shuffle(order)
    k = rng.randint(2, min(5, n_items))
    cuts = sorted(rng.sample(range(1, n_items), k - 1))
    return [order[a:b] for a, b in zip([0, *cuts], [*cuts, n_items])]


def _check_order_and_split_independent(make, samples, trials=6):
    """One pass in the given order; shuffled one passes; random splits merged (in a shuffled
    order, both by ``merge`` and by ``merge_state`` of JSON round-tripped states): all ``==``."""
    one = make()
    per_image = [one.update(s) for s in samples]
    want = one.compute()
    for t in range(trials):
        parts = _splits(len(samples), seed=t)
        shuffled = make()
        for i in (i for p in parts for i in p):
            shuffled.update(samples[i])
        assert shuffled.compute() == want
        metrics = []
        for p in parts:
            m = make()
            for i in p:
                m.update(samples[i])
            metrics.append(m)
        random.Random(100 + t).shuffle(metrics)
        states = [json.loads(json.dumps(m.state())) for m in metrics]  # as a worker would send them
        merged = metrics[0]
        for m in metrics[1:]:
            merged.merge(m)
        assert merged.compute() == want, parts
        by_state = make()
        for st in states[::-1]:
            by_state.merge_state(st)
        assert by_state.compute() == want
    return per_image, want


# ----------------------------------------------------------------------------- ExactSum


def test_exact_sum_is_the_correctly_rounded_sum_in_any_order():
    rng = np.random.default_rng(0)
    # values of mixed magnitude and sign: naive summation loses digits and depends on the order
    vals = list(rng.normal(0, 1, 300) * 10.0 ** rng.integers(-8, 9, 300)) + [1e16, 1.0, -1e16, 1e-3]
    want = math.fsum(vals)
    naive = set()
    for seed in range(8):
        v = list(vals)
        random.Random(seed).shuffle(v)
        s = ExactSum(v)
        assert s.value() == want and len(s.partials) < 10
        naive.add(sum(v))
        parts = [ExactSum(v[:100]), ExactSum(v[100:250]), ExactSum(v[250:])]
        parts[2].merge(parts[0])
        parts[2].merge(parts[1])
        assert parts[2].value() == want
    assert len(naive) > 1  # the test has teeth: plain sums differ with the order
    back = ExactSum.from_state(json.loads(json.dumps(ExactSum(vals).state())))
    assert back.value() == want and ExactSum().value() == 0.0


def test_exact_sum_non_finite_values_follow_ieee_in_any_order():
    assert ExactSum([1.5, math.inf, 2.0]).value() == math.inf
    assert ExactSum([math.inf, 1.0, -math.inf]).value() != ExactSum([math.inf, 1.0, -math.inf]).value()  # nan
    s = ExactSum([3.0, math.inf])
    back = ExactSum.from_state(json.loads(json.dumps(s.state())))  # json writes Infinity
    assert back.value() == math.inf and back == s
    a, b = ExactSum([1.0]), ExactSum([math.inf])
    a.merge(b)
    assert a.value() == math.inf


# ----------------------------------------------------------------------------- PSNR / SSIM


@pytest.fixture(scope="module")
def photo_pairs() -> list[EvalSample]:
    """12 real 96x96 crops (skimage photos) and noisy/blurred versions of them."""
    import skimage.data

    rng = np.random.default_rng(1)
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"):
        img = _rgb(getattr(skimage.data, name)())
        for j, (y, x) in enumerate(((30, 40), (150, 200))):
            hr = np.ascontiguousarray(img[y:y + 96, x:x + 96])
            sr = np.clip(hr + rng.normal(0, 4 + 6 * j, hr.shape), 0, 255).astype(np.uint8)
            if j:
                sr = cv2.GaussianBlur(sr, (0, 0), 0.8)
            out.append(EvalSample(key=f"{name}-{j}", sr=sr, hr=hr))
    return out


@pytest.mark.parametrize("make", [lambda: PSNR(), lambda: SSIM(), lambda: PSNR(convention="pyiqa"),
                                  lambda: SSIM(convention="tadisr")], ids=["psnr", "ssim", "psnr-pyiqa", "ssim-tadisr"])
def test_fidelity_means_are_bit_identical_for_any_order_and_split(photo_pairs, make):
    samples = [*photo_pairs, EvalSample(key="no-hr", sr=photo_pairs[0].sr)]  # skipped
    per_image, want = _check_order_and_split_independent(make, samples)
    name = make().name
    vals = [p[name] for p in per_image if p[name] is not None]
    assert want[name] == math.fsum(vals) / len(vals)
    assert len({sum(random.Random(s).sample(vals, len(vals))) for s in range(20)}) > 1  # order matters naively


# ----------------------------------------------------------------------------- OCR metrics


class CachedEngine(OCREngine):
    """The real engine with its readings memoised by pixels, so repeated passes over the same
    images cost nothing (the readings are the real engine's)."""

    def __init__(self, inner: OCREngine):
        self.inner, self.name = inner, inner.name
        self._rec: dict = {}
        self._read: dict = {}

    def settings(self) -> dict:
        return self.inner.settings()

    @staticmethod
    def _key(a: np.ndarray):
        return a.shape, a.tobytes()

    def readtext(self, image):
        k = self._key(image)
        if k not in self._read:
            self._read[k] = self.inner.readtext(image)
        return self._read[k]

    def recognize(self, crops):
        out = []
        for c in crops:
            k = self._key(c)
            if k not in self._rec:
                self._rec[k] = self.inner.recognize([c])[0]
            out.append(self._rec[k])
        return out


@pytest.fixture(scope="module")
def ocr_engine():
    return CachedEngine(create_ocr("rapidocr-ppocrv4", num_threads=2))


@pytest.fixture(scope="module")
def page_samples(ocr_engine) -> list[EvalSample]:
    """skimage's scanned page (real text PP-OCR reads) as HR; its lines read on HR are the GT; SR
    are 10 degraded versions (noise, blur, down-up), so OCR-A scores are real values in (0, 1]."""
    import skimage.data

    hr = _rgb(skimage.data.page())
    lines = ocr_engine.readtext(hr)
    assert len(lines) >= 4
    texts = [TextInstance(ln.polygon, ln.text) for ln in lines]
    rng = np.random.default_rng(2)
    out = []
    for i in range(10):
        sr = np.clip(hr + rng.normal(0, 6 + 9 * i, hr.shape), 0, 255).astype(np.uint8)
        if i % 3 == 1:
            sr = cv2.GaussianBlur(sr, (0, 0), 0.6 + 0.2 * i)
        if i % 3 == 2:
            h, w = hr.shape[:2]
            sr = cv2.resize(cv2.resize(sr, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                            interpolation=cv2.INTER_CUBIC)
        # images with fewer regions make the per-region and per-image means differ
        out.append(EvalSample(key=f"page-{i}", sr=sr, hr=hr, texts=texts[: 2 + i % 3]))
    return out


def test_ocr_a_is_bit_identical_for_any_order_and_split(ocr_engine, page_samples):
    per_image, want = _check_order_and_split_independent(lambda: OCRAccuracy(ocr=ocr_engine), page_samples)
    scores = [e["score"] for p in per_image for e in p["ocr_a_evidence"]]
    assert min(scores) < 1 and len(set(scores)) > 3 and want["ocr_a"] < 1  # real readings, some wrong
    assert want["ocr_a"] == math.fsum(scores) / len(scores)
    assert want["ocr_a_image_mean"] == math.fsum(p["ocr_a"] for p in per_image) / len(per_image)
    assert want["ocr_a_ci_image_mean"] == math.fsum(p["ocr_a_ci"] for p in per_image) / len(per_image)


def test_char_hallucination_merges_exactly(ocr_engine, page_samples):
    _, want = _check_order_and_split_independent(lambda: CharHallucination(ocr=ocr_engine), page_samples,
                                                 trials=3)
    assert want["char_ref_chars"] > 0


def test_ocr_f1_merges_exactly(ocr_engine, page_samples):
    samples = page_samples[::3]  # det+rec on SR: a few images
    _, want = _check_order_and_split_independent(lambda: OCRF1(ocr=ocr_engine), samples, trials=3)
    assert want["ocr_f1_n_gt"] > 0 and want["ocr_f1_n_pred"] > 0


# ----------------------------------------------------------------------------- mask metrics


@pytest.fixture(scope="module")
def mask_samples() -> list[EvalSample]:
    """GT: the dark ink of skimage's page (dilated), in 64x96 tiles; prediction: a blurred, noisy
    probability map of it, so per-image IoU/F1 are real fractions."""
    import skimage.data

    page = skimage.data.page()
    gt_full = cv2.dilate((page < 100).astype(np.uint8) * 255, np.ones((3, 3), np.uint8))
    rng = np.random.default_rng(3)
    out = []
    for i in range(12):
        y, x = (i // 4) * 60, (i % 4) * 90
        gt = np.ascontiguousarray(gt_full[y:y + 64, x:x + 96])
        prob = cv2.GaussianBlur(gt.astype(np.float32) / 255, (0, 0), 1.0 + 0.3 * i)
        prob = np.clip(prob + rng.normal(0, 0.15, prob.shape), 0, 1).astype(np.float32)
        out.append(EvalSample(key=f"m{i}", sr=np.zeros((64, 96, 3), np.uint8), mask=gt, pred_mask=prob))
    return out


@pytest.mark.parametrize("cls", [MaskIoU, MaskF1])
def test_mask_metrics_are_bit_identical_for_any_order_and_split(mask_samples, cls):
    per_image, want = _check_order_and_split_independent(cls, mask_samples)
    vals = [p[cls.name] for p in per_image if p[cls.name] is not None]
    key = f"{cls.name}_image_mean"
    assert len(vals) >= 10 and want[key] == math.fsum(vals) / len(vals)


# ----------------------------------------------------------------------------- state protocol


def test_state_json_round_trip_and_merge_state(photo_pairs, mask_samples):
    for make, samples in ((PSNR, photo_pairs), (SSIM, photo_pairs), (MaskIoU, mask_samples)):
        one, a, b = make(), make(), make()
        for i, s in enumerate(samples):
            one.update(s)
            (a if i % 2 else b).update(s)
        state = json.loads(json.dumps(one.state()))
        fresh = make()
        fresh.load_state(state)
        assert fresh.compute() == one.compute()
        a.merge_state(json.loads(json.dumps(b.state())))
        assert a.compute() == one.compute()
        # merge_state took copies: merging b's state again counts b twice, b itself is untouched
        before = b.compute()
        a.merge_state(b.state())
        assert b.compute() == before and a.compute() != one.compute()
    st = PSNR().state()
    assert st["total"] == [] and st["count"] == 0 and "_fn" not in st


# ----------------------------------------------------------------------------- FID


def _standin_fid_inception(path):
    """pyiqa's FID Inception (pytorch-fid layout) with random weights, saved where pyiqa looks.
    Convolutions get He-normal weights: with torch's default init the pool3 features shrink to
    ~1e-7 through 40-odd layers, here they are O(1) like the real network's."""
    from pyiqa.archs import inception as inc

    torch.manual_seed(0)
    net = inc._inception_v3(num_classes=1008, aux_logits=False, pretrained=False)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = (inc.FIDInceptionA(192, 32), inc.FIDInceptionA(256, 64),
                                                inc.FIDInceptionA(288, 64))
    net.Mixed_6b, net.Mixed_6c = inc.FIDInceptionC(768, 128), inc.FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = inc.FIDInceptionC(768, 160), inc.FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = inc.FIDInceptionE_1(1280), inc.FIDInceptionE_2(2048)
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)


@pytest.fixture
def fid_setup(tmp_path, monkeypatch):
    """Random-weight FID Inception in TEXTSR_WEIGHTS (the adapter links it into pyiqa's cache),
    3 real photo pairs (HR: skimage crops of different sizes; SR: noisy/blurred) written as PNGs."""
    import pyiqa.utils.download_util as dl
    import skimage.data
    from helpers import write_png

    monkeypatch.setattr(dl, "DEFAULT_CACHE_DIR", str(tmp_path / "pyiqa-cache"))  # fixed at pyiqa's import
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    _standin_fid_inception(tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth")
    rng = np.random.default_rng(4)
    samples = []
    for i, (name, (h, w)) in enumerate((("astronaut", (256, 320)), ("coffee", (300, 400)),
                                        ("rocket", (320, 240)))):
        hr = np.ascontiguousarray(_rgb(getattr(skimage.data, name)())[:h, :w])
        sr = cv2.GaussianBlur(np.clip(hr + rng.normal(0, 10, hr.shape), 0, 255).astype(np.uint8), (0, 0), 1.0)
        write_png(tmp_path / "sr" / f"{i}.png", sr)
        write_png(tmp_path / "hr" / f"{i}.png", hr)
        samples.append(EvalSample(key=str(i), sr=sr, hr=hr))
    return tmp_path, samples


class _Capture:
    """Records what reaches pyiqa's ``frechet_distance`` (its scipy sqrtm of a 2048² matrix takes
    ~20-50 s on 2 cores; the slow test below runs it for real)."""

    def __init__(self):
        self.calls = []

    def __call__(self, mu1, s1, mu2, s2, eps=1e-6):
        self.calls.append(tuple(np.asarray(a, np.float64) for a in (mu1, s1, mu2, s2)))
        return float(len(self.calls))


class _MemoNet(torch.nn.Module):
    """pyiqa's Inception with its outputs memoised by input, so further passes over the same images
    cost no forward (each forward is ~1 s on 2 cores)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.memo = net, {}

    def forward(self, x, *args):
        k = x.numpy().tobytes()
        if k not in self.memo:
            self.memo[k] = self.net(x, *args)
        return self.memo[k]


def test_fid_streamed_statistics_equal_pyiqa_folder_fid_and_merge(fid_setup, monkeypatch):
    import pyiqa
    from pyiqa.archs import fid_arch

    from evalkit.metrics.fid import FID

    root, samples = fid_setup
    cap = _Capture()
    monkeypatch.setattr(fid_arch, "frechet_distance", cap)
    one = FID(device="cpu", crop_border=4, ocr=None)  # runner keywords accepted
    net = one._net = _MemoNet(one._net)
    assert (root / "pyiqa-cache" / "pt_inception-2015-12-05-6726825d.pth").is_symlink()
    for s in samples:
        assert one.update(s) == {"fid": None}
    one.compute()
    ref = pyiqa.create_metric("fid", device="cpu")
    ref(str(root / "sr"), str(root / "hr"), mode="clean", num_workers=0, verbose=False)
    ours, theirs = cap.calls
    # pyiqa: batches of 8, float32 features, float32 means (np.mean of float32), np.cov in float64
    for a, b, what in zip(ours, theirs, ("mu_sr", "sigma_sr", "mu_hr", "sigma_hr")):
        scale = np.abs(b).max()
        assert scale > 1e-3, what  # features of O(1), not vanishing
        print(what, "max |ours - pyiqa| / max |pyiqa|:", np.abs(a - b).max() / scale)
        # measured: means 6e-8 (pyiqa's float32 mean), covariances 2e-16 (same features, bit for bit)
        tol = 3e-7 if what.startswith("mu") else 1e-13
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale, err_msg=what)

    # merged halves (as two Ray workers would) equal the one pass
    a, b = FID(inception=net), FID(inception=net)
    for s in samples[:1]:
        a.update(s)
    for s in samples[1:]:
        b.update(s)
    a.merge(b)
    assert (a.sr_n, a.hr_n) == (3, 3)
    for k in ("sr_sum", "hr_sum", "sr_outer", "hr_outer"):
        np.testing.assert_allclose(getattr(a, k), getattr(one, k), rtol=1e-12, atol=1e-12 * np.abs(getattr(one, k)).max())
    a.compute()
    for x, y in zip(cap.calls[-1], ours):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * np.abs(y).max())

    # state: the arrays, loaded into a fresh metric (shares no buffer with the source)
    st = one.state()
    assert st["sr_outer"].shape == (2048, 2048) and st["sr_n"] == 3 and json.dumps(st["weights"])
    fresh = FID(inception=net)
    fresh.merge_state(st)
    fresh.merge_state(st)
    assert fresh.sr_n == 6 and one.sr_n == 3
    np.testing.assert_array_equal(fresh.hr_sum, 2 * one.hr_sum)
    assert one.settings()["features"] == "pool3 2048, streamed sums" and one.settings()["merge"] == "add statistics"

    few = FID(inception=net)
    few.update(EvalSample(key="x", sr=samples[0].sr))
    assert few.compute() == {"fid": None} and few.skipped == 1 and few.hr_n == 0


@pytest.mark.slow
def test_fid_value_equals_pyiqa_folder_fid_with_real_sqrtm(fid_setup):
    """The whole formula, scipy sqrtm included (~2 min on 2 cores)."""
    import pyiqa

    from evalkit.metrics.fid import FID

    root, samples = fid_setup
    one = FID(device="cpu")
    for s in samples:
        one.update(s)
    ours = one.compute()["fid"]
    ref = pyiqa.create_metric("fid", device="cpu")
    expect = float(ref(str(root / "sr"), str(root / "hr"), mode="clean", num_workers=0, verbose=False))
    a, b = FID(inception=one._net), FID(inception=one._net)
    for s in samples[:2]:
        a.update(s)
    for s in samples[2:]:
        b.update(s)
    a.merge(b)
    merged = a.compute()["fid"]
    print(f"FID ours {ours!r} pyiqa {expect!r} rel {(ours - expect) / expect:.2e}; merged rel "
          f"{(merged - ours) / ours:.2e}")
    assert ours > 0 and ours == pytest.approx(expect, rel=1e-6)
    assert merged == pytest.approx(ours, rel=1e-9)


def test_fid_missing_weights_is_unavailable(isolated_weights, tmp_path, monkeypatch):
    import pyiqa.utils.download_util as dl

    from evalkit.metrics.base import MetricUnavailable
    from evalkit.metrics.fid import FID

    monkeypatch.setattr(dl, "DEFAULT_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(MetricUnavailable, match="weights-missing: pt_inception-2015-12-05"):
        FID(device="cpu")


# ----------------------------------------------------------------------------- OCR device


def test_ocr_engine_cpu_path_names_its_provider():
    from models.ocr.rapidocr_engine import CPU_PROVIDER

    eng = create_ocr("rapidocr-ppocrv4", num_threads=1)
    assert eng.settings()["provider"] == CPU_PROVIDER and eng.device == "cpu"
    eng.detect_prob(np.full((32, 64, 3), 255, np.uint8))
    assert eng._det_session.get_providers() == [CPU_PROVIDER]
    assert eng._pipeline().text_rec.session.session.get_providers()[0] == CPU_PROVIDER
    with pytest.raises(ValueError, match="'cpu', 'cuda' or 'cuda:N'"):
        create_ocr("rapidocr-ppocrv4", device="gpu0")


@pytest.mark.parametrize("name", ["rapidocr-ppocrv4", "rapidocr-ppocrv6"])
def test_ocr_engine_without_cuda_provider_warns_once_and_reads_on_cpu(name, monkeypatch, caplog):
    import onnxruntime as ort
    import skimage.data

    from models.ocr import rapidocr_engine as re_mod

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime here has the CUDA provider: the fallback is not reachable")
    monkeypatch.setattr(re_mod, "_warned_no_cuda", False)
    with caplog.at_level(logging.WARNING, logger=re_mod.__name__):
        gpu = create_ocr(name, num_threads=1, device="cuda:1")
        create_ocr(name, num_threads=1, device="cuda")
    warnings = [r.getMessage() for r in caplog.records if r.name == re_mod.__name__]
    assert warnings == [re_mod.NO_CUDA_WARNING]
    assert "onnxruntime has no CUDA provider (install onnxruntime-gpu); OCR runs on CPU" in warnings[0]
    cpu = create_ocr(name, num_threads=1)
    assert gpu.settings()["provider"] == "CPUExecutionProvider" and gpu.identity() == cpu.identity()
    crop = _rgb(skimage.data.page())[10:60, 0:380]
    assert gpu.recognize([crop]) == cpu.recognize([crop])
