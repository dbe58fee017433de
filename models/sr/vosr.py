"""VOSR (Wu et al., "VOSR: A Vision-Only Generative Model for Image Super-Resolution", CVPR 2026;
github.com/cswry/VOSR @ 25fbf8e, Apache-2.0): a flow-matching LightningDiT in a VAE latent, conditioned on
the LR latent (channel concat) and on DINOv2 features of the LR (cross-attention), no text.

Models: ``vosr-0.5b`` / ``vosr-0.5b-onestep`` (SD-2.1 VAE encoder, 4 channels, decoded by the
half-width ``sd21_lwdecoder.pth``; DINOv2 ViT-B/14, block 8) and ``vosr-1.4b`` /
``vosr-1.4b-onestep`` (the 16-channel Qwen-Image VAE, 2-D variant; DINOv2 ViT-L/14, block 17);
each with ``-tiny``.

Inference as ``inference_vosr.py`` / ``inference_vosr_onestep.py``: the LR image is bicubic-upscaled
×scale, mapped to [-1, 1] and VAE-encoded (posterior *sampled*); latent normalisation is the
codec's (SD: × scaling factor 0.18215; Qwen: (z − latents_mean)/latents_std). DINOv2 sees the same
image (÷2+0.5, bicubic-resized to ``dinov2_size`` 448², clipped, ImageNet-normalised); the tokens
of block ``layer_dinov2b_list[0]`` (pre-final-norm, cls dropped; the final norm's output when it
is the last block) condition the DiT. Noise z₁ ~ N(0, I); t runs 1 -> 0 on a linear grid:

* multi-step (``vosr.py: sample_multistep_fm``, 25 steps): v = v_weak + cfg·(v_cond − v_weak), where
  the "weak" branch — VOSR's restoration-oriented partial conditioning, in place of an empty
  prompt — sees the LR latent scaled by the weak strength w (``interp_type`` 'lin' or 'sph' give
  the same w·lq, the other end being zeros) and all-zero DINOv2 tokens; z ← z − Δt·v.
  Defaults as the official run resolves them: ``cfg_scale`` 2.0 (the CLI default, which overrides
  args.json's −0.5; the README's benchmark presets are −0.5 on RealSR, 0.5 on ScreenSR) and w =
  the midpoint of args.json's ``weak_cond_strength_aelq_list`` (0.15) — the sampler reads that
  list, not the ``--weak_cond_strength_aelq`` flag (0.10, used only in the output folder name).
* one-step (``sample_onestep``, 1 step): u = DiT(lq ‖ z, t, r = t_next, z_dino); z ← z − (t − r)·u.

Decode (SD: light decoder on z/0.18215; Qwen: its decoder on z·std + mean), clamp [-1, 1] ->
[0, 1], AdaIN colour fix towards the bicubic input (the official ``--align_method adain``).
Latent tiling (``tile_size``/``tile_overlap`` px; official defaults 0 = off and overlap 4 for
multi-step, overlap 32 for one-step; here one-step defaults to 512/32): latent tile =
(tile//8//p)·p, overlap max(overlap//8, tile/8), both capped by the latent; the LR latent and the
noise are whole-image, every flow step runs the DiT per tile (with the tile's own DINOv2 features,
computed from the tile's LR pixels) and blends the velocities with Gaussian weights (σ = 0.1·tile);
the overlap is rounded up so the stride is whole patches (a no-op for the official settings).

Checkpoints: a folder with ``args.json`` (the training arguments; the architecture and the sampling
constants come from it: resolution, patch_size, dim, depth, num_heads, mlp_ratio, use_qknorm,
use_swiglu, use_rope, use_rmsnorm, enc_type, enc_dim, encdim_ratio, layer_dinov2b_list, ae_type,
dinov2_size, weak_cond_strength_aelq_list, t_start, t_end) — looked for in the folder and up to 4
parents, as the official ``load_config_with_cli`` — and ``ema_model.safetensors`` (else
``model.safetensors``) in ``clean_weights/``, ``checkpoints/`` or the folder itself (the official
search order). Loaded strictly: every key placed, any missing, unexpected or misshapen key a
:class:`CheckpointError` naming the file and keys. The official loader uses ``strict=False``;
``weights_info["official_strict_false_ignores"]`` records what it would have ignored (nothing
for a file that loads here), and the RoPE buffers ``feat_rope.freqs_{cos,sin}`` — a function of
the configuration, recomputed — may be absent.

Components through the weights resolver (``needs()``): the checkpoint folder (HF ``CSWRY/VOSR``,
the README's ``preset/ckpts`` layout: ``$TEXTSR_WEIGHTS/VOSR/VOSR_0.5B_ms/args.json``),
``sd21_lwdecoder.pth`` (same repo; a torch dict ``{"config", "model_state_dict"}``), the SD-2.1
VAE (``SD21_BASE``, only ``vae/`` is used) and DINOv2 as transformers' ``Dinov2Model`` from
``facebook/dinov2-base``/``-large`` — the same weights as the torch-hub ``dinov2_vitb14``/
``vitl14`` the official code loads (HF's conversion of those checkpoints). One difference is
repaired: the hub resamples the 37×37 position embeddings with ``scale_factor=(g + 0.1)/37``,
transformers with ``size=g``, which samples slightly different positions; the hub's rule is
substituted here, so the features are the hub's.

Deliberate differences: the LR is upscaled with torch's bicubic (a = −0.75; PIL's is −0.5),
reflect-padded to a multiple of 8·patch and cropped back (the official code needs multiples and,
untiled, a square image: its ``forward_flexible`` asserts h = w — here the RoPE is per axis);
noise is drawn from per-image generators seeded by ``seed`` (official: one global seed 42);
colour fix on floats, not 8-bit PIL images; the official ``--process_size 512`` is parsed and
never read there, so ``process_size`` here defaults to 0 (off) and, when set, enlarges small
inputs as the other ports do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from models.sr.base import SRModel
from models.sr.checkpoint import CheckpointError, check_keys
from models.weights import WeightsFile, WeightsFolder

HF_REPO = "CSWRY/VOSR"
LWDECODER = WeightsFile("sd21_lwdecoder.pth", hf_repo=HF_REPO)
DINOV2 = {
    "dinov2b": WeightsFolder("dinov2-base", hf_repo="facebook/dinov2-base", required=("config.json", "model.safetensors")),
    "dinov2l": WeightsFolder("dinov2-large", hf_repo="facebook/dinov2-large", required=("config.json", "model.safetensors")),
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Variant:
    folder: str        # sub-folder of the HF repo / preset/ckpts
    onestep: bool
    ae_type: str


MODELS = {
    "vosr-0.5b": Variant("VOSR_0.5B_ms", False, "sd2"),
    "vosr-1.4b": Variant("VOSR_1.4B_ms", False, "qwen"),
    "vosr-0.5b-onestep": Variant("VOSR_0.5B_os", True, "sd2"),
    "vosr-1.4b-onestep": Variant("VOSR_1.4B_os", True, "qwen"),
}


def checkpoint_folder(variant: Variant) -> WeightsFolder:
    """The HF repo snapshot (``$TEXTSR_WEIGHTS/VOSR`` = the official ``preset/ckpts``) holding the
    model's folder with its ``args.json``."""
    return WeightsFolder("VOSR", hf_repo=HF_REPO, required=(f"{variant.folder}/args.json",),
                         allow_patterns=(f"{variant.folder}/*", f"{variant.folder}/**"))


