"""GLYPH-SR (``glyph-sr``): the ping-pong schedule, the TS-ControlNet mix, the OCR prompts on real
pixels, and the EDM sampler against diffusers' own SDXL ControlNet pipeline — on tiny SDXL-shaped
networks written as diffusers folders (the layout any SDXL checkpoint has)."""
import json

import cv2
import numpy as np
import pytest
import torch

from models.sr.checkpoint import CheckpointError
from models.sr.glyphsr import (
    build,
    lambda_schedule,
    load_controlnet,
    write_tiny_base,
    write_tiny_sr_controlnet,
)
from models.sr.registry import create_sr
from models.weights import WeightsMissingError


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("glyphsr")
    return {"base": write_tiny_base(root / "sdxl"), "sr": write_tiny_sr_controlnet(root / "sr_cn")}


@pytest.fixture(scope="module")
def model(folders):
    return build("glyph-sr", tiny=True, base=folders["base"], sr_controlnet=folders["sr"], device="cpu")


def _signs() -> np.ndarray:
    """A 512² HR scene with two words in known grid cells (top right, bottom left)."""
    img = np.full((512, 512, 3), 235, np.uint8)
    cv2.putText(img, "OPEN", (300, 110), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (20, 20, 20), 7, cv2.LINE_AA)
    cv2.putText(img, "HSBC", (20, 440), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (20, 20, 20), 7, cv2.LINE_AA)
    return img


# -- the schedule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tau,want", [(1, [1, 0, 1, 0, 1, 0, 1]), (2, [1, 1, 0, 0, 1, 1, 0]),
                                      (3, [1, 1, 1, 0, 0, 0, 1])])
def test_pingpong_toggles_every_tau_steps(tau, want):
    assert lambda_schedule(7, "pingpong", tau) == want
    assert lambda_schedule(7, "pingpong", tau, start="scene") == [1 - x for x in want]


def test_continuous_ramps_and_constants():
    up = lambda_schedule(5, "ramp-up")
    assert up == [0, 0.25, 0.5, 0.75, 1.0]
    assert lambda_schedule(5, "ramp-down") == up[::-1]
    cos = lambda_schedule(5, "cosine")
    assert cos[0] == 0 and cos[-1] == pytest.approx(1) and cos[2] == pytest.approx(0.5)
    assert cos[1] == pytest.approx((1 - np.cos(np.pi / 4)) / 2)
    assert lambda_schedule(3, "text") == [1, 1, 1] and lambda_schedule(3, "scene") == [0, 0, 0]
    for bad in ({"kind": "zigzag"}, {"tau": 0}, {"start": "middle"}):
        with pytest.raises(ValueError):
            lambda_schedule(4, **bad)


