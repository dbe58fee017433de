"""TADiSR's base models (Kolors, CogView4-6B) as diffusers folders, their tiny random
counterparts, and the fixed quality-prompt embeddings the official inference feeds them.

Port support for Hu et al., "Text-Aware Real-World Image Super-Resolution via Diffusion Model with
Joint Segmentation Decoders" (NeurIPS 2025), github.com/mingcv/TADiSR (MIT), commit 6f591a6.

Folders (through :func:`models.weights.resolve_folder`):

* Kolors — ``Kwai-Kolors/Kolors-diffusers`` (``$TEXTSR_WEIGHTS/Kolors-diffusers``): ``unet/``
  (UNet2DConditionModel, SDXL layout with ``encoder_hid_dim_type="text_proj"`` 4096→2048 and
  ``addition_embed_type="text_time"``), ``vae/`` (the SDXL VAE), ``text_encoder/`` (ChatGLM3-6B) and
  ``tokenizer/``. The official code reads ``unet/`` and ``vae/`` of a ``Kwai-Kolors/Kolors`` snapshot,
  which are the same diffusers subfolders: such a folder works too (``base=PATH``).
* CogView4 — ``zai-org/CogView4-6B``: ``transformer/`` (CogView4Transformer2DModel), ``vae/``
  (16-channel latents), ``scheduler/`` (FlowMatchEulerDiscreteScheduler), ``text_encoder/`` (GLM-4,
  transformers ``GlmModel``) and ``tokenizer/``.

Prompt embeddings, official layouts (``torch.save`` dicts):

* Kolors (read by ``TADiSRPipeline.__init__``): ``{"prompt_embeds": 1×256×4096, "added_cond_kwargs":
  {"text_embeds": 1×4096, "time_ids": 1×6}}``. The official repo ships no script and no file for
  them (its path is a placeholder); we compute them as diffusers' ``KolorsPipeline.encode_prompt``
  does (ChatGLM, 256 tokens padded, penultimate hidden states; pooled = last layer's last token)
  for the prompt ``"best quality,highres,extremely detailed,text"`` — the one the official Kolors
  forward passes to its attention-heat-map tracer, hence the one its UNet saw — and time ids
  (768, 768, 0, 0, 768, 768): original = target = the 768-px training/tile size, no crop. Both are
  our reading of the code, not published facts; pass ``prompt``/``time_ids`` or the authors' file
  (``prompt_embeddings=PATH``) to override.
* CogView4 (``scripts/prepare_prompt_embeddings.py`` → ``CogView4TextEncoderPipeline``):
  ``{"prompt_embeds": 1×L×4096, "negative_prompt_embeds": None}`` — GLM tokens of the fixed quality
  prompt padded to the longest, left-padded with the pad id to a multiple of 16, hidden_states[-2];
  no CFG.

Computed embeddings are cached under ``models.cache.cache_dir("tadisr", "prompt_embeds")``, keyed
by the family, the text encoder's and tokenizer's identity (file names, sizes and digests: sha256 of
every file up to 64 MiB; for larger ones the Hugging Face blob name when the file is a cache
symlink — that name *is* its sha256 — else size + sha256 of its first and last MiB), the prompt, the
time ids and :data:`EMBED_VERSION`. The ``-tiny`` variants use a fixed random embedding of the
right shape (seeded) unless their base folder has a text encoder or a file is given.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from models.sr.checkpoint import CheckpointError
from models.weights import WeightsFolder

KOLORS_BASE = WeightsFolder(
    "Kolors-diffusers", hf_repo="Kwai-Kolors/Kolors-diffusers",
    required=("unet/config.json", "vae/config.json"),
    allow_patterns=("model_index.json", "unet/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*"))
COGVIEW4_BASE = WeightsFolder(
    "CogView4-6B", hf_repo="zai-org/CogView4-6B",
    required=("transformer/config.json", "vae/config.json", "scheduler/scheduler_config.json"),
    allow_patterns=("model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*", "scheduler/*"))

KOLORS_PROMPT = "best quality,highres,extremely detailed,text"
KOLORS_TIME_IDS = (768, 768, 0, 0, 768, 768)
KOLORS_MAX_TOKENS = 256
COGVIEW4_PROMPT = ("Cinematic, High Contrast, highly detailed, taken using a Canon EOS R camera, "
                   "hyper detailed photo - realistic maximum detail, 32k, Color Grading, ultra HD, "
                   "extreme meticulous detailing, skin pore detailing, hyper sharpness, "
                   "perfect without deformations,text")
EMBED_VERSION = 1  # bump when the way embeddings are computed changes


class EmbeddingsError(CheckpointError):
    """A prompt-embeddings file that is not in the official layout for this base."""


@dataclass
class BaseModels:
    """What TADiSR uses from a base: ``backbone`` (Kolors UNet or CogView4 transformer), ``vae``,
    ``scheduler_config`` (CogView4's; Kolors' is not used), the folder (None for in-memory tiny)."""

    family: str
    backbone: object
    vae: object
    scheduler_config: dict
    folder: Path | None = None
    source: str = ""
    info: dict = field(default_factory=dict)


# -- tiny configurations ---------------------------------------------------------------------------
def tiny_configs(family: str) -> dict[str, dict]:
    """Small random configurations keeping the real bases' structure: Kolors' UNet with text_proj
    and text_time conditioning, a 4-level SDXL-like VAE; CogView4's transformer, a 4-level
    16-channel VAE without quant convs, and CogView4's scheduler config."""
    if family == "kolors":
        unet = dict(sample_size=8, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), block_out_channels=(32, 64),
                    layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=(2, 4),
                    use_linear_projection=True, act_fn="silu", encoder_hid_dim=48,
                    encoder_hid_dim_type="text_proj", addition_embed_type="text_time",
                    addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 48)
        vae = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                   block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=64,
                   scaling_factor=0.13025, force_upcast=True)
        return {"unet": unet, "vae": vae, "scheduler": {}}
    if family == "cogview4":
        tr = dict(patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
                  num_attention_heads=2, text_embed_dim=24, time_embed_dim=16, condition_dim=8,
                  pos_embed_max_size=32, sample_size=8, rope_axes_dim=(8, 8))
        vae = dict(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=1,
                   block_out_channels=(8, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=64,
                   scaling_factor=1.0, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True)
        sched = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.25,
                 "invert_sigmas": False, "max_image_seq_len": 4096, "max_shift": 0.75,
                 "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": None,
                 "time_shift_type": "linear", "use_dynamic_shifting": True}
        return {"transformer": tr, "vae": vae, "scheduler": sched}
    raise KeyError(f"unknown TADiSR family {family!r}")