def needs():
    """Every file/folder each full model needs, with its source."""
    from models.sr.diffusion.components import SD21_BASE

    out = {}
    for name, v in MODELS.items():
        enc = DINOV2["dinov2b" if v.ae_type == "sd2" else "dinov2l"]
        if v.ae_type == "sd2":
            out[name] = (checkpoint_folder(v), enc, SD21_BASE, LWDECODER)
        else:
            from models.sr.archs.qwenimage_vae2d import QWEN_VAE2D

            out[name] = (checkpoint_folder(v), enc, QWEN_VAE2D)
    return out


# -- args.json ------------------------------------------------------------------------------------
ARCH_KEYS = ("resolution", "patch_size", "dim", "depth", "num_heads", "mlp_ratio", "use_qknorm", "use_swiglu",
             "use_rope", "use_rmsnorm", "enc_type", "enc_dim", "encdim_ratio", "layer_dinov2b_list", "ae_type",
             "dinov2_size")
# read with these defaults when absent (the official getattr defaults / its configs)
SAMPLING_DEFAULTS = {"weak_cond_strength_aelq_list": [0.05, 0.25], "t_start": 0.0, "t_end": 1.0}
ENC_TYPES = {"dinov2b": 768, "dinov2l": 1024}
AE_CHANNELS = {"sd2": 4, "qwen": 16}


