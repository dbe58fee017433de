"""VOSR (github.com/cswry/VOSR) on tiny random configurations: both samplers, tiling, checkpoint folders
in the official layout (args.json + ``checkpoints/ema_model.safetensors`` whose key list is restated
here from the official ``models/lightningdit.py`` module structure, not produced by our code), the
light decoder against diffusers' own SD VAE ``Decoder``, clear errors, ``evalkit weights``/``score``."""
import json

import pytest
import torch
from safetensors.torch import save_file

from models.sr.checkpoint import CheckpointError
from models.sr.registry import create_sr
from models.sr.vosr import tiny_args

pytestmark = pytest.mark.usefixtures("isolated_weights")


def official_keys(a: dict, onestep: bool) -> dict:
    """name -> shape of the official LightningDiT(state_dict) for args.json ``a`` (sd2: 4 channels, qwen: 16),
    restated from models/lightningdit.py, pos_embed.py, rmsnorm.py, swiglu_ffn.py and timm's Mlp."""
    d, p, e, r = a["dim"], a["patch_size"], a["enc_dim"], a["encdim_ratio"]
    c = 16 if a["ae_type"] == "qwen" else 4  # the Qwen-Image VAE's latent channels (1.4B), SD-2.1's
    hd = d // a["num_heads"]
    hid = int(2 / 3 * d * a["mlp_ratio"])  # SwiGLUFFN(hidden, int(2/3 * mlp_hidden_dim))
    grid = (a["resolution"] // 8 // p) ** 2
    k = {"x_embedder.proj.weight": (d, 2 * c, p, p), "x_embedder.proj.bias": (d,),
         "feat_rope.freqs_cos": (grid, hd), "feat_rope.freqs_sin": (grid, hd),
         "t_block.1.weight": (6 * d, d), "t_block.1.bias": (6 * d,),
         "final_layer.norm_final.weight": (d,), "final_layer.linear.weight": (p * p * c, d),
         "final_layer.linear.bias": (p * p * c,), "final_layer.adaLN_modulation.1.weight": (2 * d, d),
         "final_layer.adaLN_modulation.1.bias": (2 * d,), "layer_norm.weight": (e,), "layer_norm.bias": (e,),
         "mlp_ca.fc1.weight": (d * r, e), "mlp_ca.fc1.bias": (d * r,), "mlp_ca.fc2.weight": (d, d * r),
         "mlp_ca.fc2.bias": (d,)}
    for emb in ("t_embedder",) + (("r_embedder",) if onestep else ()):
        k.update({f"{emb}.mlp.0.weight": (d, 256), f"{emb}.mlp.0.bias": (d,), f"{emb}.mlp.2.weight": (d, d),
                  f"{emb}.mlp.2.bias": (d,)})
    for i in range(a["depth"]):
        b = f"blocks.{i}."
        k.update({b + "norm1.weight": (d,), b + "norm2.weight": (d,), b + "scale_shift_table": (6, d),
                  b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,), b + "attn.q_norm.weight": (hd,),
                  b + "attn.k_norm.weight": (hd,), b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                  b + "mlp.w12.weight": (2 * hid, d), b + "mlp.w12.bias": (2 * hid,), b + "mlp.w3.weight": (d, hid),
                  b + "mlp.w3.bias": (d,), b + "cross_attn.q_norm.weight": (hd,), b + "cross_attn.k_norm.weight": (hd,)})
        for lin in ("q_linear", "k_linear", "v_linear", "proj"):
            k.update({b + f"cross_attn.{lin}.weight": (d, d), b + f"cross_attn.{lin}.bias": (d,)})
    return k