def real_configs(family: str) -> dict[str, dict]:
    """The real bases' architectures (for speed and memory measurements with random weights, where
    the folders cannot be downloaded): Kolors' UNet is SDXL's with ChatGLM's 4096-d states projected
    to 2048 (``text_proj``) and a 4096-d pooled embedding in the ``text_time`` conditioning (5632 =
    4096 + 6·256), its VAE is SDXL's; CogView4-6B's transformer (28 layers, 32 heads of 128, 4096-d
    text, as diffusers' conversion script builds it) and a 16-channel VAE with channels
    128/512/1024/1024 (the widths TADiSR's CogView4 skip convs are made for; ``layers_per_block`` 3 is
    unverified here). A loaded folder's own config.json always wins over these."""
    if family == "kolors":
        unet = dict(sample_size=128, in_channels=4, out_channels=4, flip_sin_to_cos=True, freq_shift=0,
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                    block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
                    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                    act_fn="silu", norm_num_groups=32, encoder_hid_dim=4096, encoder_hid_dim_type="text_proj",
                    addition_embed_type="text_time", addition_time_embed_dim=256,
                    projection_class_embeddings_input_dim=5632)
        vae = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                   block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=1024,
                   scaling_factor=0.13025, force_upcast=True)
        return {"unet": unet, "vae": vae, "scheduler": {}}
    if family == "cogview4":
        tr = dict(patch_size=2, in_channels=16, out_channels=16, num_layers=28, attention_head_dim=128,
                  num_attention_heads=32, text_embed_dim=4096, time_embed_dim=512, condition_dim=256,
                  pos_embed_max_size=128, sample_size=128, rope_axes_dim=(256, 256))
        vae = dict(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=3,
                   block_out_channels=(128, 512, 1024, 1024), down_block_types=("DownEncoderBlock2D",) * 4,
                   up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32, sample_size=1024,
                   scaling_factor=1.0, use_quant_conv=False, use_post_quant_conv=False, force_upcast=True)
        return {"transformer": tr, "vae": vae, "scheduler": tiny_configs("cogview4")["scheduler"]}
    raise KeyError(f"unknown TADiSR family {family!r}")