def find_args_json(folder: Path) -> Path:
    cur = Path(folder).resolve()
    for _ in range(5):
        if (cur / "args.json").is_file():
            return cur / "args.json"
        cur = cur.parent
    raise CheckpointError(f"{folder}: no args.json in the folder or its 4 parents; a VOSR checkpoint folder "
                          "holds the training args.json beside its safetensors (as released on HF CSWRY/VOSR)")


def read_args(folder: Path) -> tuple[dict, Path]:
    """The args.json a checkpoint folder uses, checked: every architecture key present and valid."""
    path = find_args_json(folder)
    try:
        args = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not readable JSON ({e})") from None
    if not isinstance(args, dict):
        raise CheckpointError(f"{path}: expected a JSON object of training arguments")
    missing = [k for k in ARCH_KEYS if k not in args]
    if missing:
        raise CheckpointError(f"{path}: missing {', '.join(missing)} (the official inference reads them to build "
                              "the network); is it a VOSR args.json?")
    if args["enc_type"] not in ENC_TYPES:
        raise CheckpointError(f"{path}: enc_type {args['enc_type']!r} is not one of {', '.join(ENC_TYPES)}")
    if args["ae_type"] not in AE_CHANNELS:
        raise CheckpointError(f"{path}: ae_type {args['ae_type']!r} is not one of {', '.join(AE_CHANNELS)}")
    if not isinstance(args["layer_dinov2b_list"], list) or not args["layer_dinov2b_list"]:
        raise CheckpointError(f"{path}: layer_dinov2b_list must be a non-empty list of DINOv2 block indices")
    for k, v in SAMPLING_DEFAULTS.items():
        args.setdefault(k, v)
    return args, path


def find_weights(folder: Path) -> Path:
    folder = Path(folder)
    dirs = [folder / "clean_weights", folder / "checkpoints", folder]
    for d in dirs:
        for n in ("ema_model.safetensors", "model.safetensors"):
            if (d / n).is_file():
                return d / n
    raise CheckpointError(f"{folder}: no ema_model.safetensors or model.safetensors in "
                          f"{', '.join(str(d) for d in dirs)}")


def dit_from_args(args: dict, onestep: bool, tiny_init_seed: int | None = None):
    """The official ``LightningDiT(...)`` call of the inference scripts, from args.json."""
    import torch

    from models.sr.archs.vosr_arch import LightningDiT

    c = AE_CHANNELS[args["ae_type"]]
    kw = dict(input_size=args["resolution"] // 8, patch_size=args["patch_size"], in_channels=2 * c, out_channels=c,
              hidden_size=args["dim"], depth=args["depth"], num_heads=args["num_heads"], mlp_ratio=args["mlp_ratio"],
              z_dims=args["enc_dim"], encdim_ratio=args["encdim_ratio"], auxiliary_time_cond=onestep,
              use_qknorm=args["use_qknorm"], use_swiglu=args["use_swiglu"], use_rope=args["use_rope"],
              use_rmsnorm=args["use_rmsnorm"])
    if tiny_init_seed is None:
        return LightningDiT(**kw)
    with torch.random.fork_rng():
        torch.manual_seed(tiny_init_seed)
        net = LightningDiT(**kw)
        for n, p in net.named_parameters():  # random, not the official zero-init output layer: outputs vary
            if p.ndim >= 2 or "bias" in n:
                torch.nn.init.normal_(p, std=0.1)
    return net


ROPE_KEYS = ("feat_rope.freqs_cos", "feat_rope.freqs_sin")


