"""OSEDiff (Wu et al., "One-Step Effective Diffusion Network for Real-World Image
Super-Resolution", NeurIPS 2024; github.com/cswry/OSEDiff, Apache-2.0), on SD-2.1-base.

Inference as the official ``test_osediff.py`` + ``OSEDiff_test`` (``osediff.py``): the LR image
bicubic ×4 in [-1, 1] is VAE-encoded (VAE with its encoder LoRA; posterior sampled) to z_L; the
LoRA-tuned UNet predicts ε at t = 999 from z_L itself — no noise is added — with the DAPE prompt
"{tags}, {user prompt},"; diffusers' ``DDPMScheduler.step`` after ``set_timesteps(1)`` turns that
into x0 = (z_L − √(1−ᾱ₉₉₉)·ε)/√ᾱ₉₉₉; the VAE decodes it; AdaIN colour fix. Defaults: fp16 (on
CUDA), latent tiles 96 / overlap 32, VAE encoder tiles 1024 px, decoder tiles 224 latent px.

Checkpoint ``osediff.pkl`` (``OSEDiff_gen.save_model``), a torch dict:
``state_dict_unet`` — every UNet parameter whose name contains "lora" or "conv_in" (conv_in's
base weights were trained too); ``state_dict_vae`` — the VAE's "lora" parameters;
``rank_unet``, ``rank_vae``; ``unet_lora_encoder_modules``/``…_decoder_modules``/
``…_others_modules`` and ``vae_lora_encoder_modules`` (peft target module lists). As
``OSEDiff_test.load_ckpt``: adapters "default_encoder"/"default_decoder"/"default_others" on the
UNet and "default_encoder" on the VAE, ``LoraConfig(r=rank, init_lora_weights="gaussian",
target_modules=list)``, parameters copied by name — here with every key matched (see
``models.sr.diffusion.lora``) — then merged into the base weights in float32 (the official
``--merge_and_unload_lora``; off there by default, same maths).
"""
from __future__ import annotations

from models.sr.diffusion.base import DiffusionSR
from models.weights import WeightsFile

OSEDIFF_PKL = WeightsFile("osediff.pkl", url="https://github.com/cswry/OSEDiff/raw/main/preset/models/osediff.pkl")
UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
VAE_ADAPTER = "default_encoder"


def needs():
    """Every file/folder the full model needs: the base, the checkpoint, the default DAPE prompt's tagger."""
    from models.sr.diffusion.components import SD21_BASE
    from models.sr.diffusion.ram import TAGGER_FILES

    return {"osediff": (SD21_BASE, OSEDIFF_PKL) + TAGGER_FILES}


PKL_KEYS = ("state_dict_unet", "state_dict_vae", "rank_unet", "rank_vae", "unet_lora_encoder_modules",
            "unet_lora_decoder_modules", "unet_lora_others_modules", "vae_lora_encoder_modules")


def load_osediff(components, path, *, merge: bool = True) -> dict:
    """Add OSEDiff's LoRA adapters to ``components.unet``/``.vae`` (float32) and load ``path``
    strictly; returns a record (path, sha256, ranks). Raises CheckpointError naming any key at fault."""
    from models.sr.diffusion import lora
    from models.files import sha256_file

    ck = lora.read_pkl(path, PKL_KEYS, "OSEDiff")
    unet, vae = components.unet, components.vae
    lists = [ck["unet_lora_encoder_modules"], ck["unet_lora_decoder_modules"], ck["unet_lora_others_modules"]]
    for name, mods in zip(UNET_ADAPTERS, lists):
        lora.check_modules(unet, mods, f"{path}: unet_lora_{name.split('_')[1]}_modules")
        lora.add_lora(unet, mods, ck["rank_unet"], name)
    lora.load_lora_state(unet, ck["state_dict_unet"], lambda n: "lora" in n or "conv_in" in n,
                         f"{path}: state_dict_unet")
    lora.activate(unet, UNET_ADAPTERS)
    lora.check_modules(vae, ck["vae_lora_encoder_modules"], f"{path}: vae_lora_encoder_modules")
    lora.add_lora(vae, ck["vae_lora_encoder_modules"], ck["rank_vae"], VAE_ADAPTER)
    lora.load_lora_state(vae, ck["state_dict_vae"], lambda n: "lora" in n, f"{path}: state_dict_vae")
    lora.activate(vae, [VAE_ADAPTER])
    if merge:
        lora.merge_lora(unet, UNET_ADAPTERS)
        lora.merge_lora(vae, [VAE_ADAPTER])
    return {"path": str(path), "sha256": sha256_file(path), "rank_unet": int(ck["rank_unet"]),
            "rank_vae": int(ck["rank_vae"]), "merged": merge}