def tiny_bases(family: str, seed: int = 0, real: bool = False) -> BaseModels:
    """The tiny random base in memory (same ``seed``, same weights); ``real``: the real bases'
    architectures (:func:`real_configs`) with random weights instead."""
    import torch
    from diffusers import AutoencoderKL

    cfg = real_configs(family) if real else tiny_configs(family)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        if family == "kolors":
            from diffusers import UNet2DConditionModel

            backbone = UNet2DConditionModel(**cfg["unet"])
        else:
            from diffusers import CogView4Transformer2DModel

            backbone = CogView4Transformer2DModel(**cfg["transformer"])
        vae = AutoencoderKL(**cfg["vae"])
    for m in (backbone, vae):
        m.eval().requires_grad_(False)
    return BaseModels(family, backbone, vae, cfg["scheduler"], None,
                      f"{'real-architecture' if real else 'tiny'} random {family} (seed {seed})")


def write_tiny_base(family: str, path, seed: int = 0, text: bool = False) -> Path:
    """Write the tiny base as a diffusers folder (``unet/`` or ``transformer/`` + ``scheduler/``,
    ``vae/``, ``model_index.json``; with ``text`` also :func:`write_tiny_text_encoder`'s
    ``text_encoder/`` and ``tokenizer/``) that :func:`load_bases` reads back."""
    path = Path(path)
    b = tiny_bases(family, seed)
    sub = "unet" if family == "kolors" else "transformer"
    b.backbone.save_pretrained(path / sub)
    b.vae.save_pretrained(path / "vae")
    index = {"_class_name": "KolorsPipeline" if family == "kolors" else "CogView4Pipeline",
             sub: ["diffusers", type(b.backbone).__name__], "vae": ["diffusers", "AutoencoderKL"]}
    if family == "cogview4":
        (path / "scheduler").mkdir(parents=True, exist_ok=True)
        (path / "scheduler" / "scheduler_config.json").write_text(json.dumps(b.scheduler_config, indent=2))
        index["scheduler"] = ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    (path / "model_index.json").write_text(json.dumps(index, indent=2))
    if text:
        write_tiny_text_encoder(family, path, seed)
    return path


def write_tiny_text_encoder(family: str, path, seed: int = 0) -> Path:
    """Add a tiny random text encoder and tokenizer to a tiny base folder, so the embeddings are
    computed by the real code path: Kolors — diffusers' ChatGLMModel (2 layers, width 48 = the tiny
    UNet's ``encoder_hid_dim``) with a ChatGLMTokenizer over a 40-piece character SentencePiece
    model trained here; CogView4 — transformers' GlmModel (2 layers, width 24 = the tiny
    transformer's ``text_embed_dim``) with a character-level fast tokenizer."""

    path = Path(path)
    if family == "kolors":
        import io

        import sentencepiece as spm
        from diffusers.pipelines.kolors import ChatGLMModel, ChatGLMTokenizer
        from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig

        buf = io.BytesIO()
        text = [KOLORS_PROMPT] * 8 + ["abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789,.-"]
        spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=buf, vocab_size=48,
                                       model_type="char", character_coverage=1.0, minloglevel=2)
        (path / "tokenizer").mkdir(parents=True, exist_ok=True)
        (path / "tokenizer" / "tokenizer.model").write_bytes(buf.getvalue())
        ChatGLMTokenizer(vocab_file=str(path / "tokenizer" / "tokenizer.model")).save_pretrained(path / "tokenizer")
        cfg = ChatGLMConfig(num_layers=2, padded_vocab_size=64, hidden_size=48, ffn_hidden_size=64, kv_channels=12,
                            num_attention_heads=4, seq_length=KOLORS_MAX_TOKENS, multi_query_attention=True,
                            multi_query_group_num=2, original_rope=True, torch_dtype="float32")
        _save_seeded(ChatGLMModel, cfg, seed, path / "text_encoder")
        return path
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GlmConfig, GlmModel, PreTrainedTokenizerFast

    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.-"
    tk = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, **{c: i + 2 for i, c in enumerate(chars)}},
                                    unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>").save_pretrained(path / "tokenizer")
    cfg = GlmConfig(vocab_size=72, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=6, max_position_embeddings=512, pad_token_id=0)
    _save_seeded(GlmModel, cfg, seed, path / "text_encoder")
    return path