def load_dit(net, path: Path) -> dict:
    """Load the safetensors file strictly into ``net``; returns a record."""
    from models.files import sha256_file
    from models.sr.checkpoint import read_weights_file

    sd = read_weights_file(Path(path))
    own = net.state_dict()
    recomputed = [k for k in ROPE_KEYS if k in own and k not in sd]
    for k in recomputed:
        sd[k] = own[k]
    check_keys(own, sd, f"{path} does not fit the LightningDiT its args.json describes",
               "Is it the checkpoint of this model (multi-step vs one-step, 0.5B vs 1.4B)?")
    net.load_state_dict(sd, strict=True)
    return {"path": str(path), "sha256": sha256_file(path), "official_strict_false_ignores": [],
            "recomputed": recomputed}


# -- latent codecs ----------------------------------------------------------------------------------
class SD2Codec:
    """SD-2.1 VAE encoder (posterior sampled, × scaling factor) + the light decoder on z ÷ scaling factor."""

    channels = 4

    def __init__(self, vae, decoder):
        self.vae, self.decoder = vae, decoder
        self.scaling_factor = float(vae.config.scaling_factor)

    def modules(self):
        return [self.vae, self.decoder]

    def encode(self, x, generator):
        """x N×3×H×W in [-1, 1] -> normalised latent N×4×H/8×W/8 (float32)."""
        from models.sr.diffusion.base import randn
        from models.sr.diffusion.tiling import split_moments

        dtype = next(self.vae.parameters()).dtype
        mean, std = split_moments(self.vae.encode(x.to(dtype)).latent_dist.parameters.float())
        return (mean + std * randn(mean.shape, generator, mean.device)) * self.scaling_factor

    def decode(self, z):
        dtype = next(self.decoder.parameters()).dtype
        return self.decoder((z / self.scaling_factor).to(dtype)).float().clamp(-1, 1)


class QwenCodec:
    """The Qwen-Image 2-D VAE (``models.sr.archs.qwenimage_vae2d.QwenImageVAE2D``): the DiT's latent
    is (posterior sample − latents_mean) / latents_std (the VAE's ``normalize_latent``; the
    official ``_encode_latent``); decode inverts it (``_decode_latent``) and clamps."""

    channels = 16

    def __init__(self, vae):
        self.vae = vae

    def modules(self):
        return [self.vae]

    def encode(self, x, generator):
        dtype = next(self.vae.parameters()).dtype
        z = self.vae.encode(x.to(dtype), generator)  # the official latent_dist.sample(), seeded here
        return self.vae.normalize_latent(z.float())

    def decode(self, z):
        dtype = next(self.vae.parameters()).dtype
        return self.vae.decode(self.vae.denormalize_latent(z.float()).to(dtype)).float().clamp(-1, 1)


# -- DINOv2 ---------------------------------------------------------------------------------------
def hub_pos_interpolation(embeddings_module):
    """Replace transformers' position-embedding resampling by the torch-hub DINOv2 rule
    (``scale_factor = (g + 0.1)/M``, bicubic, no antialias) on ``Dinov2Embeddings``."""
    import types

    import torch
    import torch.nn.functional as F

    def interpolate_pos_encoding(self, embeddings, height, width):
        pos = self.position_embeddings
        n, m = embeddings.shape[1] - 1, pos.shape[1] - 1
        ph, pw = self.patch_embeddings.patch_size if isinstance(self.patch_embeddings.patch_size, tuple) \
            else (self.patch_embeddings.patch_size,) * 2
        gh, gw = height // ph, width // pw
        if n == m and gh == gw:
            return pos
        side = int(round(m ** 0.5))
        patch = pos[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, scale_factor=((gh + 0.1) / side, (gw + 0.1) / side), mode="bicubic",
                              antialias=False)
        patch = patch.permute(0, 2, 3, 1).reshape(1, -1, pos.shape[-1]).to(pos.dtype)
        return torch.cat([pos[:, :1], patch], dim=1)

    embeddings_module.interpolate_pos_encoding = types.MethodType(interpolate_pos_encoding, embeddings_module)


