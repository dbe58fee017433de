"""CODSR on the tiny random SD, on CPU: the region-noise weights against a direct computation of
the official formula, the latent step against a direct transcription of the official tiled loop,
a codsr.pkl written in the official key layout (peft adapters, as the official training saves
them), the resolver's errors, the registry and ``evalkit score`` end to end."""
import copy
import json
import math
import warnings

import cv2
import numpy as np
import pytest
import torch

from models.sr.checkpoint import CheckpointError
from models.sr.codsr import region_noise_weight
from models.sr.diffusion.base import StepContext
from models.sr.registry import create_sr
from models.weights import WeightsMissingError
from tests.helpers import word_crop, write_png

RANK = 4


pytestmark = pytest.mark.usefixtures("isolated_weights")


def _lr(h=16, w=24, seed=0):
    """A real word crop (text is what the toolkit is for), resized to h×w, N=1, [0, 1]."""
    img = cv2.resize(word_crop("Sale 42"), (w, h), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


# -- region-adaptive noise ------------------------------------------------------------------------
def test_region_noise_weight_matches_the_formula_per_patch():
    """Three bands, one per branch of the official map: flat (g = 0 -> 0.3), a gentle ramp
    (|G_x| = 8·slope = 0.2 inside -> 7(g-0.15)+0.3), sharp stripes (g > 0.25 -> 1). H = 40 is not a
    multiple of 16, so the last patch row is replicate-padded. Reference: cv2's Sobel with
    replicated borders, numpy patch means, the formula written out."""
    H, W = 40, 96
    gray = np.zeros((H, W), np.float64)
    gray[:, :32] = 0.5
    gray[:, 32:64] = 0.1 + 0.025 * np.arange(32)[None]
    gray[:, 64:] = np.where((np.arange(32) // 2) % 2, 0.9, 0.1)[None]
    gray[33:, 32:64] = 0.5  # a flat strip makes the padded bottom patches differ from the rows above
    # an RGB image whose luma is ``gray``: the weights see 0.299 R + 0.587 G + 0.114 B
    rgb = np.stack([gray + 0.05, gray - 0.05 * 0.299 / 0.587, gray], -1)
    assert 0 <= rgb.min() and rgb.max() <= 1
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()

    got = region_noise_weight(x, (H // 8, W // 8))[0, 0].numpy()

    g = np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)) \
        + np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE))
    g = np.pad(g, ((0, (-H) % 16), (0, (-W) % 16)), mode="edge")
    patch = g.reshape(g.shape[0] // 16, 16, g.shape[1] // 16, 16).mean((1, 3))
    want = np.where(patch <= 0.15, 0.3, np.where(patch <= 0.25, 7 * (patch - 0.15) + 0.3, 1.0))
    want = np.kron(want, np.ones((2, 2)))[:H // 8, :W // 8]  # a 16-px patch = 2×2 latent cells
    assert got.shape == (5, 12)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got == np.float32(0.3)).any() and (got == 1).any() and ((got > 0.31) & (got < 0.99)).any()
    assert np.allclose(got[:, :4], 0.3) and np.allclose(got[:, 8:], 1.0)


# -- the model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    return create_sr("codsr-tiny", device="cpu", tile=0)


def test_shape_range_and_same_seed_same_output(tiny):
    x = _lr().repeat(2, 1, 1, 1)
    a = tiny.upscale(x)
    assert a.shape == (2, 3, 64, 96) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    torch.testing.assert_close(tiny.upscale(x), a, rtol=0, atol=0)
    tiny.seed = 1
    try:
        assert (tiny.upscale(x) - a).abs().mean() > 1e-3  # the noise and the posterior sample are seeded
    finally:
        tiny.seed = 0


def _official_step(m, z, emb, x_up, seed, tile, overlap):
    """CODSR_test.forward after the VAE encode, transcribed: weighted noise, add_noise, SFT × 1/w_t
    on conv_in's output, the UNet over Gaussian-weighted tiles (grid of the official loop; weights
    centred as in models.sr.diffusion.tiling), ẑ = z_L + w_t(ε_a − ε̂)."""

    a = m.alphas_cumprod[m.timestep].double()
    coeff = ((1 - a).sqrt() / a.sqrt()).float()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(z.shape, generator=g) * region_noise_weight(x_up, z.shape[-2:])
    zt = a.sqrt().float() * z + (1 - a).sqrt().float() * noise
    scale, shift = (p / coeff for p in m.sft(x_up * 2 - 1))
    t = torch.tensor([m.timestep])
    box = {}
    hook = m.unet.conv_in.register_forward_hook(
        lambda mod, args, out: out * (scale[box["s"]] + 1) + shift[box["s"]])
    try:
        H, W = z.shape[-2:]
        if tile == 0 or H * W <= tile * tile:
            box["s"] = (slice(None), slice(None), slice(0, H), slice(0, W))
            pred = m.unet(zt, t, encoder_hidden_states=emb).sample
        else:
            side = min(tile, H, W)
            stride = side - overlap
            rows, cols = max(1, (H - overlap + stride - 1) // stride), max(1, (W - overlap + stride - 1) // stride)
            # the official _gaussian_weights: columns centred at (w-1)/2, rows at h/2
            g = [[math.exp(-(i - mid) ** 2 / (side * side) / 0.02) / math.sqrt(2 * math.pi * 0.01)
                  for i in range(side)] for mid in ((side - 1) / 2, side / 2)]
            w = torch.tensor(np.outer(g[1], g[0]), dtype=torch.float32)
            pred, cnt = torch.zeros_like(z), torch.zeros_like(z)
            for r in range(rows):
                for c in range(cols):
                    y0 = r * stride if r < rows - 1 else H - side
                    x0 = c * stride if c < cols - 1 else W - side
                    box["s"] = (slice(None), slice(None), slice(y0, y0 + side), slice(x0, x0 + side))
                    out = m.unet(zt[box["s"]], t, encoder_hidden_states=emb).sample
                    pred[box["s"]] += out * w
                    cnt[box["s"]] += w
            pred = pred / cnt
    finally:
        hook.remove()
    return z + coeff * (noise - pred)


@pytest.mark.parametrize("tile,overlap", [(0, 0), (8, 4)])
def test_latent_step_equals_the_official_computation(tile, overlap):
    """The step (untiled, and over 3 overlapping tiles of an 8×16 latent) equals a direct
    transcription of the official forward to float32 rounding; without the SFT modulation it
    would differ by far more, so a modulation cut from the wrong box would fail this."""
    m = create_sr("codsr-tiny", device="cpu", tile=tile, tile_overlap=overlap)
    x_up = torch.nn.functional.interpolate(_lr(16, 32), scale_factor=4, mode="bicubic").clamp(0, 1)
    with torch.inference_mode():
        z = m.encode(x_up * 2 - 1, torch.Generator().manual_seed(3))
        emb = m.encode_prompts([""])
        got = m.denoise(z, emb, StepContext(lr=None, x_up=x_up, generator=torch.Generator().manual_seed(7)))
        want = _official_step(m, z, emb, x_up, 7, tile, overlap)
        torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
        sft = m.sft
        m.sft = copy.deepcopy(sft)
        for conv in (m.sft.SFT_scale_conv1, m.sft.SFT_shift_conv1):  # an untrained SFT: no modulation
            conv.weight.zero_()
            conv.bias.zero_()
        try:
            unmodulated = m.denoise(z, emb, StepContext(lr=None, x_up=x_up, generator=torch.Generator().manual_seed(7)))
        finally:
            m.sft = sft
        assert (unmodulated - got).abs().max() > 1e-2


def test_tiled_is_close_to_untiled():
    """The SD UNet self-attends over each whole tile, so latent tiling is never exact (the official
    code accepts that), and a random tiny UNet depends on far context more than a trained one. The
    exact check of the tiled step is test_latent_step_equals_the_official_computation; here, the
    whole image: over 3 tiles with half overlap the mean change stays under half of what changing
    the seed does to the same image (measured 0.28-0.33 of it on this crop and on a photo, at 2 to
    6 tiles), so tiling perturbs less than the method's own randomness."""
    x = _lr(16, 32)
    whole = create_sr("codsr-tiny", device="cpu", tile=0)
    a = whole.upscale(x)
    whole.seed = 1
    seed_change = (whole.upscale(x) - a).abs().mean()
    b = create_sr("codsr-tiny", device="cpu", tile=8, tile_overlap=4).upscale(x)
    assert (a - b).abs().mean() < 0.5 * seed_change


def test_timestep_changes_the_output_and_is_checked():
    x = _lr()
    outs = [create_sr("codsr-tiny", device="cpu", timestep=t).upscale(x) for t in (50, 100, 400)]
    assert (outs[0] - outs[1]).abs().mean() > 1e-3 and (outs[1] - outs[2]).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="timestep must be in"):
        create_sr("codsr-tiny", device="cpu", timestep=1000)


# -- codsr.pkl -----------------------------------------------------------------------------------
def _official_pkl(path, *, extra_unet=None, extra_sft=None, conv_in_base=False):
    """A codsr.pkl for the tiny SD written as the official training code would: peft adapters
    added with diffusers' ``add_adapter`` under the official names, their parameters saved by
    name; the "sam" set on attention projections only (a different module list); SFT keys
    written out by hand, 192 -> 32 channels (tiny conv_in)."""
    from peft import LoraConfig

    from models.sr.diffusion.components import tiny_components
    from models.sr.diffusion.lora import unet_lora_modules, vae_encoder_lora_modules

    c = tiny_components(text=False)
    unet, vae = c.unet, c.vae
    default = unet_lora_modules(unet)
    sam = [[m for m in mods if any(p in m for p in ("to_q", "to_k", "to_v"))] for mods in default]
    g = torch.Generator().manual_seed(11)
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # several adapters: intended
    for names, lists in ((("default_encoder", "default_decoder", "default_others"), default),
                         (("default_encoder_alignment", "default_decoder_alignment", "default_others_alignment"), sam)):
        for name, mods in zip(names, lists):
            unet.add_adapter(LoraConfig(r=RANK, init_lora_weights="gaussian", target_modules=mods), adapter_name=name)
    vmods = vae_encoder_lora_modules(vae)
    vae.add_adapter(LoraConfig(r=RANK, init_lora_weights="gaussian", target_modules=vmods), adapter_name="default_encoder")
    sd_unet = {n: torch.randn(p.shape, generator=g) * 0.05 for n, p in unet.named_parameters() if "lora" in n}
    sd_vae = {n: torch.randn(p.shape, generator=g) * 0.05 for n, p in vae.named_parameters() if "lora" in n}
    shapes = {"SFT_scale_conv0": (32, 192), "SFT_scale_conv1": (32, 32), "SFT_shift_conv0": (32, 192),
              "SFT_shift_conv1": (32, 32)}
    sd_sft = {}
    for k, (o, i) in shapes.items():
        sd_sft[f"{k}.weight"] = torch.randn(o, i, 3, 3, generator=g) * 0.02
        sd_sft[f"{k}.bias"] = torch.randn(o, generator=g) * 0.02
    if conv_in_base:
        sd_unet["conv_in.base_layer.weight"] = torch.randn(32, 4, 3, 3, generator=g)
        sd_unet["conv_in.base_layer.bias"] = torch.randn(32, generator=g)
    sd_unet.update(extra_unet or {})
    sd_sft.update(extra_sft or {})
    ck = {"state_dict_sft": sd_sft, "state_dict_vae": sd_vae, "state_dict_unet": sd_unet,
          "rank_vae": RANK, "rank_unet": RANK, "vae_lora_encoder_modules": vmods}
    for kind, lists in (("default", default), ("sam", sam)):
        for part, mods in zip(("encoder", "decoder", "others"), lists):
            ck[f"unet_lora_{part}_modules_{kind}"] = mods
    torch.save(ck, path)
    return ck


def test_official_checkpoint_loads_merges_both_sets_and_changes_the_output(tmp_path, tiny):
    from models.sr.diffusion.components import tiny_components

    ck = _official_pkl(tmp_path / "codsr.pkl")
    m = create_sr("codsr-tiny", device="cpu", weights=tmp_path / "codsr.pkl", tile=0)
    assert m.weights_info["rank_unet"] == RANK and m.weights_info["ignored_keys"] == []
    for k, v in ck["state_dict_sft"].items():
        torch.testing.assert_close(m.sft.state_dict()[k], v)
    # a projection in both sets: W = W_base + (8/r)(B1 A1 + B2 A2), lora_alpha at peft's default 8
    mod = next(n for n in ck["unet_lora_encoder_modules_sam"] if n.endswith("to_q"))
    sd, s = ck["state_dict_unet"], 8 / RANK
    base = tiny_components(text=False).unet.get_submodule(mod).weight
    delta = sum(sd[f"{mod}.lora_B.{a}.weight"] @ sd[f"{mod}.lora_A.{a}.weight"]
                for a in ("default_encoder", "default_encoder_alignment"))
    torch.testing.assert_close(m.unet.get_submodule(mod).weight, base + s * delta, rtol=1e-5, atol=1e-6)
    assert not any("lora" in n for n, _ in m.unet.named_parameters())  # merged and unloaded
    x = _lr()
    assert (m.upscale(x) - tiny.upscale(x)).abs().mean() > 1e-3


@pytest.mark.parametrize("where,key", [
    ("unet", "down_blocks.0.attentions.0.bogus.lora_A.default_encoder.weight"),
    ("unet", "down_blocks.0.resnets.0.conv1.lora_A.default_encoder_typo.weight"),
    ("sft", "SFT_scale_conv2.weight"),
])
def test_a_stray_key_raises_naming_it(tmp_path, where, key):
    extra = {key: torch.zeros(RANK, 8)}
    _official_pkl(tmp_path / "codsr.pkl", **({"extra_unet": extra} if where == "unet" else {"extra_sft": extra}))
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        create_sr("codsr-tiny", device="cpu", weights=tmp_path / "codsr.pkl")


def test_conv_in_base_weights_are_left_unused_as_the_official_inference_does(tmp_path, caplog):
    """OSEDiff-style training saves conv_in's base weights; CODSR_test.load_ckpt copies only
    "lora" parameters. Such keys are accepted, not loaded, recorded and warned about."""
    _official_pkl(tmp_path / "a.pkl")
    _official_pkl(tmp_path / "b.pkl", conv_in_base=True)
    a = create_sr("codsr-tiny", device="cpu", weights=tmp_path / "a.pkl")
    b = create_sr("codsr-tiny", device="cpu", weights=tmp_path / "b.pkl")
    assert b.weights_info["ignored_keys"] == ["conv_in.base_layer.weight", "conv_in.base_layer.bias"]
    assert "conv_in.base_layer.weight" in caplog.text and "does not load" in caplog.text
    x = _lr()
    torch.testing.assert_close(a.upscale(x), b.upscale(x), rtol=0, atol=0)


# -- resolver, real build path ----------------------------------------------------------------------
def test_missing_base_names_folder_places_repo_and_command():
    with pytest.raises(WeightsMissingError) as e:
        create_sr("codsr", device="cpu")
    msg = str(e.value)
    for needle in ("stable-diffusion-2-1-base", "Looked in", "Hugging Face cache",
                   "stabilityai/stable-diffusion-2-1-base", "huggingface-cli download"):
        assert needle in msg, (needle, msg)


def test_real_build_path_on_a_tiny_base_folder(tmp_path):
    """The non-tiny builder: base folder through the diffusers loader, codsr.pkl through the
    resolver ($TEXTSR_WEIGHTS), and the error naming codsr.pkl and its Drive folder when absent."""
    from models.sr.diffusion.components import write_tiny_base

    base = write_tiny_base(tmp_path / "sd")
    with pytest.raises(WeightsMissingError, match=r"codsr\.pkl(.|\n)*drive\.google\.com"):
        create_sr("codsr", device="cpu", base=base, prompt="none")
    (tmp_path / "weights").mkdir()
    _official_pkl(tmp_path / "weights" / "codsr.pkl")
    m = create_sr("codsr", device="cpu", base=base, prompt="none", process_size=0)
    assert m.name == "codsr" and (m.tile, m.tile_overlap, m.timestep) == (150, 50, 100)
    assert m.weights_info["path"] == str(tmp_path / "weights" / "codsr.pkl")
    y = m.upscale(_lr())
    assert y.shape == (1, 3, 64, 96) and 0 <= y.min() and y.max() <= 1


# -- evalkit ---------------------------------------------------------------------------------------
def test_evalkit_scores_codsr_tiny_on_folder_pairs(tmp_path):
    from pipelines.cli import evalkit_main

    for i, word in enumerate(("OPEN", "Sale 42")):
        hr = cv2.resize(word_crop(word, size=28), (96, 64), interpolation=cv2.INTER_AREA)
        write_png(tmp_path / "hr" / f"img{i}.png", hr)
        write_png(tmp_path / "lr" / f"img{i}.png", cv2.resize(hr, (24, 16), interpolation=cv2.INTER_CUBIC))
    out = tmp_path / "run"
    rc = evalkit_main(["score", "--model", "codsr-tiny", "--hr-dir", str(tmp_path / "hr"), "--lr-dir",
                       str(tmp_path / "lr"), "--out", str(out), "--metrics", "psnr,ssim", "--device", "cpu",
                       "--scale", "4", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in (out / "sr").iterdir()) == ["img0.png", "img1.png"]
    assert cv2.imread(str(out / "sr" / "img0.png")).shape == (64, 96, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "codsr-tiny" and summary["images"] == 2 and summary["skipped"] == 0
    recs = [json.loads(ln) for ln in (out / "per_image.jsonl").read_text().splitlines()]
    assert len(recs) == 2 and all(np.isfinite(r["psnr"]) and 0 < r["ssim"] <= 1 for r in recs)


def test_evalkit_scores_codsr_tiny_on_a_synth_corpus_with_model_options(tmp_path, capsys):
    """`evalkit score --model codsr-tiny --bench <corpus>`: a real (small) FTSR corpus, real OCR
    metrics, and --model-opt reaching the model (recorded in summary.json)."""
    from models.datasets import load_catalog
    from pipelines.build import build
    from pipelines.cli import evalkit_main
    from pipelines.executors import LocalExecutor
    from synth.recipe import load_recipe

    recipe = load_recipe("ftsr", ["backgrounds.hr_size=128", "text.instances=[1, 1]", "text.rendered_prob=1.0",
                                  "text.rendered.font_size_px=[28, 40]", "degrade.preset=cv2-bicubic"])
    corpus = tmp_path / "corpus"
    build(recipe, corpus, 2, executor=LocalExecutor(recipe, catalog=load_catalog()), progress=False)
    runs = {}
    for t in (100, 400):
        out = tmp_path / f"run{t}"
        rc = evalkit_main(["score", "--model", "codsr-tiny", "--bench", str(corpus), "--out", str(out),
                           "--metrics", "psnr,ocr_a", "--device", "cpu", "--no-progress",
                           "--model-opt", f"timestep={t}", "--model-opt", "color_fix=wavelet"])
        assert rc == 0
        s = json.loads((out / "summary.json").read_text())
        assert s["images"] == 2 and s["skipped"] == 0 and s["options"]["model_options"] == {
            "timestep": t, "color_fix": "wavelet"}
        assert 0.0 <= s["metrics"]["ocr_a"] <= 1.0
        runs[t] = s["metrics"]["psnr"]
    assert runs[100] != runs[400]
    rc = evalkit_main(["score", "--model", "codsr-tiny", "--bench", str(corpus), "--out", str(tmp_path / "bad"),
                       "--device", "cpu", "--no-progress", "--model-opt", "timestep=5000"])
    assert rc == 2 and "timestep must be in [0, 999]" in capsys.readouterr().err