def _save_seeded(cls, cfg, seed: int, dest: Path):
    """Build ``cls(cfg)``, give every parameter seeded N(0, 0.02) weights (norm scales 1; ChatGLM
    leaves its parameters uninitialised under transformers 5) and save it."""
    import torch

    g = torch.Generator().manual_seed(seed)
    model = cls(cfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    model.save_pretrained(dest)


# -- loading the real folders ---------------------------------------------------------------------
def _variant(folder: Path) -> str | None:
    """None when full-precision weights are present, else "fp16" when only those are (Kolors-diffusers
    publishes ``*.fp16.safetensors``)."""
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    if any(n.startswith("diffusion_pytorch_model") and ".fp16." not in n for n in names):
        return None
    return "fp16" if any(".fp16." in n for n in names) else None


def load_bases(family: str, folder) -> BaseModels:
    """Backbone and VAE from a diffusers folder, float32 on CPU (LoRA merges in float32)."""
    import torch
    from diffusers import AutoencoderKL

    folder = Path(folder)
    sub = "unet" if family == "kolors" else "transformer"
    if family == "kolors":
        from diffusers import UNet2DConditionModel as cls
    else:
        from diffusers import CogView4Transformer2DModel as cls
    backbone = cls.from_pretrained(folder, subfolder=sub, torch_dtype=torch.float32, variant=_variant(folder / sub))
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch.float32,
                                        variant=_variant(folder / "vae"))
    sched = {}
    if family == "cogview4":
        sched = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    for m in (backbone, vae):
        m.eval().requires_grad_(False)
    return BaseModels(family, backbone, vae, sched, folder, str(folder))


# -- prompt embeddings ------------------------------------------------------------------------------
def _file_identity(p: Path) -> list:
    size = p.stat().st_size
    if size <= 64 << 20:
        from models.files import file_digest

        return [size, file_digest(p)]
    if p.is_symlink() and p.resolve().parent.name == "blobs":
        return [size, p.resolve().name]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return [size, "ends:" + h.hexdigest()]


def text_encoder_identity(folder: Path) -> list:
    """What the cached embeddings depend on in the base folder (see the module doc)."""
    out = []
    for sub in ("text_encoder", "tokenizer"):
        d = folder / sub
        for p in sorted(d.rglob("*")) if d.is_dir() else ():
            if p.is_file():
                out.append([str(p.relative_to(folder)), *_file_identity(p)])
    return out


def has_text_encoder(folder: Path | None) -> bool:
    return folder is not None and (folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()


def compute_kolors_embeddings(folder: Path, prompt: str = KOLORS_PROMPT, time_ids=KOLORS_TIME_IDS,
                              device="cpu", dtype=None) -> dict:
    """The Kolors layout from the folder's ChatGLM (as diffusers' ``KolorsPipeline.encode_prompt``)."""
    import torch
    from diffusers.pipelines.kolors import ChatGLMModel, ChatGLMTokenizer

    dtype = dtype or torch.float32
    tok = ChatGLMTokenizer.from_pretrained(folder / "tokenizer")
    te = ChatGLMModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
    ids = tok([prompt], padding="max_length", max_length=KOLORS_MAX_TOKENS, truncation=True,
              return_tensors="pt").to(device)
    with torch.inference_mode():
        out = te(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"],
                 position_ids=ids["position_ids"], output_hidden_states=True)
    pe = out.hidden_states[-2].permute(1, 0, 2).float().cpu().clone()
    pooled = out.hidden_states[-1][-1, :, :].float().cpu().clone()
    return {"prompt_embeds": pe, "added_cond_kwargs": {
        "text_embeds": pooled, "time_ids": torch.tensor([list(time_ids)], dtype=torch.float32)}}


def compute_cogview4_embeddings(folder: Path, prompt: str = COGVIEW4_PROMPT, device="cpu", dtype=None) -> dict:
    """The CogView4 layout from the folder's GLM (as ``CogView4TextEncoderPipeline._get_glm_embeds``)."""
    import torch
    from transformers import AutoTokenizer, GlmModel

    dtype = dtype or torch.float32
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    te = GlmModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device).eval()
    ids = tok([prompt], padding="longest", max_length=1024, truncation=True, add_special_tokens=True,
              return_tensors="pt").input_ids
    pad = (16 - ids.shape[1] % 16) % 16
    if pad:
        ids = torch.cat([torch.full((ids.shape[0], pad), tok.pad_token_id, dtype=ids.dtype), ids], dim=1)
    with torch.inference_mode():
        pe = te(ids.to(device), output_hidden_states=True).hidden_states[-2]
    return {"prompt_embeds": pe.float().cpu().clone(), "negative_prompt_embeds": None}


