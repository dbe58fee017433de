"""CODSR (H. Chen, J. Chen, J. Pan, J. Dong, "Bridging Fidelity-Reality with Controllable One-Step
Diffusion for Image Super-Resolution", CVPR 2026, arXiv:2512.14061; github.com/Chanson94/CODSR —
the repository states no licence), on SD-2.1-base.

Inference as the official ``test_codsr.py`` + ``CODSR_test`` (``codsr.py``). With x the LR image
bicubic ×scale (H, W multiples of 8) in [-1, 1]:

1. z_L = VAE(x) (encoder LoRA; posterior sampled) × scaling factor.
2. Region-adaptive noise (:func:`region_noise_weight`): Sobel gradient magnitude |G_x| + |G_y|
   (replicate-padded) of the gray image (0.299 R + 0.587 G + 0.114 B, in [0, 1]); its mean g over
   16×16 px patches (replicate padding to a multiple of 16) gives a weight 0.3 (g ≤ 0.15),
   7(g − 0.15) + 0.3 (0.15 < g ≤ 0.25) or 1 (g > 0.25); each patch covers 2×2 latent cells.
   ε_a = weight · ε (ε ~ N(0, I)), and z_t = √ᾱ_t z_L + √(1−ᾱ_t) ε_a (the scheduler's
   ``add_noise``) at t = 100 (``timestep``).
3. LQ-guided modulation (``models.sr.archs.codsr_sft``): (scale, shift) = SFT(PixelUnshuffle₈(x)),
   both × λ_t = 1/w_t, and the UNet's ``conv_in`` output h becomes h·(1 + λ scale) + λ shift
   (here a forward hook on ``conv_in``: the stock diffusers UNet, no patched copy).
4. ε̂ = UNet(z_t, t, DAPE prompt "{tags}, {user prompt},"), over latent tiles of 150 with overlap
   50 (the modulation is cut with the latent); ẑ = z_L + w_t (ε_a − ε̂), w_t = √(1−ᾱ_t)/√ᾱ_t.
5. VAE decode, clamp, AdaIN colour fix (defaults as OSEDiff: fp16 on CUDA, VAE encoder tiles
   1024 px, decoder tiles 224 latent px, ``process_size`` 512).

A larger ``timestep`` adds more noise where the LR is flat and weakens the modulation: the
paper's fidelity/realism control.

Checkpoint ``codsr.pkl`` (published on Google Drive only), a torch dict: ``state_dict_sft`` (the
SFT layer), ``state_dict_vae`` + ``rank_vae`` + ``vae_lora_encoder_modules`` (VAE encoder LoRA,
adapter "default_encoder"), ``state_dict_unet`` + ``rank_unet`` + ``unet_lora_{encoder,decoder,
others}_modules_default`` / ``…_sam``: two UNet LoRA sets, adapters "default_{encoder,decoder,
others}" and "default_{…}_alignment", whose parameters share ``state_dict_unet``. As
``CODSR_test.load_ckpt``: the first set is added, loaded and merged into the base weights, then
the second is added onto the merged UNet, loaded and merged. ``LoraConfig(r=rank,
init_lora_weights="gaussian", target_modules=list)``, ``lora_alpha`` at peft's default 8.

Differences from the official code, all deliberate:
- every key is matched (``models.sr.diffusion.lora``); the official loaders skip unknown keys. The
  one exception: ``conv_in`` base weights in ``state_dict_unet`` (OSEDiff-style training saves
  them; ``load_ckpt`` copies only "lora" parameters), which are accepted, *not* loaded — as the
  official inference — and listed in ``weights_info["ignored_keys"]`` with a warning.
- the VAE LoRA is merged too (the official keeps it as an active adapter: same maths).
- noise and the latent step are computed in float32 (official: in the model dtype), and all
  randomness comes from a generator seeded by ``seed`` at every call (official: unseeded).
- the pre-processing differences of ``models.sr.diffusion.base`` (padding instead of a Lanczos
  resize to a multiple of 8, torch bicubic, float colour fix).
"""
from __future__ import annotations

import logging

from models.sr.diffusion.base import DiffusionSR, randn
from models.weights import WeightsFile

log = logging.getLogger(__name__)

CODSR_PKL = WeightsFile("codsr.pkl", homepage="https://drive.google.com/drive/folders/1-A22c4bFs_ShvoVXRTqDNb4wjaLw8Du1 "
                                              "(CODSR README, 'CODSR Pre-trained Model')")