def write_ckpt(folder, onestep: bool, *, drop=(), extra=(), seed=1, sub="checkpoints", name="ema_model.safetensors",
               ae_type="sd2"):
    """A checkpoint folder as the official training writes it: args.json (all training args) at the top,
    weights under ``checkpoints/``."""
    a = tiny_args(ae_type)
    a.update({"learning_rate": 2e-5, "distill_type": "rcgm" if onestep else None, "train_batch_size": 32})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.json").write_text(json.dumps(a))
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) * 0.1 for k, s in official_keys(a, onestep).items() if k not in drop}
    for k in extra:
        sd[k] = torch.zeros(3)
    (folder / sub).mkdir(exist_ok=True)
    save_file(sd, str(folder / sub / name))
    return sd


def _lr(h=20, w=28, seed=0):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_models():
    return {n: create_sr(n, device="cpu") for n in TINY}


TINY = ("vosr-0.5b-tiny", "vosr-0.5b-onestep-tiny", "vosr-1.4b-tiny", "vosr-1.4b-onestep-tiny")


@pytest.mark.parametrize("name", TINY)
def test_shapes_range_determinism(tiny_models, name):
    m = tiny_models[name]
    assert m.steps == (1 if "onestep" in name else 25)
    x = torch.cat([_lr(), _lr(seed=1)])
    y = m.upscale(x)
    assert y.shape == (2, 3, 80, 112) and y.dtype == torch.float32
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    assert torch.equal(y, m.upscale(x))  # same seed, same output
    # an image's noise does not depend on its batch (float rounding of batched matmuls may: 1e-4)
    assert torch.allclose(y[1:], m.upscale(x[1:]), atol=1e-4)
    m.seed = 7
    try:
        assert not torch.equal(y, m.upscale(x))
    finally:
        m.seed = 0


def test_multistep_options_change_the_output(tiny_models):
    m = tiny_models["vosr-0.5b-tiny"]
    assert (m.cfg_scale, m.weak) == (2.0, pytest.approx(0.15))  # the official run's effective defaults
    x = _lr()
    base = m.upscale(x)
    for attr, val in (("cfg_scale", -0.5), ("weak", 0.25), ("steps", 3)):
        old = getattr(m, attr)
        setattr(m, attr, val)
        try:
            assert not torch.equal(base, m.upscale(x)), attr
        finally:
            setattr(m, attr, old)


def test_onestep_tiled_equals_untiled_for_a_patch_local_network():
    """With depth 0 the DiT is patch-local (no attention between tokens), so every latent pixel's velocity
    is the same in any tile that holds it; the normalised Gaussian blend then returns it unchanged:
    tiled == untiled up to float32 rounding (1e-5). This checks the tile grid, its patch alignment,
    the crops and the blending; with attention, tiles differ by design (each sees only its tile)."""
    from models.sr import vosr

    a = tiny_args()
    a["depth"] = 0
    m = create_sr("vosr-0.5b-onestep-tiny", device="cpu")
    m.dit = vosr.dit_from_args(a, True, tiny_init_seed=3)
    x = _lr(24, 36)
    m.tile, m.tile_overlap = 64, 16
    assert m._tiles(12, 18) is not None  # really tiled: 12×18 latent, 8-px tiles
    tiled = m.upscale(x)
    m.tile = 0
    untiled = m.upscale(x)
    assert (tiled - untiled).abs().max() < 1e-5


def test_one_tile_is_untiled(tiny_models):
    m = tiny_models["vosr-0.5b-onestep-tiny"]
    x = _lr(16, 16)  # 64² output: one 64-px tile
    assert m._tiles(8, 8) is None
    old = m.tile
    m.tile = 0
    try:
        assert torch.equal(m.upscale(x), create_sr("vosr-0.5b-onestep-tiny", device="cpu").upscale(x))
    finally:
        m.tile = old


