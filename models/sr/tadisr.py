"""TADiSR (Hu et al., "Text-Aware Real-World Image Super-Resolution via Diffusion Model with Joint
Segmentation Decoders", NeurIPS 2025; github.com/mingcv/TADiSR, MIT licence, commit 6f591a6):
one-step diffusion ×4 SR that also predicts a text mask. Two released adapters:

* ``tadisr-kolors`` — the paper model, ``tadisr_kolors_ftsr_526000.pkl`` on Kwai-Kolors/Kolors
  (``TADiSRPipeline`` + ``kolors_decoder.MaskInteractionDecoderKolors640M``);
* ``tadisr-cogview4`` — ``tadisr_cogview4_realce_17500.pkl`` on zai-org/CogView4-6B
  (``CogView4Pipeline`` + ``JointSegmentationDecoders``; the official ``scripts/infer.py``).

Inference (per tile, as the official ``forward``s): the LR image is bicubic-upsampled ×scale
(``F.interpolate(..., mode="bicubic", align_corners=False)``, unclamped, as ``scripts/infer.py``)
and cut into Hann-weighted tiles (768 px / overlap 256, ``models.sr.diffusion.pixel_tiling``); a
tile in [-1, 1] is VAE-encoded keeping the features entering each encoder down block, the
posterior is *sampled* (seeded here, unseeded officially) and scaled; then one step at t = 200:

* Kolors: ε = UNet(z, 200, prompt_embeds, added_cond_kwargs={text_embeds, time_ids}); the official
  ``make_1step_sched`` is sd-turbo's DDPM schedule (scaled-linear β 0.00085..0.012, 1000 steps —
  *not* Kolors' own 1100-step schedule) stepped once, i.e. x0 = (z − √(1−ᾱ₂₀₀)·ε)/√ᾱ₂₀₀;
* CogView4: v = transformer(z, prompt_embeds, t, original_size = target_size = tile size,
  crop (0, 0)) at the scheduler timestep nearest 200 (FlowMatchEuler, its initial grid: t = 200,
  σ = 0.2); z0 = z − σ·v.

z0 ÷ scaling factor is decoded by the VAE decoder with ``skip_conv_2..4`` adding encoder features
before up blocks 1..3, while the joint segmentation decoder runs beside it
(``models.sr.archs.tadisr_arch``); image ``(x/2 + 0.5).clamp(0, 1)`` and mask logits are blended
over tiles; the mask is ``sigmoid(logits)`` (the official ``save_mask``).

Checkpoints (``save_model``), read with ``torch.load(weights_only=True)`` and loaded strictly —
every top-level entry and every tensor placed, any missing/unexpected key an error naming it (the
official ``load_model`` uses ``strict=False`` for the UNet/transformer and the VAE):

* Kolors: ``state_dict_unet`` (UNet params containing "lora" (adapter "default") or "conv_in"),
  ``state_dict_vae`` (VAE params containing "lora" or "skip": LoRA adapter "vae_skip" r=2 on
  ``VAE_LORA_TARGETS`` incl. ``decoder.skip_conv_1..4``, and the skip convs' base weights),
  ``mi_decoder`` (or ``js_decoder``), ``unet_lora_target_modules``, ``rank_unet`` (4).
* CogView4: ``state_dict_transformer`` ("lora" params), ``state_dict_vae`` (as above),
  ``js_decoder``, ``transformer_lora_target_modules``, ``rank_transformer`` (4).

LoRA: peft ``LoraConfig(r, init_lora_weights="gaussian", target_modules=list)`` (alpha left at 8),
merged into the base weights in float32 after loading (same maths as the unmerged official run).

Devices/dtypes: fp16 (Kolors) / bf16 (CogView4) on CUDA by default, fp32 on CPU; a VAE whose
config sets ``force_upcast`` (SDXL's overflows in fp16) runs in fp32 when the backbone is fp16.
Only one tile is on the device at a time.

Deliberate differences: the posterior sample is seeded (``seed``) for reproducible output; an
image shorter than the tile on one side only is tiled correctly along the other (the official
``tiled_predict`` leaves it unpredicted, see ``pixel_tiling``); batches of any size (official: 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from models.sr.base import SRModel
from models.sr.checkpoint import CheckpointError, check_keys
from models.weights import WeightsFile

# huqiming513/TADiSR-Models, checkpoints/manifest.json: 195866454 and 785453495 bytes
KOLORS_PKL = WeightsFile("tadisr_kolors_ftsr_526000.pkl", hf_repo="huqiming513/TADiSR-Models",
                         sha256="4baef8b1fad319caf7d606c82539035c6fc9483c81f94601377c64813251e7f7")
COGVIEW4_PKL = WeightsFile("tadisr_cogview4_realce_17500.pkl", hf_repo="huqiming513/TADiSR-Models",
                           sha256="7cec8d0917305037cbafcb1b1bf81062add1613b561f5d7e2d1e599fe0baf5e0")

# pipelines.py: the VAE's LoRA (both pipelines), adapter "vae_skip", rank 2
VAE_LORA_TARGETS = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "skip_conv_1",
                    "skip_conv_2", "skip_conv_3", "skip_conv_4", "to_k", "to_q", "to_v", "to_out.0")
VAE_ADAPTER, VAE_RANK, BACKBONE_ADAPTER = "vae_skip", 2, "default"
# pipelines.py TADiSRPipeline/CogView4Pipeline.__init__: the backbone LoRA (adapter "default", r=4,
# gaussian init), added after the VAE's; save_model records the list and the rank
BACKBONE_LORA_TARGETS = {
    "kolors": ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
               "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj"),
    "cogview4": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                 "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"),
}
BACKBONE_RANK = 4
TIMESTEP = 200
# make_1step_sched(): DDPMScheduler.from_pretrained("stabilityai/sd-turbo", subfolder="scheduler"),
# an SD-2.1 config: no x0 clipping (clipping scaled latents to [-1, 1] would wreck every image)
SD_TURBO_SCHEDULE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, prediction_type="epsilon", clip_sample=False)


@dataclass(frozen=True)
class Family:
    name: str
    pkl: WeightsFile
    backbone_key: str
    decoder_keys: tuple[str, ...]
    modules_key: str
    rank_key: str
    backbone_select: tuple[str, ...]
    decoder_kind: str
    align: int  # pixel granularity: the VAE's ×8, times CogView4's 2×2 patches
    cuda_dtype: str


FAMILIES = {
    "kolors": Family("kolors", KOLORS_PKL, "state_dict_unet", ("mi_decoder", "js_decoder"),
                     "unet_lora_target_modules", "rank_unet", ("lora", "conv_in"), "mugi", 8, "fp16"),
    "cogview4": Family("cogview4", COGVIEW4_PKL, "state_dict_transformer", ("js_decoder",),
                       "transformer_lora_target_modules", "rank_transformer", ("lora",), "cdi", 16, "bf16"),
}
MODELS = {"tadisr-kolors": "kolors", "tadisr-cogview4": "cogview4"}


def needs():
    """Every file/folder each full model needs (the base folder and the adapter)."""
    from models.sr.tadisr_bases import COGVIEW4_BASE, KOLORS_BASE

    return {"tadisr-kolors": (KOLORS_BASE, KOLORS_PKL), "tadisr-cogview4": (COGVIEW4_BASE, COGVIEW4_PKL)}


# -- checkpoint -----------------------------------------------------------------------------------
def _check_targets(model, patterns, where: str):
    """Some target pattern must name a module (peft matches ``name == p`` or ``name.endswith("." + p)``
    and skips patterns that match nothing — the official CogView4 list names ``attn2.*`` and
    ``proj_in``, which diffusers' CogView4 transformer does not have). Which modules got adapters is
    then checked exactly by the strict state-dict match."""
    names = [n for n, _ in model.named_modules()]
    if not isinstance(patterns, (list, tuple)) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise CheckpointError(f"{where}: expected a non-empty list of module names, got {patterns!r}")
    if not any(n == p or n.endswith("." + p) for p in patterns for n in names):
        raise CheckpointError(f"{where}: no LoRA target ({', '.join(patterns)}) matches a module of the model. "
                              "Is it this method's checkpoint for this base model?")


def _check_shared(state: dict, where: str):
    """The dual-stream blocks share one module between ``seq_l`` and ``seq_r``; a checkpoint whose
    two copies differ cannot be represented (loading would keep one silently)."""
    import torch

    for k, v in state.items():
        if ".seq_l." in k:
            r = k.replace(".seq_l.", ".seq_r.")
            if r in state and not torch.equal(v, state[r]):
                raise CheckpointError(f"{where}: {k} and {r} differ, but the official blocks share them")


def load_tadisr(family: str, bases, decoder, path, *, merge: bool = True) -> dict:
    """Add the adapters to ``bases.backbone``/``bases.vae`` (float32; skip convs must already be
    added), load ``path`` strictly into them and ``decoder``; returns a record. Raises
    CheckpointError naming the file and every key at fault."""
    from models.files import sha256_file
    from models.sr.diffusion import lora

    fam = FAMILIES[family]
    what = f"TADiSR-{family}"
    ck = lora.read_pkl(path, (fam.backbone_key, "state_dict_vae", fam.modules_key, fam.rank_key), what)
    dkeys = [k for k in fam.decoder_keys if k in ck]
    if len(dkeys) != 1:
        raise CheckpointError(f"{path}: not a {what} checkpoint: needs exactly one of "
                              f"{' | '.join(fam.decoder_keys)}, has {dkeys or 'none'}")
    known = {fam.backbone_key, "state_dict_vae", fam.modules_key, fam.rank_key, dkeys[0]}
    extra = [k for k in ck if k not in known]
    if extra:
        raise CheckpointError(f"{path}: unexpected entr{'y' if len(extra) == 1 else 'ies'} "
                              f"{', '.join(map(str, extra))} in a {what} checkpoint (expected {', '.join(sorted(known))})")
    rank = ck[fam.rank_key]
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise CheckpointError(f"{path}: {fam.rank_key} must be a positive int, got {rank!r}")
    for key in (fam.backbone_key, "state_dict_vae", dkeys[0]):
        if not isinstance(ck[key], dict) or not ck[key]:
            raise CheckpointError(f"{path}: {key} must be a non-empty state dict")

    net, vae = bases.backbone, bases.vae
    mods = list(ck[fam.modules_key])
    _check_targets(net, mods, f"{path}: {fam.modules_key}")
    lora.add_lora(net, mods, rank, BACKBONE_ADAPTER)
    lora.load_lora_state(net, ck[fam.backbone_key], lambda n: any(s in n for s in fam.backbone_select),
                         f"{path}: {fam.backbone_key}")
    lora.add_lora(vae, VAE_LORA_TARGETS, VAE_RANK, VAE_ADAPTER)
    lora.load_lora_state(vae, ck["state_dict_vae"], lambda n: "lora" in n or "skip" in n, f"{path}: state_dict_vae")
    dstate = ck[dkeys[0]]
    check_keys(decoder.state_dict(), dstate, f"{path}: {dkeys[0]} does not fit the {family} joint decoder",
               "Is it this method's checkpoint for this base model?")
    _check_shared(dstate, f"{path}: {dkeys[0]}")
    decoder.load_state_dict(dstate, strict=True)
    if merge:
        lora.merge_lora(net, [BACKBONE_ADAPTER])
        lora.merge_lora(vae, [VAE_ADAPTER])
    else:
        lora.activate(net, [BACKBONE_ADAPTER])
        lora.activate(vae, [VAE_ADAPTER])
    return {"path": str(path), "sha256": sha256_file(path), "rank": rank, "decoder_key": dkeys[0], "merged": merge}


def add_fresh_adapters(family: str, bases) -> None:
    """The adapters as the official ``__init__`` adds them before training: VAE LoRA "vae_skip"
    (r=2) then the backbone LoRA "default" (r=4), peft's gaussian init (A ~ N(0, 1/r) from the
    global torch generator — seed it first —, B = 0, so the model starts as its base); skip convs
    must already be added (weight 1e-5)."""
    from models.sr.diffusion import lora

    lora.add_lora(bases.vae, VAE_LORA_TARGETS, VAE_RANK, VAE_ADAPTER)
    _check_targets(bases.backbone, BACKBONE_LORA_TARGETS[family], f"TADiSR-{family} backbone")
    lora.add_lora(bases.backbone, BACKBONE_LORA_TARGETS[family], BACKBONE_RANK, BACKBONE_ADAPTER)


# -- the model ----------------------------------------------------------------------------------
class TADiSR(SRModel):
    """TADiSR behind the SR interface: ``upscale`` -> N×3×sH×sW in [0, 1]; ``upscale_aux`` also
    gives ``{"text_mask": N×1×sH×sW float32 sigmoid probabilities in [0, 1]}``.

    bases:   ``tadisr_bases.BaseModels`` with adapters loaded (float32; moved here).
    decoder: the joint segmentation decoder (``tadisr_arch.JointSegmentationDecoder``).
    cond:    prompt embeddings (``prompt_embeds`` 1×L×D; Kolors also ``text_embeds``, ``time_ids``).
    tile, tile_overlap: Hann pixel tiles on the upsampled image (768/256; 0 = whole image).
    seed:    seeds the VAE posterior sample of every tile. ``sample_posterior=False`` uses its mean.
    """

    aux_outputs = ("text_mask",)

    def __init__(self, family: str, bases, decoder, cond: dict, *, name: str, scale: int = 4, device=None,
                 dtype=None, tile: int = 768, tile_overlap: int = 256, timestep: int = TIMESTEP, seed: int = 0,
                 sample_posterior: bool = True, weights_info: dict | None = None):
        import torch

        from models.sr.diffusion.base import _to, resolve_dtype

        self.family, self.fam = family, FAMILIES[family]
        self.name, self.scale = name, int(scale)
        if self.scale < 1:
            raise ValueError(f"{name}: scale must be a positive integer, got {scale}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None and self.device.type == "cuda":
            dtype = self.fam.cuda_dtype
        self.dtype = resolve_dtype(self.device, dtype, name)
        a = self.fam.align
        if tile > 0 and (tile % a or not 0 <= tile_overlap < tile):
            raise ValueError(f"{name}: tile ({tile}) must be a multiple of {a} and tile_overlap "
                             f"({tile_overlap}) in [0, tile)")
        self.tile, self.tile_overlap = int(tile), int(tile_overlap)
        self.seed, self.sample_posterior = int(seed), bool(sample_posterior)
        self.weights_info = dict(weights_info or {})
        self.backbone, self.vae, self.decoder = bases.backbone, bases.vae, decoder
        upcast = self.dtype == torch.float16 and bool(getattr(self.vae.config, "force_upcast", False))
        self.vae_dtype = torch.float32 if upcast else self.dtype
        _to(SimpleNamespace(unet=self.backbone, vae=None, text_encoder=None), self.device, self.dtype)
        _to(SimpleNamespace(unet=None, vae=self.vae, text_encoder=None), self.device, self.vae_dtype)
        self.decoder.to(device=self.device, dtype=self.vae_dtype).eval().requires_grad_(False)
        self.cond = {k: v.to(self.device, self.dtype) for k, v in cond.items()}
        self.scaling_factor = float(self.vae.config.scaling_factor)
        if family == "kolors":
            from diffusers import DDPMScheduler

            ac = DDPMScheduler(**SD_TURBO_SCHEDULE).alphas_cumprod
            if not 0 <= int(timestep) < len(ac):
                raise ValueError(f"{name}: timestep must be in [0, {len(ac) - 1}], got {timestep}")
            self.timestep, self.alpha_bar = int(timestep), float(ac[int(timestep)])
        else:
            from diffusers import FlowMatchEulerDiscreteScheduler

            cfg = {k: v for k, v in bases.scheduler_config.items() if not k.startswith("_")}
            s = FlowMatchEulerDiscreteScheduler.from_config(cfg)
            i = int(torch.argmin((s.timesteps - float(timestep)).abs()))
            self.timestep, self.sigma = float(s.timesteps[i]), float(s.sigmas[i])

    # one step on a latent (× scaling factor, self.dtype) of a tile of size hw -> z0
    def denoise(self, z, hw: tuple[int, int]):
        import torch

        n = z.shape[0]
        pe = self.cond["prompt_embeds"].expand(n, -1, -1)
        if self.family == "kolors":
            t = torch.full((n,), self.timestep, device=self.device, dtype=torch.long)
            added = {"text_embeds": self.cond["text_embeds"].expand(n, -1),
                     "time_ids": self.cond["time_ids"].expand(n, -1)}
            eps = self.backbone(z, t, encoder_hidden_states=pe, added_cond_kwargs=added).sample.float()
            a = self.alpha_bar
            return (z.float() - (1 - a) ** 0.5 * eps) / a ** 0.5
        size = torch.tensor([list(hw)], device=self.device, dtype=self.dtype).expand(n, -1)
        crop = torch.zeros(n, 2, device=self.device, dtype=self.dtype)
        t = torch.full((n,), self.timestep, device=self.device, dtype=self.dtype)
        v = self.backbone(hidden_states=z, encoder_hidden_states=pe, timestep=t, original_size=size,
                          target_size=size, crop_coords=crop).sample.float()
        return z.float() - self.sigma * v

    def _tile(self, x, noise):
        # the official forward on one tile; noise(mean) -> standard normal noise of mean's shape or None
        from models.sr.archs.tadisr_arch import encode_with_skips, joint_decode
        from models.sr.diffusion.tiling import split_moments

        moments, feats = encode_with_skips(self.vae, (x * 2 - 1).to(self.vae_dtype))
        mean, std = split_moments(moments.float())
        eps = noise(mean)
        z = mean if eps is None else mean + std * eps
        z0 = self.denoise((z * self.scaling_factor).to(self.dtype), tuple(x.shape[-2:]))
        img, mask = joint_decode(self.vae, self.decoder, (z0 / self.scaling_factor).to(self.vae_dtype), feats)
        return (img.float() * 0.5 + 0.5).clamp(0, 1), mask.float()

    def predict(self, x):
        """One tile: x N×3×T×T in [0, 1] (about; T a multiple of the family's ``align``) on the device
        -> (SR N×3×T×T in [0, 1], mask logits N×1×T×T), float32."""
        import torch

        from models.sr.diffusion.base import randn

        def noise(mean):
            if not self.sample_posterior:
                return None
            g = [torch.Generator(device=self.device).manual_seed(self.seed) for _ in range(len(x))]
            return randn(mean.shape, g, mean.device)

        with torch.inference_mode():
            return self._tile(x, noise)

    # -- training (the official set_train / forward / save_model) --------------------------------
    def train_forward(self, up, generator=None, sample_posterior: bool = True):
        """The official training forward, differentiable: ``up`` N×3×H×W float in [0, 1] on the
        device (the LR bicubic-upsampled to the HR size; H, W multiples of ``fam.align``), no
        tiling. The posterior is sampled with noise drawn on the CPU from ``generator`` (the
        official ``latent_dist.sample()`` draws from the global generator), or its mean when
        ``sample_posterior`` is False. -> (SR N×3×H×W float32 in [0, 1], clamped as the official
        ``postprocess``; mask logits N×1×H×W float32)."""
        import torch

        def noise(mean):
            if not sample_posterior:
                return None
            return torch.randn(mean.shape, generator=generator, dtype=torch.float32).to(mean.device)

        return self._tile(up, noise)

    def _tuner_check(self):
        from models.sr.diffusion import lora

        if not lora.tuner_layers(self.backbone) or not lora.tuner_layers(self.vae):
            raise CheckpointError(f"{self.name}: the LoRA adapters are merged or absent; build with "
                                  "train=True to train or save them")

    def trainable_parameters(self) -> list:
        """What the official ``set_train`` unfreezes (and the optimizer of ``train_cogview4.py``
        takes): backbone LoRA params (+ Kolors' UNet ``conv_in``), VAE LoRA "vae_skip" params, the
        four skip convs, the joint decoder — in a fixed order."""
        self._tuner_check()
        out = [p for n, p in self.backbone.named_parameters() if "lora" in n]
        if self.family == "kolors":
            out += list(self.backbone.conv_in.parameters())
        out += [p for n, p in self.vae.named_parameters() if "lora" in n and VAE_ADAPTER in n]
        seen = {id(p) for p in out}
        for k in range(1, 5):
            out += [p for p in getattr(self.vae.decoder, f"skip_conv_{k}").parameters() if id(p) not in seen]
        seen = {id(p) for p in out}
        out += [p for p in self.decoder.parameters() if id(p) not in seen]  # shared blocks once
        return out

    def set_train(self, train: bool = True):
        """``train``: the official ``set_train`` (everything frozen but :meth:`trainable_parameters`,
        modules in train mode); False: the official ``set_eval`` (all frozen, eval mode)."""
        for m in (self.backbone, self.vae, self.decoder):
            m.requires_grad_(False).train(train)
        if train:
            for p in self.trainable_parameters():
                p.requires_grad_(True)
        return self

    def adapter_state(self) -> dict:
        """The official ``save_model`` dict (CPU float32 copies): see the module docstring."""
        self._tuner_check()
        fam = self.fam

        def cpu(d):
            return {k: v.detach().to("cpu", copy=True).float() for k, v in d.items()}

        sel = fam.backbone_select
        return {
            fam.decoder_keys[0]: cpu(self.decoder.state_dict()),
            fam.modules_key: list(BACKBONE_LORA_TARGETS[self.family]),
            fam.rank_key: BACKBONE_RANK,
            fam.backbone_key: cpu({k: v for k, v in self.backbone.state_dict().items() if any(s in k for s in sel)}),
            "state_dict_vae": cpu({k: v for k, v in self.vae.state_dict().items() if "lora" in k or "skip" in k}),
        }

    def save_adapters(self, path):
        """Write :meth:`adapter_state` with ``torch.save`` (atomically) to ``path``; it loads back
        with ``build(..., weights=path)``."""
        import torch

        from models.files import atomic_path

        state = self.adapter_state()
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    def _forward_aux(self, batch):
        import torch
        import torch.nn.functional as F

        from models.sr.diffusion.pixel_tiling import hann_tiled

        lr = batch.float()
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False) if self.scale > 1 else lr
        sr, logits = hann_tiled(self.predict, up, self.tile, self.tile_overlap, self.fam.align,
                                device=self.device, dtype=torch.float32)
        return sr.clamp(0, 1), {"text_mask": torch.sigmoid(logits)}

    def _forward(self, batch):
        return self._forward_aux(batch)[0]


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None,
          allow_download: bool | None = None, scale: int | None = None, prompt_embeddings=None,
          prompt: str | None = None, time_ids=None, merge_lora: bool = True, text_device=None,
          train: bool = False, **options):
    """TADiSR behind the SR interface.

    name:    "tadisr-kolors" | "tadisr-cogview4".
    weights: the adapter ``.pkl`` (default: the resolver, sha256-checked; tiny: random, none loaded
             unless given — a tiny checkpoint must be written for the tiny base).
    base:    the base diffusers folder (default: the resolver; tiny: the random tiny base).
    prompt_embeddings: a file in the official layout (see ``tadisr_bases``); default: computed once
             from the base folder's text encoder and cached (``prompt``, Kolors ``time_ids`` override
             the fixed ones; ``text_device`` where the text encoder runs, default the model's device),
             or — tiny without a text encoder in its folder — a fixed random embedding.
    options: tile (768; tiny 64), tile_overlap (256; tiny 16), timestep (200), seed (0),
             sample_posterior (True).
    train:   for training: adapters kept unmerged; without ``weights``, fresh adapters as the
             official ``__init__`` adds them (:func:`add_fresh_adapters`) — for the full model too.
    """
    if name not in MODELS:
        raise KeyError(f"unknown TADiSR model {name!r} (known: {', '.join(MODELS)})")
    import torch

    from models.sr.archs.tadisr_arch import add_skip_convs, decoder_for_vae
    from models.sr.tadisr_bases import (
        COGVIEW4_BASE,
        KOLORS_BASE,
        EmbeddingsError,
        cached_embeddings,
        check_embeddings,
        has_text_encoder,
        load_bases,
        random_embeddings,
        read_embeddings,
        tiny_bases,
    )
    from models.weights import resolve, resolve_folder

    family = MODELS[name]
    fam = FAMILIES[family]
    if base is not None or not tiny:
        folder = resolve_folder(KOLORS_BASE if family == "kolors" else COGVIEW4_BASE, explicit=base,
                                allow_download=allow_download)
        bases = load_bases(family, folder)
    else:
        bases = tiny_bases(family)
    add_skip_convs(bases.vae)
    # the official decoders hard-code 32 GroupNorm groups, the VAEs' own norm_num_groups; seeded so
    # that a tiny model without a checkpoint is the same model in every build
    with torch.random.fork_rng():
        torch.manual_seed(0)
        decoder = decoder_for_vae(fam.decoder_kind, bases.vae.config, groups=int(bases.vae.config.norm_num_groups))
    info = {"base": bases.source}
    if train:
        merge_lora = False
    if train and weights is None:
        add_fresh_adapters(family, bases)
        info["weights"] = f"fresh adapters for training ({family}: backbone r={BACKBONE_RANK}, VAE r={VAE_RANK})"
    elif weights is not None or not tiny:
        wf = fam.pkl if weights is None else WeightsFile(str(weights).rsplit("/", 1)[-1])
        path = resolve(wf, explicit=weights, allow_download=allow_download)
        info.update(load_tadisr(family, bases, decoder, path, merge=merge_lora))
        info["source"] = fam.pkl.source if weights is None else "explicit"
    else:
        info["weights"] = f"tiny random {family}, no adapter (skip convs at their 1e-5 init)"
    where = "prompt embeddings"
    if prompt_embeddings is not None:
        cond = read_embeddings(family, prompt_embeddings)
        info["prompt_embeddings"], where = str(prompt_embeddings), str(prompt_embeddings)
    elif has_text_encoder(bases.folder):
        dev = torch.device(text_device or device or ("cuda" if torch.cuda.is_available() else "cpu"))
        cond, cpath = cached_embeddings(family, bases.folder, prompt=prompt, time_ids=time_ids, device=dev)
        info["prompt_embeddings"] = str(cpath)
    elif tiny:
        cond = random_embeddings(family, bases.backbone)
        info["prompt_embeddings"] = "fixed random (tiny)"
    else:
        raise EmbeddingsError(f"{bases.folder}: no text_encoder/ and tokenizer/ to compute {name}'s prompt "
                              "embeddings; pass prompt_embeddings=PATH (the official .pt layout)")
    if time_ids is not None and family == "kolors" and prompt_embeddings is not None:
        cond["time_ids"] = torch.tensor([list(time_ids)], dtype=torch.float32)
    check_embeddings(family, cond, bases.backbone, where)
    if tiny:  # small tiles keep the tiny variant fast and its tiling exercised
        options.setdefault("tile", 64)
        options.setdefault("tile_overlap", 16)
    return TADiSR(family, bases, decoder, cond, name=name + ("-tiny" if tiny else ""),
                  scale=4 if scale is None else scale, device=device, dtype=dtype, weights_info=info, **options)
