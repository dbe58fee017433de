"""The diffusion SR core: folder resolution, tiling, colour fix, the tiny SD written and re-read,
the LoRA helpers, and the real SD-2.1-base architecture from its config dicts."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.sr.checkpoint import CheckpointError
from models.sr.diffusion import colorfix, lora
from models.sr.diffusion.components import (
    SD21_BASE,
    load_components,
    sd21_base_configs,
    tiny_components,
    write_tiny_base,
)
from models.sr.diffusion.tiling import (
    gaussian_weights,
    tile_starts,
    tiled_latent,
    tiled_resample,
)
from models.weights import (
    FolderMissingError,
    WeightsFolder,
    WeightsMissingError,
    resolve_folder,
)


pytestmark = pytest.mark.usefixtures("isolated_weights")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return write_tiny_base(tmp_path_factory.mktemp("sd") / "tiny-sd")


# -- folder resolution -----------------------------------------------------------------------------
WF = WeightsFolder("some-sd", hf_repo="org/some-sd", required=("unet/config.json", "model_index.json"))


def _make(folder, files=WF.required):
    for f in files:
        (folder / f).parent.mkdir(parents=True, exist_ok=True)
        (folder / f).write_text("{}")
    return folder


def test_folder_resolver_order_explicit_weights_dir_hf_cache(tmp_path):
    snap = _make(tmp_path / "hf" / "hub" / "models--org--some-sd" / "snapshots" / "abc123")
    assert resolve_folder(WF) == snap
    local = _make(tmp_path / "weights" / "some-sd")
    assert resolve_folder(WF) == local  # the project dir wins over the HF cache
    mine = _make(tmp_path / "mine")
    assert resolve_folder(WF, explicit=mine) == mine
    # an explicit folder that lacks a required file is refused, nothing else is tried
    (mine / "model_index.json").unlink()
    with pytest.raises(FolderMissingError, match="explicit path; lacks model_index.json"):
        resolve_folder(WF, explicit=mine)


def test_folder_resolver_skips_incomplete_copies_and_names_everything(tmp_path):
    _make(tmp_path / "weights" / "some-sd", files=("unet/config.json",))       # incomplete
    _make(tmp_path / "hf" / "hub" / "models--org--some-sd" / "snapshots" / "r1", files=("model_index.json",))
    with pytest.raises(WeightsMissingError) as e:  # FolderMissingError is a WeightsMissingError
        resolve_folder(WF, allow_download=False)
    msg = str(e.value)
    assert "'some-sd'" in msg and "unet/config.json, model_index.json" in msg
    assert str(tmp_path / "weights" / "some-sd") in msg and "lacks model_index.json" in msg
    assert "models--org--some-sd" in msg and "Hugging Face cache" in msg
    assert "huggingface.co/org/some-sd" in msg and "download not allowed" in msg
    assert f"huggingface-cli download org/some-sd --local-dir {tmp_path / 'weights' / 'some-sd'}" in msg


def test_sd21_folder_error_names_repo_and_fetch_command(tmp_path):
    with pytest.raises(FolderMissingError) as e:
        resolve_folder(SD21_BASE)
    msg = str(e.value)
    assert "stable-diffusion-2-1-base" in msg and "stabilityai/stable-diffusion-2-1-base" in msg
    assert "huggingface-cli download stabilityai/stable-diffusion-2-1-base --include 'model_index.json'" in msg
    assert "unet/diffusion_pytorch_model.safetensors" in msg  # only what the loader reads is fetched


# -- the tiny SD, written and read back -------------------------------------------------------------
def test_tiny_base_written_and_reloaded(tiny_base, monkeypatch, tmp_path):
    for f in SD21_BASE.required:
        assert (tiny_base / f).is_file(), f
    a, b = tiny_components(), load_components(tiny_base)
    for net in ("unet", "vae", "text_encoder"):
        sa, sb = getattr(a, net).state_dict(), getattr(b, net).state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), net
    ids = [t("an EXIT sign, 42", max_length=77, padding="max_length", truncation=True,
             return_tensors="pt").input_ids for t in (a.tokenizer, b.tokenizer)]
    assert torch.equal(ids[0], ids[1]) and ids[0].shape == (1, 77)
    assert ids[0][0, 0] == 512 and 513 in ids[0][0].tolist()  # <|startoftext|> … <|endoftext|>, "!" pads
    assert b.scheduler_config["prediction_type"] == "epsilon"
    # the scaled-linear schedule of SD: betas = linspace(√0.00085, √0.012, 1000)²
    betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), 1000) ** 2
    assert np.allclose(b.alphas_cumprod().numpy(), np.cumprod(1 - betas), rtol=1e-5)
    # the resolver finds the written folder in the project weights dir
    import shutil

    shutil.copytree(tiny_base, tmp_path / "weights" / SD21_BASE.name)
    assert resolve_folder(SD21_BASE) == tmp_path / "weights" / SD21_BASE.name


def test_sd21_base_configs_build_the_real_architecture():
    """Built on the meta device (no memory): the parameter counts of SD-2.1-base's UNet (865.9 M),
    VAE (83.7 M) and OpenCLIP-H text encoder (340.4 M)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cf = sd21_base_configs()
    with torch.device("meta"):
        nets = (UNet2DConditionModel(**cf["unet"]), AutoencoderKL(**cf["vae"]),
                CLIPTextModel(CLIPTextConfig(**cf["text_encoder"])))
    assert [sum(p.numel() for p in n.parameters()) for n in nets] == [865_910_724, 83_653_863, 340_387_840]