@pytest.mark.parametrize("onestep, size", [(False, "0.5b"), (True, "0.5b"), (False, "1.4b")])
def test_official_layout_checkpoint_loads_and_changes_output(tmp_path, onestep, size):
    name = f"vosr-{size}" + ("-onestep" if onestep else "") + "-tiny"
    sd = write_ckpt(tmp_path / "ck", onestep, ae_type="qwen" if size == "1.4b" else "sd2")
    m = create_sr(name, device="cpu", weights=tmp_path / "ck", steps=2)
    own = m.dit.state_dict()
    assert set(own) == set(sd) and all(torch.equal(own[k], sd[k]) for k in sd)
    info = m.weights_info
    assert info["path"] == str(tmp_path / "ck" / "checkpoints" / "ema_model.safetensors")
    assert info["official_strict_false_ignores"] == [] and info["recomputed"] == []
    assert info["args_json"] == str((tmp_path / "ck" / "args.json").resolve())
    x = _lr()
    assert not torch.equal(m.upscale(x), create_sr(name, device="cpu", steps=2).upscale(x))


def test_rope_buffers_may_be_absent_and_are_recomputed(tmp_path):
    write_ckpt(tmp_path / "ck", True, drop=("feat_rope.freqs_cos", "feat_rope.freqs_sin"), sub="clean_weights",
               name="model.safetensors")
    m = create_sr("vosr-0.5b-onestep-tiny", device="cpu", weights=tmp_path / "ck")
    assert m.weights_info["recomputed"] == ["feat_rope.freqs_cos", "feat_rope.freqs_sin"]
    # the official VisionRotaryEmbeddingFast for a 4×4 grid, head dim 16: rows then columns, pairs repeated
    half = 8
    f = 1.0 / (10000 ** (torch.arange(0, half, 2).float() / half))
    t = torch.arange(4).float()
    fr = (t[:, None] * f[None]).repeat_interleave(2, -1)
    want = torch.cat([fr[:, None, :].expand(4, 4, -1), fr[None, :, :].expand(4, 4, -1)], -1).reshape(16, 16)
    assert torch.allclose(m.dit.feat_rope.freqs_cos, want.cos(), atol=1e-6)


@pytest.mark.parametrize("case", ["no_args", "no_weights", "unknown_key", "missing_key", "onestep_as_multi",
                                  "bad_args"])
def test_checkpoint_errors_are_clear(tmp_path, case):
    ck = tmp_path / "ck"
    name, match = "vosr-0.5b-tiny", None
    if case == "no_args":
        write_ckpt(ck, False)
        (ck / "args.json").unlink()
        match = "no args.json"
    elif case == "no_weights":
        write_ckpt(ck, False)
        (ck / "checkpoints" / "ema_model.safetensors").unlink()
        match = "no ema_model.safetensors or model.safetensors"
    elif case == "unknown_key":
        write_ckpt(ck, False, extra=("blocks.0.attn.extra.weight",))
        match = "1 unexpected .*blocks.0.attn.extra.weight"
    elif case == "missing_key":
        write_ckpt(ck, False, drop=("final_layer.linear.bias",))
        match = "1 missing .*final_layer.linear.bias"
    elif case == "onestep_as_multi":
        write_ckpt(ck, True)
        match = "4 unexpected .*r_embedder"
    else:
        write_ckpt(ck, False)
        a = json.loads((ck / "args.json").read_text())
        del a["depth"]
        (ck / "args.json").write_text(json.dumps(a))
        match = "missing depth"
    with pytest.raises(CheckpointError, match=match) as ei:
        create_sr(name, device="cpu", weights=ck)
    assert str(ck) in str(ei.value)


def test_light_decoder_matches_diffusers_decoder(tmp_path):
    """sd21_lwdecoder.pth's LightDecoder is SD's VAE decoder at other widths: diffusers' ``Decoder``
    with the same config has the same state-dict keys and, with its weights, gives the same image."""
    from diffusers.models.autoencoders.vae import Decoder

    from models.sr.vosr import load_light_decoder

    torch.manual_seed(0)
    ref = Decoder(in_channels=4, out_channels=3, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4).eval()
    cfg = {"in_channels": 4, "out_channels": 3, "block_out_channels": [8, 16, 16, 16], "layers_per_block": 1}
    path = tmp_path / "sd21_lwdecoder.pth"
    torch.save({"config": cfg, "model_state_dict": ref.state_dict()}, path)
    dec = load_light_decoder(path, groups=4)
    z = torch.randn(1, 4, 6, 5)
    with torch.no_grad():
        assert torch.allclose(dec(z), ref(z), atol=1e-5)
    bad = dict(ref.state_dict())
    bad.pop("conv_out.bias")
    torch.save({"config": cfg, "model_state_dict": bad}, path)
    with pytest.raises(CheckpointError, match="conv_out.bias"):
        load_light_decoder(path, groups=4)


