"""GLYPH-SR: SDXL + TS-ControlNet with OCR prompts and the ping-pong schedule.

From the paper "GLYPH-SR: Can We Achieve Both High-Quality Image Super-Resolution and
High-Fidelity Text Recovery via VLM-guided Latent Diffusion Model?" — no public code or weights,
so this is our implementation of what the paper describes (REFERENCE §5), with every open choice
named here and in the README:

Networks
- Base: an SDXL latent diffusion model in diffusers layout (``models.sr.diffusion.sdxl``; the paper
  uses Juggernaut-XL, the resolver looks for ``RunDiffusion/Juggernaut-XL-v9``; any SDXL folder
  works with ``base=PATH``). Frozen.
- SR-ControlNet: any SDXL ControlNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``),
  frozen. We recommend ``xinsir/controlnet-tile-sdxl-1.0`` (resolver default): a tile ControlNet
  trained to rebuild detail from blurred / downscaled versions of an image, which is what the LR
  condition of SR is; its layout is diffusers' (the exact file list was not verifiable offline).
- Text-ControlNet: a ControlNet of the UNet's shape, the only part ``textsr-train glyph-sr``
  trains (initialised from the UNet as diffusers' ``ControlNetModel.from_unet``, zero convolutions
  at zero). There are no published weights: ``glyph-sr`` needs a trained one (``weights=DIR``).
- Both branches see the bicubic-upsampled LR as their control image; residuals are mixed as
  ``models.sr.archs.ts_controlnet``: c(λ) = s_ctrl·[(1 − λ/2)·C_SR + (λ/2)·C_TXT] (λ = 1: the
  paper's s_ctrl/2·(C_SR + C_TXT); λ = 0: the SR branch alone — our choice).

Prompts (per image, recorded in ``last_conditions`` and so in evalkit's ``per_image.jsonl``)
- OCR (``ocr_engine``, default ``rapidocr-ppocrv4``) reads the bicubic-upsampled LR, as the glyph
  corpus does; lines scoring ≥ ``ocr_min_score`` (0.5) are verbalised by ``models.ocr.verbalise``
  ("HSBC is displayed at the center; …").
- Scene caption: ``caption="auto"`` (default) uses BLIP-base when its weights are found (no
  download), else the fixed ``caption_text`` ("A photograph.", the glyph corpus's generic caption);
  ``caption="blip-base"``/``"blip-large"`` requires the model; ``"fixed"`` always uses the text.
  The glyph corpus captions the text-free background (or falls back to the background's metadata);
  at inference there is no text-free image, so the captioner sees the upsampled LR — a train/test
  difference the paper does not resolve.
- Text-centric prompt = caption + " " + OCR prompt (the glyph corpus's ``guidance.prompt``); scene
  prompt = caption. Empty OCR: the text-centric prompt is the caption alone (recorded as
  ``guidance: "caption-only"``).

Embedding fusion and the ping-pong schedule
- The backbone and the SR branch read e(λ) = λ·E(text-centric) + (1 − λ)·E(scene) (prompt and
  pooled embeddings alike); the text branch always reads E(text-centric). So λ modulates both the
  embedding fusion and the residual injection (our reading of the paper's description).
- λ per sampling step: ``schedule="pingpong"`` (default) toggles 1, 0 every ``tau`` steps (τ = 1:
  1, 0, 1, 0 …; text-centric first, ``pingpong_start="scene"`` starts at 0); continuous ramps for
  comparison: ``"ramp-up"`` (0 → 1 linearly), ``"ramp-down"`` (1 → 0), ``"cosine"`` (0 → 1,
  half cosine), and constants ``"text"`` (λ ≡ 1), ``"scene"`` (λ ≡ 0).

Sampler: the EDM (Karras et al. 2022) formulation of SDXL's VP ε-model, D(x; σ) = x − σ·ε(x/√(σ²+1),
t(σ)), through diffusers: ``sampler="edm-euler"`` (default; ``EulerDiscreteScheduler``, EDM's
Algorithm 2 with ``s_churn``) or ``"edm-dpmpp-2m"`` (``DPMSolverMultistepScheduler``, DPM-Solver++(2M)),
on Karras σ's (ρ = 7, ``karras=True``) from the base's scheduler config. diffusers' ``EDM*Scheduler``
classes precondition for models *trained* in EDM form (c_noise = ¼·ln σ), which SDXL is not — hence
these. CFG: ε = ε_∅ + ω(ε_c − ε_∅) with the negative prompt (default empty: zeros, SDXL's
``force_zeros_for_empty_prompt``) for ε_∅; the ControlNet residuals are added in both halves.
Start: ``start_point="lr"`` (default) x_T = z_LR + σ_max·ε (the LR latent under the first σ),
``"noise"`` x_T = σ_init·ε. Defaults (ours): 30 steps, ω = 4.0, s_ctrl = 1.0, τ = 1.

Pre/post-processing as the diffusion ports: ``prepare_lr`` (bicubic ×scale, pad to 8), VAE tiled
and kept in float32 when its config says ``force_upcast`` (SDXL's VAE overflows in fp16), latent
tiles of 128 (SDXL's native 1024 px) with overlap 32 for larger images, colour fix towards the
bicubic input (AdaIN by default). fp16 on CUDA by default.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from models.sr.base import SRModel
from models.sr.checkpoint import CheckpointError
from models.weights import WeightsFolder

SR_CONTROLNET = WeightsFolder(
    "controlnet-tile-sdxl-1.0", hf_repo="xinsir/controlnet-tile-sdxl-1.0",
    required=("config.json", "diffusion_pytorch_model.safetensors"),
    allow_patterns=("config.json", "diffusion_pytorch_model.safetensors"))
SCHEDULES = ("pingpong", "ramp-up", "ramp-down", "cosine", "text", "scene")
SAMPLERS = ("edm-euler", "edm-dpmpp-2m")
CAPTIONS = ("auto", "fixed", "blip-base", "blip-large")
DEFAULT_CAPTION = "A photograph."
TEXT_CN_DIR = "text_controlnet"
SETTINGS_FILE = "glyph_sr.json"
CN_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


def needs():
    """Every file/folder the full model needs besides its trained Text-ControlNet (no public weights)."""
    from models.caption.blip import FOLDERS
    from models.sr.diffusion.sdxl import SDXL_BASE

    return {"glyph-sr": (SDXL_BASE, SR_CONTROLNET, FOLDERS["blip-base"])}


def lambda_schedule(steps: int, kind: str = "pingpong", tau: int = 1, start: str = "text") -> list[float]:
    """λ for each of ``steps`` sampling steps (see the module docstring).

    pingpong: λ_k = 1 when ⌊k/τ⌋ is even, else 0 (``start="scene"`` swaps them);
    ramp-up: k/(steps−1); ramp-down: 1 − k/(steps−1); cosine: (1 − cos(π·k/(steps−1)))/2;
    text: 1; scene: 0.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {kind!r}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if int(tau) < 1:
        raise ValueError(f"tau must be >= 1, got {tau}")
    if start not in ("text", "scene"):
        raise ValueError(f"pingpong_start must be 'text' or 'scene'; got {start!r}")
    n, tau = int(steps), int(tau)
    r = [k / (n - 1) if n > 1 else 1.0 for k in range(n)]
    if kind == "pingpong":
        first = 1.0 if start == "text" else 0.0
        return [first if (k // tau) % 2 == 0 else 1.0 - first for k in range(n)]
    if kind == "ramp-up":
        return r
    if kind == "ramp-down":
        return [1.0 - x for x in r]
    if kind == "cosine":
        return [(1 - math.cos(math.pi * x)) / 2 for x in r]
    return [1.0 if kind == "text" else 0.0] * n


# -- ControlNet folders ------------------------------------------------------------------------------
def load_controlnet(folder, what: str):
    """A diffusers ControlNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``),
    loaded strictly (every key present, none left over) in float32; CheckpointError naming the
    file and the keys at fault otherwise."""
    import torch
    from diffusers import ControlNetModel

    from models.sr.checkpoint import read_weights_file

    folder = Path(folder)
    missing = [f for f in CN_FILES if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"{what}: {folder} is not a diffusers ControlNet folder (missing "
                              f"{', '.join(missing)})")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{what}: {folder / 'config.json'} is not valid JSON ({e})") from None
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        net = ControlNetModel.from_config(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{what}: {folder / 'config.json'} does not describe a ControlNet ({e})") from None
    state = read_weights_file(folder / CN_FILES[1])
    own = net.state_dict()
    lost, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    bad = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if lost or extra or bad:
        raise CheckpointError(
            f"{what}: {folder / CN_FILES[1]} does not fit its config.json: "
            + "; ".join(s for s in (f"{len(lost)} missing (e.g. {lost[:3]})" if lost else "",
                                    f"{len(extra)} unexpected (e.g. {extra[:3]})" if extra else "",
                                    f"{len(bad)} of another shape (e.g. {bad[:3]})" if bad else "") if s))
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return net.eval().requires_grad_(False)


def check_fits(net, unet, what: str, where) -> None:
    """A ControlNet must match the UNet it steers: cross-attention width, channels, added conditioning."""
    for k in ("cross_attention_dim", "block_out_channels", "addition_embed_type",
              "projection_class_embeddings_input_dim", "in_channels"):
        a, b = net.config.get(k), unet.config.get(k)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            raise CheckpointError(f"{what} ({where}) does not fit the base UNet: {k} is {a}, the UNet has {b} "
                                  "(a ControlNet of another base model?)")


def find_text_controlnet(weights) -> Path:
    """The Text-ControlNet folder of ``weights``: ``DIR/text_controlnet/`` (what ``textsr-train
    glyph-sr`` writes in every ``checkpoint-<step>/``) or a bare ControlNet folder."""
    p = Path(weights).expanduser()
    for cand in (p / TEXT_CN_DIR, p):
        if (cand / CN_FILES[0]).is_file():
            return cand
    raise CheckpointError(f"glyph-sr weights {p}: no Text-ControlNet there (expected {p / TEXT_CN_DIR}/"
                          f"{{{','.join(CN_FILES)}}}, as `textsr-train glyph-sr` writes in each checkpoint-<step>/)")


def _randomise_zero_convs(net, seed: int):
    """Tiny random nets: the zero convolutions get small random weights so the branch matters."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "zero_conv" in name or "controlnet_down_blocks" in name or "controlnet_mid_block" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return net


def new_controlnet(unet, *, tiny: bool, seed: int = 0, from_unet: bool = True):
    """A ControlNet of ``unet``'s shape: diffusers' ``from_unet`` (weights copied, zero convs at
    zero) — or, ``tiny`` with ``from_unet=False``, random with random zero convs."""
    import torch
    from diffusers import ControlNetModel

    kw = {"conditioning_embedding_out_channels": (4, 8, 16, 16)} if tiny else {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = ControlNetModel.from_unet(unet, load_weights_from_unet=from_unet, **kw)
    if not from_unet:
        _randomise_zero_convs(net, seed)
    return net.eval().requires_grad_(False)


def write_tiny_base(path, seed: int = 0) -> Path:
    """A tiny random SDXL diffusers folder (``models.sr.diffusion.sdxl.write_tiny_base``)."""
    from models.sr.diffusion.sdxl import write_tiny_base as write

    return write(path, seed)


def write_tiny_sr_controlnet(path, seed: int = 1) -> Path:
    """A tiny random SDXL ControlNet (diffusers folder) for the tiny SDXL of ``seed`` 0."""
    from models.sr.diffusion.sdxl import tiny_sdxl

    net = new_controlnet(tiny_sdxl(0).unet, tiny=True, seed=seed, from_unet=False)
    net.save_pretrained(Path(path), safe_serialization=True)
    return Path(path)


# -- the model -----------------------------------------------------------------------------------------
class GlyphSR(SRModel):
    """GLYPH-SR behind the SR interface (see the module docstring).

    comps: ``SDXLComponents``; sr_controlnet / text_controlnet: diffusers ControlNetModels.
    ocr: an OCR engine (``readtext``) or None (no OCR: caption-only guidance, recorded);
    captioner: ``.caption(rgb uint8) -> str`` or None (the fixed ``caption_text``).
    Options: see :func:`build`.
    """

    records_conditions = True

    def __init__(self, comps, sr_controlnet, text_controlnet, *, name: str, scale: int = 4, device=None,
                 dtype=None, ocr=None, captioner=None, caption_text: str = DEFAULT_CAPTION,
                 ocr_min_score: float = 0.5, steps: int = 30, cfg: float = 4.0, s_ctrl: float = 1.0,
                 tau: int = 1, schedule: str = "pingpong", pingpong_start: str = "text",
                 sampler: str = "edm-euler", karras: bool = True, s_churn: float = 0.0,
                 negative_prompt: str = "", start_point: str = "lr", tile: int = 128, tile_overlap: int = 32,
                 vae_encoder_tile: int = 1024, vae_decoder_tile: int = 128, color_fix: str = "adain",
                 seed: int = 0, weights_info: dict | None = None):
        import torch

        from models.sr.archs.ts_controlnet import TSControlNet
        from models.sr.diffusion.base import resolve_dtype
        from models.sr.diffusion.colorfix import COLOR_FIXES

        self.name, self.scale = name, int(scale)
        if self.scale < 1:
            raise ValueError(f"{name}: scale must be a positive integer, got {scale}")
        for key, val, allowed in (("sampler", sampler, SAMPLERS), ("color_fix", color_fix, COLOR_FIXES),
                                  ("start_point", start_point, ("lr", "noise"))):
            if val not in allowed:
                raise ValueError(f"{name}: {key} must be one of {', '.join(allowed)}; got {val!r}")
        if tile > 0 and not 0 <= tile_overlap < tile:
            raise ValueError(f"{name}: tile_overlap ({tile_overlap}) must be in [0, tile={tile})")
        self.lambdas = lambda_schedule(steps, schedule, tau, pingpong_start)  # validates them
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(self.device, dtype, name)
        upcast = self.dtype == torch.float16 and bool(getattr(comps.vae.config, "force_upcast", False))
        self.vae_dtype = torch.float32 if upcast else self.dtype
        self.c = comps
        self.tsc = TSControlNet(sr_controlnet, text_controlnet)
        self._place()
        self.ocr, self.captioner, self.caption_text = ocr, captioner, caption_text
        self.ocr_min_score, self.steps, self.cfg, self.s_ctrl = float(ocr_min_score), int(steps), float(cfg), float(s_ctrl)
        self.tau, self.schedule, self.pingpong_start = int(tau), schedule, pingpong_start
        self.sampler, self.karras, self.s_churn = sampler, bool(karras), float(s_churn)
        self.negative_prompt, self.start_point = negative_prompt, start_point
        self.tile, self.tile_overlap = int(tile), int(tile_overlap)
        self.vae_encoder_tile, self.vae_decoder_tile = int(vae_encoder_tile), int(vae_decoder_tile)
        self.color_fix, self.seed = color_fix, int(seed)
        self.scaling_factor = float(comps.vae.config.scaling_factor)
        self.weights_info = dict(weights_info or {})
        from diffusers import DDPMScheduler

        sched = {k: v for k, v in comps.scheduler_config.items() if not k.startswith("_")}
        self.alphas_cumprod = DDPMScheduler.from_config(sched).alphas_cumprod.float().to(self.device)
        from models.cache import LRU
        from models.sr.diffusion.base import PROMPT_CACHE_SIZE

        self._prompt_cache = LRU(PROMPT_CACHE_SIZE)

    def _place(self):
        from diffusers.utils import logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # diffusers warns on every .to(dtype) of a model without fp32 modules
        try:
            for m in (self.c.unet, self.c.text_encoder, self.c.text_encoder_2, self.tsc):
                m.to(device=self.device, dtype=self.dtype)
            self.c.vae.to(device=self.device, dtype=self.vae_dtype)
        finally:
            dlog.set_verbosity(level)

    # -- what the trainer uses --------------------------------------------------------------------
    @property
    def unet(self):
        return self.c.unet

    @property
    def vae(self):
        return self.c.vae

    @property
    def sr_controlnet(self):
        return self.tsc.sr

    @property
    def text_controlnet(self):
        return self.tsc.text

    def frozen_modules(self) -> dict:
        return {**self.c.modules(), "sr_controlnet": self.tsc.sr}

    def trainable_parameters(self) -> list:
        return list(self.tsc.text.parameters())

    def set_train(self, train: bool = True):
        """Text-ControlNet in train mode with gradients; everything else eval and frozen."""
        for m in self.frozen_modules().values():
            m.eval().requires_grad_(False)
        self.tsc.text.train(train).requires_grad_(train)

    def settings(self) -> dict:
        return {"name": self.name, "scale": self.scale, "steps": self.steps, "cfg": self.cfg, "s_ctrl": self.s_ctrl,
                "schedule": self.schedule, "tau": self.tau, "pingpong_start": self.pingpong_start,
                "lambdas": self.lambdas, "sampler": self.sampler, "karras": self.karras, "s_churn": self.s_churn,
                "negative_prompt": self.negative_prompt, "start_point": self.start_point,
                "ocr_min_score": self.ocr_min_score, "color_fix": self.color_fix, "seed": self.seed,
                "dtype": str(self.dtype).removeprefix("torch."), "vae_dtype": str(self.vae_dtype).removeprefix("torch."),
                **self.weights_info}

    def save_text_controlnet(self, folder) -> Path:
        """Write the Text-ControlNet as ``folder/text_controlnet/`` (diffusers ControlNet folder:
        config.json + diffusion_pytorch_model.safetensors, float32) and ``folder/glyph_sr.json``
        (the model's settings: base, SR-ControlNet, sampler), which ``build(weights=folder)`` loads."""
        import torch

        from models.files import atomic_path, write_json_atomic

        folder = Path(folder)
        dest = folder / TEXT_CN_DIR
        net = self.tsc.text
        dest.mkdir(parents=True, exist_ok=True)
        net.save_config(dest)  # diffusers' own config.json (with _class_name), as save_pretrained writes it
        from safetensors.torch import save_file

        with atomic_path(dest / CN_FILES[1]) as tmp:
            save_file({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()},
                      str(tmp), metadata={"format": "pt"})
        write_json_atomic(folder / SETTINGS_FILE, {"format": 1, "model": self.name, **self.settings()})
        return dest

    # -- pieces ---------------------------------------------------------------------------------
    def encode_text(self, prompts: list[str]):
        """(N×77×D, N×P) SDXL embeddings of ``prompts`` (see ``sdxl.encode_prompt``), each distinct prompt
        encoded once and kept among the last ``PROMPT_CACHE_SIZE`` (OCR prompts differ per image)."""
        import torch

        from models.sr.diffusion.sdxl import encode_prompt

        got = {s: self._prompt_cache.get(s) for s in dict.fromkeys(prompts)}
        todo = [s for s, v in got.items() if v is None]
        if todo:
            with torch.no_grad():
                e, p = encode_prompt(self.c, todo, self.device, self.dtype)
            for i, s in enumerate(todo):
                got[s] = self._prompt_cache[s] = (e[i:i + 1], p[i:i + 1])
        return torch.cat([got[s][0] for s in prompts]), torch.cat([got[s][1] for s in prompts])

    def guidance(self, up) -> list[dict]:
        """Per image of ``up`` (N×3×H×W in [0, 1], the bicubic-upsampled LR): OCR lines, caption and
        the two prompts (see the module docstring) -> one record each."""
        import numpy as np

        from models.ocr.verbalise import read_prompt

        imgs = (up.float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
        out = []
        for im in imgs:
            im = np.ascontiguousarray(im)
            if self.captioner is not None:
                caption, how = self.captioner.caption(im), self.captioner.name
            else:
                caption, how = self.caption_text, "fixed"
            read = read_prompt(self.ocr, im, self.ocr_min_score) if self.ocr is not None else {"lines": [], "prompt": ""}
            text = " ".join(t for t in (caption, read["prompt"]) if t)
            out.append({"ocr": [{k: ln[k] for k in ("text", "score", "position")} for ln in read["lines"]],
                        "ocr_prompt": read["prompt"], "caption": caption, "caption_source": how,
                        "text_prompt": text, "scene_prompt": caption,
                        "guidance": "ocr+caption" if read["prompt"] else
                        ("caption-only (no OCR engine)" if self.ocr is None else "caption-only (OCR read nothing)")})
        return out

    def _moments(self, x):
        """x N×3×H×W in [-1, 1] -> the VAE posterior's (mean, std), float32 (tiled encoder)."""
        from models.sr.diffusion.tiling import split_moments, vae_encode

        return split_moments(vae_encode(self.vae, x.to(self.vae_dtype), self.vae_encoder_tile).float())

    def encode(self, x, generator):
        """x N×3×H×W in [-1, 1] -> sampled VAE latent × scaling factor (float32); ``generator``:
        one, or one per image (``models.sr.diffusion.base.randn``), on the model's device."""
        from models.sr.diffusion.base import randn

        mean, std = self._moments(x)
        return (mean + std * randn(mean.shape, generator, mean.device)) * self.scaling_factor

    def decode(self, z):
        from models.sr.diffusion.tiling import vae_decode

        return vae_decode(self.vae, (z / self.scaling_factor).to(self.vae_dtype), self.vae_decoder_tile).float().clamp(-1, 1)

    def _scheduler(self):
        from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler

        cfg = {k: v for k, v in self.c.scheduler_config.items() if not k.startswith("_")}
        if self.sampler == "edm-euler":
            return EulerDiscreteScheduler.from_config(cfg, use_karras_sigmas=self.karras)
        return DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=self.karras,
                                                       algorithm_type="dpmsolver++", solver_order=2)

    def _eps(self, z, t, cond, emb, pooled, text_emb, text_pooled, neg, neg_pooled, lam: float):
        """Guided ε of the model input ``z`` (N×4×h×w, scaled) at timestep ``t``, over latent tiles."""
        import torch

        from models.sr.diffusion.sdxl import time_ids
        from models.sr.diffusion.tiling import tiled_latent

        guided = self.cfg > 1.0
        if guided:  # [unconditional, conditional]: ε_∅ reads the negative prompt in every branch
            emb, pooled = torch.cat([neg, emb]), torch.cat([neg_pooled, pooled])
            text_emb, text_pooled = torch.cat([neg, text_emb]), torch.cat([neg_pooled, text_pooled])

        def run(zt, ct):
            if guided:
                zt, ct = torch.cat([zt, zt]), torch.cat([ct, ct])
            tid = time_ids(zt.shape[-2] * 8, zt.shape[-1] * 8, zt.shape[0], zt.device, self.dtype)
            down, mid = self.tsc(zt, t, ct, emb, pooled, text_emb, text_pooled, tid, lam, self.s_ctrl)
            eps = self.unet(zt, t, encoder_hidden_states=emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": tid},
                            down_block_additional_residuals=down, mid_block_additional_residual=mid,
                            return_dict=False)[0].float()
            if guided:
                eu, ec = eps.chunk(2)
                eps = eu + self.cfg * (ec - eu)
            return eps

        return tiled_latent(run, z.to(self.dtype), cond.to(self.dtype), tile=self.tile, overlap=self.tile_overlap)

    def sample(self, z_lr, noise, cond, text, scene, neg, generator=None):
        """The EDM sampling loop -> the clean latent (float32). ``text``/``scene``/``neg``:
        (embedding, pooled) pairs; λ from :attr:`lambdas`, fusing ``scene`` and ``text``."""
        sch = self._scheduler()
        sch.set_timesteps(self.steps, device=self.device)
        if self.start_point == "lr":
            lat = sch.add_noise(z_lr.float(), noise, sch.timesteps[:1].repeat(len(noise)))
        else:
            lat = noise * sch.init_noise_sigma
        kw = {"s_churn": self.s_churn, "generator": generator} if self.sampler == "edm-euler" else {}
        for lam, t in zip(self.lambdas, sch.timesteps):
            inp = sch.scale_model_input(lat, t)
            emb = text[0] if lam == 1 else scene[0] if lam == 0 else lam * text[0] + (1 - lam) * scene[0]
            pooled = text[1] if lam == 1 else scene[1] if lam == 0 else lam * text[1] + (1 - lam) * scene[1]
            eps = self._eps(inp, t, cond, emb, pooled, text[0], text[1], neg[0], neg[1], lam)
            lat = sch.step(eps, t, lat, return_dict=False, **kw)[0]
        return lat

    def _forward(self, batch):
        import torch

        from models.sr.diffusion.base import prepare_lr, randn
        from models.sr.diffusion.colorfix import color_fix

        n = batch.shape[0]
        lr = batch.to(self.device, torch.float32)
        _, up, x, _ = prepare_lr(lr, self.scale, 0, 8)
        records = self.guidance(up)
        with torch.inference_mode():
            text = self.encode_text([r["text_prompt"] for r in records])
            scene = self.encode_text([r["scene_prompt"] for r in records])
            neg = self.encode_text([self.negative_prompt] * n)
            # one generator per image, all seeded alike: an image's result does not depend on its batch
            gens = [torch.Generator(device=self.device).manual_seed(self.seed) for _ in range(n)]
            noise = randn((n, 4, x.shape[-2] // 8, x.shape[-1] // 8), gens, self.device)
            z_lr = self.encode(x * 2 - 1, gens) if self.start_point == "lr" else None
            z0 = self.sample(z_lr, noise, x, text, scene, neg, generator=gens[0])
            H, W = up.shape[-2:]
            y = (self.decode(z0) * 0.5 + 0.5)[:, :, :H, :W]
            y = color_fix(self.color_fix, y, up).float().clamp(0, 1)
        self.last_conditions = records
        return y

    # -- training ---------------------------------------------------------------------------------
    def training_loss(self, hr, cond, prompts: list[str], generator, drop=None, text_net=None) -> dict:
        """The denoising loss of the Text-ControlNet (λ = 1: both branches, the paper's c).

        hr: N×3×H×W float32 [0, 1] target (H, W multiples of 8); cond: N×3×H×W [0, 1] the degraded
        input at HR size (the control image); prompts: the text-centric prompts (the corpus's
        noisy LR-OCR prompt with caption); generator: a CPU torch.Generator for the VAE posterior,
        the timesteps t ~ U{0..T−1} and ε; drop: per image, True -> the empty (unconditional)
        prompt, for CFG; text_net: the module to call for the text branch (a DDP wrapper of
        ``text_controlnet`` under data-parallel training). -> {"loss", "mse"}: MSE(ε̂, ε)."""
        import torch
        import torch.nn.functional as F

        from models.sr.diffusion.sdxl import time_ids

        n = hr.shape[0]
        if drop is not None:
            prompts = ["" if d else p for p, d in zip(prompts, drop)]
        dev = self.device
        with torch.no_grad():  # frozen: text encoders and VAE; draws on the CPU generator (device-independent)
            emb, pooled = self.encode_text(list(prompts))
            mean, std = self._moments(hr.to(dev, torch.float32) * 2 - 1)
            z0 = (mean + std * torch.randn(mean.shape, generator=generator).to(dev)) * self.scaling_factor
        t = torch.randint(0, len(self.alphas_cumprod), (n,), generator=generator).to(dev)
        eps = torch.randn(z0.shape, generator=generator).to(dev)
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        zt = (a.sqrt() * z0 + (1 - a).sqrt() * eps).to(self.dtype)
        tid = time_ids(hr.shape[-2], hr.shape[-1], n, dev, self.dtype)
        c = cond.to(dev, self.dtype)
        down, mid = self.tsc(zt, t, c, emb, pooled, emb, pooled, tid, 1.0, self.s_ctrl, text_net=text_net)
        pred = self.unet(zt, t, encoder_hidden_states=emb, added_cond_kwargs={"text_embeds": pooled, "time_ids": tid},
                         down_block_additional_residuals=down, mid_block_additional_residual=mid,
                         return_dict=False)[0]
        mse = F.mse_loss(pred.float(), eps)
        return {"loss": mse, "mse": mse.detach()}



def _captioner(caption: str, *, tiny: bool, weights, allow_download, device):
    """-> (captioner or None, how it was chosen)."""
    from models.caption import create_captioner

    if caption not in CAPTIONS:
        raise ValueError(f"glyph-sr: caption must be one of {', '.join(CAPTIONS)}; got {caption!r}")
    if caption == "fixed":
        return None, "fixed caption_text"
    if caption == "auto":
        from models.caption.blip import FOLDERS
        from models.weights import WeightsMissingError, resolve_folder

        try:
            resolve_folder(FOLDERS["blip-base"], explicit=weights, allow_download=False)
        except WeightsMissingError:
            return None, "fixed caption_text (auto: BLIP-base weights not found)"
        caption = "blip-base"
    return create_captioner(caption, weights=weights, device=device, allow_download=allow_download), caption


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None, sr_controlnet=None,
          allow_download: bool | None = None, scale: int | None = None, ocr_engine: str | None = "rapidocr-ppocrv4",
          caption: str | None = None, caption_text: str = DEFAULT_CAPTION, caption_weights=None,
          train: bool = False, seed_nets: int = 0, **options):
    """GLYPH-SR behind the SR interface (``glyph-sr``; ``tiny``: the tiny random SDXL).

    weights:       the trained Text-ControlNet: a ``textsr-train glyph-sr`` checkpoint directory
                   (``DIR/text_controlnet/``) or a bare ControlNet folder. Required for the full
                   model unless ``train`` (then it starts as diffusers' ``from_unet`` copy); tiny:
                   random unless given.
    base:          an SDXL diffusers folder (default: the resolver, ``RunDiffusion/Juggernaut-XL-v9``;
                   tiny: the tiny random SDXL).
    sr_controlnet: an SDXL ControlNet folder (default: the resolver, ``xinsir/controlnet-tile-sdxl-1.0``;
                   tiny: a random one).
    ocr_engine:    OCR of the LR for the prompts (None or "none": caption-only guidance).
    caption:       "auto" (full default) | "fixed" (tiny default) | "blip-base" | "blip-large";
                   caption_text: the fixed caption; caption_weights: a BLIP folder.
    options:       steps (30; tiny 4), cfg (4.0), s_ctrl (1.0), tau (1), schedule ("pingpong"),
                   pingpong_start ("text"), sampler ("edm-euler" | "edm-dpmpp-2m"), karras (True),
                   s_churn (0), negative_prompt (""), start_point ("lr"), ocr_min_score (0.5),
                   tile (128 latent px; 0 = never), tile_overlap (32), vae_encoder_tile (1024),
                   vae_decoder_tile (128), color_fix ("adain"), seed (0).
    """
    if name != "glyph-sr":
        raise KeyError(f"unknown GLYPH-SR model {name!r}")
    import torch

    from models.sr.diffusion.base import resolve_dtype
    from models.sr.diffusion.sdxl import SDXL_BASE, load_sdxl, tiny_sdxl
    from models.weights import resolve_folder

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    resolve_dtype(dev, dtype, name)  # refuse fp16 on CPU before loading anything
    if base is not None or not tiny:
        comps = load_sdxl(resolve_folder(SDXL_BASE, explicit=base, allow_download=allow_download))
    else:
        comps = tiny_sdxl(seed_nets)
    info = {"base": comps.source}
    if sr_controlnet is not None or not tiny:
        folder = resolve_folder(SR_CONTROLNET, explicit=sr_controlnet, allow_download=allow_download)
        sr_cn = load_controlnet(folder, "glyph-sr SR-ControlNet")
        info["sr_controlnet"] = str(folder)
    else:
        sr_cn = new_controlnet(comps.unet, tiny=True, seed=seed_nets + 1, from_unet=False)
        info["sr_controlnet"] = f"tiny random ControlNet (seed {seed_nets + 1})"
    check_fits(sr_cn, comps.unet, "the SR-ControlNet", info["sr_controlnet"])
    if weights is not None:
        folder = find_text_controlnet(weights)
        text_cn = load_controlnet(folder, "glyph-sr Text-ControlNet")
        info["text_controlnet"] = str(folder)
        trained = folder.parent / SETTINGS_FILE
        if trained.is_file():
            info["trained_with"] = {k: v for k, v in json.loads(trained.read_text()).items()
                                    if k in ("model", "base", "sr_controlnet")}
    elif tiny:
        text_cn = new_controlnet(comps.unet, tiny=True, seed=seed_nets + 2, from_unet=False)
        info["text_controlnet"] = f"tiny random ControlNet (seed {seed_nets + 2})"
    elif train:
        text_cn = new_controlnet(comps.unet, tiny=False, from_unet=True)
        info["text_controlnet"] = "initialised from the base UNet (ControlNetModel.from_unet)"
    else:
        raise CheckpointError(
            "glyph-sr: no Text-ControlNet weights (GLYPH-SR publishes none). Train one with `textsr-train "
            "glyph-sr --model glyph-sr --data <glyph corpus> --out DIR --max-steps N` and pass "
            "--model-opt weights=DIR/checkpoint-N (Python: weights=...)")
    check_fits(text_cn, comps.unet, "the Text-ControlNet", info["text_controlnet"])
    ocr = None
    if ocr_engine not in (None, "none"):
        from models.ocr import create_ocr

        ocr = create_ocr(ocr_engine)
    info["ocr_engine"] = ocr_engine or "none"
    captioner, how = _captioner(caption or ("fixed" if tiny else "auto"), tiny=tiny, weights=caption_weights,
                                allow_download=allow_download, device=dev)
    info["caption"] = how
    if tiny:
        options.setdefault("steps", 4)  # the tiny variant is for tests and dry runs
    return GlyphSR(comps, sr_cn, text_cn, name=name + ("-tiny" if tiny else ""), scale=4 if scale is None else scale,
                   device=dev, dtype=dtype, ocr=ocr, captioner=captioner, caption_text=caption_text,
                   weights_info=info, **options)