# -- the residual mix -----------------------------------------------------------------------------
def test_residual_mix_is_half_the_sum_at_lambda_one_and_sr_alone_at_zero(model):
    """Against the two diffusers ControlNets called directly: λ=1 -> s/2·(C_SR + C_TXT), λ=0 -> s·C_SR."""
    from models.sr.diffusion.sdxl import time_ids

    g = torch.Generator().manual_seed(0)
    z, cond = torch.randn(1, 4, 8, 8, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    emb, pooled = model.encode_text(["A photograph."])
    temb, tpooled = model.encode_text(["A photograph. OPEN is displayed at the top right."])
    tid = time_ids(64, 64, 1, "cpu", torch.float32)
    kw = {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": tid}, "return_dict": False}
    with torch.no_grad():
        d_sr, m_sr = model.sr_controlnet(z, 500, encoder_hidden_states=emb, controlnet_cond=cond, **kw)
        d_tx, m_tx = model.text_controlnet(z, 500, encoder_hidden_states=temb, controlnet_cond=cond,
                                           added_cond_kwargs={"text_embeds": tpooled, "time_ids": tid},
                                           return_dict=False)
        for lam, s in ((1.0, 1.0), (1.0, 0.6), (0.0, 0.8)):
            down, mid = model.tsc(z, 500, cond, emb, pooled, temb, tpooled, tid, lam, s)
            for got, a, b in zip([*down, mid], [*d_sr, m_sr], [*d_tx, m_tx]):
                want = s / 2 * (a + b) if lam == 1 else s * a
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


# -- prompts from real OCR ------------------------------------------------------------------------
def test_prompts_verbalise_what_ocr_reads_in_reading_order(model):
    lr = cv2.resize(_signs(), (128, 128), interpolation=cv2.INTER_AREA)
    (sr, _, rec), = model.upscale_images_records([lr])
    assert sr.shape == (512, 512, 3)
    assert rec["ocr_prompt"] == "OPEN is displayed at the top right; HSBC is displayed at the bottom left."
    assert rec["text_prompt"] == "A photograph. " + rec["ocr_prompt"] and rec["scene_prompt"] == "A photograph."
    assert rec["guidance"] == "ocr+caption" and [o["position"] for o in rec["ocr"]] == ["top right", "bottom left"]
    json.dumps(rec)  # what evalkit writes into per_image.jsonl


def test_nothing_read_falls_back_to_the_caption_and_says_so(model):
    flat = np.full((32, 48, 3), 128, np.uint8)
    (_, _, rec), = model.upscale_images_records([flat])
    assert rec["ocr"] == [] and rec["text_prompt"] == rec["scene_prompt"] == "A photograph."
    assert rec["guidance"] == "caption-only (OCR read nothing)"


# -- the sampler ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler,cls", [("edm-euler", "EulerDiscreteScheduler"),
                                         ("edm-dpmpp-2m", "DPMSolverMultistepScheduler")])
def test_scene_steps_equal_diffusers_sdxl_controlnet_pipeline(folders, sampler, cls):
    """λ ≡ 0 (scene schedule) is SDXL + the SR-ControlNet alone with CFG: diffusers'
    StableDiffusionXLControlNetPipeline on the same folders, scheduler and start latents must give
    the same final latent."""
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    m = build("glyph-sr", tiny=True, base=folders["base"], sr_controlnet=folders["sr"], device="cpu",
              schedule="scene", sampler=sampler, steps=5, cfg=3.0, start_point="noise", tile=0)
    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        folders["base"], controlnet=ControlNetModel.from_pretrained(folders["sr"]), torch_dtype=torch.float32)
    pipe.scheduler = m._scheduler()
    assert type(pipe.scheduler).__name__ == cls and pipe.scheduler.config.use_karras_sigmas
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(3)
    noise, cond = torch.randn(1, 4, 8, 8, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    prompt = "A photograph of a street."
    want = pipe(prompt=prompt, image=cond, height=64, width=64, num_inference_steps=5, guidance_scale=3.0,
                latents=noise.clone(), output_type="latent").images
    with torch.no_grad():
        scene = m.encode_text([prompt])
        got = m.sample(None, noise.clone(), cond, m.encode_text(["unused: λ is 0"]), scene, m.encode_text([""]))
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-4)


def test_text_branch_only_matters_where_lambda_is_one(folders):
    kw = dict(tiny=True, base=folders["base"], sr_controlnet=folders["sr"], device="cpu", steps=4)
    lr = cv2.resize(_signs(), (32, 32), interpolation=cv2.INTER_AREA)
    scene_a = build("glyph-sr", schedule="scene", seed_nets=0, **kw)
    scene_b = build("glyph-sr", schedule="scene", seed_nets=0, **kw)
    with torch.no_grad():  # another Text-ControlNet: invisible when λ ≡ 0
        for p in scene_b.text_controlnet.parameters():
            p.add_(0.05)
    a, b = scene_a.upscale_image(lr), scene_b.upscale_image(lr)
    assert np.array_equal(a, b)
    ping_a = build("glyph-sr", **kw)
    ping_b = build("glyph-sr", **kw)
    with torch.no_grad():
        for p in ping_b.text_controlnet.parameters():
            p.add_(0.05)
    pa, pb = ping_a.upscale_image(lr), ping_b.upscale_image(lr)
    assert np.abs(pa.astype(int) - pb.astype(int)).max() > 0
    assert not np.array_equal(pa, a)  # ping-pong differs from scene-only


