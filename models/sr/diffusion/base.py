"""``DiffusionSR``: the procedure every one-step SD-based SR method shares.

upscale(batch): LR N×3×h×w in [0, 1] -> (optional pre-enlargement to ``process_size``) ->
bicubic ×scale -> reflect-pad to a multiple of 8 -> [-1, 1] -> VAE encode (tiled; the posterior
is *sampled*, with a generator seeded by ``seed`` at every call, as the official code samples) ×
scaling factor -> ``denoise`` (the method's latent step; UNet over latent tiles) -> ÷ scaling
factor -> VAE decode (tiled) -> clamp [-1, 1] -> [0, 1] -> crop -> colour fix towards the
bicubic input -> (resize back when pre-enlarged) -> N×3×(s·h)×(s·w) float32 in [0, 1].

Differences from the official scripts, all deliberate: images are padded to a multiple of 8 and
cropped back (the scripts resize to a multiple of 8 with Lanczos, changing the scale slightly);
bicubic is torch's (a = −0.75) where the scripts use PIL's (a = −0.5); colour fix runs on floats,
not on 8-bit PIL images; when ``process_size`` enlarges a small input the output is resized back
to s× the input (the scripts compute that resize and drop it).
"""
from __future__ import annotations

from dataclasses import dataclass

from models.cache import LRU
from models.sr.base import SRModel

PROMPT_CACHE_SIZE = 256  # prompt embeddings kept in memory (N×77×D each)


@dataclass
class StepContext:
    """What a method's ``denoise`` may need besides the latent: the original LR (N×3×h×w, [0, 1]),
    the padded bicubic input the VAE saw (N×3×H×W, [0, 1]), and the seeded generators of this call
    (one per image; draw with :func:`randn`)."""

    lr: object
    x_up: object
    generator: object


def randn(shape, generator, device, dtype=None):
    """Standard normal noise of ``shape`` (N first). ``generator``: one torch.Generator, or a list
    of one per image — then image i's noise comes from generator i alone, so an image's result does
    not depend on the batch it came in (the official scripts run one image at a time)."""
    import torch

    dtype = dtype or torch.float32
    if isinstance(generator, (list, tuple)):
        return torch.cat([torch.randn((1, *shape[1:]), generator=g, device=device, dtype=dtype) for g in generator])
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def prepare_lr(lr, scale: int, process_size: int, multiple: int):
    """LR N×3×h×w float32 in [0, 1] -> (lr, possibly enlarged so its short side reaches
    ``process_size`` at ×scale (the official --process_size, bicubic); up = bicubic ×scale, N×3×H×W
    in [0, 1]; x = up reflect-padded on the bottom/right to multiples of ``multiple`` (8: the VAE;
    VOSR: 8·patch); whether it was enlarged). The diffusion ports' one input preparation."""
    import torch.nn.functional as F

    h, w = lr.shape[-2:]
    s = scale
    enlarge = process_size > 0 and min(h, w) * s < process_size
    if enlarge:
        r = (process_size // s) / min(h, w)
        lr = F.interpolate(lr, size=(int(r * h), int(r * w)), mode="bicubic", align_corners=False).clamp(0, 1)
    up = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1) if s > 1 else lr
    H, W = up.shape[-2:]
    ph, pw = (-H) % multiple, (-W) % multiple
    x = F.pad(up, (0, pw, 0, ph), mode="reflect" if ph < H and pw < W else "replicate") if ph or pw else up
    return lr, up, x, enlarge