class OSEDiff(DiffusionSR):
    """One UNet evaluation at ``timestep`` (999) from the LR latent, x0 by the DDPM step."""

    tile_row_shift = 0.5  # OSEDiff's _gaussian_weights, rows centred at h/2

    def __init__(self, components, *, timestep: int = 999, **kw):
        super().__init__(components, **kw)
        n = len(self.alphas_cumprod)
        if not 0 <= int(timestep) < n:
            raise ValueError(f"{self.name}: timestep must be in [0, {n - 1}], got {timestep}")
        self.timestep = int(timestep)

    def denoise(self, z, prompt_embeds, ctx):
        import torch

        t = torch.tensor([self.timestep], device=self.device).long()
        pred = self.run_unet_tiled(lambda zt: self.unet(zt, t, encoder_hidden_states=prompt_embeds).sample, z)
        return self.predict_x0(pred, z, self.timestep)


def build(name: str, *, tiny: bool = False, weights=None, device=None, dtype=None, base=None,
          allow_download: bool | None = None, scale: int | None = None, prompt=None, prompt_suffix: str = "",
          ram_weights=None, dape_weights=None, tag_list=None, tag_thresholds=None, merge_lora: bool = True,
          process_size: int | None = None, **options):
    """OSEDiff behind the SR interface.

    weights: ``osediff.pkl`` (default: the resolver; the tiny variant loads one only when given).
    base:    the SD-2.1-base diffusers folder (default: the resolver; tiny: random tiny SD).
    prompt:  "dape" (default; needs RAM/DAPE, see ``models.sr.diffusion.ram``), "ram", "none",
             a fixed text or a PromptSource; tiny default "none". ``prompt_suffix``: the official
             ``--prompt`` appended after the tags. ram_weights, dape_weights, tag_list,
             tag_thresholds: the tagger's files (default: the resolver).
    options: timestep (999), tile (96), tile_overlap (32), vae_encoder_tile (1024),
             vae_decoder_tile (224), color_fix ("adain"), seed (0); process_size (512; tiny 0).
    """
    if name != "osediff":
        raise KeyError(f"unknown OSEDiff model {name!r}")
    from models.sr.diffusion.components import base_components
    from models.sr.diffusion.prompts import device_and_prompt
    from models.weights import resolve

    comps = base_components(tiny=tiny, base=base, allow_download=allow_download)
    path = None
    if weights is not None or not tiny:
        path = resolve(OSEDIFF_PKL if weights is None else WeightsFile(str(weights).rsplit("/", 1)[-1]),
                       explicit=weights, allow_download=allow_download)
    info = {"base": comps.source}
    if path is not None:
        info.update(load_osediff(comps, path, merge=merge_lora))
        info["source"] = OSEDIFF_PKL.source
    else:
        info["weights"] = "tiny random SD, no LoRA"
    dev, src = device_and_prompt(name, device, dtype, prompt, default="none" if tiny else "dape",
                                 suffix=prompt_suffix, allow_download=allow_download, ram_weights=ram_weights,
                                 dape_weights=dape_weights, tag_list=tag_list, tag_thresholds=tag_thresholds)
    if process_size is None:
        process_size = 0 if tiny else 512
    return OSEDiff(comps, name=name + ("-tiny" if tiny else ""), scale=4 if scale is None else scale,
                   device=dev, dtype=dtype, prompt=src, process_size=process_size, weights_info=info, **options)
