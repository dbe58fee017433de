"""VOSR's 2D Qwen-Image VAE (models/sr/archs/qwenimage_vae2d.py).

References, independent of the code under test: the official module's key names and shapes written
out from its construction rules (cswry/VOSR models/qwenimage_vae2d.py, read by hand: :func:`official_keys`),
and diffusers' 3D ``AutoencoderKLQwenImage`` (the video VAE the 2D one was extracted from) run on a
one-frame video with the same weights.
"""
from __future__ import annotations

import json

import pytest
import torch

from models.errors import TextsrError
from models.sr.archs.qwenimage_vae2d import (
    LATENTS_MEAN,
    LATENTS_STD,
    QWEN_VAE2D,
    QwenImageVAE2D,
    load_qwen_vae2d,
    save_qwen_vae2d,
    tiny_config,
)
from models.sr.checkpoint import CheckpointError
from models.weights import WeightsMissingError

TINY = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 1}


def official_keys(base_dim, z_dim, dim_mult, num_res_blocks) -> dict[str, tuple]:
    """name -> shape of AutoencoderKLQwenImage2D's state dict, from the official constructors:
    RMSNorm2D gamma (C,1,1) and no bias; ResidualBlock2D norm1/conv1(3×3)/norm2/conv2(3×3) and a 1×1
    conv_shortcut when channels change; AttentionBlock2D norm/to_qkv(1×1, 3C)/proj(1×1); Resample2D
    ``resample.1`` (index 0 is the pad or the upsample); MidBlock2D resnets 0,1 + attentions 0;
    encoder dims base·[1]+mult with a down Resample2D after every level but the last, z_dim·2 out;
    decoder dims base·[mult[-1]]+mult[::-1], up block i>0 taking dims[i]//2, num_res_blocks+1
    resnets, an ``upsamplers.0`` halving channels after every block but the last."""
    keys: dict[str, tuple] = {}

    def conv(p, cin, cout, k):
        keys[f"{p}.weight"] = (cout, cin, k, k)
        keys[f"{p}.bias"] = (cout,)

    def norm(p, c):
        keys[f"{p}.gamma"] = (c, 1, 1)

    def res(p, cin, cout):
        norm(f"{p}.norm1", cin)
        conv(f"{p}.conv1", cin, cout, 3)
        norm(f"{p}.norm2", cout)
        conv(f"{p}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.conv_shortcut", cin, cout, 1)

    def mid(p, c):
        res(f"{p}.resnets.0", c, c)
        norm(f"{p}.attentions.0.norm", c)
        conv(f"{p}.attentions.0.to_qkv", c, 3 * c, 1)
        conv(f"{p}.attentions.0.proj", c, c, 1)
        res(f"{p}.resnets.1", c, c)

    dims = [base_dim * m for m in [1] + dim_mult]
    conv("encoder.conv_in", 3, dims[0], 3)
    idx = 0
    for i in range(len(dim_mult)):
        cin, cout = dims[i], dims[i + 1]
        for _ in range(num_res_blocks):
            res(f"encoder.down_blocks.{idx}", cin, cout)
            idx, cin = idx + 1, cout
        if i != len(dim_mult) - 1:
            conv(f"encoder.down_blocks.{idx}.resample.1", cout, cout, 3)
            idx += 1
    mid("encoder.mid_block", dims[-1])
    norm("encoder.norm_out", dims[-1])
    conv("encoder.conv_out", dims[-1], 2 * z_dim, 3)
    conv("quant_conv", 2 * z_dim, 2 * z_dim, 1)
    conv("post_quant_conv", z_dim, z_dim, 1)
    dims = [base_dim * m for m in [dim_mult[-1]] + dim_mult[::-1]]
    conv("decoder.conv_in", z_dim, dims[0], 3)
    mid("decoder.mid_block", dims[0])
    for i in range(len(dim_mult)):
        cin, cout = (dims[i] if i == 0 else dims[i] // 2), dims[i + 1]
        for j in range(num_res_blocks + 1):
            res(f"decoder.up_blocks.{i}.resnets.{j}", cin, cout)
            cin = cout
        if i != len(dim_mult) - 1:
            conv(f"decoder.up_blocks.{i}.upsamplers.0.resample.1", cout, cout // 2, 3)
    norm("decoder.norm_out", dims[-1])
    conv("decoder.conv_out", dims[-1], 3, 3)
    return keys


def write_official_folder(folder, keys: dict, config: dict, seed: int = 1):
    """The folder as ``AutoencoderKLQwenImage2D.save_pretrained`` leaves it: diffusers' config.json
    (class name, version, every __init__ argument) + diffusion_pytorch_model.safetensors."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"_class_name": "AutoencoderKLQwenImage2D", "_diffusers_version": "0.35.1",
           "attn_scales": [], "temperal_downsample": [False, True, True], "dropout": 0.0,
           "latents_mean": list(LATENTS_MEAN), "latents_std": list(LATENTS_STD), "non_linearity": "silu",
           **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    sd = {k: (torch.randn(s, generator=g) * 0.2 + (1.0 if k.endswith("gamma") else 0.0)) for k, s in keys.items()}
    save_file(sd, str(folder / "diffusion_pytorch_model.safetensors"))
    return sd


@pytest.fixture(scope="module")
def tiny_vae():
    return load_qwen_vae2d(tiny=True)


def test_key_layout_is_the_official_one():
    for cfg in (TINY, {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2}):
        with torch.device("meta"):
            net = QwenImageVAE2D(cfg)
        got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert got == official_keys(**cfg)
    assert {k: v for k, v in tiny_config().items() if k in TINY} == TINY


def test_official_folder_loads_strictly(tmp_path, tiny_vae):
    folder = tmp_path / "preset" / "ckpts" / "Qwen-Image-vae-2d"
    sd = write_official_folder(folder, official_keys(**TINY), TINY)
    for where in (folder, folder.parent):  # the folder itself, or the preset/ckpts (HF repo) root
        vae = load_qwen_vae2d(where)
        own = vae.state_dict()
        assert all(torch.equal(own[k], sd[k]) for k in sd)
        assert vae.weights_info["qwen_vae2d"].endswith("diffusion_pytorch_model.safetensors")
        assert len(vae.weights_info["qwen_vae2d_sha256"]) == 64
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert not torch.allclose(vae(x), tiny_vae(x))


def test_save_writes_the_official_layout(tmp_path, tiny_vae):
    from safetensors.torch import load_file

    folder = save_qwen_vae2d(tiny_vae, tmp_path / "Qwen-Image-vae-2d")
    sd = load_file(str(folder / "diffusion_pytorch_model.safetensors"))
    assert {k: tuple(v.shape) for k, v in sd.items()} == official_keys(**TINY)
    back = load_qwen_vae2d(folder)
    x = torch.rand(1, 3, 16, 24) * 2 - 1
    assert torch.equal(back(x), tiny_vae(x))


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
def test_key_mismatch_is_a_clear_error(tmp_path, change):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "Qwen-Image-vae-2d"
    write_official_folder(folder, official_keys(**TINY), TINY)
    f = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(str(f))
    key = "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"
    if change == "missing":
        del sd[key]
    elif change == "unexpected":
        sd["decoder.up_blocks.0.upsamplers.0.time_conv.weight"] = torch.zeros(32, 32, 3, 1, 1)
        key = "time_conv"
    else:
        sd["encoder.norm_out.gamma"] = torch.ones(32, 1, 1, 1)  # the 3D class's shape
        key = "encoder.norm_out.gamma"
    save_file(sd, str(f))
    with pytest.raises(CheckpointError) as e:
        load_qwen_vae2d(folder)
    msg = str(e.value)
    assert change in msg.replace("another shape", "shape") and key in msg and str(f) in msg


def test_config_errors(tmp_path):
    folder = tmp_path / "Qwen-Image-vae-2d"
    write_official_folder(folder, official_keys(**TINY), {**TINY, "latent_channels": 16})
    with pytest.raises(CheckpointError, match="latent_channels"):
        load_qwen_vae2d(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsMissingError) as e:  # no config.json: names the folder and the source
        load_qwen_vae2d(empty)
    assert str(empty) in str(e.value) and "CSWRY/VOSR" in str(e.value)
    assert isinstance(e.value, TextsrError)


def test_resolver_finds_the_weights_dir_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsMissingError, match="Qwen-Image-vae-2d/config.json"):
        load_qwen_vae2d(allow_download=False)
    write_official_folder(tmp_path / QWEN_VAE2D.name / "Qwen-Image-vae-2d", official_keys(**TINY), TINY)
    assert load_qwen_vae2d(allow_download=False).z_dim == 16


def test_shapes_range_determinism(tiny_vae):
    x = torch.rand(2, 3, 24, 40) * 2 - 1
    z = tiny_vae.encode(x, torch.Generator().manual_seed(3))
    assert z.shape == (2, 16, 3, 5) and z.dtype == torch.float32
    assert torch.equal(z, tiny_vae.encode(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(z, tiny_vae.encode(x, torch.Generator().manual_seed(4)))
    mean, _ = tiny_vae.encode_moments(x)
    assert torch.equal(tiny_vae.encode(x, sample=False), mean)
    # one generator per image: an image's noise does not depend on its batch companions (the
    # convolutions themselves are not bit-identical across batch sizes, hence the tolerance)
    per = tiny_vae.encode(x, [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])
    torch.testing.assert_close(per[1:], tiny_vae.encode(x[1:], [torch.Generator().manual_seed(8)]),
                               rtol=1e-5, atol=1e-6)
    y = tiny_vae.decode(z * 50)
    assert y.shape == (2, 3, 24, 40) and y.min() >= -1 and y.max() <= 1
    assert torch.equal(load_qwen_vae2d(tiny=True).state_dict()["decoder.conv_out.weight"],
                       tiny_vae.state_dict()["decoder.conv_out.weight"])
    with pytest.raises(ValueError, match="N×3×H×W"):
        tiny_vae.encode(x[:, :1])


def test_latent_normalisation_is_vosrs(tiny_vae):
    # inference_vosr.py: (z - mean) * (1 / std) into the DiT; z' / (1 / std) + mean out of it
    z = torch.randn(1, 16, 4, 4)
    mean = torch.tensor(LATENTS_MEAN).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(LATENTS_STD).view(1, -1, 1, 1)
    zn = tiny_vae.normalize_latent(z)
    torch.testing.assert_close(zn, (z - mean) * inv_std, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(tiny_vae.denormalize_latent(zn), zn / inv_std + mean, rtol=1e-6, atol=1e-6)


def _to_3d(sd2: dict, vae3) -> dict:
    """Our 2D weights as the 3D class's state dict: each 2D kernel becomes the last time slice of
    the causal 3D kernel, the other slices random (they only ever meet the causal zero padding),
    (C,1,1) gains gain a time axis, and the 3D-only time_conv weights stay random."""
    g = torch.Generator().manual_seed(5)
    out = {}
    for k, v3 in vae3.state_dict().items():
        if k not in sd2:
            assert "time_conv" in k, k
            out[k] = torch.randn(v3.shape, generator=g) * 0.1
            continue
        v2 = sd2[k]
        if v3.ndim == v2.ndim + 1 and v3.ndim == 5:
            w = torch.randn(v3.shape, generator=g) * 0.1
            w[:, :, -1] = v2
            out[k] = w
        else:
            out[k] = v2.reshape(v3.shape)
    return out


def test_equals_diffusers_3d_vae_on_one_frame(tmp_path):
    from diffusers import AutoencoderKLQwenImage
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    folder = tmp_path / "Qwen-Image-vae-2d"
    sd2 = write_official_folder(folder, official_keys(**TINY), TINY, seed=11)
    vae2 = load_qwen_vae2d(folder)
    vae3 = AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1).eval()
    vae3.load_state_dict(_to_3d(sd2, vae3), strict=True)

    x = torch.rand(2, 3, 32, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        h3 = vae3._encode(x[:, :, None])[:, :, 0]
        post3 = DiagonalGaussianDistribution(h3)
        mean, logvar = vae2.encode_moments(x)
        torch.testing.assert_close(mean, post3.mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logvar, post3.logvar, rtol=1e-4, atol=1e-5)
        z3 = post3.sample(torch.Generator().manual_seed(9))
        z2 = vae2.encode(x, torch.Generator().manual_seed(9))
        torch.testing.assert_close(z2, z3, rtol=1e-4, atol=1e-5)
        y3 = vae3.decode(z3[:, :, None]).sample[:, :, 0]
        y2 = vae2.decode(z3)
    torch.testing.assert_close(y2, y3, rtol=1e-4, atol=1e-5)
    assert y2.std() > 0.05  # not a saturated/constant image that would match trivially