# -- tiling ------------------------------------------------------------------------------------------
def _official_grid(size, tile, overlap):
    """The offsets OSEDiff's/PiSA-SR's tiling loop produces along one axis."""
    n, cur = 0, 0
    while cur < size:
        cur = max(n * tile - overlap * n, 0) + tile
        n += 1
    return [max(i * tile - overlap * i, 0) if i < n - 1 else size - tile for i in range(n)]


@pytest.mark.parametrize("size,tile,overlap", [(100, 96, 32), (250, 96, 32), (150, 150, 50), (333, 150, 50), (64, 16, 4)])
def test_tile_grid_matches_official_loop(size, tile, overlap):
    assert tile_starts(size, tile, overlap) == _official_grid(size, tile, overlap)


def test_gaussian_weights_match_official_formula():
    w, h = 12, 9
    xs = [math.exp(-(x - (w - 1) / 2) ** 2 / (2 * w * w * 0.01)) / math.sqrt(2 * math.pi * 0.01) for x in range(w)]
    ys = [math.exp(-(y - (h - 1) / 2) ** 2 / (2 * h * h * 0.01)) / math.sqrt(2 * math.pi * 0.01) for y in range(h)]
    assert np.allclose(gaussian_weights(h, w).numpy(), np.outer(ys, xs), rtol=1e-6)


def test_latent_tiling_is_exact_for_pointwise_maps_and_bounded_for_local_ones():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 40, 52, generator=g)
    cond = torch.randn(2, 3, 320, 416, generator=g)  # k = 8 × the latent, e.g. the LR image
    pointwise = lambda t, c: torch.tanh(t) * F.avg_pool2d(c, 8).mean(1, keepdim=True)
    got = tiled_latent(pointwise, z, cond, tile=16, overlap=8)
    assert torch.allclose(got, pointwise(z, cond), atol=1e-6)  # the blend weights sum to one
    # a 3×3 conv is wrong on a tile's outer pixel ring. There the tile's Gaussian weight is at most
    # w(1 px in)/w(centre) = exp(-(s/2-1.5)²/(0.02 s²)) of the neighbour's, so the error is bounded
    # by that ratio times the largest output change a cut can cause (2·max|out|).
    k = torch.randn(4, 4, 3, 3, generator=g) / 6
    conv = lambda t: F.conv2d(t, k, padding=1)
    full, tiled = conv(z), tiled_latent(conv, z, tile=16, overlap=8)
    s = 16
    ratio = math.exp(-((s / 2 - 1.5) ** 2) / (0.02 * s * s))
    err = (full - tiled).abs().max().item()
    assert 0 < err <= ratio * 2 * full.abs().max().item()
    # no tiling at or below tile² latent pixels (the official condition h·w <= tile²)
    assert torch.equal(tiled_latent(conv, z[:, :, :16, :16], tile=16, overlap=8), conv(z[:, :, :16, :16]))


@pytest.mark.parametrize("num,den", [(1, 8), (8, 1)])
def test_vae_tiling_is_exact_for_local_maps(num, den):
    """Encoder (÷8) and decoder (×8) tiles land on whole output pixels and cross-fade to one."""
    x = torch.randn(1, 3, 96, 136, generator=torch.Generator().manual_seed(1))
    fn = (lambda t: F.avg_pool2d(t, 8)) if den == 8 else (lambda t: F.interpolate(t, scale_factor=8, mode="nearest"))
    got = tiled_resample(fn, x, tile=48, overlap=16, num=num, den=den)
    assert torch.allclose(got, fn(x), atol=1e-6)