def test_deterministic_and_batch_independent(model):
    page = cv2.resize(_signs(), (48, 48), interpolation=cv2.INTER_AREA)
    other = np.ascontiguousarray(page[::-1])
    x = torch.from_numpy(page).permute(2, 0, 1)[None].float() / 255
    alone = model.upscale(x)
    both = model.upscale(torch.cat([x, torch.from_numpy(other).permute(2, 0, 1)[None].float() / 255]))
    # an image's noise and prompts do not depend on its batch (batched kernels sum in another order: ~1e-5)
    torch.testing.assert_close(both[:1], alone, rtol=0, atol=1e-4)
    assert torch.equal(alone, model.upscale(x))


def test_cfg_and_s_ctrl_change_the_output(folders):
    kw = dict(tiny=True, base=folders["base"], sr_controlnet=folders["sr"], device="cpu", steps=3)
    lr = cv2.resize(_signs(), (32, 32), interpolation=cv2.INTER_AREA)
    ref = build("glyph-sr", **kw).upscale_image(lr)
    for opt in ({"cfg": 1.0}, {"s_ctrl": 0.5}, {"tau": 2}):
        assert not np.array_equal(build("glyph-sr", **opt, **kw).upscale_image(lr), ref), opt


# -- loading ---------------------------------------------------------------------------------------
def test_folders_load_and_equal_the_in_memory_tiny_model(folders, model):
    mem = build("glyph-sr", tiny=True, device="cpu")
    lr = cv2.resize(_signs(), (32, 32), interpolation=cv2.INTER_AREA)
    assert np.array_equal(mem.upscale_image(lr), model.upscale_image(lr))
    assert model.weights_info["base"] == str(folders["base"])


def test_trained_text_controlnet_round_trip(folders, model, tmp_path):
    model.save_text_controlnet(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt" / "text_controlnet").iterdir()) == [
        "config.json", "diffusion_pytorch_model.safetensors"]
    from diffusers import ControlNetModel

    plain = ControlNetModel.from_pretrained(tmp_path / "ckpt" / "text_controlnet")  # diffusers reads it as is
    for k, v in model.text_controlnet.state_dict().items():
        assert torch.equal(plain.state_dict()[k], v), k
    again = create_sr("glyph-sr-tiny", weights=str(tmp_path / "ckpt"), base=folders["base"],
                      sr_controlnet=folders["sr"], device="cpu", seed_nets=5)  # other random text CN if ignored
    for a, b in zip(model.text_controlnet.state_dict().values(), again.text_controlnet.state_dict().values()):
        assert torch.equal(a, b)