def cached_embeddings(family: str, folder: Path, *, prompt: str | None = None, time_ids=None,
                      device="cpu", dtype=None) -> tuple[dict, Path]:
    """The embeddings for ``folder``'s text encoder, computed once and then read from the cache."""
    import torch

    from models.cache import cache_dir, cache_key
    from models.files import atomic_path

    prompt = prompt if prompt is not None else (KOLORS_PROMPT if family == "kolors" else COGVIEW4_PROMPT)
    tids = list(time_ids if time_ids is not None else KOLORS_TIME_IDS) if family == "kolors" else None
    key = cache_key(family, text_encoder_identity(folder), prompt, tids, EMBED_VERSION,
                    str(dtype or torch.float32))
    path = cache_dir("tadisr", "prompt_embeds", f"{family}-{key}.pt")
    if path.is_file():
        return read_embeddings(family, path), path
    if family == "kolors":
        emb = compute_kolors_embeddings(folder, prompt, tids, device, dtype)
    else:
        emb = compute_cogview4_embeddings(folder, prompt, device, dtype)
    with atomic_path(path) as tmp:
        torch.save(emb, tmp)
    return read_embeddings(family, path), path


def read_embeddings(family: str, path) -> dict:
    """An embeddings file in the official layout (``torch.load(weights_only=True)``), as float32;
    raises :class:`EmbeddingsError` naming the file and what is wrong."""
    import torch

    try:
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise EmbeddingsError(f"{path}: cannot read as prompt embeddings ({type(e).__name__}: {e})") from None
    want = ("prompt_embeds", "added_cond_kwargs") if family == "kolors" else ("prompt_embeds",)
    if not isinstance(d, dict) or any(k not in d for k in want):
        got = list(d) if isinstance(d, dict) else type(d).__name__
        raise EmbeddingsError(f"{path}: not {family} prompt embeddings: expected keys {list(want)}, got {got}")
    out = {"prompt_embeds": d["prompt_embeds"]}
    if family == "kolors":
        a = d["added_cond_kwargs"]
        if not isinstance(a, dict) or "text_embeds" not in a or "time_ids" not in a:
            raise EmbeddingsError(f"{path}: added_cond_kwargs must hold text_embeds and time_ids")
        out["text_embeds"], out["time_ids"] = a["text_embeds"], a["time_ids"]
    for k, v in out.items():
        if not isinstance(v, torch.Tensor):
            raise EmbeddingsError(f"{path}: {k} is {type(v).__name__}, expected a tensor")
    if out["prompt_embeds"].ndim != 3 or out["prompt_embeds"].shape[0] != 1:
        raise EmbeddingsError(f"{path}: prompt_embeds must be 1×L×D, got {tuple(out['prompt_embeds'].shape)}")
    if family == "kolors" and (out["text_embeds"].ndim != 2 or tuple(out["time_ids"].shape) != (1, 6)):
        raise EmbeddingsError(f"{path}: expected text_embeds 1×D and time_ids 1×6, got "
                              f"{tuple(out['text_embeds'].shape)} and {tuple(out['time_ids'].shape)}")
    return {k: v.float() for k, v in out.items()}


def random_embeddings(family: str, backbone, seed: int = 0, tokens: int = 16) -> dict:
    """Fixed random embeddings of the backbone's shapes for the tiny variants (N(0,1), seeded)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    if family == "kolors":
        cfg = backbone.config
        pooled = backbone.add_embedding.linear_1.in_features - 6 * cfg.addition_time_embed_dim
        return {"prompt_embeds": torch.randn(1, tokens, cfg.encoder_hid_dim, generator=g),
                "text_embeds": torch.randn(1, pooled, generator=g),
                "time_ids": torch.tensor([list(KOLORS_TIME_IDS)], dtype=torch.float32)}
    return {"prompt_embeds": torch.randn(1, tokens, backbone.config.text_embed_dim, generator=g)}


def check_embeddings(family: str, emb: dict, backbone, where: str) -> dict:
    """The embeddings' widths must fit the backbone (Kolors: encoder_hid_dim and the add-embedding
    input; CogView4: text_embed_dim)."""
    cfg = backbone.config
    if family == "kolors":
        d_ok = emb["prompt_embeds"].shape[-1] == cfg.encoder_hid_dim
        pooled = backbone.add_embedding.linear_1.in_features - emb["time_ids"].shape[-1] * cfg.addition_time_embed_dim
        if not d_ok or emb["text_embeds"].shape[-1] != pooled:
            raise EmbeddingsError(
                f"{where}: prompt embeddings do not fit this UNet: prompt_embeds width "
                f"{emb['prompt_embeds'].shape[-1]} (UNet: {cfg.encoder_hid_dim}), text_embeds width "
                f"{emb['text_embeds'].shape[-1]} (UNet: {pooled}). Were they made with this base's text encoder?")
    elif emb["prompt_embeds"].shape[-1] != cfg.text_embed_dim:
        raise EmbeddingsError(f"{where}: prompt_embeds width {emb['prompt_embeds'].shape[-1]} does not fit the "
                              f"transformer's text_embed_dim {cfg.text_embed_dim}")
    return emb
