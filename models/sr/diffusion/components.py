"""Stable Diffusion 2.1-base components from a local diffusers-layout folder, and a tiny random SD.

The folder is found by :func:`models.weights.resolve_folder` (explicit path -> ``$TEXTSR_WEIGHTS/
stable-diffusion-2-1-base`` -> the HF cache snapshot of ``stabilityai/stable-diffusion-2-1-base``
-> a snapshot download, only when allowed). Should that repo be unavailable (Stability AI has
withdrawn SD 2.x repos before), mirrors with the same layout exist under other ids on the Hub:
pass such a folder explicitly (``base=PATH``) or place it at
``$TEXTSR_WEIGHTS/stable-diffusion-2-1-base``.

The tiny configuration keeps every block type of SD-2.1-base (cross-attention down/up blocks,
a plain down/up block, the cross-attention mid block, linear projections, a resnet with a
``conv_shortcut``, a ×8 VAE with 4 latent channels, a CLIP text encoder and a byte-level CLIP
tokenizer), so the official LoRA module lists and key layouts apply to it unchanged.
:func:`write_tiny_base` writes it as a diffusers folder so tests go through the real loader.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from models.weights import WeightsFolder, resolve_folder

SD21_BASE = WeightsFolder(
    "stable-diffusion-2-1-base", hf_repo="stabilityai/stable-diffusion-2-1-base",
    required=("model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json",
              "tokenizer/merges.txt", "text_encoder/config.json", "unet/config.json", "vae/config.json"),
    allow_patterns=("model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/config.json",
                    "text_encoder/model.safetensors", "unet/config.json",
                    "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                    "vae/diffusion_pytorch_model.safetensors"))

# scheduler/scheduler_config.json of SD-2.1-base (a PNDMScheduler config; the SR methods load it
# into diffusers' DDPMScheduler): scaled-linear betas 0.00085..0.012 over 1000 steps, epsilon.
SD21_SCHEDULER = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}


def sd21_base_configs() -> dict[str, dict]:
    """The real SD-2.1-base architecture as config dicts (``unet``, ``vae``, ``text_encoder``,
    ``scheduler``), from the repo's ``*/config.json``: build with random weights for benchmarks
    (``UNet2DConditionModel(**c["unet"])``, ``AutoencoderKL(**c["vae"])``,
    ``CLIPTextModel(CLIPTextConfig(**c["text_encoder"]))``)."""
    unet = dict(
        sample_size=64, in_channels=4, out_channels=4, center_input_sample=False,
        flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
        mid_block_scale_factor=1, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
        cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
        dual_cross_attention=False, only_cross_attention=False, num_class_embeds=None,
        upcast_attention=False)
    vae = dict(
        in_channels=3, out_channels=3, latent_channels=4, act_fn="silu", layers_per_block=2,
        block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=768,
        scaling_factor=0.18215)
    text = dict(  # OpenCLIP ViT-H/14 text tower, penultimate layer kept (23 of 24 layers)
        vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
        projection_dim=512, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": dict(SD21_SCHEDULER)}


def tiny_configs() -> dict[str, dict]:
    """A tiny SD with every block type of SD-2.1-base (see the module docstring)."""
    unet = dict(
        sample_size=8, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32,
        attention_head_dim=(2, 4), use_linear_projection=True, act_fn="silu")
    vae = dict(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=64,
        scaling_factor=0.18215)
    text = dict(vocab_size=len(_tiny_vocab()), hidden_size=32, intermediate_size=37,
                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                hidden_act="gelu", projection_dim=32, bos_token_id=512, eos_token_id=513,
                pad_token_id=_tiny_vocab()["!"])
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": dict(SD21_SCHEDULER)}


@dataclass
class SDComponents:
    """What the one-step SR methods use: ``unet`` (UNet2DConditionModel), ``vae`` (AutoencoderKL),
    ``text_encoder`` (CLIPTextModel) and ``tokenizer`` (or None when not loaded), the scheduler
    config dict, and where they came from."""

    unet: object
    vae: object
    text_encoder: object | None
    tokenizer: object | None
    scheduler_config: dict
    source: str = ""
    info: dict = field(default_factory=dict)

    def alphas_cumprod(self):
        """ᾱ_t for t = 0..T-1 (float32 tensor), as diffusers' DDPMScheduler computes it from the config."""
        from diffusers import DDPMScheduler

        cfg = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        return DDPMScheduler.from_config(cfg).alphas_cumprod.float()