def test_dinov2_uses_the_hub_position_interpolation():
    """torch-hub DINOv2 resamples its position grid with scale_factor (g + 0.1)/M (interpolate_offset
    0.1); transformers resizes to exactly g×g. Our encoder must give the hub's embedding."""
    import torch.nn.functional as F

    from models.sr.vosr import DinoFeatures, tiny_dinov2

    enc = tiny_dinov2(16)
    emb = enc.embeddings
    x = torch.zeros(1, 17, 16)  # a 4×4 grid from the 2×2 trained grid
    transformers_way = emb.interpolate_pos_encoding(x, 28, 28)
    DinoFeatures(enc, 28, 0)
    ours = emb.interpolate_pos_encoding(x, 28, 28)
    pos = emb.position_embeddings
    grid = pos[:, 1:].reshape(1, 2, 2, 16).permute(0, 3, 1, 2)
    hub = F.interpolate(grid, scale_factor=(4.1 / 2, 4.1 / 2), mode="bicubic", antialias=False)
    hub = torch.cat([pos[:, :1], hub.permute(0, 2, 3, 1).reshape(1, 16, 16)], 1)
    assert torch.allclose(ours, hub, atol=1e-6) and not torch.allclose(transformers_way, hub, atol=1e-4)


def test_weights_inventory_lists_every_file():
    from models.inventory import weights_rows

    rows = weights_rows("vosr-0.5b")
    files = {r.file: r.source for r in rows}
    assert files == {"VOSR/VOSR_0.5B_ms/": "huggingface.co/CSWRY/VOSR", "dinov2-base/": "huggingface.co/facebook/dinov2-base",
                     "stable-diffusion-2-1-base/": "huggingface.co/stabilityai/stable-diffusion-2-1-base",
                     "sd21_lwdecoder.pth": "huggingface.co/CSWRY/VOSR (sd21_lwdecoder.pth)"}
    assert all(r.status == "missing" and r.fetch for r in rows)
    assert any("VOSR_0.5B_ms" in r.fetch for r in rows)


def test_weights_inventory_of_the_1_4b_names_the_qwen_vae():
    from models.inventory import weights_rows

    rows = {r.file: r for r in weights_rows("vosr-1.4b")}
    # the checkpoint folder and the Qwen VAE: two sub-folders of one CSWRY/VOSR snapshot
    assert set(rows) == {"VOSR/VOSR_1.4B_ms/", "VOSR/Qwen-Image-vae-2d/", "dinov2-large/"}
    assert "Qwen-Image-vae-2d" in rows["VOSR/Qwen-Image-vae-2d/"].fetch and all(r.fetch for r in rows.values())


def test_full_model_without_weights_names_the_folder():
    from models.weights import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="VOSR_0.5B_ms/args.json"):
        create_sr("vosr-0.5b", device="cpu")


def test_evalkit_scores_vosr_tiny_on_a_synth_corpus(tmp_path):
    from helpers import text_corpus
    from pipelines.cli import evalkit_main

    corpus = text_corpus(tmp_path / "corpus", 2)
    out = tmp_path / "run"
    rc = evalkit_main(["score", "--model", "vosr-0.5b-tiny", "--bench", str(corpus), "--out", str(out),
                       "--metrics", "psnr,ocr_a", "--device", "cpu", "--no-progress", "--limit", "2"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["model"] == "vosr-0.5b-tiny" and s["images"] == 2 and s["skipped"] == 0
    assert 0.0 <= s["metrics"]["ocr_a"] <= 1.0