class DinoFeatures:
    """``encoder`` (transformers ``Dinov2Model``) -> tokens of block ``layer`` for an image in [-1, 1]:
    N×(g²)×D with g = size // patch (cls dropped)."""

    def __init__(self, encoder, size: int, layer: int):
        self.encoder, self.size, self.layer = encoder, int(size), int(layer)
        hub_pos_interpolation(encoder.embeddings)
        self.n_layers = encoder.config.num_hidden_layers
        if not -self.n_layers <= self.layer < self.n_layers:
            raise CheckpointError(f"args.json layer_dinov2b_list[0] = {layer} but the encoder has {self.n_layers} blocks")

    def __call__(self, x):
        import torch
        import torch.nn.functional as F

        dtype = next(self.encoder.parameters()).dtype
        img = F.interpolate(x.float() * 0.5 + 0.5, size=(self.size, self.size), mode="bicubic").clamp(0, 1)
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        out = self.encoder(pixel_values=((img - mean) / std).to(dtype), output_hidden_states=True)
        layer = self.layer % self.n_layers
        # the official list swaps the last block's tokens for the final norm's output
        h = out.last_hidden_state if layer == self.n_layers - 1 else out.hidden_states[layer + 1]
        return h[:, 1:]


def load_dinov2(folder):
    import torch
    from transformers import Dinov2Model

    return Dinov2Model.from_pretrained(str(folder), torch_dtype=torch.float32).eval().requires_grad_(False)


