"""OSEDiff and PiSA-SR on the tiny random SD: shape/range, determinism, tiling, checkpoints in the
official ``save_model`` layouts (written here for the tiny config), the official forward pass
recomputed with diffusers/peft as the reference, and the resolver's errors."""
import pytest
import torch
import torch.nn.functional as F

from models import create_sr
from models.sr.checkpoint import CheckpointError
from models.sr.diffusion import lora
from models.sr.diffusion.colorfix import adain
from models.sr.diffusion.components import tiny_components, write_tiny_base
from models.weights import FolderMissingError, WeightsMissingError


pytestmark = pytest.mark.usefixtures("isolated_weights")


def _perturb(model, pattern, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(s in n for s in pattern):
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


@pytest.fixture(scope="module")
def osediff_ckpt(tmp_path_factory):
    """An ``osediff.pkl`` as ``OSEDiff_gen.save_model`` writes it, for the tiny SD, and the donor
    (the tiny SD with those adapters live, unmerged) that produced it."""
    c = tiny_components()
    enc, dec, other = lora.unet_lora_modules(c.unet)
    for name, mods in zip(("default_encoder", "default_decoder", "default_others"), (enc, dec, other)):
        lora.add_lora(c.unet, mods, 4, name)
    vae_mods = lora.vae_encoder_lora_modules(c.vae)
    lora.add_lora(c.vae, vae_mods, 2, "default_encoder")
    _perturb(c.unet, ("lora_B", "conv_in"), 1)  # training moved LoRA B off zero and conv_in
    _perturb(c.vae, ("lora_B",), 2)
    lora.activate(c.unet, ("default_encoder", "default_decoder", "default_others"))
    sd = {"vae_lora_encoder_modules": vae_mods, "unet_lora_encoder_modules": enc,
          "unet_lora_decoder_modules": dec, "unet_lora_others_modules": other, "rank_unet": 4, "rank_vae": 2,
          "state_dict_unet": {k: v for k, v in c.unet.state_dict().items() if "lora" in k or "conv_in" in k},
          "state_dict_vae": {k: v for k, v in c.vae.state_dict().items() if "lora" in k}}
    path = tmp_path_factory.mktemp("osediff") / "osediff.pkl"
    torch.save(sd, path)
    return path, sd, c


@pytest.fixture(scope="module")
def pisa_ckpt(tmp_path_factory):
    """A ``pisa_sr.pkl`` as ``PiSASR.save_model`` writes it (both LoRA sets on the same modules)."""
    c = tiny_components()
    enc, dec, other = lora.unet_lora_modules(c.unet)
    sd = {"lora_rank_unet_pix": 4, "lora_rank_unet_sem": 2}
    for kind in ("pix", "sem"):
        for part, mods in zip(("encoder", "decoder", "others"), (enc, dec, other)):
            lora.add_lora(c.unet, mods, sd[f"lora_rank_unet_{kind}"], f"default_{part}_{kind}")
            sd[f"unet_lora_{part}_modules_{kind}"] = mods
    _perturb(c.unet, ("lora_B",), 3)
    sd["state_dict_unet"] = {k: v for k, v in c.unet.state_dict().items() if "lora" in k}
    path = tmp_path_factory.mktemp("pisa") / "pisa_sr.pkl"
    torch.save(sd, path)
    return path, sd, c


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return write_tiny_base(tmp_path_factory.mktemp("sd") / "tiny-sd")


def _official_forward(c, lr, seed, unet_pred):
    """The official inference on donor ``c`` with diffusers' own objects: bicubic ×4, [-1, 1],
    ``vae.encode(...).latent_dist.sample()``, ``unet_pred(z, emb)`` -> denoised latent,
    ``vae.decode``, AdaIN against the bicubic input (on floats)."""
    up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    with torch.no_grad():
        ids = c.tokenizer("", max_length=77, padding="max_length", truncation=True, return_tensors="pt").input_ids
        emb = c.text_encoder(ids)[0].expand(lr.shape[0], -1, -1)
        sf = c.vae.config.scaling_factor
        # one generator per image (diffusers' list convention), as the official one-image-at-a-time run
        gens = [torch.Generator().manual_seed(seed) for _ in range(len(lr))]
        z = c.vae.encode(up * 2 - 1).latent_dist.sample(generator=gens) * sf
        out = c.vae.decode(unet_pred(z, emb) / sf).sample.clamp(-1, 1) * 0.5 + 0.5
    return adain(out, up).clamp(0, 1)


def _ddpm_x0(c, pred, z, t):
    """diffusers' DDPMScheduler.step with one inference step at ``t`` (the official call)."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler.from_config({k: v for k, v in c.scheduler_config.items() if not k.startswith("_")})
    sched.set_timesteps(timesteps=[t])
    return sched.step(pred, t, z).prev_sample


# -- both methods -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["osediff-tiny", "pisa-sr-tiny"])
def test_shape_range_and_determinism(name):
    m = create_sr(name, device="cpu")
    x = torch.rand(2, 3, 13, 18, generator=torch.Generator().manual_seed(0))
    y = m.upscale(x)
    assert y.shape == (2, 3, 52, 72) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    assert torch.equal(m.upscale(x), y)  # the posterior sample is seeded at every call
    m.seed = 1
    assert not torch.allclose(m.upscale(x), y, atol=1e-3)
    assert create_sr(name, device="cpu", scale=2).upscale(x).shape == (2, 3, 26, 36)


@pytest.mark.parametrize("name", ["osediff-tiny", "pisa-sr-tiny"])
def test_latent_tiling_close_to_untiled(name):
    """A 48² input is a 24² latent. Tiles see less context and their own GroupNorm/attention
    statistics (as in the official code), so a tiled output moves; the bound is therefore stated
    relative to the method's own effect: with 20-px tiles overlapping by 12 the mean |Δ| is below
    1/6 of the mean change the model makes to the bicubic input (measured ~1/9 on these random
    weights, where trained weights see far smaller statistics shifts), it shrinks as tiles grow,
    and it is exactly zero once one tile covers the latent (h·w <= tile², no tiling)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    x = torch.stack([0.5 + 0.3 * torch.sin(6 * xx), 0.5 + 0.3 * torch.cos(5 * yy), 0.4 + 0.2 * xx * yy])[None]
    m = create_sr(name, device="cpu", tile=0)
    whole = m.upscale(x)
    bic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    effect = (whole - bic).abs().mean().item()
    diffs = []
    for tile, overlap in ((12, 4), (16, 8), (20, 12), (24, 8)):
        m.tile, m.tile_overlap = tile, overlap
        diffs.append((m.upscale(x) - whole).abs().mean().item())
    assert diffs[0] > diffs[1] > diffs[2] > 0 and diffs[2] < effect / 6
    assert diffs[3] == 0


def test_fp16_refused_on_cpu_and_bad_options():
    with pytest.raises(ValueError, match="fp16 is not supported on CPU"):
        create_sr("osediff-tiny", device="cpu", dtype="fp16")
    with pytest.raises(ValueError, match="color_fix must be one of adain, wavelet, none"):
        create_sr("pisa-sr-tiny", device="cpu", color_fix="hist")
    with pytest.raises(ValueError, match="timestep must be in"):
        create_sr("osediff-tiny", device="cpu", timestep=1000)


def test_process_size_enlarges_small_inputs_and_returns_scale_times_the_input():
    x = torch.rand(1, 3, 8, 10)
    m = create_sr("pisa-sr-tiny", device="cpu", process_size=64, color_fix="wavelet")
    y = m.upscale(x)
    assert y.shape == (1, 3, 32, 40) and 0 <= y.min() and y.max() <= 1


# -- OSEDiff --------------------------------------------------------------------------------------------
def test_osediff_checkpoint_loads_and_matches_the_official_forward(osediff_ckpt, tiny_base):
    path, _, donor = osediff_ckpt
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    random_init = create_sr("osediff-tiny", device="cpu").upscale(x)
    # the real (non-tiny) build path, with the tiny SD as the base folder
    m = create_sr("osediff", device="cpu", base=tiny_base, weights=path, prompt="none", process_size=0)
    assert m.weights_info["rank_unet"] == 4 and m.weights_info["base"] == str(tiny_base)
    got = m.upscale(x)
    want = _official_forward(donor, x, 0, lambda z, emb: _ddpm_x0(
        donor, donor.unet(z, torch.tensor([999]), encoder_hidden_states=emb).sample, z, 999))
    assert torch.allclose(got, want, atol=2e-4)  # merged (ours) vs unmerged LoRA (official default)
    assert not torch.allclose(got, random_init, atol=1e-2)
    unmerged = create_sr("osediff-tiny", device="cpu", weights=path, merge_lora=False).upscale(x)
    assert torch.allclose(unmerged, want, atol=2e-4)


def _write(tmp_path, sd, **change):
    sd = {**sd, **change}
    p = tmp_path / "edited.pkl"
    torch.save(sd, p)
    return p


def test_osediff_wrong_keys_raise_naming_them(osediff_ckpt, tmp_path):
    sd = osediff_ckpt[1]
    unet = dict(sd["state_dict_unet"])
    unet["conv_in.base_layer.weightx"] = unet.pop("conv_in.base_layer.weight")
    with pytest.raises(CheckpointError, match=r"state_dict_unet.*missing \(e.g. conv_in.base_layer.weight\).*"
                                              r"unexpected \(e.g. conv_in.base_layer.weightx"):
        create_sr("osediff-tiny", device="cpu", weights=_write(tmp_path, sd, state_dict_unet=unet))
    vae = {**sd["state_dict_vae"], "encoder.extra.lora_A.default_encoder.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="state_dict_vae.*unexpected.*encoder.extra.lora_A"):
        create_sr("osediff-tiny", device="cpu", weights=_write(tmp_path, sd, state_dict_vae=vae))
    with pytest.raises(CheckpointError, match="unet_lora_others_modules.*mid_block.nowhere"):
        create_sr("osediff-tiny", device="cpu", weights=_write(
            tmp_path, sd, unet_lora_others_modules=sd["unet_lora_others_modules"] + ["mid_block.nowhere"]))
    with pytest.raises(CheckpointError, match=r"state_dict_unet.*of another shape \(e.g. conv_in.lora_A.default_encoder"
                                              r".weight: checkpoint \(4, 4, 3, 3\) vs network \(8, 4, 3, 3\)"):
        create_sr("osediff-tiny", device="cpu", weights=_write(tmp_path, sd, rank_unet=8))
    no_rank = {k: v for k, v in sd.items() if k != "rank_vae"}
    torch.save(no_rank, tmp_path / "no_rank.pkl")
    with pytest.raises(CheckpointError, match="not a OSEDiff checkpoint: missing rank_vae"):
        create_sr("osediff-tiny", device="cpu", weights=tmp_path / "no_rank.pkl")


def test_missing_base_and_checkpoint_give_the_resolvers_error(osediff_ckpt, tiny_base):
    with pytest.raises(FolderMissingError) as e:
        create_sr("osediff", device="cpu", weights=osediff_ckpt[0])
    msg = str(e.value)
    assert isinstance(e.value, WeightsMissingError)
    assert "stable-diffusion-2-1-base" in msg and "(TEXTSR_WEIGHTS)" in msg and "Hugging Face cache" in msg
    assert "huggingface-cli download stabilityai/stable-diffusion-2-1-base" in msg
    with pytest.raises(WeightsMissingError, match=r"(?s)'osediff.pkl' not found.*curl -L -o .*osediff.pkl "
                                                  r"https://github.com/cswry/OSEDiff/raw/main/preset/models/osediff.pkl"):
        create_sr("osediff", device="cpu", base=tiny_base)
    with pytest.raises(WeightsMissingError, match=r"(?s)'pisa_sr.pkl' not found.*drive.google.com"):
        create_sr("pisa-sr", device="cpu", base=tiny_base)
    with pytest.raises(WeightsMissingError, match="(?s)ram_swin_large_14m.pth.*xinyu1205/recognize_anything_model"):
        create_sr("osediff-tiny", device="cpu", prompt="dape")  # the DAPE prompt needs RAM's weights


def test_registry_builds_osediff_tiny_with_a_fixed_prompt():
    m = create_sr("osediff-tiny", device="cpu", prompt="a shop sign")
    assert m.name == "osediff-tiny" and m.scale == 4 and m.prompt.describe() == "fixed: 'a shop sign'"
    assert m.upscale_image(torch.rand(9, 11, 3).numpy()).shape == (36, 44, 3)


# -- PiSA-SR --------------------------------------------------------------------------------------------
def test_pisasr_checkpoint_loads_and_lambdas_match_the_official_mix(pisa_ckpt, tiny_base):
    path, _, donor = pisa_ckpt
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([1])

    def official(lp, ls):
        def step(z, emb):
            lora.activate(donor.unet, [f"default_{p}_pix" for p in ("encoder", "decoder", "others")])
            pix = donor.unet(z, t, encoder_hidden_states=emb).sample
            lora.activate(donor.unet, [f"default_{p}_{k}" for k in ("pix", "sem") for p in ("encoder", "decoder", "others")])
            full = donor.unet(z, t, encoder_hidden_states=emb).sample
            return z - (lp * pix + ls * (full - pix))  # PiSASR_eval: sem prediction = full − pix
        return _official_forward(donor, x, 0, step)

    default = create_sr("pisa-sr", device="cpu", base=tiny_base, weights=path, process_size=0)
    assert default.weights_info["rank_pix"] == 4 and not default.adjustable
    got = default.upscale(x)
    assert torch.allclose(got, official(1.0, 1.0), atol=2e-4)
    assert not torch.allclose(got, create_sr("pisa-sr-tiny", device="cpu").upscale(x), atol=1e-2)
    for lp, ls in ((1.0, 0.0), (0.5, 1.5)):
        m = create_sr("pisa-sr-tiny", device="cpu", weights=path, lambda_pix=lp, lambda_sem=ls)
        assert m.adjustable
        assert torch.allclose(m.upscale(x), official(lp, ls), atol=2e-4), (lp, ls)


def test_pisasr_wrong_key_raises_naming_it(pisa_ckpt, tmp_path):
    _, sd, _ = pisa_ckpt
    unet = dict(sd["state_dict_unet"])
    key = next(k for k in unet if "default_others_sem" in k)
    unet[key.replace("_sem", "_semx")] = unet.pop(key)
    with pytest.raises(CheckpointError, match=f"missing \\(e.g. {key}"):
        create_sr("pisa-sr-tiny", device="cpu", weights=_write(tmp_path, sd, state_dict_unet=unet))


@pytest.mark.parametrize("name", ["osediff-tiny", "pisa-sr-tiny", "codsr-tiny"])
def test_an_image_gives_the_same_output_alone_and_in_a_batch(name):
    """Per-image generators: evalkit's --batch-size must not change a score."""
    from models import create_sr

    m = create_sr(name, device="cpu")
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 16, 24, generator=g), torch.rand(1, 3, 16, 24, generator=g)
    alone = m.upscale(a)
    batch = m.upscale(torch.cat([b, a]))
    # equal up to float reassociation of batched convolutions (a shared generator differs by ~0.1)
    assert (batch[1:] - alone).abs().max() < 1e-4
    assert (batch[:1] - alone).abs().max() > 1e-2