DEFAULT_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
ALIGN_ADAPTERS = tuple(a + "_alignment" for a in DEFAULT_ADAPTERS)
VAE_ADAPTER = "default_encoder"
PKL_KEYS = ("state_dict_sft", "state_dict_vae", "state_dict_unet", "rank_vae", "rank_unet",
            "vae_lora_encoder_modules") + tuple(f"unet_lora_{part}_modules_{kind}" for kind in ("default", "sam")
                                                for part in ("encoder", "decoder", "others"))
# unet keys that the official inference leaves alone (see the module doc)
_IGNORABLE = ("conv_in.weight", "conv_in.bias", "conv_in.base_layer.weight", "conv_in.base_layer.bias")


def needs():
    """Every file/folder the full model needs: the base, the checkpoint, the default DAPE prompt's tagger."""
    from models.sr.diffusion.components import SD21_BASE
    from models.sr.diffusion.ram import TAGGER_FILES

    return {"codsr": (SD21_BASE, CODSR_PKL) + TAGGER_FILES}


# the official thresholds of GraygradToWeight_Patchwise_Sobel
PATCH, G_LOW, G_HIGH, W_LOW, SLOPE = 16, 0.15, 0.25, 0.3, 7.0


# -- region-adaptive noise ---------------------------------------------------------------------------
def sobel_magnitude(gray):
    """|G_x| + |G_y| of N×1×H×W ``gray`` (3×3 Sobel, replicate padding) -> N×1×H×W, same dtype."""
    import torch
    import torch.nn.functional as F

    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=gray.dtype, device=gray.device)
    k = torch.stack([kx, kx.t()])[:, None]  # 2×1×3×3: G_x, G_y
    g = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), k)
    return g.abs().sum(1, keepdim=True)


def weight_of_gradient(g):
    """The official piecewise map of a patch's mean gradient ``g`` to its noise weight in [0.3, 1]."""
    import torch

    mid = SLOPE * (g - G_LOW) + W_LOW
    return torch.where(g <= G_LOW, torch.full_like(g, W_LOW), torch.where(g <= G_HIGH, mid, torch.ones_like(g)))


def region_noise_weight(x01, latent_hw: tuple[int, int], factor: int = 8, patch: int = PATCH):
    """The per-latent-cell noise weight of CODSR's region-adaptive generative prior activation.

    x01:       N×3×H×W float in [0, 1], the image the VAE encodes.
    latent_hw: (h, w) of its latent (H/factor, W/factor).
    Returns N×1×h×w float32 in [0.3, 1]: each ``patch``² px patch's mean Sobel magnitude of the
    gray image, mapped by :func:`weight_of_gradient` and spread over its (patch/factor)² latent
    cells; bottom/right patches are replicate-padded, the map cropped to (h, w).
    """
    import torch.nn.functional as F

    x = x01.float()
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    mag = sobel_magnitude(gray)
    H, W = mag.shape[-2:]
    ph, pw = (-H) % patch, (-W) % patch
    if ph or pw:
        mag = F.pad(mag, (0, pw, 0, ph), mode="replicate")
    wmap = weight_of_gradient(F.avg_pool2d(mag, patch))
    cells = patch // factor
    wmap = wmap.repeat_interleave(cells, 2).repeat_interleave(cells, 3)
    h, w = latent_hw
    return wmap[:, :, :h, :w]


# -- checkpoint --------------------------------------------------------------------------------------
def _adapter_of(key: str) -> str | None:
    """The peft adapter a LoRA parameter name belongs to (``….lora_A.<adapter>.weight``)."""
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        if p.startswith("lora_"):
            return parts[i + 1]
    return None


def split_unet_state(state: dict, where: str) -> tuple[dict, dict, list[str]]:
    """``state_dict_unet`` -> (first-set keys, alignment-set keys, ignored conv_in keys); any other
    key raises CheckpointError naming it."""
    from models.sr.checkpoint import CheckpointError

    first, align, ignored, stray = {}, {}, [], []
    for k, v in state.items():
        a = _adapter_of(k)
        if a in DEFAULT_ADAPTERS:
            first[k] = v
        elif a in ALIGN_ADAPTERS:
            align[k] = v
        elif a is None and k in _IGNORABLE:
            ignored.append(k)
        else:
            stray.append(k)
    if stray:
        raise CheckpointError(f"{where}: {len(stray)} key(s) of no known CODSR adapter (e.g. {', '.join(stray[:3])}); "
                              f"expected LoRA parameters of {', '.join(DEFAULT_ADAPTERS + ALIGN_ADAPTERS)}")
    return first, align, ignored


