"""SDXL components from a diffusers-layout folder, SDXL prompt encoding, and a tiny random SDXL.

The folder (any SDXL checkpoint in diffusers layout: ``unet/``, ``vae/``, ``text_encoder/``
(CLIP ViT-L), ``text_encoder_2/`` (OpenCLIP bigG with projection), ``tokenizer/``,
``tokenizer_2/``, ``scheduler/``) is found by :func:`models.weights.resolve_folder`: explicit path ->
``$TEXTSR_WEIGHTS/Juggernaut-XL-v9`` -> the HF cache snapshot of ``RunDiffusion/Juggernaut-XL-v9``
(the Juggernaut-XL family GLYPH-SR builds on; its repo is in diffusers layout) -> a snapshot
download, only when allowed. ``stabilityai/stable-diffusion-xl-base-1.0`` or any other SDXL folder
works the same (``base=PATH``).

Prompt encoding as diffusers' ``StableDiffusionXLPipeline.encode_prompt`` (0.42): each tokenizer
pads/truncates to 77 tokens, each encoder's penultimate hidden state (``hidden_states[-2]``) is
kept and the two are concatenated (768 + 1280 = 2048 channels); the pooled embedding is
``text_encoder_2``'s projected ``text_embeds``. An empty negative prompt is all zeros
(``force_zeros_for_empty_prompt``, SDXL's default). Micro-conditioning ``time_ids`` =
original size + crop top-left + target size, (H, W, 0, 0, H, W) for an uncropped H×W image.

The tiny configuration keeps SDXL's structure (a plain first down block, cross-attention blocks
with several transformer layers, ``text_time`` added conditioning from a pooled embedding + 6 time
ids, two CLIP text encoders of which the second has a projection, a ``force_upcast`` VAE with
SDXL's scaling factor, SDXL's scheduler config); :func:`write_tiny_base` writes it as a diffusers
folder so tests go through :func:`load_sdxl`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from models.weights import WeightsFolder

SDXL_BASE = WeightsFolder(
    "Juggernaut-XL-v9", hf_repo="RunDiffusion/Juggernaut-XL-v9",
    required=("scheduler/scheduler_config.json", "unet/config.json", "vae/config.json", "text_encoder/config.json",
              "text_encoder_2/config.json", "tokenizer/vocab.json", "tokenizer_2/vocab.json"),
    allow_patterns=("model_index.json", "scheduler/*", "tokenizer/*", "tokenizer_2/*", "text_encoder/config.json",
                    "text_encoder/model.safetensors", "text_encoder_2/config.json",
                    "text_encoder_2/model.safetensors", "unet/config.json",
                    "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                    "vae/diffusion_pytorch_model.safetensors"))

# scheduler/scheduler_config.json of stabilityai/stable-diffusion-xl-base-1.0
SDXL_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}


def sdxl_configs() -> dict[str, dict]:
    """The real SDXL-base architecture as config dicts (``unet``, ``vae``, ``text_encoder``,
    ``text_encoder_2``, ``scheduler``), from the repo's ``*/config.json``; for random-weight
    benchmarks."""
    unet = dict(
        sample_size=128, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        norm_num_groups=32, act_fn="silu")
    vae = dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=1024,
        scaling_factor=0.13025, force_upcast=True)
    te1 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
               num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
    te2 = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
               num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)
    return {"unet": unet, "vae": vae, "text_encoder": te1, "text_encoder_2": te2, "scheduler": dict(SDXL_SCHEDULER)}


def tiny_configs() -> dict[str, dict]:
    """A tiny SDXL with SDXL's structure (see the module docstring)."""
    from models.sr.diffusion.components import _tiny_vocab

    te = dict(vocab_size=len(_tiny_vocab()), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
              num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
              bos_token_id=512, eos_token_id=513, pad_token_id=_tiny_vocab()["!"])
    unet = dict(
        sample_size=8, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4), cross_attention_dim=64, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 32,
        norm_num_groups=8, act_fn="silu")
    vae = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
               block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=64,
               scaling_factor=0.13025, force_upcast=True)
    return {"unet": unet, "vae": vae, "text_encoder": te, "text_encoder_2": dict(te), "scheduler": dict(SDXL_SCHEDULER)}