def find_base(base=None, allow_download: bool | None = None, folder: WeightsFolder = SD21_BASE) -> Path:
    """The local SD folder: ``base`` (a path) or the resolver's search; raises FolderMissingError."""
    return resolve_folder(folder, explicit=base, allow_download=allow_download)


def base_components(*, tiny: bool = False, base=None, allow_download: bool | None = None,
                    text: bool = True, folder: WeightsFolder = SD21_BASE) -> SDComponents:
    """The base model a method builds on: the folder ``base`` when given (tiny or real), else the
    tiny random SD when ``tiny``, else the resolver's SD-2.1-base folder (FolderMissingError)."""
    if base is not None or not tiny:
        path = find_base(base, allow_download, folder)
        return load_components(path, text=text)
    return tiny_components(text=text)


def load_components(path, *, text: bool = True) -> SDComponents:
    """Load the UNet, VAE, scheduler config and (when ``text``) the CLIP text encoder and tokenizer
    from a diffusers folder, in float32 on CPU (LoRA merging happens in float32; the caller
    moves the result to its device and dtype)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    path = Path(path)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32)
    te = tok = None
    if text:
        from transformers import CLIPTextModel, CLIPTokenizer

        te = CLIPTextModel.from_pretrained(path / "text_encoder", torch_dtype=torch.float32)
        tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    for m in (unet, vae, te):
        if m is not None:
            m.eval().requires_grad_(False)
    return SDComponents(unet, vae, te, tok, sched, source=str(path))


def tiny_components(seed: int = 0, *, text: bool = True) -> SDComponents:
    """The tiny random SD in memory (seeded: same ``seed``, same weights)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cfg = tiny_configs()
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        te = tok = None
        if text:
            from transformers import CLIPTextConfig, CLIPTextModel

            te = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    if text:
        tok = tiny_tokenizer()
    for m in (unet, vae, te):
        if m is not None:
            m.eval().requires_grad_(False)
    return SDComponents(unet, vae, te, tok, cfg["scheduler"], source=f"tiny random SD (seed {seed})")


def write_tiny_base(path, seed: int = 0) -> Path:
    """Write the tiny random SD as a diffusers folder (model_index.json, unet/, vae/,
    text_encoder/, tokenizer/, scheduler/) that :func:`load_components` reads back."""
    path = Path(path)
    c = tiny_components(seed)
    c.unet.save_pretrained(path / "unet")
    c.vae.save_pretrained(path / "vae")
    c.text_encoder.save_pretrained(path / "text_encoder")
    _write_tiny_tokenizer(path / "tokenizer")
    (path / "scheduler").mkdir(parents=True, exist_ok=True)
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(c.scheduler_config, indent=2))
    (path / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}, indent=2))
    return path


# -- the tiny byte-level CLIP tokenizer ------------------------------------------------------------
def _bytes_to_unicode() -> list[str]:
    """CLIP's (GPT-2's) reversible byte -> printable-unicode table, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    table = dict(zip(bs, cs))
    return [chr(table[b]) for b in range(256)]


def _tiny_vocab() -> dict[str, int]:
    # CLIP's vocab order: the 256 byte symbols, the same with the end-of-word mark, (merges,) specials.
    # No merges: every word is spelled byte by byte, which is all a random text encoder needs.
    chars = _bytes_to_unicode()
    toks = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(toks)}


def _write_tiny_tokenizer(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(_tiny_vocab(), ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # as SD-2.x's tokenizer: pads with "!" to the 77-token context
    (folder / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "!",
        "unk_token": "<|endoftext|>"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": "!", "unk_token": "<|endoftext|>",
        "do_lower_case": True}))
    return folder


def tiny_tokenizer():
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as d:
        return CLIPTokenizer.from_pretrained(_write_tiny_tokenizer(Path(d) / "tokenizer"))