def load_sft_state(sft, state: dict, where: str):
    """Strict ``load_state_dict`` whose error is a CheckpointError naming the keys at fault."""
    from models.sr.checkpoint import check_keys

    check_keys(sft.state_dict(), state, f"{where} does not fit the SFT layer",
               "Is it a CODSR checkpoint for this base model?")
    sft.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def make_sft(unet, vae):
    """The SFT layer sized for this base: 3·f² input channels (f = the VAE's down-factor, 8 for SD),
    ``unet.conv_in.out_channels`` outputs (320 for SD 2.1), float32 on CPU."""
    from models.sr.archs.codsr_sft import CODSRSFT

    f = 2 ** (len(vae.config.block_out_channels) - 1)
    return CODSRSFT(3 * f * f, unet.conv_in.out_channels, factor=f)


def load_codsr(components, sft, path) -> dict:
    """Load ``codsr.pkl`` into ``sft`` and (as LoRA, merged in float32) into ``components.unet``/
    ``.vae``; returns a record. Raises CheckpointError naming any key at fault."""
    from models.sr.diffusion import lora
    from models.files import sha256_file

    ck = lora.read_pkl(path, PKL_KEYS, "CODSR")
    unet, vae = components.unet, components.vae
    load_sft_state(sft, ck["state_dict_sft"], f"{path}: state_dict_sft")

    lora.check_modules(vae, ck["vae_lora_encoder_modules"], f"{path}: vae_lora_encoder_modules")
    lora.add_lora(vae, ck["vae_lora_encoder_modules"], ck["rank_vae"], VAE_ADAPTER)
    lora.load_lora_state(vae, ck["state_dict_vae"], lambda n: "lora" in n, f"{path}: state_dict_vae")
    lora.merge_lora(vae, [VAE_ADAPTER])

    first, align, ignored = split_unet_state(ck["state_dict_unet"], f"{path}: state_dict_unet")
    for names, kind, state in ((DEFAULT_ADAPTERS, "default", first), (ALIGN_ADAPTERS, "sam", align)):
        for adapter, part in zip(names, ("encoder", "decoder", "others")):
            key = f"unet_lora_{part}_modules_{kind}"
            lora.check_modules(unet, ck[key], f"{path}: {key}")
            lora.add_lora(unet, ck[key], ck["rank_unet"], adapter)
        lora.load_lora_state(unet, state, lambda n: "lora" in n, f"{path}: state_dict_unet ({kind} adapters)")
        lora.activate(unet, names)
        lora.merge_lora(unet, names)  # the first set is merged before the second is added, as the official
    if ignored:
        log.warning("%s: state_dict_unet holds %s, which the official CODSR inference does not load; "
                    "left unused here too", path, ", ".join(ignored))
    return {"path": str(path), "sha256": sha256_file(path), "rank_unet": int(ck["rank_unet"]),
            "rank_vae": int(ck["rank_vae"]), "merged": True, "ignored_keys": ignored}