# -- colour fix ----------------------------------------------------------------------------------------
def _np_blur(img, r):
    """The StableSR binomial blur written with numpy: edge padding, 3×3 [1 2 1]ᵀ[1 2 1]/16, dilation r."""
    k = np.array([1, 2, 1]) / 4
    p = np.pad(img, ((0, 0), (r, r), (r, r)), mode="edge")
    h, w = img.shape[1:]
    out = np.zeros_like(img)
    for i, a in enumerate(k):
        for j, b in enumerate(k):
            out += a * b * p[:, i * r:i * r + h, j * r:j * r + w]
    return out


def test_wavelet_fix_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    t, s = rng.random((3, 40, 48)), rng.random((3, 40, 48))

    def decompose(x):
        high = np.zeros_like(x)
        for i in range(5):
            low = _np_blur(x, 2 ** i)
            high += x - low
            x = low
        return high, x

    want = np.clip(decompose(t)[0] + decompose(s)[1], 0, 1)
    got = colorfix.color_fix("wavelet", torch.from_numpy(t)[None].float(), torch.from_numpy(s)[None].float())
    assert np.allclose(got[0].numpy(), want, atol=1e-5)
    same = torch.from_numpy(t)[None].float()
    assert torch.allclose(colorfix.wavelet(same, same), same, atol=1e-6)  # high + low = identity


def test_adain_fix_takes_the_source_channel_statistics():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, 32, 40, generator=g) * 0.5 + 0.3
    source = torch.rand(2, 3, 32, 40, generator=g) * 0.4
    out = colorfix.adain(target, source)
    for n in range(2):
        for c in range(3):
            t, s, o = (v[n, c].double().numpy() for v in (target, source, out))
            want = (t - t.mean()) / np.sqrt(t.var(ddof=1) + 1e-5) * np.sqrt(s.var(ddof=1) + 1e-5) + s.mean()
            assert np.allclose(o, want, atol=1e-5)
    fixed = colorfix.color_fix("adain", target, source)
    assert fixed.min() >= 0 and fixed.max() <= 1
    assert torch.equal(colorfix.color_fix("none", target, source), target)
    with pytest.raises(ValueError, match="adain, wavelet, none"):
        colorfix.color_fix("histogram", target, source)


# -- LoRA helpers ---------------------------------------------------------------------------------------
def test_official_module_lists_and_strict_loading():
    c = tiny_components(text=False)
    enc, dec, other = lora.unet_lora_modules(c.unet)
    assert enc[0] == "conv_in" and "conv_out" in dec and all(m.startswith("mid_block") for m in other)
    assert any(m.endswith("conv_shortcut") for m in enc + dec) and any(m.endswith("ff.net.0.proj") for m in other)
    vae_mods = lora.vae_encoder_lora_modules(c.vae)
    assert "quant_conv" in vae_mods and "post_quant_conv" not in vae_mods
    assert all(m.startswith("encoder.") for m in vae_mods if m != "quant_conv")
    lora.add_lora(c.unet, enc, 4, "a")
    torch.manual_seed(3)
    state = {k: torch.randn_like(v) * 0.1 for k, v in c.unet.state_dict().items() if "lora" in k}
    assert lora.load_lora_state(c.unet, state, lambda n: "lora" in n, "x.pkl: sd") == len(state)
    bad = dict(state)
    bad["conv_in.lora_A.b.weight"] = bad.pop("conv_in.lora_A.a.weight")
    with pytest.raises(CheckpointError, match=r"missing \(e.g. conv_in.lora_A.a.weight\).*unexpected \(e.g. conv_in.lora_A.b.weight"):
        lora.load_lora_state(c.unet, bad, lambda n: "lora" in n, "x.pkl: sd")
    with pytest.raises(CheckpointError, match="not in the model.*down_blocks.9.nothing"):
        lora.check_modules(c.unet, ["conv_in", "down_blocks.9.nothing"], "x.pkl: list")
    # merging adds the LoRA delta to the base weight: same output, no peft layer left
    z, emb = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 32)
    before = c.unet(z, 999, encoder_hidden_states=emb).sample
    lora.merge_lora(c.unet, ["a"])
    assert not lora.tuner_layers(c.unet)
    assert torch.allclose(c.unet(z, 999, encoder_hidden_states=emb).sample, before, atol=1e-5)