@dataclass
class SDXLComponents:
    """``unet`` (UNet2DConditionModel, text_time), ``vae`` (AutoencoderKL), ``text_encoder``
    (CLIPTextModel), ``text_encoder_2`` (CLIPTextModelWithProjection), ``tokenizer``,
    ``tokenizer_2`` (CLIPTokenizer), the scheduler config dict, and where they came from."""

    unet: object
    vae: object
    text_encoder: object
    text_encoder_2: object
    tokenizer: object
    tokenizer_2: object
    scheduler_config: dict
    source: str = ""
    info: dict = field(default_factory=dict)

    def modules(self) -> dict:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder,
                "text_encoder_2": self.text_encoder_2}


def _frozen(*mods):
    for m in mods:
        m.eval().requires_grad_(False)


def load_sdxl(path) -> SDXLComponents:
    """Every SDXL component of a diffusers folder, float32 on CPU, frozen."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    path = Path(path)

    def kw(sub: str, stem: str) -> dict:
        # some SDXL repos ship only the fp16 variant of a component's weights (*.fp16.safetensors)
        only_fp16 = not (path / sub / f"{stem}.safetensors").is_file() and (path / sub / f"{stem}.fp16.safetensors").is_file()
        return {"torch_dtype": torch.float32, **({"variant": "fp16"} if only_fp16 else {})}

    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw("unet", "diffusion_pytorch_model"))
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw("vae", "diffusion_pytorch_model"))
    te1 = CLIPTextModel.from_pretrained(path / "text_encoder", **kw("text_encoder", "model"))
    te2 = CLIPTextModelWithProjection.from_pretrained(path / "text_encoder_2", **kw("text_encoder_2", "model"))
    tok1, tok2 = CLIPTokenizer.from_pretrained(path / "tokenizer"), CLIPTokenizer.from_pretrained(path / "tokenizer_2")
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    _frozen(unet, vae, te1, te2)
    return SDXLComponents(unet, vae, te1, te2, tok1, tok2, sched, source=str(path))


def tiny_sdxl(seed: int = 0) -> SDXLComponents:
    """The tiny random SDXL in memory (same ``seed``, same weights)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from models.sr.diffusion.components import tiny_tokenizer

    cfg = tiny_configs()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        te1 = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg["text_encoder_2"]))
    _frozen(unet, vae, te1, te2)
    return SDXLComponents(unet, vae, te1, te2, tiny_tokenizer(), tiny_tokenizer(), cfg["scheduler"],
                          source=f"tiny random SDXL (seed {seed})")


def write_tiny_base(path, seed: int = 0) -> Path:
    """Write the tiny random SDXL as a diffusers folder that :func:`load_sdxl` reads back."""
    from models.sr.diffusion.components import _write_tiny_tokenizer

    path = Path(path)
    c = tiny_sdxl(seed)
    c.unet.save_pretrained(path / "unet")
    c.vae.save_pretrained(path / "vae")
    c.text_encoder.save_pretrained(path / "text_encoder")
    c.text_encoder_2.save_pretrained(path / "text_encoder_2")
    _write_tiny_tokenizer(path / "tokenizer")
    _write_tiny_tokenizer(path / "tokenizer_2")
    (path / "scheduler").mkdir(parents=True, exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(c.scheduler_config, indent=2))
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline", "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    return path


def encode_prompt(c: SDXLComponents, prompts: list[str], device, dtype):
    """SDXL prompt embeddings as diffusers' ``encode_prompt`` -> (N×77×(d1+d2) embeddings,
    N×p pooled), in ``dtype``; an empty string gives zeros (``force_zeros_for_empty_prompt``)."""
    import torch

    embs, pooled = [], None
    for tok, te in ((c.tokenizer, c.text_encoder), (c.tokenizer_2, c.text_encoder_2)):
        ids = tok(list(prompts), max_length=tok.model_max_length, padding="max_length", truncation=True,
                  return_tensors="pt").input_ids.to(device)
        out = te(ids, output_hidden_states=True)
        embs.append(out.hidden_states[-2])
        if te is c.text_encoder_2:
            pooled = out[0]
    emb = torch.cat(embs, -1)
    empty = torch.tensor([not p for p in prompts], device=device)
    if empty.any():
        emb = torch.where(empty[:, None, None], torch.zeros_like(emb), emb)
        pooled = torch.where(empty[:, None], torch.zeros_like(pooled), pooled)
    return emb.to(dtype), pooled.to(dtype)


def time_ids(height: int, width: int, n: int, device, dtype):
    """SDXL micro-conditioning for an uncropped ``height``×``width`` image: N×6
    (original size, crop top-left (0, 0), target size)."""
    import torch

    return torch.tensor([[height, width, 0, 0, height, width]], device=device, dtype=dtype).expand(n, 6)