# -- the model -----------------------------------------------------------------------------------------
class CODSR(DiffusionSR):
    """One UNet evaluation at ``timestep`` (100) from the region-adaptively noised LR latent, with
    the LQ-guided modulation of ``conv_in``; the latent step of the module docstring.

    sft: the ``CODSRSFT`` layer (loaded; moved to the model's device/dtype here).
    """

    tile_row_shift = 0.5  # OSEDiff's _gaussian_weights, rows centred at h/2

    def __init__(self, components, sft, *, timestep: int = 100, **kw):
        super().__init__(components, **kw)
        n = len(self.alphas_cumprod)
        if not 0 <= int(timestep) < n:
            raise ValueError(f"{self.name}: timestep must be in [0, {n - 1}], got {timestep}")
        if self.prediction_type != "epsilon":
            raise ValueError(f"{self.name}: CODSR's step needs an epsilon-prediction base model; this one predicts "
                             f"{self.prediction_type!r} (use SD-2.1-base, not SD-2.1-768)")
        self.timestep = int(timestep)
        self.sft = sft.eval().requires_grad_(False).to(self.device, self.dtype)
        self._modulation = None
        # after the LoRA merges conv_in is a plain Conv2d again: hook the module the UNet calls
        self._hook = self.unet.conv_in.register_forward_hook(self._modulate)

    def _modulate(self, module, args, out):
        if self._modulation is None:
            return None
        scale, shift = self._modulation
        return out * (1 + scale) + shift

    def w_t(self):
        """w_t = √(1−ᾱ_t)/√ᾱ_t (float32 scalar tensor): the ε -> latent factor of the step."""
        a = self.alpha_bar(self.timestep).float()
        return (1 - a).sqrt() / a.sqrt()

    def denoise(self, z, prompt_embeds, ctx):
        import torch

        a = self.alpha_bar(self.timestep).float()
        wt = self.w_t()
        zl = z.float()
        weight = region_noise_weight(ctx.x_up, zl.shape[-2:], factor=self.sft.factor)
        eps = randn(zl.shape, ctx.generator, zl.device)
        noise = eps * weight
        zt = a.sqrt() * zl + (1 - a).sqrt() * noise  # DDPMScheduler.add_noise
        scale, shift = self.sft((ctx.x_up * 2 - 1).to(self.dtype))
        lam = (1 / wt).to(self.dtype)
        t = torch.tensor([self.timestep], device=self.device).long()

        def step(zt_tile, scale_tile, shift_tile):
            self._modulation = (scale_tile, shift_tile)
            try:
                return self.unet(zt_tile, t, encoder_hidden_states=prompt_embeds).sample
            finally:
                self._modulation = None

        pred = self.run_unet_tiled(step, zt.to(self.dtype), scale * lam, shift * lam)
        return (zl + wt * (noise - pred.float())).to(self.dtype)


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None,
          allow_download: bool | None = None, scale: int | None = None, prompt=None, prompt_suffix: str = "",
          ram_weights=None, dape_weights=None, tag_list=None, tag_thresholds=None, process_size: int | None = None,
          tile: int = 150, tile_overlap: int = 50, **options):
    """CODSR behind the SR interface.

    weights: ``codsr.pkl`` (default: the resolver; the tiny variant loads one only when given).
    base:    the SD-2.1-base diffusers folder (default: the resolver; tiny: the random tiny SD).
    prompt:  "dape" (default; needs RAM/DAPE, see ``models.sr.diffusion.ram``), "ram", "none",
             a fixed text or a PromptSource; tiny default "none". ``prompt_suffix``: the official
             ``--prompt`` appended after the tags. ram_weights, dape_weights, tag_list,
             tag_thresholds: the tagger's files (default: the resolver).
    options: timestep (100), tile (150), tile_overlap (50), vae_encoder_tile (1024),
             vae_decoder_tile (224), color_fix ("adain"), seed (0); process_size (512; tiny 0).
    The tiny variant without weights gets a random SFT layer with *non-zero* output convs (an
    untrained one is the identity), so tests exercise the modulation.
    """
    if name != "codsr":
        raise KeyError(f"unknown CODSR model {name!r}")
    import torch

    from models.sr.diffusion.components import base_components
    from models.sr.diffusion.prompts import device_and_prompt
    from models.weights import resolve

    comps = base_components(tiny=tiny, base=base, allow_download=allow_download)
    path = None
    if weights is not None or not tiny:
        path = resolve(CODSR_PKL, explicit=weights, allow_download=allow_download)
    sft = make_sft(comps.unet, comps.vae)
    info = {"base": comps.source}
    if path is not None:
        info.update(load_codsr(comps, sft, path))
        info["source"] = CODSR_PKL.source
    else:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            for conv in (sft.SFT_scale_conv1, sft.SFT_shift_conv1):
                torch.nn.init.normal_(conv.weight, std=0.02)
        info["weights"] = "tiny random SD and SFT, no LoRA"
    dev, src = device_and_prompt(name, device, dtype, prompt, default="none" if tiny else "dape",
                                 suffix=prompt_suffix, allow_download=allow_download, ram_weights=ram_weights,
                                 dape_weights=dape_weights, tag_list=tag_list, tag_thresholds=tag_thresholds)
    if process_size is None:
        process_size = 0 if tiny else 512
    return CODSR(comps, sft, name=name + ("-tiny" if tiny else ""), scale=4 if scale is None else scale,
                 device=dev, dtype=dtype, prompt=src, process_size=process_size, tile=tile,
                 tile_overlap=tile_overlap, weights_info=info, **options)