def resolve_dtype(device, dtype, who: str):
    """fp16 on CUDA and fp32 on CPU by default; 'fp16'/'fp32'/'bf16' strings accepted; fp16 on CPU refused."""
    import torch

    if isinstance(dtype, str):
        table = {"fp16": torch.float16, "float16": torch.float16, "fp32": torch.float32,
                 "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
        if dtype not in table:
            raise ValueError(f"{who}: dtype must be one of {', '.join(table)}; got {dtype!r}")
        dtype = table[dtype]
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError(f"{who}: fp16 is not supported on CPU; use dtype='fp32' or a CUDA device")
    return dtype


def _to(components, device, dtype):
    """Move the networks to device/dtype (diffusers warns on every ``.to(dtype)`` of a model that
    keeps no module in float32 — SD keeps none — so that warning is silenced here)."""
    from diffusers.utils import logging as dlog

    level = dlog.get_verbosity()
    dlog.set_verbosity_error()
    try:
        for m in (components.unet, components.vae, components.text_encoder):
            if m is not None:
                m.to(device=device, dtype=dtype).eval().requires_grad_(False)
    finally:
        dlog.set_verbosity(level)


class DiffusionSR(SRModel):
    """Base of the one-step SD SR methods (OSEDiff, PiSA-SR, CODSR). Subclasses implement
    :meth:`denoise` (latent in, denoised latent out) and call :meth:`run_unet_tiled` inside it.

    components: ``SDComponents`` (unet, vae, text_encoder, tokenizer, scheduler_config), with the
                method's LoRA already loaded (in float32; moved to ``device``/``dtype`` here).
    prompt:     a ``PromptSource`` (see ``prompts.make_prompt_source``).
    tile, tile_overlap: latent tiling of the UNet (latent px; 0 = never tile).
    vae_encoder_tile (px), vae_decoder_tile (latent px): VAE tiling (0 = never tile).
    color_fix:  "adain" | "wavelet" | "none".
    process_size: inputs whose short side × scale is below this are first enlarged so it is
                (the official ``--process_size``, 512); 0 turns that off.
    seed:       seeds the VAE posterior sample (and any method noise) at every call.
    """

    tile_row_shift = 0.0  # the official tile weights' row-centre offset (0.5: OSEDiff's, see tiling)

    def __init__(self, components, *, name: str, scale: int = 4, device=None, dtype=None, prompt=None,
                 tile: int = 96, tile_overlap: int = 32, vae_encoder_tile: int = 1024,
                 vae_decoder_tile: int = 224, color_fix: str = "adain", process_size: int = 512,
                 seed: int = 0, weights_info: dict | None = None):
        import torch

        from models.sr.diffusion.colorfix import COLOR_FIXES
        from models.sr.diffusion.prompts import FixedPrompt

        if color_fix not in COLOR_FIXES:
            raise ValueError(f"{name}: color_fix must be one of {', '.join(COLOR_FIXES)}; got {color_fix!r}")
        if int(scale) < 1:
            raise ValueError(f"{name}: scale must be a positive integer, got {scale}")
        if tile > 0 and not 0 <= tile_overlap < tile:
            raise ValueError(f"{name}: tile_overlap ({tile_overlap}) must be in [0, tile={tile})")
        self.name, self.scale = name, int(scale)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(self.device, dtype, name)
        self.c = components
        self.prompt = prompt if prompt is not None else FixedPrompt("")
        self.tile, self.tile_overlap = int(tile), int(tile_overlap)
        self.vae_encoder_tile, self.vae_decoder_tile = int(vae_encoder_tile), int(vae_decoder_tile)
        self.color_fix, self.process_size, self.seed = color_fix, int(process_size), int(seed)
        self.weights_info = dict(weights_info or {})
        _to(components, self.device, self.dtype)
        self.alphas_cumprod = components.alphas_cumprod().to(self.device)
        self.prediction_type = components.scheduler_config.get("prediction_type", "epsilon")
        self.scaling_factor = float(components.vae.config.scaling_factor)
        # per-image prompts (DAPE tags) would grow without bound over a long run
        self._prompt_cache = LRU(PROMPT_CACHE_SIZE)

    # -- pieces a method uses -------------------------------------------------------------------
    @property
    def unet(self):
        return self.c.unet

    @property
    def vae(self):
        return self.c.vae

    def encode_prompts(self, prompts: list[str]):
        """N×77×D prompt embeddings (CLIP last hidden state, as the official ``encode_prompt``),
        each distinct prompt encoded once and kept among the last :data:`PROMPT_CACHE_SIZE`."""
        import torch

        out = []
        for p in prompts:
            emb = self._prompt_cache.get(p)
            if emb is None:
                tok = self.c.tokenizer
                ids = tok(p, max_length=tok.model_max_length, padding="max_length", truncation=True,
                          return_tensors="pt").input_ids.to(self.device)
                with torch.inference_mode():
                    emb = self.c.text_encoder(ids)[0].to(self.dtype)
                self._prompt_cache[p] = emb
            out.append(emb)
        return torch.cat(out, 0)

    def encode(self, x, generator):
        """x N×3×H×W in [-1, 1] (H, W multiples of 8) -> sampled latent × scaling factor, N×4×H/8×W/8.
        ``generator``: one, or a list of one per image (see :func:`randn`)."""
        from models.sr.diffusion.tiling import split_moments, vae_encode

        moments = vae_encode(self.vae, x.to(self.dtype), self.vae_encoder_tile)
        mean, std = split_moments(moments.float())
        eps = randn(mean.shape, generator, mean.device)
        return ((mean + std * eps) * self.scaling_factor).to(self.dtype)

    def decode(self, z):
        """Latent (× scaling factor) N×4×h×w -> image N×3×8h×8w in [-1, 1] (float32)."""
        from models.sr.diffusion.tiling import vae_decode

        return vae_decode(self.vae, (z / self.scaling_factor).to(self.dtype), self.vae_decoder_tile).float().clamp(-1, 1)

    def alpha_bar(self, t: int):
        return self.alphas_cumprod[int(t)]

    def predict_x0(self, model_out, sample, t: int):
        """The clean latent from the UNet output at timestep ``t`` (epsilon, v or sample prediction,
        per the scheduler config): what diffusers' ``DDPMScheduler.step`` returns as
        ``prev_sample`` when ``set_timesteps(1)`` makes the previous timestep −1 (ᾱ_prev = 1:
        its x0 coefficient is 1, the sample's 0, the added variance 1e-10·ε)."""
        a = self.alpha_bar(t).float()
        s, m = sample.float(), model_out.float()
        if self.prediction_type == "epsilon":
            x0 = (s - (1 - a).sqrt() * m) / a.sqrt()
        elif self.prediction_type == "v_prediction":
            x0 = a.sqrt() * s - (1 - a).sqrt() * m
        elif self.prediction_type == "sample":
            x0 = m
        else:
            raise ValueError(f"{self.name}: unsupported prediction_type {self.prediction_type!r}")
        return x0.to(sample.dtype)

    def run_unet_tiled(self, fn, z, *cond):
        """``fn(z_tile, *cond_tiles)`` over latent tiles (see ``tiling.tiled_latent``), in ``self.dtype``."""
        from models.sr.diffusion.tiling import tiled_latent

        return tiled_latent(fn, z, *cond, tile=self.tile, overlap=self.tile_overlap,
                            row_shift=self.tile_row_shift).to(self.dtype)

    def make_generator(self):
        import torch

        return torch.Generator(device=self.device).manual_seed(self.seed)

    def denoise(self, z, prompt_embeds, ctx: StepContext):  # pragma: no cover - abstract
        """The method's latent step: z (N×4×h×w, × scaling factor, ``self.dtype``) -> denoised latent."""
        raise NotImplementedError

    # -- the procedure ----------------------------------------------------------------------------
    def _prepare(self, lr):
        return prepare_lr(lr, self.scale, self.process_size, 8)

    def _finish(self, z0, up, out_hw: tuple[int, int], enlarged: bool):
        """Denoised latent -> decoded, cropped to ``up``'s size, colour-fixed towards ``up``, and
        resized back to ``out_hw`` when the input was enlarged -> float32 in [0, 1]."""
        import torch.nn.functional as F

        from models.sr.diffusion.colorfix import color_fix

        H, W = up.shape[-2:]
        y = (self.decode(z0.to(self.dtype)) * 0.5 + 0.5)[:, :, :H, :W]
        y = color_fix(self.color_fix, y, up)
        if enlarged:
            y = F.interpolate(y, size=out_hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        return y.float()

    def _forward(self, batch):
        import torch

        h, w = batch.shape[-2:]
        lr, up, x, enlarged = self._prepare(batch.to(self.device, torch.float32))
        with torch.inference_mode():
            emb = self.encode_prompts(self.prompt(x))
            # one generator per image, all seeded alike: the batch does not change an image's result
            g = [self.make_generator() for _ in range(len(x))]
            z = self.encode(x * 2 - 1, g)
            z0 = self.denoise(z, emb, StepContext(lr=lr, x_up=x, generator=g))
            return self._finish(z0, up, (h * self.scale, w * self.scale), enlarged)