# -- the model ------------------------------------------------------------------------------------
class VOSR(SRModel):
    """VOSR behind the SR interface: N×3×h×w in [0, 1] -> N×3×sh×sw float32 in [0, 1].

    dit:    ``LightningDiT`` (weights loaded); codec: ``SD2Codec`` | ``QwenCodec``; dino: ``DinoFeatures``.
    args:   the checkpoint's args.json (patch_size, weak_cond_strength_aelq_list, t_start, t_end).
    onestep: the distilled sampler (``steps`` default 1) or the multi-step CFG one (default 25).
    cfg_scale (2.0), weak_cond_strength (None = midpoint of args.json's list): multi-step only.
    tile, tile_overlap: latent tiling in pixels (0 = whole image). color_fix: adain | wavelet | none.
    seed: seeds the posterior sample and the initial noise of every image.
    """

    def __init__(self, dit, codec, dino, args: dict, *, name: str, onestep: bool, scale: int = 4, device=None,
                 dtype=None, steps: int | None = None, cfg_scale: float = 2.0, weak_cond_strength: float | None = None,
                 tile: int = 0, tile_overlap: int = 4, color_fix: str = "adain", process_size: int = 0,
                 seed: int = 0, weights_info: dict | None = None):
        import torch

        from models.sr.diffusion.base import resolve_dtype
        from models.sr.diffusion.colorfix import COLOR_FIXES

        self.name, self.scale, self.onestep = name, int(scale), bool(onestep)
        if self.scale < 1:
            raise ValueError(f"{name}: scale must be a positive integer, got {scale}")
        if color_fix not in COLOR_FIXES:
            raise ValueError(f"{name}: color_fix must be one of {', '.join(COLOR_FIXES)}; got {color_fix!r}")
        self.steps = int(steps if steps is not None else (1 if onestep else 25))
        if self.steps < 1:
            raise ValueError(f"{name}: steps must be >= 1, got {steps}")
        if tile < 0 or tile_overlap < 0:
            raise ValueError(f"{name}: tile ({tile}) and tile_overlap ({tile_overlap}) must be >= 0")
        lo, hi = args["weak_cond_strength_aelq_list"]
        self.weak = float((lo + hi) / 2 if weak_cond_strength is None else weak_cond_strength)
        if not 0.0 <= self.weak <= 1.0:
            raise ValueError(f"{name}: weak_cond_strength must be in [0, 1], got {self.weak}")
        self.cfg_scale = float(cfg_scale)
        self.t_start, self.t_end = float(args["t_start"]), float(args["t_end"])
        self.patch = int(args["patch_size"])
        self.tile, self.tile_overlap = int(tile), int(tile_overlap)
        self.color_fix, self.process_size, self.seed = color_fix, int(process_size), int(seed)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = resolve_dtype(self.device, dtype, name)
        self.dit, self.codec, self.dino = dit, codec, dino
        from diffusers.utils import logging as dlog

        level = dlog.get_verbosity()
        dlog.set_verbosity_error()  # diffusers warns on every .to(dtype) of its VAE
        try:
            for m in [dit, dino.encoder]:
                m.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
            # the official code runs everything in fp32; whether the Qwen-Image VAE survives fp16 is
            # unmeasured (SDXL's VAE does not), so it stays fp32 beside an fp16 DiT — a small part of the cost
            codec_dtype = torch.float32 if isinstance(codec, QwenCodec) and self.dtype == torch.float16 else self.dtype
            for m in codec.modules():
                m.to(device=self.device, dtype=codec_dtype).eval().requires_grad_(False)
        finally:
            dlog.set_verbosity(level)
        self.weights_info = dict(weights_info or {})

    # -- one velocity evaluation ------------------------------------------------------------------
    def velocity(self, lq, z, feats, t, r):
        """lq, z: N×C×h×w latents (float32); feats N×L×D; t, r floats -> N×C×h×w float32."""
        import torch

        n = lq.shape[0]
        dt = self.dtype
        tt = torch.full((n,), float(t), device=self.device)
        if self.onestep:
            rr = torch.full((n,), float(r), device=self.device)
            return self.dit(torch.cat([lq, z], 1).to(dt), tt, rr, feats.to(dt)).float()
        inp = torch.cat([lq, z], 1)
        if not self.t_start <= float(t) <= self.t_end:
            return self.dit(inp.to(dt), tt, None, feats.to(dt)).float()
        weak = torch.cat([lq * self.weak, z], 1)
        out = self.dit(torch.cat([inp, weak]).to(dt), tt.repeat(2), None,
                       torch.cat([feats, torch.zeros_like(feats)]).to(dt)).float()
        cond, wk = out.chunk(2)
        return wk + self.cfg_scale * (cond - wk)

    def _tiles(self, lh: int, lw: int):
        """Latent tile side and start lists (the official ``tiled_latent_inference`` rule), or None."""
        from models.sr.diffusion.tiling import tile_starts

        if self.tile <= 0:
            return None
        p = self.patch
        size = max((self.tile // 8 // p) * p, p)
        ov = max(self.tile_overlap // 8, size // 8)
        size = min(size, lh, lw)
        size -= size % p
        ov = min(ov, size - 1)
        ov = min(ov + (size - ov) % p, size - p)  # a stride of whole patches keeps every tile on the image's patch grid
        if lh <= size and lw <= size:
            return None
        return size, tile_starts(lh, size, ov), tile_starts(lw, size, ov)

    def sample(self, lq, x, generator):
        """The flow from noise to the SR latent: lq N×C×h×w normalised LR latent, x the image in
        [-1, 1] the DINOv2 features come from (N×3×8h×8w)."""
        import torch

        from models.sr.diffusion.base import randn
        from models.sr.diffusion.tiling import gaussian_weights

        z = randn(lq.shape, generator, lq.device)
        ts = torch.linspace(1.0, 0.0, self.steps + 1).tolist()
        tiles = self._tiles(*lq.shape[-2:])
        if tiles is None:
            feats = self.dino(x.to(self.dtype))
            for t, r in zip(ts[:-1], ts[1:]):
                z = z - (t - r) * self.velocity(lq, z, feats, t, r)
            return z
        size, ys, xs = tiles
        w = gaussian_weights(size, size, device=lq.device)
        feats = {(y, x0): self.dino(x[:, :, y * 8:(y + size) * 8, x0 * 8:(x0 + size) * 8].to(self.dtype))
                 for y in ys for x0 in xs}
        wsum = torch.zeros(lq.shape[-2:], device=lq.device)
        for y in ys:
            for x0 in xs:
                wsum[y:y + size, x0:x0 + size] += w
        for t, r in zip(ts[:-1], ts[1:]):
            acc = torch.zeros_like(z)
            for y in ys:
                for x0 in xs:
                    sl = (slice(None), slice(None), slice(y, y + size), slice(x0, x0 + size))
                    acc[sl] += self.velocity(lq[sl], z[sl], feats[(y, x0)], t, r) * w
            z = z - (t - r) * acc / wsum
        return z

    def _forward(self, batch):
        import torch
        import torch.nn.functional as F

        from models.sr.diffusion.base import prepare_lr
        from models.sr.diffusion.colorfix import color_fix

        h, w = batch.shape[-2:]
        s = self.scale
        _, up, x, enlarge = prepare_lr(batch.to(self.device, torch.float32), self.scale, self.process_size,
                                        8 * self.patch)
        H, W = up.shape[-2:]
        x = x * 2 - 1
        with torch.inference_mode():
            g = [torch.Generator(device=self.device).manual_seed(self.seed) for _ in range(len(x))]
            lq = self.codec.encode(x.to(self.dtype), g)
            zsr = self.sample(lq, x, g)
            y = (self.codec.decode(zsr) * 0.5 + 0.5)[:, :, :H, :W]
            y = color_fix(self.color_fix, y, up)
            if enlarge:
                y = F.interpolate(y, size=(h * s, w * s), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
            return y.float()


# -- building -------------------------------------------------------------------------------------
def tiny_args(ae_type: str = "sd2") -> dict:
    """A tiny args.json (same keys as the official ones): 2-block DiT of width 32, tiny DINOv2."""
    return {"resolution": 64, "patch_size": 2, "dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 4,
            "use_qknorm": True, "use_swiglu": True, "use_rope": True, "use_rmsnorm": True, "wo_shift": False,
            "enc_type": "dinov2b", "enc_dim": 16, "encdim_ratio": 3, "layer_dinov2b_list": [0], "ae_type": ae_type,
            "dinov2_size": 28, "weak_cond_strength_aelq_list": [0.05, 0.25], "t_start": 0, "t_end": 1,
            "interp_type": "lin", "cfg_scale": -0.5}


def tiny_dinov2(enc_dim: int = 16, seed: int = 0):
    import torch
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=enc_dim, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                       patch_size=7, image_size=14)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Dinov2Model(cfg).eval().requires_grad_(False)


def tiny_light_decoder(seed: int = 0):
    import torch

    from models.sr.archs.vosr_arch import LightDecoder

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LightDecoder(4, 3, (8, 16, 16, 16), 1, norm_num_groups=4).eval()


TINY_LWDECODER_CONFIG = {"in_channels": 4, "out_channels": 3, "block_out_channels": [8, 16, 16, 16],
                         "layers_per_block": 1}


def load_light_decoder(path, groups: int = 32):
    """``sd21_lwdecoder.pth``: ``{"config": {in_channels, out_channels, block_out_channels,
    layers_per_block}, "model_state_dict": …}`` -> LightDecoder, strictly loaded."""
    import torch

    from models.sr.archs.vosr_arch import LightDecoder

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same to the user
        raise CheckpointError(f"{path}: cannot read as a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict) or "config" not in ck or "model_state_dict" not in ck:
        raise CheckpointError(f"{path}: expected a dict with 'config' and 'model_state_dict' (sd21_lwdecoder.pth)")
    c = ck["config"]
    try:
        net = LightDecoder(c["in_channels"], c["out_channels"], tuple(c["block_out_channels"]), c["layers_per_block"],
                           norm_num_groups=groups)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: config lacks or mistypes {e}") from None
    check_keys(net.state_dict(), ck["model_state_dict"], f"{path} does not fit LightDecoder({c})",
               "Is it sd21_lwdecoder.pth?")
    net.load_state_dict(ck["model_state_dict"], strict=True)
    return net


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None, dinov2=None,
          lwdecoder=None, qwen_vae=None, allow_download: bool | None = None, scale: int | None = None, **options):
    """VOSR behind the SR interface.

    weights:   the checkpoint folder (args.json + safetensors; default: the resolver's
               ``VOSR/<VOSR_0.5B_ms|…>``; tiny: random tiny weights unless given — a tiny
               checkpoint must carry a tiny args.json, :func:`tiny_args`).
    base:      the SD-2.1-base folder (0.5B; only ``vae/`` is read); lwdecoder: ``sd21_lwdecoder.pth``;
    dinov2:    a transformers DINOv2 folder (``facebook/dinov2-base``/``-large``); qwen_vae: the
               ``Qwen-Image-vae-2d`` folder (1.4B). All default to the resolver; tiny: random tiny ones.
    options:   steps (25 | one-step 1), cfg_scale (2.0), weak_cond_strength (args.json midpoint),
               tile / tile_overlap (multi 0/4, one-step 512/32; one-step tiny 64/16), color_fix ("adain"),
               process_size (0), seed (0).
    """
    if name not in MODELS:
        raise KeyError(f"unknown VOSR model {name!r} (known: {', '.join(MODELS)})")
    import torch

    from models.weights import resolve, resolve_folder

    v = MODELS[name]
    info: dict = {}
    if weights is not None or not tiny:
        folder = Path(weights) if weights is not None else \
            resolve_folder(checkpoint_folder(v), allow_download=allow_download) / v.folder
        args, apath = read_args(folder)
        wpath = find_weights(folder)
        dit = dit_from_args(args, v.onestep)
        info.update(load_dit(dit, wpath))
        info["args_json"] = str(apath)
        info["source"] = "explicit" if weights is not None else checkpoint_folder(v).source
    else:
        args = tiny_args(v.ae_type)
        dit = dit_from_args(args, v.onestep, tiny_init_seed=0)
        info["weights"] = "tiny random LightningDiT"
    if args["ae_type"] != v.ae_type:
        raise CheckpointError(f"{info.get('args_json')}: ae_type {args['ae_type']!r}, but {name} uses {v.ae_type!r}")
    if dinov2 is not None or not tiny:
        dfolder = resolve_folder(DINOV2[args["enc_type"]], explicit=dinov2, allow_download=allow_download)
        enc = load_dinov2(dfolder)
        info["dinov2"] = str(dfolder)
    else:
        enc = tiny_dinov2(args["enc_dim"])
        info["dinov2"] = "tiny random"
    if enc.config.hidden_size != args["enc_dim"]:
        raise CheckpointError(f"{info.get('args_json', 'args')}: enc_dim {args['enc_dim']} but the DINOv2 "
                              f"encoder is {enc.config.hidden_size} wide")
    dino = DinoFeatures(enc, args["dinov2_size"], args["layer_dinov2b_list"][0])
    if v.ae_type == "sd2":
        from models.sr.diffusion.components import SD21_BASE, tiny_components

        if base is not None or not tiny:
            from diffusers import AutoencoderKL

            bfolder = resolve_folder(SD21_BASE, explicit=base, allow_download=allow_download)
            vae = AutoencoderKL.from_pretrained(bfolder, subfolder="vae", torch_dtype=torch.float32)
            info["vae"] = str(bfolder / "vae")
        else:
            vae = tiny_components(text=False).vae
            info["vae"] = "tiny random SD VAE"
        if lwdecoder is not None or not tiny:
            dpath = resolve(LWDECODER if lwdecoder is None else WeightsFile(Path(lwdecoder).name),
                            explicit=lwdecoder, allow_download=allow_download)
            dec = load_light_decoder(dpath, groups=4 if tiny else 32)
            info["lwdecoder"] = str(dpath)
        else:
            dec = tiny_light_decoder()
            info["lwdecoder"] = "tiny random"
        codec = SD2Codec(vae, dec)
    else:
        codec = _qwen_codec(tiny, qwen_vae, allow_download, info)
    if tiny and v.onestep:  # small tiles keep the tiny variant's tiling exercised
        options.setdefault("tile", 64)
        options.setdefault("tile_overlap", 16)
    elif v.onestep:
        options.setdefault("tile", 512)
        options.setdefault("tile_overlap", 32)
    return VOSR(dit, codec, dino, args, name=name + ("-tiny" if tiny else ""), onestep=v.onestep,
                scale=4 if scale is None else scale, device=device, dtype=dtype, weights_info=info, **options)


def _qwen_codec(tiny: bool, folder, allow_download, info: dict):
    """The 1.4B codec: ``models.sr.archs.qwenimage_vae2d`` — the random tiny VAE for ``-tiny`` without
    a folder, else VOSR's ``Qwen-Image-vae-2d`` folder through the resolver, loaded strictly."""
    from models.sr.archs.qwenimage_vae2d import load_qwen_vae2d

    if folder is None and tiny:
        vae = load_qwen_vae2d(tiny=True)
    else:
        vae = load_qwen_vae2d(folder, allow_download=allow_download)
    info.update(vae.weights_info)
    return QwenCodec(vae)