def test_strict_loading_names_the_file_and_keys(folders, tmp_path):
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad_cn"
    bad.mkdir()
    (bad / "config.json").write_text((folders["sr"] / "config.json").read_text())
    state = load_file(folders["sr"] / "diffusion_pytorch_model.safetensors")
    state.pop(next(k for k in state if "controlnet_mid_block" in k))
    save_file(state, bad / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model\.safetensors.*1 missing.*controlnet_mid_block"):
        load_controlnet(bad, "test")
    # a ControlNet of another base (SD-2-shaped cross-attention) does not fit
    cfg = json.loads((folders["sr"] / "config.json").read_text())
    other = tmp_path / "other_cn"
    from diffusers import ControlNetModel

    ControlNetModel.from_config({**{k: v for k, v in cfg.items() if not k.startswith("_")},
                                 "cross_attention_dim": 32}).save_pretrained(other)
    with pytest.raises(CheckpointError, match="cross_attention_dim is 32, the UNet has 64"):
        build("glyph-sr", tiny=True, base=folders["base"], sr_controlnet=other, device="cpu")


def test_missing_files_say_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTSR_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("TEXTSR_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(WeightsMissingError, match="RunDiffusion/Juggernaut-XL-v9"):
        build("glyph-sr", device="cpu")
    with pytest.raises(CheckpointError, match="textsr-train glyph-sr"):
        from models.sr.glyphsr import find_text_controlnet

        find_text_controlnet(tmp_path)


def test_full_model_without_text_weights_explains(folders):
    with pytest.raises(CheckpointError, match="publishes none.*textsr-train glyph-sr"):
        build("glyph-sr", base=folders["base"], sr_controlnet=folders["sr"], device="cpu")
    m = build("glyph-sr", base=folders["base"], sr_controlnet=folders["sr"], device="cpu", train=True,
              ocr_engine=None, caption="fixed")
    # a fresh Text-ControlNet is diffusers' from_unet copy: zero convolutions at zero
    assert all(not p.any() for n, p in m.text_controlnet.named_parameters() if "controlnet_down_blocks" in n)


def test_sdxl_prompt_embeddings_equal_diffusers_encode_prompt(folders):
    from diffusers import StableDiffusionXLPipeline

    from models.sr.diffusion.sdxl import encode_prompt, load_sdxl

    pipe = StableDiffusionXLPipeline.from_pretrained(folders["base"], torch_dtype=torch.float32)
    prompts = ["A photograph. HSBC is displayed at the center.", "a shop sign"]
    want, neg, pooled, neg_pooled = pipe.encode_prompt(prompts, device="cpu", num_images_per_prompt=1,
                                                       do_classifier_free_guidance=True)
    c = load_sdxl(folders["base"])
    with torch.no_grad():
        emb, pool = encode_prompt(c, prompts, "cpu", torch.float32)
        zero, zero_pool = encode_prompt(c, ["", ""], "cpu", torch.float32)
    torch.testing.assert_close(emb, want)
    torch.testing.assert_close(pool, pooled)
    torch.testing.assert_close(zero, neg)  # force_zeros_for_empty_prompt
    torch.testing.assert_close(zero_pool, neg_pooled)


def test_sdxl_folders_with_only_fp16_weight_files_load(folders, tmp_path):
    """Some SDXL repos ship a component only as ``*.fp16.safetensors``: loaded as that variant."""
    import shutil

    from models.sr.diffusion.sdxl import load_sdxl

    d = shutil.copytree(folders["base"], tmp_path / "sdxl")
    for sub, stem in (("unet", "diffusion_pytorch_model"), ("text_encoder_2", "model")):
        f = d / sub / f"{stem}.safetensors"
        f.rename(f.with_name(f"{stem}.fp16.safetensors"))
    a, b = load_sdxl(folders["base"]), load_sdxl(d)
    for name in ("unet", "text_encoder_2"):
        for (k, x), y in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(x, y), (name, k)


def test_prompt_embeddings_are_kept_in_a_bounded_lru(model):
    """Per-image OCR prompts must not grow the in-memory cache over a long run: at most
    PROMPT_CACHE_SIZE entries, least recently used dropped first, and a re-encoded prompt equal to
    its first encoding."""
    from models.cache import LRU
    from models.sr.diffusion.base import PROMPT_CACHE_SIZE

    lru = LRU(2)
    lru["a"], lru["b"] = 1, 2
    assert lru.get("a") == 1  # "a" is now the most recent
    lru["c"] = 3
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2

    first, _ = model.encode_text(["prompt 0"])
    for i in range(1, PROMPT_CACHE_SIZE + 10):
        model.encode_text([f"prompt {i}"])
    assert len(model._prompt_cache) == PROMPT_CACHE_SIZE and "prompt 0" not in model._prompt_cache
    again, _ = model.encode_text(["prompt 0"])
    assert torch.equal(first, again)
